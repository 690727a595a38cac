"""Time to quality: the multi-fidelity search against today's 40-trial TPE search.

    python benchmarks/time_to_quality.py experiments/lenet5-fashion-mnist.yaml --seeds 0 1 2

For each seed, in the config's run directory (its cached base model): a search with every
trial fine-tuned (``search.fidelity=short``, ``--short-trials`` trials, the demo's search) and
a multi-fidelity search (``search.fidelity=multi`` with ``--trials``, ``--screen``,
``--finalists``), each in a study of its own and timed from the command's start to its end;
then each search's best trial (``export --best``: for the multi-fidelity search, the
finalist best on held-out data) exported with the same fine-tune
(``finetune.export_epochs``, same seed) and tested. Prints both test accuracies and wall
times per seed, their means, and the ratio of the wall times.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from autocompress.cli import main
from autocompress.config import load_config


def run(argv: list[str]) -> None:
    code = main(argv)
    if code != 0:
        raise SystemExit(f"`autocompress {' '.join(argv)}` exited {code}")


def one(config: str, sets: list[str], label: str) -> dict[str, float | int]:
    """Search (timed), export the best with the config's export fine-tune, return figures."""
    flags = [x for o in sets for x in ("--set", o)]
    cfg = load_config(config, sets)
    start = time.perf_counter()
    run(["search", config, *flags])
    seconds = time.perf_counter() - start
    out = cfg.run_dir / f"bench-{label}"
    run(
        [
            "export",
            str(cfg.run_dir),
            "--study",
            str(cfg.search.study),
            "--best",
            "--out",
            str(out),
            "--force",
        ]
    )
    report = json.loads((out / "report.json").read_text())
    return {
        "search_seconds": seconds,
        "trial": report["trial"],
        "test_accuracy": report["accuracy"],
        "macs_ratio": report["macs_ratio"],
    }


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", nargs="?", default="experiments/lenet5-fashion-mnist.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--short-trials", type=int, default=40)
    parser.add_argument("--trials", type=int, default=5, help="fine-tuned trials (multi)")
    parser.add_argument("--screen", type=int, default=10, help="zero-cost candidates per trial")
    parser.add_argument("--finalists", type=int, default=2)
    parser.add_argument("--finalist-length", type=float, default=2.0, help="times a trial's")
    parser.add_argument("--tag", default="ttq", help="studies TAG-short-sN and TAG-multi-sN")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    rows: list[dict[str, object]] = []
    for seed in args.seeds:
        common = [*args.set, f"search.seed={seed}"]
        short = one(
            args.config,
            [
                *common,
                "search.fidelity=short",
                f"search.trials={args.short_trials}",
                f"search.study={args.tag}-short-s{seed}",
            ],
            f"{args.tag}-short-s{seed}",
        )
        multi = one(
            args.config,
            [
                *common,
                "search.fidelity=multi",
                f"search.trials={args.trials}",
                f"search.screen={args.screen}",
                f"search.finalists={args.finalists}",
                f"search.finalist_length={args.finalist_length}",
                f"search.study={args.tag}-multi-s{seed}",
            ],
            f"{args.tag}-multi-s{seed}",
        )
        rows.append({"seed": seed, "short": short, "multi": multi})
        print(f"seed {seed}: short {short} | multi {multi}", flush=True)
    print(
        f"\n== time to quality: {args.short_trials}-trial TPE (every trial fine-tuned) vs "
        f"multi-fidelity ({args.screen * args.trials} screened, {args.trials} fine-tuned, "
        f"{args.finalists} finalists fine-tuned {args.finalist_length:g}× longer) =="
    )
    for label in ("short", "multi"):
        tests = [float(r[label]["test_accuracy"]) for r in rows]  # type: ignore[index]
        walls = [float(r[label]["search_seconds"]) for r in rows]  # type: ignore[index]
        print(
            f"{label:6s} test "
            + ", ".join(f"{t:.2%}" for t in tests)
            + f"  mean {statistics.mean(tests):.2%}   search wall "
            + ", ".join(f"{w:.0f}s" for w in walls)
            + f"  mean {statistics.mean(walls):.0f}s"
        )
    ratio = statistics.mean(float(r["multi"]["search_seconds"]) for r in rows) / statistics.mean(  # type: ignore[index]
        float(r["short"]["search_seconds"])
        for r in rows  # type: ignore[index]
    )
    gap = statistics.mean(
        100 * (float(r["multi"]["test_accuracy"]) - float(r["short"]["test_accuracy"]))  # type: ignore[index]
        for r in rows
    )
    print(f"multi / short wall time: {ratio:.2f}×; test accuracy multi − short: {gap:+.2f} pt")
    if args.json:
        settings = {k: getattr(args, k) for k in ("short_trials", "trials", "screen", "finalists")}
        settings["finalist_length"] = args.finalist_length
        args.json.write_text(
            json.dumps(
                {"settings": settings, "runs": rows, "wall_ratio": ratio, "gap_points": gap},
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main_cli()
