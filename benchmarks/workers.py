"""Trials per hour with 2 workers against 1, on the demo search (LeNet-5 / Fashion-MNIST).

    python benchmarks/workers.py [--config experiments/lenet5-fashion-mnist.yaml] [--trials 16]
        [--modes local-1,journal-2,ray-2] [--json]

Each mode runs the real command, timed from launch to exit, on a fresh study of the same run
(so the cached base model is reused), with the random sampler and no pruner, so every trial
is a full fine-tune of a comparable candidate:

- ``local-1``: one ``autocompress search`` process, all cores (the default);
- ``local-1x1``: one process with one thread: a single worker with the resources each of the
  two workers below has;
- ``journal-2``: two processes on one journal-file study, one thread each;
- ``ray-2``: ``--backend ray --workers 2`` (a local Ray runtime, one CPU per trial).

Printed per mode: wall seconds, trials per hour (finished trials, a failed one included, over
wall seconds) and the ratio to ``local-1``
of the same run; the steady rate (trials per hour between the first and the last finished
trial, start-up excluded); median fine-tune seconds per trial; median per-trial overhead
(a trial's seconds from ask to tell, minus its pricing, building and fine-tune); and, for
Ray, the runtime's start-up seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from autocompress.config import load_config
from autocompress.search.study import counts_toward_budget, make_storage

ROOT = Path(__file__).resolve().parents[1]
MODES = ("local-1", "local-1x1", "journal-2", "ray-2")


def command(config: Path, study: str, trials: int, extra: list[str]) -> list[str]:
    return [
        *(sys.executable, "-m", "autocompress", "search", str(config), "--trials", str(trials)),
        *("--sampler", "random", "--set", "search.pruner=none", "--set", f"search.study={study}"),
        *extra,
    ]


def run_mode(config: Path, mode: str, trials: int, stamp: str) -> dict[str, Any]:
    study = f"bench-{mode}-{stamp}"
    storage: list[str] = []
    if mode == "journal-2":
        storage = [f"search.storage=journal:{ROOT / 'runs' / 'bench' / (study + '.journal')}"]
    procs_args: list[list[str]]
    if mode == "local-1":
        procs_args = [command(config, study, trials, [])]
    elif mode == "local-1x1":
        procs_args = [command(config, study, trials, ["--set", "train.threads=1"])]
    elif mode == "journal-2":
        extra = ["--set", storage[0], "--set", "train.threads=1"]
        procs_args = [command(config, study, trials, extra)] * 2
    elif mode == "ray-2":
        procs_args = [command(config, study, trials, ["--backend", "ray", "--workers", "2"])]
    else:
        raise SystemExit(f"unknown mode {mode}: one of {', '.join(MODES)}")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    procs = [
        subprocess.Popen(a, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for a in procs_args
    ]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"{mode} failed:\n{err.decode()[-3000:]}")
    wall = time.perf_counter() - started

    cfg = load_config(config, [f"search.study={study}", *storage])
    s = optuna.load_study(study_name=study, storage=make_storage(cfg))
    # every trial that counts toward --trials took its time, a failed one (a NaN loss) too
    ran = [t for t in s.get_trials(deepcopy=False) if counts_toward_budget(t)]
    done = [t for t in ran if t.state == TrialState.COMPLETE]
    ends = sorted(t.datetime_complete for t in ran if t.datetime_complete)
    steady = (len(ends) - 1) / (ends[-1] - ends[0]).total_seconds() * 3600 if len(ends) > 1 else 0
    finetune = [float(t.user_attrs["timings"]["finetune"]) for t in done]
    overhead = [
        float(t.user_attrs["seconds"]) - sum(float(v) for v in t.user_attrs["timings"].values())
        for t in done
    ]
    ray_setup = [v for k, v in s.user_attrs.items() if k.startswith("ray:")]
    return {
        "mode": mode,
        "trials": len(ran),
        "failed": len(ran) - len(done),
        "wall_s": wall,
        "trials_per_hour": len(ran) / wall * 3600,
        "steady_trials_per_hour": steady,
        "median_finetune_s": statistics.median(finetune),
        "median_overhead_s": statistics.median(overhead),
        "ray_startup_s": ray_setup[0]["startup_s"] if ray_setup else None,
        "workers": sorted(
            {str(t.user_attrs.get("ray_worker", t.user_attrs.get("worker"))) for t in done}
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--config", type=Path, default=ROOT / "experiments/lenet5-fashion-mnist.yaml"
    )
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows = [run_mode(args.config, m, args.trials, stamp) for m in args.modes.split(",")]
    base = next((r for r in rows if r["mode"] == "local-1"), None)
    base1 = next((r for r in rows if r["mode"] == "local-1x1"), None)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{os.cpu_count()} cores; {args.trials} trials per mode; config {args.config}")
    print(
        "mode        trials   wall s   trials/h   ×local-1   ×local-1x1   steady/h   fine-tune s"
        "   overhead s   Ray start s"
    )
    for r in rows:
        ratio = r["trials_per_hour"] / base["trials_per_hour"] if base else float("nan")
        ratio1 = r["trials_per_hour"] / base1["trials_per_hour"] if base1 else float("nan")
        start = f"{r['ray_startup_s']:.1f}" if r["ray_startup_s"] is not None else "–"
        print(
            f"{r['mode']:<11} {r['trials']:>6} {r['wall_s']:>8.1f} {r['trials_per_hour']:>10.0f} "
            f"{ratio:>10.2f} {ratio1:>12.2f} {r['steady_trials_per_hour']:>10.0f} "
            f"{r['median_finetune_s']:>13.2f} {r['median_overhead_s']:>12.3f} {start:>13}"
        )


if __name__ == "__main__":
    main()
