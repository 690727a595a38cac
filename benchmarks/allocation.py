"""Searched allocation against uniform, sensitivity-derived and a peer's (FastNAS), on two bases.

    python benchmarks/allocation.py experiments/vgg-small-fashion-mnist.yaml --budget 0.30 \\
        --fastnas experiments/fastnas/vgg-small-30.yaml \\
        --json experiments/allocation-vgg-small-30.json

(the FastNAS policy from ``benchmarks/fastnas_policy.py``, run in a virtualenv of its own; those
for 30% and 15% are committed.)

1. **Search** on the config's base (its ``model.checkpoint``): the default multi-fidelity
   search with accuracy alone as the objective (one model at one budget), ``--trials``
   fine-tuned trials, the equal-loss sensitivity allocation enqueued beside the uniform
   baselines (``search.sensitivity=true``). Its wall time is printed.
2. **Policies**, all within the MACs budget and all chosen on the first base without looking
   at the test set:

   - *searched*: the search's best (``autocompress export --best``: its finalists compared on
     held-out data, ``search.finalist_score``);
   - *uniform*: two uniform policies at the budget — every knob of the config's space at the
     same position (the search's first uniform baseline), and the classic one, every layer
     the space prunes pruned by the same ratio — both exported on every run; the target's
     uniform side is the better on held-out data after the first export (first base, first
     seed), by the search's own rule (``search.finalist_score``);
   - *sensitivity*: the equal-loss allocation of the zero-cost sensitivity analysis;
   - *fastnas*: NVIDIA Model Optimizer's FastNAS widths as a prune policy (``--fastnas``);
   - *uncompressed* (``--uncompressed``): the base itself through the same export fine-tune,
     the ceiling no allocation at the budget is expected to pass.
3. **Exports**: each policy compressed from each base in ``--bases`` (each with the
   ``train.seed`` it was trained with, so its data splits are its own), fine-tuned with the
   config's export fine-tune (``finetune.export_epochs``, distilled from that base) for every
   seed in ``--seeds`` (``finetune.seed``), and tested. ``autocompress apply`` does each one.

Every result is written to ``--json`` as soon as it exists, and a rerun skips those already
there, so an interrupted run resumes (the search resumes from its study). A rerun with
``--fastnas`` or ``--uncompressed`` added to a finished comparison exports only those, on the
same runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autocompress.cli import main as cli
from autocompress.commands import apply
from autocompress.config import load_config
from autocompress.cost.metrics import compute_costs
from autocompress.cost.profile import Profile
from autocompress.files import write_atomic
from autocompress.policy import Policy
from autocompress.runs import load_run_config, untrained_profile
from autocompress.search.loop import SENSITIVITY_BASELINE
from autocompress.search.pareto import best_trial, held_out_score
from autocompress.search.study import load_study, records
from autocompress.spaces import build_space
from autocompress.spaces.budget import smallest

UNIFORM = ("uniform (space)", "uniform (prune)")
UNCOMPRESSED = "uncompressed"
BASES = [
    ("experiments/bases/vgg-small-fashion-mnist-seed0.pt", 0),
    ("experiments/bases/vgg-small-fashion-mnist-seed1.pt", 1),
]


def uniform_prune(cfg_path: str, overrides: Sequence[str], budget: float) -> Policy:
    """Every prunable layer of the config's space (a coupled group through its one knob; the
    classifier stays whole) pruned by the smallest equal ratio that meets ``budget`` (a
    fraction of the base's MACs)."""
    cfg = load_config(cfg_path, overrides)
    profile = untrained_profile(cfg)
    space = build_space(cfg.space, profile, cfg.compress.round_to)
    names = [layer for k in space.knobs if k.knob == "prune" for layer in k.layers]
    full = compute_costs(profile, Policy(profile.model)).macs

    def policy(r: float) -> Policy:
        return Policy.from_dict(
            {"model": profile.model, "layers": {n: {"prune": round(r, 6)} for n in names}}
        )

    top = 0.95  # prune ratios are fractions below 1
    t = smallest(lambda t: compute_costs(profile, policy(top * t)).macs <= budget * full)
    if t is None:
        raise SystemExit(f"no uniform prune ratio meets {budget:.0%} of the MACs")
    return policy(top * t)


def same_model(profile: Profile, a: Policy, b: Policy) -> bool:
    """Whether ``a`` and ``b`` build the same model: the same knobs on the same layers, each
    setting within 1e-4 (a uniform baseline's position and a ratio found by bisection differ
    in the sixth decimal), and the same costs (whole channels kept)."""
    da, db = a.to_dict()["layers"], b.to_dict()["layers"]
    if da.keys() != db.keys() or any(da[n].keys() != db[n].keys() for n in da):
        return False
    close = all(
        v == db[n][k] or (isinstance(v, float) and abs(v - db[n][k]) < 1e-4)
        for n in da
        for k, v in da[n].items()
    )
    return close and compute_costs(profile, a) == compute_costs(profile, b)


def search(cfg_path: str, overrides: Sequence[str]) -> tuple[dict[str, Policy], dict[str, Any]]:
    """Run (or resume) the search; its best policy, the uniform and sensitivity baselines."""
    start = time.perf_counter()
    code = cli(["search", cfg_path, *[x for o in overrides for x in ("--set", o)]])
    if code != 0:
        raise SystemExit(f"the search exited {code}")
    seconds = time.perf_counter() - start
    cfg = load_config(cfg_path, overrides)
    cfg = load_run_config(cfg.run_dir, [], cfg.search.study)
    recs = records(load_study(cfg))
    limits = {m: b.value for m, b in cfg.budget.items()}
    best = best_trial(recs, limits, cfg.search.finalist_score)
    uniform = min(
        (r for r in recs if (r.baseline or "").startswith("uniform")), key=lambda r: r.number
    )
    sensitivity = next(r for r in recs if r.baseline == SENSITIVITY_BASELINE)
    info = {
        "seconds": seconds,
        "trials": len(recs),
        "best_trial": best.number,
        "best_selection_accuracy": best.selection_accuracy,
        "uniform_trial": uniform.number,
        "uniform_baseline": uniform.baseline,
        "sensitivity_trial": sensitivity.number,
        "finalist_score": cfg.search.finalist_score,
        "finals": [  # the evidence of the choice, kept where the study may not be
            {
                "trial": r.number,
                "baseline": r.baseline,
                "macs_ratio": r.ratios.get("macs"),
                "val_accuracy": r.val_accuracy,
                "selection_accuracy": r.selection_accuracy,
            }
            for r in recs
            if r.finalist
        ],
    }
    policies = {
        "searched": Policy.from_dict(best.policy),
        "uniform (space)": Policy.from_dict(uniform.policy),
        "sensitivity": Policy.from_dict(sensitivity.policy),
    }
    return policies, info


def export(
    cfg_path: str,
    overrides: Sequence[str],
    policy_file: Path,
    out: Path,
    base: str | None,
    train_seed: int,
    seed: int,
) -> dict[str, Any]:
    checkpoint = [f"model.checkpoint={base}"] if base is not None else []
    sets = [*overrides, *checkpoint, f"train.seed={train_seed}", f"finetune.seed={seed}"]
    cfg = load_config(cfg_path, sets)
    start = time.perf_counter()
    # apply's default is a trial's fine-tune: every policy gets the export's
    report = apply(cfg, policy_file, out, cfg.finetune.export_epochs, force=True)
    return {
        "finetune": report["finetune"]["length"],
        "test_accuracy": report["accuracy"],
        "val_accuracy": report["val_accuracy"],
        "selection_accuracy": report.get("selection_accuracy"),
        "macs_ratio": report["macs_ratio"],
        "base_test_accuracy": report["base_accuracy"],
        "seconds": time.perf_counter() - start,
    }


def label_file(folder: Path, label: str) -> Path:
    return folder / f"{label.replace(' ', '-').replace('(', '').replace(')', '')}.yaml"


def compare(
    config: str,
    budget: float,
    json_path: Path,
    trials: int = 20,
    fastnas: Path | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    bases: Sequence[tuple[str | None, int]] = tuple(BASES),
    overrides: Sequence[str] = (),
    uncompressed: bool = False,
) -> dict[str, Any]:
    """Search, choose the five policies, export each on every base × seed; the JSON's state.

    ``bases``: (checkpoint, the ``train.seed`` it was trained with); a None checkpoint is the
    config's own base. Results already in ``json_path`` are kept, not redone."""
    pct = round(100 * budget)
    sets = [f"budget.macs={pct}%", *overrides]
    search_sets = [  # --set overrides last: they may name another study, say
        f"budget.macs={pct}%",
        f"search.study=alloc-{pct}",
        f"search.trials={trials}",
        "search.sensitivity=true",
        "search.objectives=[]",
        *overrides,
    ]
    state: dict[str, Any] = json.loads(json_path.read_text()) if json_path.exists() else {}
    state.setdefault("results", {})

    def save() -> None:
        write_atomic(json_path, json.dumps(state, indent=2) + "\n")

    cfg = load_config(config, sets)
    folder = cfg.run_dir / json_path.stem  # two runs side by side write apart
    folder.mkdir(parents=True, exist_ok=True)
    if "policies" not in state:
        policies, info = search(config, search_sets)
        policies["uniform (prune)"] = uniform_prune(config, sets, budget)
        state["search"] = info
        state["policies"] = {k: p.to_dict() for k, p in policies.items()}
        state["budget"] = budget
        save()
    if fastnas and "fastnas" not in state["policies"]:  # also a peer added to a finished run:
        state["policies"]["fastnas"] = Policy.load(fastnas).to_dict()  # the same runs for it
        save()
    policies = {k: Policy.from_dict(v) for k, v in state["policies"].items()}
    profile = untrained_profile(cfg)
    if uncompressed:  # not kept in the JSON's policies: a rerun without the flag skips it
        policies[UNCOMPRESSED] = Policy(profile.model)
    full = compute_costs(profile, Policy(profile.model)).macs
    for label, p in policies.items():
        ratio = compute_costs(profile, p).macs / full
        if ratio > budget + 1e-9 and label != UNCOMPRESSED:
            raise SystemExit(f"{label}: {ratio:.2%} of the MACs, above the budget")
        p.save(label_file(folder, label))
    runs = [
        (b, s, seed)  # seed by seed, base by base: an interrupted run has both bases
        for seed in seeds
        for b, s in bases
    ]

    def run_one(label: str, base: str | None, train_seed: int, seed: int) -> dict[str, Any]:
        key = f"{label} | {base} | seed {seed}"
        if key in state["results"]:
            return state["results"][key]
        twin = next(  # the same policy under another label (both uniform ones in a prune
            # space): the same export, deterministic on one machine, so its result is reused
            (
                state["results"][f"{other} | {base} | seed {seed}"]
                for other, p in policies.items()
                if other != label
                and f"{other} | {base} | seed {seed}" in state["results"]
                and same_model(profile, p, policies[label])
            ),
            None,
        )
        if twin is not None:
            state["results"][key] = {**twin, "policy": label, "same_policy_as": twin["policy"]}
        else:
            print(f"\n== {key} ==", flush=True)
            out = folder / "exports" / f"{label_file(folder, label).stem}-b{train_seed}-s{seed}"
            state["results"][key] = {
                "policy": label,
                "base": base,
                "seed": seed,
                **export(config, sets, label_file(folder, label), out, base, train_seed, seed),
            }
        save()
        return state["results"][key]

    # both uniform policies are exported on every run; the uniform side of the target is the
    # better one on held-out data after the first export, by the search's own rule
    # (search.finalist_score), never on test
    rule = load_config(config, search_sets).search.finalist_score
    b, s, seed = runs[0]
    first = {u: run_one(u, b, s, seed) for u in UNIFORM}
    state["uniform"] = max(
        UNIFORM,
        key=lambda u: held_out_score(
            first[u]["val_accuracy"], first[u]["selection_accuracy"], rule
        ),
    )
    state["uniform_chosen_by"] = rule
    save()
    others = [u for u in UNIFORM if u != state["uniform"]] + (
        [UNCOMPRESSED] if uncompressed else []
    )
    compared = ["searched", state["uniform"], "sensitivity"] + (
        ["fastnas"] if "fastnas" in policies else []
    )
    for b, s, seed in runs:
        for label in [*compared, *others]:
            run_one(label, b, s, seed)
    summary(state, [*compared, *others], runs)
    save()
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", nargs="?", default="experiments/vgg-small-fashion-mnist.yaml")
    parser.add_argument("--budget", type=float, required=True, help="MACs ratio, e.g. 0.30")
    parser.add_argument("--trials", type=int, default=20, help="fine-tuned trials of the search")
    parser.add_argument("--fastnas", type=Path, help="FastNAS's policy (fastnas_policy.py)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--bases", nargs="+", default=[b for b, _ in BASES])
    parser.add_argument(
        "--base-seeds",
        type=int,
        nargs="+",
        default=[s for _, s in BASES],
        help="train.seed of each base",
    )
    parser.add_argument(
        "--uncompressed",
        action="store_true",
        help="also export the base itself with the same fine-tune (the ceiling)",
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    compare(
        args.config,
        args.budget,
        args.json,
        args.trials,
        args.fastnas,
        args.seeds,
        list(zip(args.bases, args.base_seeds, strict=True)),
        args.set,
        args.uncompressed,
    )


def summary(
    state: dict[str, Any], compared: list[str], runs: list[tuple[str | None, int, int]]
) -> None:
    print(
        f"\n== MACs budget {state['budget']:.0%}: test accuracy after the same export fine-tune =="
    )
    if "search" in state:
        s = state["search"]
        print(
            f"search: {s['trials']} trials in the study, {s['seconds']:.0f} s, "
            f"trial {s['best_trial']} chosen"
        )
    table: dict[str, list[float]] = {}
    for label in compared:
        values = [
            state["results"][f"{label} | {b} | seed {seed}"]["test_accuracy"] for b, _, seed in runs
        ]
        table[label] = values
        macs = state["results"][f"{label} | {runs[0][0]} | seed {runs[0][2]}"]["macs_ratio"]
        print(
            f"{label:16s} MACs {macs:.3f}  "
            + " ".join(f"{v:.2%}" for v in values)
            + f"  mean {statistics.mean(values):.2%}"
        )
    ref = table["searched"]
    for label in compared[1:]:
        gains = [100 * (a - b) for a, b in zip(ref, table[label], strict=True)]
        spread = statistics.stdev(gains) if len(gains) > 1 else 0.0
        print(
            f"searched − {label}: {statistics.mean(gains):+.2f} ± {spread:.2f} pt "
            f"over {len(gains)} runs"
        )
        state.setdefault("gains", {})[label] = {"mean": statistics.mean(gains), "std": spread}


if __name__ == "__main__":
    main()
