"""The default multi-objective search against accuracy alone, under one budget.

    python benchmarks/objectives.py experiments/lenet300-mnist.yaml --seeds 0 1 2 \\
        --below 0.1635 --json experiments/objectives-lenet300.json \\
        --set 'budget={macs: 20%}' --set space.skip_first=false \\
        --set 'space.rules=[{prune: [0.0, 0.9]}, {rank: [0.1, 1.0]}]' \\
        --set search.trials=30 --set finetune.steps=150

For each seed, in the config's run directory (its cached base model), two searches, each in a
study of its own and alike in everything but ``search.objectives``: ``[]`` (validation accuracy
alone within the budget: the default before issue 18) and the default (accuracy and the
budget's costs, a Pareto front). For each search: its wall time; the hypervolume of its
fine-tuned trials in (validation accuracy up, MACs ratio down) between no MACs and the budget,
above ``--ref`` accuracy; and two exports with the same fine-tune (``--finetune-epochs``),
tested on the test set: ``export --best`` (the best trial within the budget) and
``export --best --max-macs BELOW`` (the best trial at or below ``--below`` of the MACs: a
cheaper point the front should hold, e.g. a hand policy's 16.3%). Prints a table, the means,
and writes everything to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import optuna

from autocompress.cli import main
from autocompress.config import load_config
from autocompress.search.pareto import hypervolume
from autocompress.search.study import records, storage_url

# the default is null (what a config that does not set it gets); set here, so a config that
# pins its objectives (the demo's does) is compared all the same
MODES = {
    "accuracy alone": ("single", ["search.objectives=[]"]),
    "default (front)": ("front", ["search.objectives=null"]),
}


def run(argv: list[str]) -> int:
    print("$ autocompress " + " ".join(argv), flush=True)
    return main(argv)


def tested(run_dir: Path, study: str, out: Path, epochs: float, limit: float | None) -> Any:
    """Test accuracy and MACs ratio of ``export --best`` (within ``limit`` of the MACs if
    given); None where no trial fits."""
    argv = ["export", str(run_dir), "--study", study, "--best", "--out", str(out), "--force"]
    argv += ["--finetune-epochs", f"{epochs:g}"]
    if limit is not None:
        argv += ["--max-macs", f"{limit:g}"]
    if run(argv) != 0:
        return None
    report = json.loads((out / "report.json").read_text())
    return {"trial": report["trial"], "test": report["accuracy"], "macs": report["macs_ratio"]}


def one(config: str, sets: list[str], args: argparse.Namespace, label: str) -> dict[str, Any]:
    cfg = load_config(config, sets)
    flags = [x for s in sets for x in ("--set", s)]
    start = time.perf_counter()
    if run(["search", config, *flags]) != 0:
        raise SystemExit(f"the search {label} failed")
    seconds = time.perf_counter() - start
    study = optuna.load_study(study_name=str(cfg.search.study), storage=storage_url(cfg))
    found = records(study)
    budget = cfg.budget["macs"].value
    fine_tuned = [r for r in found if r.scored]
    out, cheaper = cfg.run_dir / f"bench-{label}", cfg.run_dir / f"bench-{label}-cheaper"
    return {
        "search_seconds": seconds,
        "fine_tuned": len(fine_tuned),
        "below": sum(r.ratios["macs"] <= args.below for r in fine_tuned),
        "hypervolume": hypervolume(found, "macs", args.ref, budget),
        "best": tested(cfg.run_dir, str(cfg.search.study), out, args.finetune_epochs, None),
        "cheaper": tested(
            cfg.run_dir, str(cfg.search.study), cheaper, args.finetune_epochs, args.below
        ),
    }


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--below", type=float, required=True, help="MACs ratio of the cheaper export"
    )
    parser.add_argument("--ref", type=float, default=0.9, help="hypervolume's reference accuracy")
    parser.add_argument("--finetune-epochs", type=float, default=2.0)
    parser.add_argument("--set", action="append", default=[], dest="sets")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    for seed in args.seeds:
        for mode, (short, extra) in MODES.items():
            label = f"objectives-{short}-s{seed}"
            sets = [*args.sets, *extra, f"search.seed={seed}", f"search.study={label}"]
            results[label] = {"mode": mode, "seed": seed, **one(args.config, sets, args, label)}
            if args.json:
                args.json.write_text(
                    json.dumps(
                        {"argv": vars(args) | {"json": str(args.json)}, "results": results},
                        indent=1,
                        default=str,
                    )
                )
    print(
        "\n| search | seed | wall | fine-tuned trials | of them ≤ below | hypervolume "
        "| best within budget: test (MACs) | best ≤ below: test (MACs) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results.values():
        print(
            f"| {r['mode']} | {r['seed']} | {r['search_seconds']:.0f} s | {r['fine_tuned']} "
            f"| {r['below']} | {r['hypervolume'] * 1e3:.2f}e-3 | {shown(r['best'])} "
            f"| {shown(r['cheaper'])} |"
        )
    for mode in MODES:
        rows = [r for r in results.values() if r["mode"] == mode]
        print(
            f"{mode}: hypervolume {mean([r['hypervolume'] for r in rows]) * 1e3:.2f}e-3, "
            f"best within budget {mean([r['best']['test'] for r in rows if r['best']]):.2%}, "
            f"best ≤ below {mean([r['cheaper']['test'] for r in rows if r['cheaper']]):.2%} "
            f"({sum(r['cheaper'] is not None for r in rows)} of {len(rows)} found one), "
            f"wall {mean([r['search_seconds'] for r in rows]):.0f} s"
        )


def shown(result: dict[str, Any] | None) -> str:
    return "none" if result is None else f"{result['test']:.2%} ({result['macs']:.1%})"


def mean(values: list[float]) -> float:
    return statistics.mean(values) if values else float("nan")


if __name__ == "__main__":
    main_cli()
