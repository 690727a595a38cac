"""Several `autocompress search` processes on one study: a journal file, and a real PostgreSQL.

The PostgreSQL tests need a server: `.ci/start-postgres` installs and starts one and prints its
URL, which the tests read from ``AUTOCOMPRESS_TEST_POSTGRES`` (`.ci/run` sets it, and sets
``AUTOCOMPRESS_REQUIRE_POSTGRES=1`` so that a missing server fails CI instead of skipping).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from autocompress.cli import main
from autocompress.config import load_config
from autocompress.redact import password_of
from autocompress.search.loop import heartbeats
from autocompress.search.study import counted as count
from autocompress.search.study import (
    make_storage,
    records,
    recover_interrupted,
    storage_of,
    study_at,
    trial_id_of,
)

ROOT = Path(__file__).resolve().parents[2]
TRIALS = 10
SHARED = {
    "finetune": {"steps": 12, "lr": 0.01},
    "space": {"rules": [{"prune": [0.0, 0.8]}, {"types": ["conv"], "w_bits": [4, 8, 32]}]},
    "budget": {"macs": "60%"},
    "search": {"trials": TRIALS, "uniform": 2, "pruner": "none", "heartbeat": 2},
}


def postgres_url() -> str:
    url = os.environ.get("AUTOCOMPRESS_TEST_POSTGRES")
    if not url:
        if os.environ.get("AUTOCOMPRESS_REQUIRE_POSTGRES"):
            pytest.fail("AUTOCOMPRESS_TEST_POSTGRES is not set: run .ci/start-postgres")
        pytest.skip("no PostgreSQL server: set AUTOCOMPRESS_TEST_POSTGRES (.ci/start-postgres)")
    return url


def storage_for(kind: str) -> str:
    return "journal" if kind == "journal" else postgres_url()


def start_worker(config: Path, study: str, storage: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "autocompress", "search", str(config)),
            *("--storage", storage, "--set", f"search.study={study}", "--set", "train.threads=1"),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize("kind", ["journal", "postgres"])
def test_two_workers_share_one_study_without_losing_or_duplicating(
    kind, write_config, tmp_path, capsys, monkeypatch
) -> None:
    storage = storage_for(kind)
    config = write_config(SHARED)
    assert main(["train", str(config)]) == 0  # both workers then read the cached base model
    study_name = f"workers-{uuid.uuid4().hex[:8]}"  # a fresh study in a shared database
    workers = [start_worker(config, study_name, storage) for _ in range(2)]
    for proc in workers:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()

    cfg = load_config(config, [f"search.study={study_name}", f"search.storage={storage}"])
    study = optuna.load_study(study_name=study_name, storage=make_storage(cfg))
    trials = study.get_trials()
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    counted = count(trials)
    assert len(counted) == TRIALS
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    # every counted trial ran to its end on one of the two workers, each candidate once
    assert all(t.state == TrialState.COMPLETE for t in counted), [t.state for t in counted]
    assert len({t.user_attrs["worker"] for t in counted}) == 2
    params = [tuple(sorted(t.params.items())) for t in counted]
    assert len(set(params)) == TRIALS
    # the uniform baselines were enqueued once (by the worker that created the study), run once
    baselines = Counter(t.user_attrs["baseline"] for t in counted if "baseline" in t.user_attrs)
    # two moving every knob, and uniform pruning alone (the space's other knob is bits)
    assert len(baselines) == 3 and set(baselines.values()) == {1}
    # any trial beyond the count was given back unrun, never fine-tuned
    for t in trials:
        if t not in counted:
            assert t.user_attrs.get("surplus") and "finetune" not in t.user_attrs.get("timings", {})

    run_dir = tmp_path / "runs" / "digits-test"
    # the run remembers the study's storage, without its password: pareto needs the study's
    # name, and the password where PostgreSQL users keep it
    password = password_of(storage)
    if password:
        monkeypatch.setenv("PGPASSWORD", password)
    assert main(["pareto", str(run_dir), "--study", study_name, "--json"]) == 0
    # every trial of the study, a surplus one given back unrun included (when the two workers
    # raced for the last trial; the CI run of 2026-11-30 had one)
    assert f'"trials": {len(trials)}' in capsys.readouterr().out


def test_a_silent_worker_elsewhere_is_failed_by_its_heartbeat(write_config) -> None:
    """A trial whose worker (on another machine) stopped heartbeating is failed and retried;
    a trial whose heartbeat goes on is left alone."""
    storage = postgres_url()
    config = write_config(SHARED)
    study_name = f"heartbeat-{uuid.uuid4().hex[:8]}"
    cfg = load_config(config, [f"search.study={study_name}", f"search.storage={storage}"])
    study = study_at(make_storage(cfg), study_name, create=True)
    dist = optuna.distributions.FloatDistribution(0.0, 1.0)

    silent = study.ask({"x": dist})
    silent.set_user_attr("worker", "another-machine:4242")
    storage = storage_of(study)
    assert isinstance(storage, optuna.storages.RDBStorage)
    storage.record_heartbeat(trial_id_of(study, silent.number))  # then it stops
    alive = study.ask({"x": dist})
    alive.set_user_attr("worker", "another-machine:4343")
    with heartbeats(study, alive.number):  # every 2 s, as a running worker's loop does
        assert recover_interrupted(study) == []  # within the grace period (2 × 2 s)
        time.sleep(5)
        assert recover_interrupted(study) == [silent.number]
    after = {t.number: t for t in study.get_trials()}
    assert after[silent.number].state == TrialState.FAIL
    assert records(study)[silent.number].reason.startswith("interrupted")
    assert after[alive.number].state == TrialState.RUNNING
    retry = [t for t in after.values() if t.user_attrs.get("retry_of") == silent.number]
    assert len(retry) == 1 and retry[0].state == TrialState.WAITING
    assert retry[0].system_attrs["fixed_params"] == silent.params
    assert silent.number not in [t.number for t in count(study.get_trials())]


def test_workers_creating_the_schema_at_once_all_open_the_storage(write_config) -> None:
    """Workers started together on an empty database race to create Optuna's tables and enum
    types; every one of them must open the storage (the loser of the race retries)."""
    import sqlalchemy

    url = postgres_url()
    schema = f"race_{uuid.uuid4().hex[:8]}"  # an empty namespace: the race of a fresh database
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    fresh = f"{url}?options=-csearch_path%3D{schema}"
    cfg = load_config(write_config(SHARED), [f"search.storage={fresh}"])
    workers = 6
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def open_storage() -> None:
        barrier.wait()
        try:
            make_storage(cfg)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=open_storage) for _ in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        with engine.connect() as conn:
            tables = conn.execute(
                sqlalchemy.text(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema = :s"
                ),
                {"s": schema},
            ).scalar_one()
        assert tables > 0  # the schema holds Optuna's tables, created once
    finally:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()
