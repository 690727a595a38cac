"""A search killed mid-trial (SIGKILL) or stopped with Ctrl-C resumes with the same command."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from autocompress.cli import main
from autocompress.search.study import counts_toward_budget

ROOT = Path(__file__).resolve().parents[2]
TRIALS = 6
SLOW_TRIALS = {  # long enough fine-tunes that a kill lands inside a trial
    "finetune": {"steps": 150, "lr": 0.01},
    "space": {"rules": [{"prune": [0.0, 0.8]}]},
    "budget": {"macs": "70%"},
    "search": {"trials": TRIALS, "uniform": 1, "pruner": "none"},
}


def query(db: Path, sql: str) -> list[tuple]:
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=10) as con:
        try:
            return list(con.execute(sql))
        except sqlite3.OperationalError:  # tables not created yet
            return []


def states(db: Path) -> list[str]:
    return [row[0] for row in query(db, "SELECT state FROM trials ORDER BY number")]


def running_with_params(db: Path) -> bool:
    """A trial is running and its params are sampled: the kill lands in its fine-tune."""
    sql = (
        "SELECT COUNT(*) FROM trials JOIN trial_params USING (trial_id) "
        "WHERE trials.state = 'RUNNING'"
    )
    return any(row[0] for row in query(db, sql))


def start_search(config: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "autocompress", "search", str(config)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        # a shell's background jobs ignore SIGINT, and Python then never turns it into
        # KeyboardInterrupt: give the search the default handling a terminal gives it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_inside_a_trial(proc: subprocess.Popen[bytes], db: Path, finished: int) -> None:
    """Return once ``finished`` trials are complete and the next one is running."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        s = states(db)
        if s.count("COMPLETE") >= finished and s and s[-1] == "RUNNING" and running_with_params(db):
            time.sleep(0.2)
            return
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        time.sleep(0.1)
    raise AssertionError(f"no running trial after {finished} finished: {states(db)}")


def check_resumed(run_dir: Path, killed: int) -> None:
    study = optuna.load_study(study_name="digits-test", storage=f"sqlite:///{run_dir / 'study.db'}")
    trials = study.get_trials()
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]
    assert sum(counts_toward_budget(t) for t in trials) == TRIALS
    interrupted = [t for t in trials if t.user_attrs.get("interrupted")]
    assert [t.number for t in interrupted] == [killed]
    assert interrupted[0].state == TrialState.FAIL
    assert "interrupted" in interrupted[0].user_attrs["fail_reason"]
    retry = [t for t in trials if t.user_attrs.get("retry_of") == killed]
    assert len(retry) == 1 and retry[0].params == interrupted[0].params
    assert retry[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == TRIALS and len({t.number for t in finished}) == TRIALS


def test_sigkill_mid_trial_then_rerun_ends_with_exactly_n_trials(write_config, tmp_path) -> None:
    config = write_config(SLOW_TRIALS)
    run_dir = tmp_path / "runs" / "digits-test"
    proc = start_search(config)
    wait_inside_a_trial(proc, run_dir / "study.db", finished=2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    before = states(run_dir / "study.db")
    assert before.count("RUNNING") == 1
    killed = before.index("RUNNING")

    assert main(["search", str(config)]) == 0
    check_resumed(run_dir, killed)


@pytest.mark.parametrize(
    ("sig", "code", "reason"),
    [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")],
    ids=["ctrl-c", "sigterm"],
)
def test_ctrl_c_or_sigterm_fails_the_running_trial_and_the_rerun_finishes(
    write_config, tmp_path, sig, code, reason
) -> None:
    """SIGTERM (`kill`, schedulers, `timeout`, container stops) is handled like Ctrl-C."""
    config = write_config(SLOW_TRIALS)
    run_dir = tmp_path / "runs" / "digits-test"
    proc = start_search(config)
    wait_inside_a_trial(proc, run_dir / "study.db", finished=1)
    proc.send_signal(sig)
    assert proc.wait(60) == code
    after = states(run_dir / "study.db")
    assert "RUNNING" not in after and after.count("FAIL") == 1
    killed = after.index("FAIL")
    sql = "SELECT value_json FROM trial_user_attributes WHERE key = 'fail_reason'"
    assert any(reason in row[0] for row in query(run_dir / "study.db", sql))

    assert main(["search", str(config)]) == 0
    check_resumed(run_dir, killed)
