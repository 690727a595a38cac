"""Every sampler survives candidates that raise, turn NaN, or break the budget."""

from __future__ import annotations

import datetime
import socket

import optuna
import pytest
from optuna.trial import TrialState

from autocompress.cli import main
from autocompress.search.study import (
    counts_toward_budget,
    recover_interrupted,
    register_worker,
    study_at,
    trials_done,
)

# FlakyNet: conv2 kept below 5 channels raises, below 9 gives NaN logits; pruning it less
# than about a third breaks the MACs budget. Projection is off so those trials stay over.
FLAKY = {
    "model": {"factory": "tests.tiny_models:flaky_net"},
    "finetune": {"steps": 4, "lr": 0.01},
    "space": {"skip_first": False, "rules": [{"prune": [0.0, 0.9]}]},
    "budget": {"macs": "70%"},
    "search": {"uniform": 0, "project": False, "pruner": "none"},
}
TRIALS = {"tpe": 14, "nsga2": 20, "gp": 13, "cmaes": 14, "random": 14}


@pytest.mark.parametrize("sampler", sorted(TRIALS))
def test_sampler_survives_failing_nan_and_over_budget_trials(write_config, tmp_path, sampler):
    n = TRIALS[sampler]  # past each sampler's random start-up
    config = write_config({**FLAKY, "search": {**FLAKY["search"], "trials": n}})
    assert main(["search", str(config), "--sampler", sampler]) == 0
    study = optuna.load_study(
        study_name="digits-test", storage=f"sqlite:///{tmp_path / 'runs/digits-test/study.db'}"
    )
    trials = study.get_trials()
    assert trials_done(study) == n == len(trials)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    reasons = [t.user_attrs["fail_reason"] for t in trials if t.state == TrialState.FAIL]
    over = [t for t in trials if t.state == TrialState.COMPLETE and not t.user_attrs["feasible"]]
    good = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs["feasible"]]
    assert all(r.startswith(("RuntimeError: flaky", "FloatingPointError")) for r in reasons)
    assert reasons and over and good, (len(reasons), len(over), len(good))
    for t in over:  # recorded, never fine-tuned, flagged to the samplers
        assert t.values[0] == 0.0 and "finetune" not in t.user_attrs["timings"]
        assert t.constraints["macs"] > 0 and "over budget" in t.user_attrs["fail_reason"]
    for t in good:
        assert t.constraints["macs"] <= 0 and t.user_attrs["val_accuracy"] > 0.1


def test_a_trial_killed_before_it_named_its_worker_is_recovered(tmp_path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = study_at(storage, "s", create=True)
    study.set_user_attr(f"worker:{socket.gethostname()}:999999999", "then")  # a dead process
    study.ask()  # left RUNNING, no params, no worker: killed inside ask
    live = study_at(storage, "t", create=True)
    live.set_user_attr(f"worker:{socket.gethostname()}:999999999", "then")
    live.set_user_attr("worker:elsewhere:1", datetime.datetime.now().isoformat())
    live.ask()  # another machine's worker may own it: left alone (for now)

    assert recover_interrupted(study) == [0]
    assert study.get_trials()[0].state == TrialState.FAIL
    assert not counts_toward_budget(study.get_trials()[0])
    assert len(study.get_trials()) == 1  # nothing sampled yet: nothing to retry
    assert recover_interrupted(live) == []
    register_worker(live)
    assert any(k.startswith("worker:") for k in live.user_attrs)
