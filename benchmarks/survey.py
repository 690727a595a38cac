"""The survey's comparison table for one model and dataset, measured with autocompress.

    python benchmarks/survey.py experiments/lenet5-mnist.yaml            # every row
    python benchmarks/survey.py experiments/lenet5-mnist.yaml --rows share,w4a8
    python benchmarks/survey.py --report                                 # tables and plots

Each row is one ``autocompress`` command run in-process on the config's cached base model,
the same as a user would type (the script prints it): a hand policy of one method from
``experiments/survey/`` applied with the same fine-tune (``--finetune-epochs``, 2 by default,
distilled from the base model); a compact student trained with the base model as teacher and
alone (``distill``); Deep Compression's hand policy with its own two-stage fine-tune; and two
searches on the config's run directory (their own studies, so the base model is shared), one
under a size budget and one under a MACs budget, whose best trials are exported with the same
fine-tune as the hand rows (the size search's, like Deep Compression's, which it competes with).
A row whose output already holds ``report.json`` is read, not rerun
(``--force`` reruns it).

Results go to ``experiments/survey/<config name>.json``; ``--report`` turns every such file
into the Markdown tables of RESULTS.md and a plot per dataset,
``experiments/survey-<dataset>.png`` (test accuracy against size compression).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autocompress.cli import main
from autocompress.config import Config, load_config

ROOT = Path(__file__).resolve().parent.parent
SURVEY = ROOT / "experiments" / "survey"
FINETUNE_EPOCHS = 2.0
SEARCH_TRIALS = 30
SEARCH_STEPS = 150  # each trial's short fine-tune, as in the demo
# searched trials exported with the full fine-tune, the best on validation kept: two for
# LeNet-300-100, one for LeNet-5 (whose 10-epoch export, as long as Deep Compression's, takes
# five minutes on 2 cores)
EXPORT_TOP = {"lenet5": 1, "lenet300_100": 2}

# model → (short name in file names, compact student, Deep Compression policy and epochs)
MODELS = {
    "lenet5": ("lenet5", "lenet5:width=0.5", "deep-compression-lenet5-mnist.yaml", 10.0),
    "lenet300_100": (
        "lenet300",
        "lenet300_100:width=0.5",
        "deep-compression-lenet300-mnist.yaml",
        30.0,
    ),
}

# Search spaces: the size search may prune, sparsify and share weights in every layer; the MACs
# search prunes channels and factorizes (sparsity and sharing do not remove MACs on a CPU).
# The size budget, in the bitmap form the cost model prices, aiming at 50× in Deep Compression's
# Huffman accounting: Huffman coding gains about 1.4× over the bitmap form on LeNet-300-100's
# sparse, shared layers, but only 1.07× on LeNet-5's searched policies (a first LeNet-5 search
# at 2.5% gave 42.8× bitmap, 45.6× Huffman), so LeNet-5 gets the tighter limit.
SIZE_BUDGET = {"lenet5": "2%", "lenet300_100": "2.5%"}
SIZE_SEARCH = [
    "space.skip_first=false",
    "space.skip_last=false",
    "space.rules=[{prune: [0.0, 0.5], sparsity: [0.5, 0.97], clusters: [4, 8, 16, 32]}]",
]
MACS_SEARCH = [
    "budget={macs: 20%}",
    "space.skip_first=false",
    "space.rules=[{prune: [0.0, 0.9]}, {rank: [0.1, 1.0]}]",
]


@dataclass(frozen=True)
class Row:
    key: str  # output folder and results key
    method: str  # the table's label
    kind: str  # apply | distill | search


ROWS = [
    Row("sparsity", "unstructured pruning (Deep Compression's kept fractions)", "apply"),
    Row("prune", "structured (channel) pruning", "apply"),
    Row("w8a8", "quantization, 8-bit weights", "apply"),
    Row("w4a8", "quantization, 4-bit weights", "apply"),
    Row("w2a8", "quantization, 2-bit weights", "apply"),
    Row("rank", "low-rank factorization", "apply"),
    Row("share", "weight sharing, 16 values (4-bit)", "apply"),
    Row("distilled", "half-width student, distilled", "distill"),
    Row("alone", "half-width student alone (compact network)", "distill"),
    Row("deep-compression", "Deep Compression (hand policy)", "apply"),
    Row("search-size", "autocompress search, size budget (bitmap form)", "search"),
    Row("search-macs", "autocompress search, MACs ≤ 20%", "search"),
]
BY_KEY = {r.key: r for r in ROWS}


def run(argv: list[str]) -> float:
    """Run ``autocompress ARGV`` in-process; its wall time in seconds."""
    print(f"\n$ autocompress {shlex.join(argv)}", flush=True)
    start = time.perf_counter()
    code = main(argv)
    if code != 0:
        raise SystemExit(f"`autocompress {shlex.join(argv)}` exited {code}")
    return time.perf_counter() - start


def with_sets(argv: list[str], sets: list[str]) -> list[str]:
    return [*argv, *(x for s in sets for x in ("--set", s))]


def rel(path: Path) -> str:
    full = path.resolve()
    return str(full.relative_to(ROOT)) if full.is_relative_to(ROOT) else str(path)


def commands(config: str, cfg: Config, row: Row, out: Path) -> list[list[str]]:
    """The ``autocompress`` command lines that produce ``row``."""
    short, student, dc_policy, dc_epochs = MODELS[cfg.model.name or ""]
    if row.kind == "apply":
        policy, epochs = (
            (f"experiments/{dc_policy}", dc_epochs)
            if row.key == "deep-compression"
            else (rel(SURVEY / f"{short}-{row.key}.yaml"), FINETUNE_EPOCHS)
        )
        return [
            [
                "apply",
                config,
                "--policy",
                policy,
                "--finetune-epochs",
                f"{epochs:g}",
                "--out",
                rel(out),
            ]
        ]
    if row.kind == "distill":
        return [["distill", config, "--student", student, "--out", rel(out)]]
    study = f"survey-{row.key.removeprefix('search-')}"
    sets = [
        f"search.study={study}",
        f"search.trials={SEARCH_TRIALS}",
        f"finetune.steps={SEARCH_STEPS}",
        *(SIZE_SEARCH if row.key == "search-size" else MACS_SEARCH),
    ]
    if row.key == "search-size":
        sets.insert(3, f"budget={{size_bytes: {SIZE_BUDGET[cfg.model.name or '']}}}")
    # the size search competes with Deep Compression: its export gets the same fine-tune
    epochs = dc_epochs if row.key == "search-size" else FINETUNE_EPOCHS
    return [
        ["search", config, *(x for s in sets for x in ("--set", s))],
        [
            *(
                "export",
                rel(cfg.run_dir),
                "--study",
                study,
                "--best",
                "--top",
                str(EXPORT_TOP[cfg.model.name or ""]),
            ),
            *("--finetune-epochs", f"{epochs:g}", "--out", rel(out)),
        ],
    ]


def measure(config: str, keys: list[str], force: bool, sets: list[str]) -> dict[str, Any]:
    cfg = load_config(config)
    path = SURVEY / f"{cfg.name}.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    results.setdefault("rows", {})
    run(with_sets(["train", config], sets))
    base = json.loads(next(cfg.run_dir.glob("base-*.json")).read_text())
    results.update(config=config, model=cfg.model.name, dataset=cfg.data.name)
    results["base"] = {"test_accuracy": base.get("test_accuracy")}
    cleared: set[Path] = set()
    for key in keys:
        row = BY_KEY[key]
        folder = "distill" if row.kind == "distill" else key
        out = ROOT / "runs" / "survey" / cfg.name / folder
        argvs = [with_sets(a, sets) for a in commands(config, cfg, row, out)]
        known = results["rows"].get(key, {})
        if force and out.exists() and out not in cleared:
            shutil.rmtree(out)
            cleared.add(out)
        if (out / "report.json").is_file():
            # made by this script (its wall time is known) or by the same command typed by hand
            # (the time the report records: the command's work without start-up)
            wall = known.get("wall_s") or recorded_seconds(out / "report.json")
            print(f"{key}: {rel(out)}/report.json exists; read, not rerun (--force reruns)")
        else:
            wall = sum(run(a) for a in argvs)
            if row.kind == "distill":  # one command trains both students: split its time
                for k in ("distilled", "alone"):
                    results["rows"].setdefault(k, {})["wall_s"] = wall
        report = json.loads((out / "report.json").read_text())
        if row.kind == "distill":
            report = report[row.key]
        results["rows"][key] = row_figures(row, report, argvs, wall)
        path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"{key}: {results['rows'][key]}")
    return results


def recorded_seconds(path: Path) -> float:
    report = json.loads(path.read_text())
    if "seconds" in report:
        return float(report["seconds"])
    return float(sum(r["seconds"] for r in report.values()))  # distill: both students


def row_figures(row: Row, r: dict[str, Any], argvs: list[list[str]], wall: float) -> dict[str, Any]:
    lat = r["latency_ms"]["batch_64"] / r["base_latency_ms"]["batch_64"]
    return {
        "method": row.method,
        "commands": [f"autocompress {shlex.join(a)}" for a in argvs],
        "accuracy": r["accuracy"],
        "base_accuracy": r["base_accuracy"],
        "change_points": 100 * (r["accuracy"] - r["base_accuracy"]),
        "params_x": r["base_params"] / r.get("nonzero_params", r["params"]),
        "size_x": r["compression_ratio"],
        "size_x_huffman": r["compression_ratio_huffman"],
        "macs_ratio": r["macs_ratio"],
        "latency_ratio_b64": lat,
        "wall_s": round(wall, 1),
        "trial": r.get("trial"),
        "policy": r.get("policy"),
    }


def report() -> None:
    """Markdown tables of every results file, and one plot per dataset."""
    files = sorted(SURVEY.glob("*.json"))
    by_dataset: dict[str, list[dict[str, Any]]] = {}
    for f in files:
        res = json.loads(f.read_text())
        by_dataset.setdefault(res["dataset"], []).append(res)
        print(f"\n#### {res['model']} on {res['dataset']} (`{res['config']}`)\n")
        print(
            "| method | test accuracy | change | params × | size × (bitmap) | size × (Huffman) "
            "| MACs | latency b64 | wall | command |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        ordered = sorted(
            res["rows"].items(),
            key=lambda kv: list(BY_KEY).index(kv[0]) if kv[0] in BY_KEY else len(BY_KEY),
        )
        for key, r in ordered:
            if "accuracy" not in r:
                continue
            script = (
                f"`python benchmarks/survey.py {res['config']} --rows {key}`"
                if key in BY_KEY
                else f"an earlier run: its commands are in `{rel(f)}`"
            )
            method = r["method"]
            if key == "search-size":
                method = f"autocompress search, size ≤ {SIZE_BUDGET[res['model']]} (bitmap form)"
            elif key in BY_KEY:
                method = BY_KEY[key].method
            print(
                f"| {method} | {r['accuracy']:.2%} | {r['change_points']:+.2f} pt "
                f"| {r['params_x']:.1f}× | {r['size_x']:.1f}× | {r['size_x_huffman']:.1f}× "
                f"| {r['macs_ratio']:.1%} | {r['latency_ratio_b64']:.2f}× "
                f"| {r['wall_s']:.0f} s | {script} |"
            )
    for dataset, results in by_dataset.items():
        plot(dataset, results)


def plot(dataset: str, results: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 5), squeeze=False)
    for ax, res in zip(axes[0], results, strict=True):
        rows = {k: r for k, r in res["rows"].items() if "accuracy" in r}
        points = sorted(rows.items(), key=lambda kv: kv[1]["accuracy"])
        for i, (key, r) in enumerate(points):
            searched = key.startswith("search")
            x, y = r["size_x_huffman"], 100 * r["accuracy"]
            ax.scatter(
                x,
                y,
                marker="*" if searched else "o",
                s=180 if searched else 40,
                color="tab:red" if searched else "tab:blue",
                zorder=3,
            )
            # alternate label sides so neighbours in accuracy do not print over each other
            ax.annotate(
                key,
                (x, y),
                fontsize=8,
                xytext=(6, 2) if i % 2 == 0 else (-6, 2),
                ha="left" if i % 2 == 0 else "right",
                textcoords="offset points",
            )
        base = 100 * next(iter(rows.values()))["base_accuracy"]
        ax.axhline(base, color="grey", linestyle="--", linewidth=1, label=f"base {base:.2f}%")
        ax.set_xscale("log")
        ticks = [
            t
            for t in (1, 2, 3, 5, 10, 20, 30, 50, 100)
            if t <= 1.5 * max(r["size_x_huffman"] for r in rows.values())
        ]
        ax.set_xticks(ticks, [f"{t}×" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("size compression (Huffman accounting, log scale)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{res['model']} on {dataset}: every method (dots) and the searches (stars)")
        ax.legend(loc="best")
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    out = ROOT / "experiments" / f"survey-{dataset.replace('_', '-')}.png"
    fig.savefig(out, dpi=110)
    print(f"\nwrote {rel(out)}")


def add_set_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override added to every command, e.g. train.device=cuda",
    )


def main_() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("config", nargs="?", help="experiment YAML (lenet5 or lenet300_100)")
    p.add_argument("--rows", help=f"comma-separated, from: {', '.join(BY_KEY)} (default: all)")
    p.add_argument("--force", action="store_true", help="rerun rows that have a report")
    add_set_option(p)
    p.add_argument("--report", action="store_true", help="print tables and write the plots")
    args = p.parse_args()
    if args.config:
        keys = args.rows.split(",") if args.rows else list(BY_KEY)
        unknown = [k for k in keys if k not in BY_KEY]
        if unknown:
            p.error(f"unknown rows {unknown}; choose from {', '.join(BY_KEY)}")
        measure(args.config, keys, args.force, args.set)
    if args.report or not args.config:
        report()


if __name__ == "__main__":
    main_()
