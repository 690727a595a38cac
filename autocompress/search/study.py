"""The study: where trials live (SQLite in the run directory by default), and what they hold.

Each finished trial carries, as user attributes, its policy, every cost, the validation
accuracy, whether it is within budget, the fine-tune seconds and, on failure, the reason.
:func:`records` reads them back as plain :class:`TrialRecord` values for tables and plots.
"""

from __future__ import annotations

import datetime
import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from autocompress.config import Config
from autocompress.errors import AutocompressError

STALE_WITHOUT_WORKER_S = 120  # a RUNNING trial that never named its worker is dead after this


def storage_url(cfg: Config) -> str:
    """``search.storage``, or a SQLite file ``study.db`` in the run directory."""
    if cfg.search.storage:
        return cfg.search.storage
    return f"sqlite:///{(cfg.run_dir / 'study.db').resolve()}"


def study_name(cfg: Config) -> str:
    return cfg.search.study or cfg.name


def pareto_paths(cfg: Config) -> tuple[Path, Path]:
    """``pareto.png`` and ``pareto.html``, suffixed with the study name if not the run name."""
    stem = "pareto" if study_name(cfg) == cfg.name else f"pareto-{study_name(cfg)}"
    return cfg.run_dir / f"{stem}.png", cfg.run_dir / f"{stem}.html"


def directions(cfg: Config) -> list[StudyDirection]:
    n = len(cfg.search.objectives)
    return [StudyDirection.MAXIMIZE] + [StudyDirection.MINIMIZE] * n


def open_study(
    cfg: Config, sampler: optuna.samplers.BaseSampler | None = None, pruner: Any = None
) -> optuna.Study:
    """Create the study, or load it to resume; its objectives must match the config's."""
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    url = storage_url(cfg)
    try:
        storage = optuna.storages.RDBStorage(url) if "://" in url else url
        study = optuna.create_study(
            study_name=study_name(cfg),
            storage=storage,
            sampler=sampler,
            pruner=pruner,
            directions=directions(cfg),
            load_if_exists=True,
        )
    except (ImportError, ValueError, optuna.exceptions.OptunaError) as exc:
        raise AutocompressError(f"cannot open the study at {url}: {exc}") from None
    wanted = ["accuracy", *cfg.search.objectives]
    names = study.user_attrs.get("objectives")
    if names is None:
        study.set_user_attr("objectives", wanted)
        with warnings.catch_warnings():  # experimental in Optuna; labels the dashboard's axes
            warnings.simplefilter("ignore")
            study.set_metric_names(["val_accuracy", *(f"{m}_ratio" for m in wanted[1:])])
    elif names != wanted:
        raise AutocompressError(
            f"the study '{study_name(cfg)}' in {url} optimises {names}, this config {wanted}: "
            "use another name, or restore search.objectives"
        )
    return study


def load_study(cfg: Config) -> optuna.Study:
    """An existing study, for reading (pareto, export)."""
    url = storage_url(cfg)
    try:
        return optuna.load_study(study_name=study_name(cfg), storage=url)
    except KeyError:
        raise AutocompressError(
            f"no study '{study_name(cfg)}' in {url}: run `autocompress search` first"
        ) from None


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def register_worker(study: optuna.Study) -> None:
    """Note this process in the study, so a later run can tell whether it is still alive."""
    study.set_user_attr(f"worker:{worker_id()}", datetime.datetime.now().isoformat())


def _dead(worker: str, host: str) -> bool:
    name, _, pid = worker.rpartition(":")
    return name == host and not _alive(int(pid))


def recover_interrupted(study: optuna.Study) -> list[int]:
    """Fail trials left RUNNING by a dead process on this machine, and queue them again.

    A search killed with SIGKILL (or a power cut) leaves its trial RUNNING: on resume it is
    marked FAIL with ``interrupted`` set, so it does not count toward the trial budget, and
    its params are enqueued so the same candidate is evaluated again. A trial killed before
    it named its worker is dead if every worker registered in the study is a dead process of
    this machine (else after ``STALE_WITHOUT_WORKER_S``). Returns the failed trials' numbers.
    """
    host = socket.gethostname()
    now = datetime.datetime.now()
    storage = study._storage
    workers = [k.partition(":")[2] for k in study.user_attrs if k.startswith("worker:")]
    all_dead = all(_dead(w, host) for w in workers if w != worker_id())
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker")
        if worker is not None:
            dead = _dead(str(worker), host)
        else:
            age = (now - (trial.datetime_start or now)).total_seconds()
            dead = all_dead or age > STALE_WITHOUT_WORKER_S
        if not dead:
            continue
        storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
        storage.set_trial_user_attr(
            trial._trial_id, "fail_reason", "interrupted: the process running it stopped"
        )
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        if trial.params:  # killed after sampling: evaluate the same candidate again
            retry_attrs = {k: v for k, v in trial.user_attrs.items() if k == "baseline"}
            study.enqueue_trial(trial.params, user_attrs={**retry_attrs, "retry_of": trial.number})
        failed.append(trial.number)
    return failed


def counts_toward_budget(trial: FrozenTrial) -> bool:
    """Finished trials count (failures included); interrupted ones are retried instead."""
    if trial.state == TrialState.RUNNING:
        return True  # another live worker's trial
    if trial.state == TrialState.FAIL:
        return not trial.user_attrs.get("interrupted", False)
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED)


def trials_done(study: optuna.Study) -> int:
    return sum(counts_toward_budget(t) for t in study.get_trials(deepcopy=False))


@dataclass(frozen=True)
class TrialRecord:
    number: int
    state: str  # complete, pruned, fail, running, waiting
    val_accuracy: float | None
    costs: dict[str, float]
    ratios: dict[str, float]  # costs / base costs
    feasible: bool
    baseline: str | None  # e.g. "uniform 0.42" for enqueued uniform policies
    policy: dict[str, Any]
    finetune_seconds: float
    seconds: float
    reason: str | None

    @property
    def scored(self) -> bool:
        """Fully fine-tuned and within budget: a candidate for the front and for export."""
        return self.state == "complete" and self.feasible and self.val_accuracy is not None


def records(study: optuna.Study) -> list[TrialRecord]:
    base = study.user_attrs.get("base_costs", {})
    out = []
    for t in study.get_trials(deepcopy=False):
        costs = t.user_attrs.get("costs", {})
        out.append(
            TrialRecord(
                number=t.number,
                state=t.state.name.lower(),
                val_accuracy=t.user_attrs.get("val_accuracy"),
                costs=costs,
                ratios={m: v / base[m] for m, v in costs.items() if base.get(m)},
                feasible=bool(t.user_attrs.get("feasible", False)),
                baseline=t.user_attrs.get("baseline"),
                policy=t.user_attrs.get("policy", {}),
                finetune_seconds=float(t.user_attrs.get("timings", {}).get("finetune", 0.0)),
                seconds=float(t.user_attrs.get("seconds", 0.0)),
                reason=t.user_attrs.get("fail_reason"),
            )
        )
    return out
