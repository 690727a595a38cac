"""Engine overhead of a finished search: everything but fine-tuning and validation.

    python benchmarks/search_overhead.py runs/lenet5-fashion-mnist [--study NAME]

Reads the study's trials. Per trial, Optuna stamps the start (in ``ask``, before sampling)
and the end (in ``tell``); the trial stores its fine-tune seconds (which include the
validation passes). Overhead = sampling, pricing, projection, building the compressed model,
calibration, latency measurement, storage writes. Two figures:

- in-trial: sum over trials of (duration - fine-tune) / sum of durations;
- whole loop: (first start to last end - sum of fine-tunes) / (first start to last end), which
  also counts the time between trials (progress bar, reading the study back for the table).
  Valid for a search that ran in one go, as ``make demo`` does on a fresh study.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from optuna.trial import TrialState

from autocompress.runs import load_run_config
from autocompress.search.study import load_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--study", help="study name, if not the run's")
    args = parser.parse_args()
    cfg = load_run_config(args.run_dir, [], args.study)
    trials = [
        t
        for t in load_study(cfg).get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        and t.datetime_start
        and t.datetime_complete
    ]
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials]
    tuned = [float(t.user_attrs.get("timings", {}).get("finetune", 0.0)) for t in trials]
    total, finetune = sum(durations), sum(tuned)
    start = min(t.datetime_start for t in trials)
    end = max(t.datetime_complete for t in trials)
    wall = (end - start).total_seconds()
    phases: dict[str, float] = {}
    for t in trials:
        for name, seconds in t.user_attrs.get("timings", {}).items():
            phases[name] = phases.get(name, 0.0) + float(seconds)
    print(f"{len(trials)} trials, {wall:.1f} s from first start to last end")
    print(f"fine-tune + validation: {finetune:.1f} s")
    print(
        "per phase (s): "
        + ", ".join(f"{k} {v:.2f}" for k, v in sorted(phases.items(), key=lambda kv: -kv[1]))
    )
    print(f"in-trial overhead:   {(total - finetune) / total:.2%} of trial time")
    print(f"whole-loop overhead: {(wall - finetune) / wall:.2%} of wall time")


if __name__ == "__main__":
    main()
