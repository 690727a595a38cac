"""Time one policy costing with the analytic cost model (target: well under 1 ms for ResNet-56).

For each model: profile once, then price fresh random channel-pruning policies; print the
median and 95th percentile per costing, and, for scale, the time to really build the pruned
model with Torch-Pruning and count its MACs (the baseline the cost model replaces).

    .venv/bin/python benchmarks/cost_model.py [--repeats 2000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from autocompress.compress import apply_policy
from autocompress.cost.metrics import compute_costs
from autocompress.cost.profile import profile_model
from autocompress.models import ZOO
from autocompress.policy import LayerChoice, Policy

MODELS = {
    "lenet5": (1, 28, 28),
    "resnet56": (3, 32, 32),
    "vgg16_bn": (3, 32, 32),
    "mobilenetv2_cifar": (3, 32, 32),
}


def random_policy(name: str, roots: list[str], rng: random.Random) -> Policy:
    return Policy(name, {r: LayerChoice(prune=rng.uniform(0, 0.8)) for r in roots})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--builds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = random.Random(0)
    print(
        f"{'model':<18} {'layers':>6} {'groups':>6} {'profile s':>9} "
        f"{'cost median µs':>14} {'cost p95 µs':>11} {'build+count ms':>14} {'ratio':>8}"
    )
    for name, shape in MODELS.items():
        model = ZOO[name]()
        start = time.perf_counter()
        profile = profile_model(model, shape, name)
        profile_s = time.perf_counter() - start
        roots = [g.root for g in profile.groups.values() if g.prunable]
        policies = [random_policy(name, roots, rng) for _ in range(args.repeats)]
        times = []
        for policy in policies:
            t0 = time.perf_counter()
            compute_costs(profile, policy)
            times.append(time.perf_counter() - t0)
        builds = []
        for policy in policies[: args.builds]:
            t0 = time.perf_counter()
            pruned = apply_policy(model, policy, profile)
            with FlopCounterMode(display=False):
                pruned.eval()(torch.zeros(1, *shape))
            builds.append(time.perf_counter() - t0)
        med = statistics.median(times) * 1e6
        p95 = statistics.quantiles(times, n=20)[-1] * 1e6
        build = statistics.median(builds) * 1e3
        print(
            f"{name:<18} {len(profile.layers):>6} {len(profile.groups):>6} {profile_s:>9.2f} "
            f"{med:>14.1f} {p95:>11.1f} {build:>14.1f} {build * 1e3 / med:>7.0f}×"
        )


if __name__ == "__main__":
    main()
