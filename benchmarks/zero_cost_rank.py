"""How well the zero-cost fidelity ranks candidates against the fine-tuned score.

    python benchmarks/zero_cost_rank.py experiments/lenet5-fashion-mnist.yaml --candidates 50

Draws ``--candidates`` random policies at the config's budget: every knob gets a random share
of the compression (positions d in [0, 1]), scaled together (t·d) to the least compression
that meets the budget, or projected onto it as the search does where even the full scale does
not — so all of them are candidates the search would compare with each other. Each is built
once (compressed, activation ranges
calibrated), then scored three ways from copies of that one model:

- **as compressed**: the validation subset's score with no repair at all;
- **zero-cost**: :func:`autocompress.fidelity.zero_cost` (adaptive BatchNorm, bias
  correction), on the same subset;
- **fine-tuned**: the search trial's own score — the configured short distilled fine-tune
  (``finetune.steps``/``epochs``, or ``--steps``) and the whole validation split.

Prints Spearman's and Kendall's rank correlations of each cheap score with the fine-tuned one,
how many of the fine-tuned top quarter each cheap score's top quarter holds, and the seconds
each score costs. The candidates' MACs share is ranked the same way, as a reference: where the
budget's granularity spreads the candidates' costs (ResNet-20's 16-channel stages in steps of 8),
a score must rank better than cost alone to be telling anything about the allocation.

``--json PATH`` writes every candidate's scores after each one; run the same command again and
it goes on from the candidates already measured (the draws are replayed, so the candidates are
the ones an uninterrupted run measures).
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autocompress.config import load_config
from autocompress.cost.metrics import compute_costs
from autocompress.export import build, tune
from autocompress.fidelity import VAL_SUBSET, zero_cost
from autocompress.files import write_atomic
from autocompress.policy import Policy
from autocompress.recipe import Length
from autocompress.runs import prepare, splits_recipe
from autocompress.search.objective import finetune_length
from autocompress.spaces import SearchSpace, build_space
from autocompress.spaces.budget import Budget, feasible, project, resolve_budget, smallest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config")
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--steps", type=int, help="fine-tune steps (default: the config's)")
    parser.add_argument("--subset", type=int, default=VAL_SUBSET, help="validation images")
    parser.add_argument("--seed", type=int, default=0, help="draws of the random policies")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    rank(
        args.config,
        args.set,
        candidates=args.candidates,
        steps=args.steps,
        subset=args.subset,
        seed=args.seed,
        out=args.json,
    )


def rank(
    config: str,
    overrides: list[str],
    *,
    candidates: int = 50,
    steps: int | None = None,
    subset: int = VAL_SUBSET,
    seed: int = 0,
    out: Path | None = None,
) -> dict[str, object]:
    """Score ``candidates`` random policies at the budget three ways; return the summary.

    With ``out`` the rows are written after each candidate, and the rows an earlier run with the
    same arguments wrote there are kept and the run goes on after them.
    """
    cfg = load_config(config, overrides)
    run = prepare(cfg)
    base, profile = run.base.model, run.profile
    recipe = splits_recipe(cfg, run.splits)
    space = build_space(cfg.space, profile, cfg.compress.round_to)
    base_costs = compute_costs(profile, Policy(profile.model), cfg.compress.round_to).as_dict()
    budget = resolve_budget(cfg.budget, base_costs)
    length = Length(steps=steps) if steps else finetune_length(cfg)
    rng = random.Random(seed)
    settings = {
        "config": cfg.name,
        "set": overrides,
        "seed": seed,
        "steps": length.describe(),
        "subset": subset,
    }
    rows: list[dict] = []
    if out and out.exists():
        earlier = json.loads(out.read_text())
        if earlier.get("settings", settings) != settings:
            raise SystemExit(
                f"{out} was measured with {earlier['settings']}, not {settings}: "
                "move it away to start again"
            )
        rows = earlier["candidates"]
    print(
        f"{cfg.name}: base {run.base.metrics['test_accuracy']:.2%} test; {candidates} random "
        f"policies at the budget {dict(cfg.budget)}; fine-tune {length.describe()}; "
        f"cheap scores on {subset} validation images"
        + (f"; {len(rows)} already measured in {out}" if rows else ""),
        flush=True,
    )
    drawn = 0
    while len(rows) < candidates:
        params = at_budget(space, budget, {k.name: rng.random() for k in space.knobs})
        if params is None:
            continue
        policy = space.policy(params)
        drawn += 1
        if drawn <= len(rows):  # measured by the run this one goes on from
            if rows[drawn - 1]["policy"] != json.loads(json.dumps(policy.to_dict())):
                raise SystemExit(f"{out} holds other candidates: move it away to start again")
            continue
        built = build(base, profile, policy, recipe, cfg.compress)
        clock = time.perf_counter()
        plain = recipe.validate(copy.deepcopy(built), limit=subset)
        t_plain = time.perf_counter() - clock
        clock = time.perf_counter()
        cheap = zero_cost(copy.deepcopy(built), base, recipe, subset)
        t_zero = time.perf_counter() - clock
        clock = time.perf_counter()
        _, tuned, _ = tune(
            built, base, profile, policy, recipe, length, cfg.finetune_seed, cfg.compress
        )
        t_tune = time.perf_counter() - clock
        macs = compute_costs(profile, policy, cfg.compress.round_to).macs / base_costs["macs"]
        rows.append(
            {
                "policy": policy.to_dict(),
                "macs_ratio": macs,
                "as_compressed": plain,
                "zero_cost": cheap.score,
                "fine_tuned": tuned.val_accuracy,
                "seconds": {"as_compressed": t_plain, "zero_cost": t_zero, "fine_tuned": t_tune},
            }
        )
        print(
            f"  {len(rows):>3}  macs {macs:6.1%}  as compressed {plain:6.2%}  "
            f"zero-cost {cheap.score:6.2%}  fine-tuned {tuned.val_accuracy:6.2%}",
            flush=True,
        )
        if out:
            write(out, settings, rows, complete=len(rows) >= candidates)
    summary = summarize(rows)
    if out:
        write(out, settings, rows, complete=True)
    print(json.dumps(summary, indent=2))
    return summary


def write(path: Path, settings: dict, rows: list[dict], complete: bool) -> None:
    payload = {
        "settings": settings,
        "summary": summarize(rows) if len(rows) >= 3 else None,  # too few to rank
        "complete": complete,
        "candidates": rows,
    }
    write_atomic(path, json.dumps(payload, indent=2))  # stopped mid-write: the last whole file


def at_budget(
    space: SearchSpace, budget: Budget, shares: dict[str, float]
) -> dict[str, Any] | None:
    top = max(shares.values())

    def scaled(s: float) -> dict[str, Any]:
        return space.at({k: s * d / top for k, d in shares.items()})

    s = smallest(lambda s: feasible(space, budget, scaled(s)))
    return scaled(s) if s is not None else project(space, budget, scaled(1.0))


def correlation(measure: Any, a: list[float], b: list[float]) -> float | None:
    """``measure``'s rank correlation of ``a`` and ``b``; None where one of them is constant."""
    if len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return round(float(measure(a, b).statistic), 3)


def summarize(rows: list[dict]) -> dict[str, object]:
    truth = [r["fine_tuned"] for r in rows]
    quarter = max(1, len(rows) // 4)
    best = set(sorted(range(len(rows)), key=lambda i: -truth[i])[:quarter])
    out: dict[str, object] = {"candidates": len(rows)}
    for key in ("macs_ratio", "as_compressed", "zero_cost"):
        cheap = [r[key] for r in rows]
        top = set(sorted(range(len(rows)), key=lambda i: -cheap[i])[:quarter])
        out[key] = {
            "spearman": correlation(stats.spearmanr, cheap, truth),
            "kendall": correlation(stats.kendalltau, cheap, truth),
            f"top_{quarter}_overlap": len(top & best),
        }
        if key in rows[0]["seconds"]:
            out[key]["median_seconds"] = round(
                statistics.median(r["seconds"][key] for r in rows), 3
            )
    out["fine_tuned_median_seconds"] = round(
        statistics.median(r["seconds"]["fine_tuned"] for r in rows), 3
    )
    return out


if __name__ == "__main__":
    main()
