"""Searched against uniform policies, and TPE against random search, under one MACs budget.

    python benchmarks/search_vs_uniform.py experiments/lenet5-fashion-mnist.yaml

Part ``versus``: runs (or resumes — ``make demo`` runs the same study) the config's search;
takes its best searched trials and its uniform baselines (all scored on validation after the
same short fine-tune, within the same budget), exports the ``--top`` best of each side with the
same longer fine-tune, keeps on each side the one with the best validation accuracy after it
(``autocompress export --best --top K``), and prints their test accuracies (and every
candidate's, to show how far the validation choice is from the best one on test). With
``--export-seeds N`` the two chosen policies are exported again with N − 1 other fine-tune seeds
(``finetune.seed``), giving the gain's mean and spread over fine-tune noise.

Part ``hypervolume``: for each seed, a TPE study and a random study of the same number of
trials (no uniform baselines, so every trial comes from the sampler), in the same run
directory; prints the hypervolume of each validation-accuracy / MACs front (reference point:
base validation accuracy − 10 points, and the budget's MACs ratio), the best feasible
validation accuracy, and the mean and spread per sampler.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

from autocompress.cli import main
from autocompress.config import load_config
from autocompress.search.pareto import hypervolume
from autocompress.search.study import TrialRecord, load_study, records


def run(argv: list[str]) -> None:
    code = main(argv)
    if code != 0:
        raise SystemExit(f"`autocompress {' '.join(argv)}` exited {code}")


def versus(config: str, overrides: list[str], top: int, export_seeds: int = 1) -> dict[str, object]:
    from autocompress.runs import load_run_config, prepare
    from autocompress.search.export import export_best_of, export_trial
    from autocompress.search.pareto import best_trials

    sets = [x for o in overrides for x in ("--set", o)]
    cfg = load_config(config, overrides)
    run(["search", config, *sets])
    cfg = load_run_config(cfg.run_dir, [], cfg.search.study)  # as the search wrote it
    recs = records(load_study(cfg))
    prepared = prepare(cfg)
    splits, base, profile = prepared.splits, prepared.base, prepared.profile
    out: dict[str, object] = {}
    study = f"{cfg.search.study}-" if cfg.search.study else ""
    for label, pool in (
        ("searched", [r for r in recs if not r.baseline]),
        ("uniform", [r for r in recs if r.baseline]),
    ):
        candidates = best_trials(pool, None, top)
        target = cfg.run_dir / f"bench-{study}{label}"
        report = export_best_of(
            cfg, splits, base, profile, candidates, target, cfg.finetune.export_epochs
        )
        chosen = next(r for r in candidates if r.number == report["trial"])
        for c in report["candidates"]:  # test accuracies: for reading the choice, not making it
            written = target / "candidates" / f"trial-{c['trial']}" / "report.json"
            c["test_accuracy"] = json.loads(written.read_text())["accuracy"]
        out[label] = {
            "trial": report["trial"],
            "baseline": chosen.baseline,
            "candidates": report["candidates"],
            "val_accuracy_search": chosen.val_accuracy,
            "val_accuracy_export": report["val_accuracy"],
            "test_accuracy": report["accuracy"],
            "macs_ratio": report["macs_ratio"],
            "latency_ratio_b64": report["latency_ms"]["batch_64"]
            / report["base_latency_ms"]["batch_64"],
            "policy": chosen.policy,
        }
    s, u = out["searched"], out["uniform"]
    assert isinstance(s, dict) and isinstance(u, dict)
    out["gain_points"] = 100 * (s["test_accuracy"] - u["test_accuracy"])
    if export_seeds > 1:  # the two chosen policies again, with other fine-tune data orders
        seeds = [cfg.finetune_seed + i for i in range(export_seeds)]
        for label, side in (("searched", s), ("uniform", u)):
            record = next(r for r in recs if r.number == side["trial"])
            tests = [side["test_accuracy"]]
            for seed in seeds[1:]:
                seeded = replace(cfg, finetune=replace(cfg.finetune, seed=seed))
                target = cfg.run_dir / f"bench-{study}{label}" / "seeds" / f"seed-{seed}"
                report = export_trial(
                    seeded, splits, base, profile, record, target, cfg.finetune.export_epochs
                )
                tests.append(report["accuracy"])
            side["test_accuracy_seeds"] = dict(zip(seeds, tests, strict=True))
        gains = [
            100 * (a - b)
            for a, b in zip(
                s["test_accuracy_seeds"].values(), u["test_accuracy_seeds"].values(), strict=True
            )
        ]
        out["gain_points_seeds"] = {"mean": statistics.mean(gains), "std": statistics.stdev(gains)}
    print(f"\n== searched vs best uniform (same budget, same fine-tunes, top {top} each) ==")
    for label in ("searched", "uniform"):
        r = out[label]
        assert isinstance(r, dict)
        print(
            f"{label:9s} trial {r['trial']:3d}  val {r['val_accuracy_search']:.2%} (search) "
            f"{r['val_accuracy_export']:.2%} (export)  test {r['test_accuracy']:.2%}  "
            f"MACs {r['macs_ratio']:.3f}×  latency(b64) {r['latency_ratio_b64']:.2f}×"
        )
    print(f"gain: {out['gain_points']:+.2f} points of test accuracy")
    for label in ("searched", "uniform"):
        r = out[label]
        assert isinstance(r, dict)
        print(
            f"{label:9s} candidates (val after export / test): "
            + ", ".join(
                f"trial {c['trial']} {c['val_accuracy']:.2%} / {c['test_accuracy']:.2%}"
                for c in r["candidates"]
            )
        )
    if export_seeds > 1:
        for label in ("searched", "uniform"):
            r = out[label]
            assert isinstance(r, dict)
            values = list(r["test_accuracy_seeds"].values())
            print(
                f"{label:9s} trial {r['trial']:3d}  test over {export_seeds} fine-tune seeds: "
                + ", ".join(f"{v:.2%}" for v in values)
                + f"  mean {statistics.mean(values):.2%}"
            )
        g = out["gain_points_seeds"]
        assert isinstance(g, dict)
        print(f"gain over the seeds: {g['mean']:+.2f} ± {g['std']:.2f} points (mean ± sd)")
    return out


def front_hv(recs: list[TrialRecord], base_val: float, budget: float) -> float:
    return hypervolume(recs, "macs", base_val - 0.10, budget)


def samplers(
    config: str, overrides: list[str], seeds: list[int], trials: int, names: list[str]
) -> dict[str, object]:
    cfg = load_config(config, overrides)
    budget = cfg.budget["macs"].value if "macs" in cfg.budget else 1.0
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for seed in seeds:
        for sampler in rows:
            study = f"hv-{sampler}-s{seed}"
            sets = [*overrides, f"search.study={study}", f"search.seed={seed}", "search.uniform=0"]
            start = time.perf_counter()
            run(
                [
                    "search",
                    config,
                    "--sampler",
                    sampler,
                    "--trials",
                    str(trials),
                    *[x for o in sets for x in ("--set", o)],
                ]
            )
            seconds = time.perf_counter() - start
            scfg = load_config(config, sets)
            recs = records(load_study(scfg))
            base_val = float(
                json.loads(next(cfg.run_dir.glob("base-*.json")).read_text())["val_accuracy"]
            )
            best = max((r.val_accuracy or 0.0 for r in recs if r.scored), default=0.0)
            rows[sampler].append(
                {
                    "seed": seed,
                    "hypervolume": front_hv(recs, base_val, budget),
                    "best_val": best,
                    "scored": sum(r.scored for r in recs),
                    "seconds": seconds,
                }
            )
    print(f"\n== {' vs '.join(names)}, {trials} trials each, seeds {seeds} ==")
    summary: dict[str, object] = {"per_run": rows}
    for sampler, runs in rows.items():
        for r in runs:
            print(
                f"{sampler:6s} seed {r['seed']:.0f}  HV {r['hypervolume'] * 1e3:.3f}e-3  "
                f"best val {r['best_val']:.2%}  scored {r['scored']:.0f}  {r['seconds']:.0f}s"
            )
        hv = [r["hypervolume"] for r in runs]
        best = [r["best_val"] for r in runs]
        spread = statistics.stdev(hv) if len(hv) > 1 else 0.0
        summary[sampler] = {
            "hv_mean": statistics.mean(hv),
            "hv_std": spread,
            "best_val_mean": statistics.mean(best),
        }
        print(
            f"{sampler:6s} mean HV {statistics.mean(hv) * 1e3:.3f}e-3 ± {spread * 1e3:.3f}e-3  "
            f"mean best val {statistics.mean(best):.2%}"
        )
    return summary


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", nargs="?", default="experiments/lenet5-fashion-mnist.yaml")
    parser.add_argument("--part", choices=["versus", "hypervolume", "all"], default="all")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=40, help="trials per sampler study")
    parser.add_argument("--top", type=int, default=3, help="candidates exported per side")
    parser.add_argument(
        "--export-seeds",
        type=int,
        default=1,
        help="export each side's chosen policy with this many fine-tune seeds (finetune.seed)",
    )
    parser.add_argument(
        "--samplers", nargs="+", default=["tpe", "random"], help="samplers compared (and rl)"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results: dict[str, object] = {}
    if args.part in ("versus", "all"):
        results["versus"] = versus(args.config, args.set, args.top, args.export_seeds)
    if args.part in ("hypervolume", "all"):
        results["samplers"] = samplers(
            args.config, args.set, args.seeds, args.trials, args.samplers
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main_cli()
