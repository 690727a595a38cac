"""`autocompress search --backend ray` on a real local Ray runtime (2 workers), on digits."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc
from optuna.trial import TrialState

from autocompress.cli import main
from autocompress.search.study import counts_toward_budget

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[2]
SEARCH = {
    "finetune": {"steps": 12, "lr": 0.01, "export_epochs": 0.5},
    "space": {"rules": [{"prune": [0.0, 0.8]}, {"types": ["conv"], "w_bits": [4, 8, 32]}]},
    "budget": {"macs": "60%"},
    "search": {"trials": 6, "uniform": 2},
}


@pytest.fixture(autouse=True)
def ray_shutdown():
    yield
    ray.shutdown()


def study_of(run_dir: Path) -> optuna.Study:
    return optuna.load_study(study_name="digits-test", storage=f"sqlite:///{run_dir / 'study.db'}")


def test_ray_search_lands_every_trial_in_the_study_and_pareto_export_work(
    write_config, tmp_path, capsys
) -> None:
    config = write_config(SEARCH)
    run_dir = tmp_path / "runs" / "digits-test"
    assert main(["search", str(config), "--backend", "ray", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "Ray (local" in out and "2 concurrent trials × 1 CPU" in out and "6/6" in out

    trials = study_of(run_dir).get_trials()
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    assert [t.user_attrs.get("baseline", "").split()[0] for t in trials[:2]] == ["uniform"] * 2
    for t in trials:
        assert {"policy", "costs", "val_accuracy", "feasible", "timings", "history"} <= set(
            t.user_attrs
        )
        assert t.user_attrs["timings"]["finetune"] > 0 and t.constraints["macs"] <= 0
    # the trials ran in two Ray worker processes, not in the driver, and overlapped in time
    runners = {t.user_attrs["ray_worker"] for t in trials}
    assert len(runners) == 2 and all(r.rsplit(":", 1)[1] != str(os.getpid()) for r in runners)
    spans = sorted((t.datetime_start, t.datetime_complete) for t in trials)
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans))

    assert main(["pareto", str(run_dir), "--json"]) == 0
    assert '"trials": 6' in capsys.readouterr().out
    export = tmp_path / "export"
    assert main(["export", str(run_dir), "--best", "--out", str(export)]) == 0
    assert {"model.pt", "model.onnx", "report.json", "policy.yaml"} <= {
        p.name for p in export.iterdir()
    }


def test_asha_stops_poor_fine_tunes_and_records_them_as_pruned(write_config, tmp_path) -> None:
    config = write_config({**SEARCH, "search": {"trials": 12, "uniform": 1, "sampler": "random"}})
    run_dir = tmp_path / "runs" / "digits-test"
    argv = ["search", str(config), "--backend", "ray", "--workers", "2", "--scheduler", "asha"]
    assert main(argv) == 0
    trials = study_of(run_dir).get_trials()
    assert len(trials) == 12
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "ASHA stopped no trial"
    for t in pruned:  # stopped at ASHA's first rung, with the costs of what it would have been
        # its scores so far (Optuna's intermediate values exist in single-objective studies
        # only; the default study also minimises MACs)
        assert 0 < len(t.user_attrs["history"]) < 4 and t.user_attrs["costs"]["macs"] > 0


@pytest.mark.slow  # about a minute: 150-step fine-tunes so Ctrl-C lands inside trials
@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"]
)
def test_interrupted_ray_search_resumes_with_the_same_command(
    write_config, tmp_path, sig, code
) -> None:
    """Ctrl-C, or SIGTERM (which the driver hands to Tune as Ctrl-C), stops the Ray run."""
    config = write_config(
        {**SEARCH, "finetune": {"steps": 150, "lr": 0.01}, "search": {"trials": 8, "uniform": 1}}
    )  # 8: trials left to stop when the second one is done, however fast they run
    run_dir = tmp_path / "runs" / "digits-test"
    assert main(["train", str(config)]) == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "autocompress", "search", str(config), "--backend", "ray"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        done = [t for t in _trials(run_dir) if t.state == TrialState.COMPLETE]
        if len(done) >= 2:
            break
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        time.sleep(0.5)
    proc.send_signal(sig)
    assert proc.wait(120) == code
    stopped = _trials(run_dir)
    assert not [t for t in stopped if t.state == TrialState.RUNNING]
    interrupted = [t for t in stopped if t.user_attrs.get("interrupted")]
    assert interrupted and all(t.state == TrialState.FAIL for t in interrupted)

    assert main(["search", str(config), "--backend", "ray"]) == 0
    trials = _trials(run_dir)
    assert sum(counts_toward_budget(t) for t in trials) == 8
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for t in interrupted:  # each stopped candidate was run again, once
        retries = [r for r in trials if r.user_attrs.get("retry_of") == t.number]
        assert len(retries) == 1 and retries[0].params == t.params
        assert retries[0].state == TrialState.COMPLETE


def _trials(run_dir: Path) -> list[optuna.trial.FrozenTrial]:
    if not (run_dir / "study.db").exists():
        return []
    try:
        return study_of(run_dir).get_trials()
    except (KeyError, sqlalchemy.exc.OperationalError):  # the search is still creating it
        return []


@pytest.mark.slow  # starts and stops a Ray cluster with the ray CLI (45 s)
def test_search_joins_an_existing_ray_cluster(write_config, tmp_path) -> None:
    """``--ray-address``: the trials run on a cluster started with ``ray start`` (token
    authentication: the driver sets RAY_AUTH_MODE=token and reads ~/.ray/auth_token)."""
    ray_cli = str(Path(sys.executable).parent / "ray")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "token"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    head = [ray_cli, "start", "--head", f"--port={port}", "--num-cpus=2", "--disable-usage-stats"]
    subprocess.run([*head, "--include-dashboard=false"], check=True, capture_output=True, env=env)
    try:
        config = write_config({**SEARCH, "search": {"trials": 4, "uniform": 1}})
        address = f"127.0.0.1:{port}"
        argv = ["search", str(config), "--backend", "ray", "--workers", "2"]
        search = subprocess.run(
            [sys.executable, "-m", "autocompress", *argv, "--ray-address", address],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=300,
        )
        assert search.returncode == 0, search.stderr.decode()[-3000:]
        assert f"Ray ({address}" in search.stdout.decode()
        study = study_of(tmp_path / "runs" / "digits-test")
        trials = study.get_trials()
        assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
        [setup] = [v for k, v in study.user_attrs.items() if k.startswith("ray:")]
        assert setup["address"] == address and setup["workers"] == 2
        assert len({t.user_attrs["ray_worker"] for t in trials}) == 2
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, env=env)
