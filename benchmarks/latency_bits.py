"""A latency-budget search with bits in the space against the same search without them.

    python benchmarks/latency_bits.py experiments/lenet5-fashion-mnist.yaml \
        [--trials 20] [--seeds 0 1 2] [--budget 40%] [--predicted] [--baselines] \
        [--prefix latency] [--set KEY=VALUE ...]

(from the repository root: the config's data and runs folders are relative to it)

Both searches start from the config (its base model, data, fine-tune) with the budget replaced by
``latency_ms`` at ``--budget`` of the base model's latency, measured the way it deploys:
``search.latency_runtime: onnxruntime`` (each candidate exported as its ``model.onnx``, integer
where its bits are 8, and timed in ONNX Runtime, 1 thread, batch 64). One space is the config's
(pruning and low rank); the other adds ``w_bits`` and ``a_bits`` in {8, 32} on every layer. No
baselines by default: every trial comes from TPE. With ``--baselines`` each search queues the
ones a search queues by default (``search.uniform``, 3 unless the config says otherwise): the
uniform policies, each method alone, and in the bits space the int8 hand policies (int8
everywhere; int8 with the first layer float), each counted among the trials. For each seed,
both studies run in the config's run directory (studies ``<prefix>-bits-s<seed>`` and
``<prefix>-nobits-s<seed>``, with ``-predicted`` before the seed under ``--predicted``; a new
prefix starts new studies, the same one resumes them); the script prints the hypervolume of
each validation-accuracy / latency front (reference point: base validation accuracy − 10
points, and the budget's latency ratio), the same of the sampler's own trials alone (the
queued baselines left out), the best feasible validation accuracy, its latency ratio and the
front itself; then the mean and spread over seeds and the paired difference.

Both searches keep a validation-accuracy / measured-latency front (``search.objectives:
[latency_ms]``, whatever the config says; runs before commit 365efd0 used the
config's ``[]``, accuracy alone, which ``--set 'search.objectives=[]'`` reproduces).

With ``--predicted`` the budget also limits ``latency_ms_predicted`` (the latency table's
prediction, priced before any build): candidates over it are projected inside it, as a MACs
budget's are; the measured ``latency_ms`` limit still decides feasibility and the fronts.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from autocompress.cli import main
from autocompress.config import load_config
from autocompress.search.pareto import hypervolume
from autocompress.search.study import load_study, records

BITS_RULE = {"w_bits": [8, 32], "a_bits": [8, 32]}


def run(argv: list[str]) -> None:
    code = main(argv)
    if code != 0:
        raise SystemExit(f"`autocompress {' '.join(argv)}` exited {code}")


def variant(
    raw: dict[str, Any],
    bits: bool,
    budget: str,
    folder: Path,
    predicted: bool = False,
    baselines: bool = False,
) -> Path:
    """The config with a latency budget measured in ONNX Runtime, with or without bits (and
    with the latency table's prediction limited too; with the default baselines queued)."""
    cfg = copy.deepcopy(raw)
    cfg["budget"] = {"latency_ms": budget}
    if predicted:
        cfg["budget"]["latency_ms_predicted"] = budget
    search = cfg.setdefault("search", {})
    search.update(
        {
            "latency_runtime": "onnxruntime",
            "latency_batch": 64,
            "latency_threads": 1,
            # the fronts are compared: both searches keep one (the config's demo pins [])
            "objectives": ["latency_ms"],
        }
    )
    if not baselines:
        search["uniform"] = 0
    if bits:
        cfg["space"]["rules"] = [*cfg["space"]["rules"], BITS_RULE]
    path = folder / f"{'bits' if bits else 'nobits'}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def main_(
    config: str,
    trials: int,
    seeds: list[int],
    budget: str,
    overrides: list[str],
    predicted: bool = False,
    prefix: str = "latency",
    baselines: bool = False,
) -> dict[str, Any]:
    raw = yaml.safe_load(Path(config).read_text())
    folder = Path(tempfile.mkdtemp(prefix="latency-bits-"))
    rows: dict[str, list[dict[str, Any]]] = {"bits": [], "nobits": []}
    for seed in seeds:
        for label in rows:
            path = variant(raw, label == "bits", budget, folder, predicted, baselines)
            study = f"{prefix}-{label}{'-predicted' if predicted else ''}-s{seed}"
            sets = [*overrides, f"search.study={study}", f"search.seed={seed}"]
            start = time.perf_counter()
            run(
                [
                    "search",
                    str(path),
                    "--trials",
                    str(trials),
                    *[x for s in sets for x in ("--set", s)],
                ]
            )
            seconds = time.perf_counter() - start
            cfg = load_config(path, sets)
            recs = records(load_study(cfg))
            base_val = float(
                json.loads(next(cfg.run_dir.glob("base-*.json")).read_text())["val_accuracy"]
            )
            limit = cfg.budget["latency_ms"].value
            feasible = [r for r in recs if r.scored]
            best = max(feasible, key=lambda r: r.val_accuracy or 0.0, default=None)
            searched = [r for r in feasible if r.kind == "searched"]
            hand = [r for r in feasible if r.kind != "searched"]
            rows[label].append(
                {
                    "seed": seed,
                    "hypervolume": hypervolume(feasible, "latency_ms", base_val - 0.10, limit),
                    # how much of it the sampler's own trials make, and the baselines'
                    "hv_searched": hypervolume(searched, "latency_ms", base_val - 0.10, limit),
                    "hv_baselines": hypervolume(hand, "latency_ms", base_val - 0.10, limit),
                    "front": front(feasible),
                    "best_val": (best.val_accuracy or 0.0) if best else 0.0,
                    "best_latency_ratio": best.ratios["latency_ms"] if best else float("nan"),
                    "feasible": len(feasible),
                    "trials": len(recs),
                    "seconds": seconds,
                }
            )
    how = "measured, and predicted by the table" if predicted else "measured"
    queued = "the default baselines among them" if baselines else "no baselines"
    print(
        f"\n== latency budget {budget} (ONNX Runtime, {how}), {trials} trials each "
        f"({queued}), seeds {seeds} =="
    )
    summary: dict[str, Any] = {"per_run": rows}
    for label, runs in rows.items():
        for r in runs:
            print(
                f"{label:6s} seed {r['seed']:.0f}  HV {r['hypervolume'] * 1e3:.3f}e-3  "
                f"best val {r['best_val']:.2%} at {r['best_latency_ratio']:.3f}x latency  "
                f"feasible {r['feasible']:.0f}/{r['trials']:.0f}  {r['seconds']:.0f}s"
            )
            points = " ".join(f"({x:.3f}, {a:.2%}, {k})" for x, a, k in r["front"])
            print(f"       front (latency ratio, val, kind): {points}")
        summary[label] = {}
        for key, name in (("hypervolume", "HV"), ("hv_searched", "HV of the searched trials")):
            hv = [r[key] for r in runs]
            spread = statistics.stdev(hv) if len(hv) > 1 else 0.0
            summary[label][key] = {"mean": statistics.mean(hv), "std": spread}
            print(
                f"{label:6s} mean {name} {statistics.mean(hv) * 1e3:.3f}e-3 ± {spread * 1e3:.3f}e-3"
            )
    wins = sum(
        b["hypervolume"] > n["hypervolume"]
        for b, n in zip(rows["bits"], rows["nobits"], strict=True)
    )
    diffs = [
        b["hypervolume"] - n["hypervolume"]
        for b, n in zip(rows["bits"], rows["nobits"], strict=True)
    ]
    spread = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
    print(f"bits ahead on {wins} of {len(seeds)} seeds", end="; ")
    print(f"paired difference {statistics.mean(diffs) * 1e3:+.3f}e-3 ± {spread * 1e3:.3f}e-3")
    return summary


def front(recs: list[Any]) -> list[tuple[float, float, str]]:
    """The non-dominated trials, by latency ratio: (ratio, validation accuracy, kind)."""
    out: list[tuple[float, float, str]] = []
    for r in sorted(recs, key=lambda r: (r.ratios["latency_ms"], -(r.val_accuracy or 0.0))):
        if not out or (r.val_accuracy or 0.0) > out[-1][1]:
            out.append((r.ratios["latency_ms"], r.val_accuracy or 0.0, r.kind))
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget", default="40%")
    parser.add_argument("--predicted", action="store_true", help="also limit the prediction")
    parser.add_argument("--baselines", action="store_true", help="queue the default baselines")
    parser.add_argument("--prefix", default="latency", help="the studies' names start with it")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    main_(
        args.config,
        args.trials,
        args.seeds,
        args.budget,
        args.set,
        args.predicted,
        args.prefix,
        args.baselines,
    )
