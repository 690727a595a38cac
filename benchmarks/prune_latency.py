"""Measured CPU latency of a channel-pruned model against its base, in the same run.

Uniform channel pruning (every prunable group, one ratio) at the ratio that removes about half
of the MACs, found with the cost model; then the median latency of both models at batch 64 and
batch 1 (fixed threads, warm-up, repeats). Latency depends on shapes, not on weight values, so
the models need no training.

    .venv/bin/python benchmarks/prune_latency.py [--model resnet56] [--macs 0.5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from autocompress.compress import apply_policy
from autocompress.config import CompressConfig
from autocompress.cost.latency import measure_latency
from autocompress.cost.metrics import compute_costs
from autocompress.cost.profile import Profile, profile_model
from autocompress.models import ZOO
from autocompress.policy import LayerChoice, Policy

SHAPES = {"lenet5": (1, 28, 28), "lenet300_100": (1, 28, 28)}


def uniform(profile: Profile, ratio: float) -> Policy:
    roots = [g.root for g in profile.groups.values() if g.prunable]
    return Policy(profile.model, {r: LayerChoice(prune=ratio) for r in roots})


def ratio_for(profile: Profile, target: float, round_to: int) -> float:
    """The smallest uniform prune ratio whose MACs are at most ``target`` × base (bisection)."""
    base = compute_costs(profile, Policy(profile.model)).macs
    lo, hi = 0.0, 0.95
    for _ in range(40):
        mid = (lo + hi) / 2
        if compute_costs(profile, uniform(profile, mid), round_to).macs / base > target:
            lo = mid
        else:
            hi = mid
    return round(hi, 4)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="resnet56")
    parser.add_argument("--macs", type=float, default=0.5, help="target MACs ratio")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--round-to", type=int, default=1, help="kept channels multiple of")
    args = parser.parse_args()
    torch.manual_seed(0)
    shape = SHAPES.get(args.model, (3, 32, 32))
    model = ZOO[args.model]().eval()
    profile = profile_model(model, shape, args.model)
    ratio = ratio_for(profile, args.macs, args.round_to)
    policy = uniform(profile, ratio)
    settings = CompressConfig(round_to=args.round_to)
    pruned = apply_policy(model, policy, profile, settings).eval()
    base_costs = compute_costs(profile, Policy(args.model))
    costs = compute_costs(profile, policy, args.round_to)
    print(
        f"{args.model}: uniform prune ratio {ratio} → MACs {costs.macs:,} / {base_costs.macs:,} "
        f"= {costs.macs / base_costs.macs:.3f}, params {costs.params / base_costs.params:.3f}"
    )
    print(
        f"{'batch':>5} {'base ms':>9} {'pruned ms':>10} {'ratio':>6}   ({args.threads} threads, "
        f"median of {args.repeats})"
    )
    torch.set_num_threads(args.threads)
    for batch in (64, 1):
        # alternate single passes, so drift in machine load hits both models alike
        pairs = [
            (
                measure_latency(model, shape, batch, 1, warmup=1),
                measure_latency(pruned, shape, batch, 1, warmup=1),
            )
            for _ in range(args.repeats)
        ]
        base_ms = statistics.median(b for b, _ in pairs)
        pruned_ms = statistics.median(p for _, p in pairs)
        print(f"{batch:>5} {base_ms:>9.2f} {pruned_ms:>10.2f} {pruned_ms / base_ms:>6.3f}")


if __name__ == "__main__":
    main()
