"""Uniform channel pruning against a searched policy, at the same MACs budgets, on CIFAR-10.

    python benchmarks/cifar_prune.py experiments/resnet56-cifar10.yaml [--macs 0.5 0.2]
    python benchmarks/cifar_prune.py --report

For each budget: the uniform policy (one prune ratio for every prunable group, the smallest
whose MACs fit, found with the cost model, L2 importance) applied with ``autocompress apply``,
and an ``autocompress search`` under ``budget.macs`` set to the uniform policy's MACs ratio
(its own study in the config's run directory) whose best trials are exported; both get the
config's ``finetune.export_epochs`` of distilled fine-tuning. Every command is printed and run
in-process; a row whose output holds ``report.json`` is read, not rerun. Results go to
``experiments/cifar/<config name>.json``;
``--report`` prints the tables of RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
from typing import Any

from prune_latency import ratio_for, uniform  # this script's folder is on sys.path
from survey import ROOT, add_set_option, rel, run, with_sets

from autocompress.config import load_config
from autocompress.cost.metrics import compute_costs
from autocompress.cost.profile import profile_model
from autocompress.data import data_shape
from autocompress.models import ZOO
from autocompress.policy import Policy

OUT = ROOT / "experiments" / "cifar"


def measure(config: str, budgets: list[float], top: int, sets: list[str]) -> None:
    cfg = load_config(config)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{cfg.name}.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {"rows": {}}
    results["config"] = config
    results["model"] = cfg.model.name
    base_wall = run(with_sets(["train", config], sets))
    base = json.loads(next(cfg.run_dir.glob("base-*.json")).read_text())
    results["base"] = {
        "test_accuracy": base["test_accuracy"],
        "train_seconds": base.get("train_seconds"),
        "epochs": base.get("epochs"),
        "train_images": cfg.data.train_size,
        "command": f"autocompress {shlex.join(with_sets(['train', config], sets))}",
        "wall_s": round(base_wall, 1),
    }
    shape, _ = data_shape(cfg.data)
    assert cfg.model.name is not None
    profile = profile_model(ZOO[cfg.model.name](), shape, cfg.model.name)
    epochs = f"{cfg.finetune.export_epochs:g}"
    for budget in budgets:
        tag = f"{round(budget * 100)}"
        ratio = ratio_for(profile, budget, cfg.compress.round_to)
        policy_path = cfg.run_dir / f"uniform-{tag}.yaml"
        policy = uniform(profile, ratio)
        policy.save(policy_path)
        # the search gets exactly the uniform policy's MACs (channel rounding moves it off the
        # target a little), so both sides have the same allowance
        base_macs = compute_costs(profile, Policy(profile.model)).macs
        allowed = compute_costs(profile, policy, cfg.compress.round_to).macs / base_macs
        pct = f"{math.ceil(allowed * 1e5) / 1e3:g}%"  # rounded up: the uniform policy fits
        out_u = ROOT / "runs" / "cifar" / cfg.name / f"uniform-{tag}"
        argv_u = ["apply", config, "--policy", rel(policy_path), "--finetune-epochs", epochs]
        argv_u += ["--out", rel(out_u)]
        study = f"prune-{tag}"
        out_s = ROOT / "runs" / "cifar" / cfg.name / f"search-{tag}"
        argv_s = ["search", config, "--set", f"search.study={study}"]
        argv_s += ["--set", f"budget={{macs: {pct}}}"]
        argv_e = ["export", rel(cfg.run_dir), "--study", study, "--best", "--top", str(top)]
        argv_e += ["--finetune-epochs", epochs, "--out", rel(out_s)]
        for label, out, argvs in (
            (f"uniform-{tag}", out_u, [argv_u]),
            (f"search-{tag}", out_s, [argv_s, argv_e]),
        ):
            argvs = [with_sets(a, sets) for a in argvs]
            known = results["rows"].get(label, {})
            if (out / "report.json").is_file() and "wall_s" in known:
                wall = known["wall_s"]
                print(f"{label}: {rel(out)}/report.json exists; read, not rerun")
            else:
                wall = sum(run(a) for a in argvs)
            r = json.loads((out / "report.json").read_text())
            results["rows"][label] = {
                "budget_macs": budget,
                "allowed_macs": allowed,
                "uniform_ratio": ratio if label.startswith("uniform") else None,
                "commands": [f"autocompress {shlex.join(a)}" for a in argvs],
                "accuracy": r["accuracy"],
                "base_accuracy": r["base_accuracy"],
                "change_points": 100 * (r["accuracy"] - r["base_accuracy"]),
                "macs_ratio": r["macs_ratio"],
                "params_ratio": r["params"] / r["base_params"],
                "latency_ratio_b64": r["latency_ms"]["batch_64"] / r["base_latency_ms"]["batch_64"],
                "trial": r.get("trial"),
                "wall_s": round(wall, 1),
            }
            path.write_text(json.dumps(results, indent=2) + "\n")
            print(f"{label}: {results['rows'][label]}")
    report()


def report() -> None:
    for f in sorted(OUT.glob("*.json")):
        res = json.loads(f.read_text())
        b = res["base"]
        images = b["train_images"] or "all"
        print(
            f"\n#### {res['model']}, `{res['config']}`: base {b['test_accuracy']:.2%} "
            f"({b['epochs']} epochs on {images} training images, `{b['command']}`)\n"
        )
        print("| budget | policy | test accuracy | change | MACs | params | latency b64 | wall |")
        print("|---|---|---|---|---|---|---|---|")
        for label, r in res["rows"].items():
            what = (
                f"uniform, prune {r['uniform_ratio']:g}"
                if label.startswith("uniform")
                else f"searched (trial {r['trial']})"
            )
            print(
                f"| {r['budget_macs']:.0%} | {what} | {r['accuracy']:.2%} "
                f"| {r['change_points']:+.2f} pt | {r['macs_ratio']:.1%} | {r['params_ratio']:.1%} "
                f"| {r['latency_ratio_b64']:.2f}× | {r['wall_s']:.0f} s |"
            )
        pairs = sorted({round(r["budget_macs"] * 100) for r in res["rows"].values()})
        for tag in pairs:
            u, s = res["rows"].get(f"uniform-{tag}"), res["rows"].get(f"search-{tag}")
            if u and s:
                gain = 100 * (s["accuracy"] - u["accuracy"])
                print(f"\nat {tag}% of the MACs: searched − uniform = {gain:+.2f} pt")


def main_() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("config", nargs="?", help="a CIFAR-10 experiment YAML")
    p.add_argument("--macs", type=float, nargs="+", default=[0.5, 0.2], help="MACs budgets")
    p.add_argument("--top", type=int, default=2, help="searched trials exported (best kept)")
    add_set_option(p)
    p.add_argument("--report", action="store_true", help="print the tables only")
    args = p.parse_args()
    if args.config and not args.report:
        measure(args.config, args.macs, args.top, args.set)
    else:
        report()


if __name__ == "__main__":
    main_()
