"""The RL agent against random search on the toy problem of tests/search/test_rl.py.

Prints, for each episode budget, the mean best reward of the agent and of random search over
seeds 0-2 and the seconds the agent took with the given torch threads::

    .venv/bin/python benchmarks/rl_toy.py --episodes 40 80 --threads 1
"""

from __future__ import annotations

import argparse
import time

import torch

from tests.search.test_rl import best_rewards


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, nargs="+", default=[40, 80])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for episodes in args.episodes:
        started = time.perf_counter()
        agent, rand = best_rewards(episodes)
        seconds = time.perf_counter() - started
        print(
            f"{episodes} episodes, {args.threads} thread(s): agent {sum(agent) / 3:.3f} "
            f"{[round(a, 3) for a in agent]}, random {sum(rand) / 3:.3f} "
            f"{[round(float(r), 3) for r in rand]}, {seconds:.1f} s"
        )


if __name__ == "__main__":
    main()
