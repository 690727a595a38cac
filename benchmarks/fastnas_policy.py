"""A peer's automatic channel allocation as a policy: NVIDIA Model Optimizer's FastNAS.

    python -m venv .venv-peer
    .venv-peer/bin/pip install torch==2.13.0 -e . nvidia-modelopt requests huggingface_hub
    .venv-peer/bin/python benchmarks/fastnas_policy.py experiments/vgg-small-fashion-mnist.yaml \\
        --budget 0.30 --out runs/fastnas-30.yaml

``nvidia-modelopt`` is a benchmark dependency, not one of the package's: it lives in a
virtualenv of its own (it pins and pulls packages the project does not need).

Runs ``mtp.prune(model, mode="fastnas", constraints={"flops": ...})`` on the config's base
model: FastNAS measures each layer's sensitivity (the layer alone at every width, BatchNorm
re-estimated on training batches, scored by ``score_func``) and picks the widths that meet the
FLOPs limit. Its ``score_func`` here is the one our zero-cost fidelity uses: accuracy on the
first 1,000 validation images (the search's validation split, never the selection split or the
test set), after FastNAS's own BatchNorm re-estimation on 50 training batches of 32. Channel
widths are searched in multiples of ``--divisor`` (8 by default: FastNAS's default of 32 would
leave a 32-channel layer no choice at all); the classifier's output stays whole.

The widths FastNAS chose are written as a policy of prune ratios (kept channels exactly as
FastNAS kept them), so our export fine-tunes it exactly like our own policies:
``autocompress apply CONFIG --policy OUT``. FastNAS counts FLOPs its own way (every module), so
its widths land above or below the budget in our MACs: the FLOPs limit is scaled by the miss
and FastNAS searches again (from its saved sensitivity map) until the policy is within the
budget and no more than ``--slack`` below it, at most ``--tries`` times; the largest policy
within the budget is kept.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autocompress.config import load_config
from autocompress.cost.metrics import compute_costs, kept_channels
from autocompress.fidelity import VAL_SUBSET
from autocompress.policy import Policy
from autocompress.runs import prepare


def fastnas_widths(
    model: nn.Module,
    x_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    flops: str,
    divisor: int,
    checkpoint: Path,
) -> dict[str, int]:
    """Output widths of every Conv2d / Linear of the subnet FastNAS picks under ``flops``."""
    import modelopt.torch.prune as mtp

    def score(m: nn.Module) -> float:
        m.eval()  # FastNAS re-estimates BatchNorm here, from its queue of training batches
        with torch.no_grad():
            return float((m(x_val).argmax(1) == y_val).float().mean())

    # 50 batches: the queue FastNAS keeps for BatchNorm calibration holds 50 (fewer leave
    # every candidate scored with the full model's statistics, and a warning)
    batches = [(x_train[i : i + 32],) for i in range(0, 50 * 32, 32)]
    rules = {
        "nn.Conv2d": {"*": {"channel_divisor": divisor}},
        "nn.Linear": {"*": {"feature_divisor": divisor}},
        "nn.BatchNorm2d": {"*": {"feature_divisor": divisor}},
    }
    pruned, _ = mtp.prune(
        model,
        mode=[("fastnas", rules)],
        constraints={"flops": flops},
        dummy_input=x_val[:1],
        config={
            "data_loader": batches,
            "collect_func": lambda b: b[0],
            "score_func": score,
            "checkpoint": str(checkpoint),
            "verbose": False,
        },
    )
    return {
        name: m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
        for name, m in pruned.named_modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    }


def as_policy(widths: dict[str, int], original: dict[str, int], model: str) -> Policy:
    """Prune ratios that keep exactly ``widths`` channels (kept_channels rounds them back)."""
    layers: dict[str, dict[str, float]] = {}
    for name, width in widths.items():
        full = original[name]
        if width < full:
            ratio = (full - width) / full
            assert kept_channels(full, ratio) == width, (name, full, width)
            layers[name] = {"prune": round(ratio, 6)}
    return Policy.from_dict({"model": model, "layers": layers})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("--budget", type=float, required=True, help="MACs ratio, e.g. 0.30")
    parser.add_argument("--out", type=Path, required=True, help="the policy YAML to write")
    parser.add_argument("--divisor", type=int, default=8, help="channel multiple searched")
    parser.add_argument("--tries", type=int, default=6)
    parser.add_argument(
        "--slack", type=float, default=0.03, help="MACs below the budget accepted, relative"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    torch.manual_seed(0)
    cfg = load_config(args.config, args.set)
    run = prepare(cfg)
    base, splits, profile = run.base.model.eval(), run.splits, run.profile
    original = {
        name: m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
        for name, m in base.named_modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    }
    classifier = [n for n in original if n in profile.layers][-1]
    x_val, y_val = splits.x_val[:VAL_SUBSET], splits.y_val[:VAL_SUBSET]
    limit, start, tries = 100 * args.budget, time.perf_counter(), []
    # one checkpoint for every try: FastNAS keeps its sensitivity map there and reloads it, so a
    # try after the first only re-runs its search for widths under the new limit
    checkpoint = Path(tempfile.mkdtemp(prefix="fastnas-")) / "search.pth"
    best: tuple[float, Policy] | None = None
    full_macs = compute_costs(profile, Policy(profile.model)).macs
    for _ in range(args.tries):
        widths = fastnas_widths(
            copy.deepcopy(base),
            splits.x_train,
            x_val,
            y_val,
            f"{limit:.3f}%",
            args.divisor,
            checkpoint,
        )
        widths[classifier] = original[classifier]
        policy = as_policy(widths, original, profile.model)
        ratio = compute_costs(profile, policy).macs / full_macs
        tries.append({"flops_limit_pct": limit, "macs_ratio": ratio, "widths": widths})
        print(f"FastNAS at {limit:.2f}% FLOPs: {ratio:.2%} of the MACs; widths {widths}")
        if ratio <= args.budget + 1e-9 and (best is None or ratio > best[0]):
            best = (ratio, policy)
        if args.budget * (1 - args.slack) <= ratio <= args.budget + 1e-9:
            break  # within budget and close enough to it: FastNAS got the budget's worth
        limit *= args.budget / ratio * (0.999 if ratio > args.budget else 1.0)
    if best is None:
        raise SystemExit(
            f"FastNAS stayed above {args.budget:.0%} of the MACs in {args.tries} tries"
        )
    ratio, policy = best
    args.out.parent.mkdir(parents=True, exist_ok=True)
    policy.save(args.out)
    seconds = time.perf_counter() - start
    summary = {"budget": args.budget, "seconds": seconds, "tries": tries, "policy": str(args.out)}
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.out} ({ratio:.2%} of the MACs, {seconds:.0f} s)")


if __name__ == "__main__":
    main()
