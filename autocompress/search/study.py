"""The study: where trials live (SQLite in the run directory by default), and what they hold.

Each finished trial carries, as user attributes, its policy, every cost, the validation
accuracy, whether it is within budget, the fine-tune seconds and, on failure, the reason.
:func:`records` reads them back as plain :class:`TrialRecord` values for tables and plots.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import socket
import time
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.exceptions import OptunaError
from optuna.storages.journal import JournalFileBackend
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

from autocompress.config import Config
from autocompress.errors import AutocompressError
from autocompress.redact import mask_url, mask_urls_in, password_of, redact

if TYPE_CHECKING:
    from autocompress.search.objective import TrialResult

STORAGE_ENV = "AUTOCOMPRESS_STORAGE"  # a storage URL kept out of configs and command lines

# the storage each study was opened on: Optuna keeps a study's storage private
_STORAGES: weakref.WeakKeyDictionary[optuna.Study, optuna.storages.BaseStorage] = (
    weakref.WeakKeyDictionary()
)

STALE_WITHOUT_WORKER_S = 120  # a RUNNING trial that never named its worker is dead after this


def storage_url(cfg: Config) -> str:
    """Where the study lives, as printed and as ``--storage`` takes it.

    ``search.storage``: unset for a SQLite file ``study.db`` in the run directory; ``journal``
    for a journal file ``study.journal`` there (many worker processes on one machine);
    ``journal:PATH`` for a journal file elsewhere; any SQLAlchemy URL otherwise (PostgreSQL for
    workers on several machines, e.g. ``postgresql://user@host/db`` with the password in
    ``PGPASSWORD`` or ``~/.pgpass``). Unset, the ``AUTOCOMPRESS_STORAGE`` environment variable
    is used if set. The URL may hold a password: print it through :func:`shown_storage`.
    """
    spec = configured_storage(cfg)
    if not spec:
        return f"sqlite:///{(cfg.run_dir / 'study.db').resolve()}"
    if spec == "journal":
        return f"journal:{(cfg.run_dir / 'study.journal').resolve()}"
    return spec


def configured_storage(cfg: Config) -> str | None:
    """``search.storage``, else ``$AUTOCOMPRESS_STORAGE``, else None (the run's SQLite file)."""
    return cfg.search.storage or os.environ.get(STORAGE_ENV) or None


def shown_storage(cfg: Config) -> str:
    """:func:`storage_url` with any password masked, for messages and logs."""
    return mask_url(storage_url(cfg))


def _cannot_open(cfg: Config, reason: object) -> AutocompressError:
    url = storage_url(cfg)
    text = redact(str(reason).strip().splitlines()[0] if str(reason).strip() else "", url)
    hint = ""
    if "password" in text.lower() and password_of(url) is None:
        hint = (
            f" (the run records no password: set PGPASSWORD, ~/.pgpass or {STORAGE_ENV}, "
            "or pass --storage URL)"
        )
    return AutocompressError(f"cannot open the study at {mask_url(url)}: {text}{hint}")


def describe_storage_failure(exc: BaseException) -> str | None:
    """One line for a storage that failed mid-search (a full disk, a lost database server),
    or None if ``exc`` is not a storage error. The innermost cause is what the user can act on."""
    if not isinstance(exc, OptunaError | SQLAlchemyError):
        return None
    if isinstance(exc, OptunaError) and not isinstance(exc, optuna.exceptions.StorageInternalError):
        return None
    inner: BaseException = exc
    while inner.__cause__ is not None or getattr(inner, "orig", None) is not None:
        inner = getattr(inner, "orig", None) or inner.__cause__  # type: ignore[assignment]
    text = str(inner).strip().splitlines()[0] if str(inner).strip() else type(inner).__name__
    return (
        f"the study's storage failed: {mask_urls_in(text)}; the finished trials are kept: fix "
        "it (free space, restart the server) and run the same command to resume"
    )


def make_storage(cfg: Config) -> optuna.storages.BaseStorage:
    """The Optuna storage of :func:`storage_url`; database storages record heartbeats.

    A worker records a heartbeat every ``search.heartbeat`` seconds while it runs a trial;
    a RUNNING trial whose heartbeat is older than twice that is failed and retried by the
    next worker that starts a trial, on any machine (see :func:`recover_interrupted`).
    """
    url = storage_url(cfg)
    try:
        if url.startswith("journal:"):
            path = Path(url.removeprefix("journal:")).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            backend = JournalFileBackend(str(path))
            return optuna.storages.JournalStorage(backend)
        if "://" not in url:
            raise ValueError(
                "search.storage is 'journal', 'journal:PATH' or a database URL such as "
                "sqlite:///PATH or postgresql://user:password@host/db"
            )
        return _rdb_storage(url, cfg.search.heartbeat)
    except (ImportError, ValueError, OSError, OptunaError, SQLAlchemyError) as exc:
        # a database error's own message, without SQLAlchemy's wrapping and links
        raise _cannot_open(cfg, getattr(exc, "orig", None) or exc) from None


SCHEMA_ATTEMPTS = 8


def _rdb_storage(url: str, heartbeat: int) -> optuna.storages.RDBStorage:
    """Optuna's database storage. Workers started together on an empty database race to create
    its tables and enum types; the ones that lose get a duplicate-key or already-exists error
    and try again, finding the schema made."""

    def open_storage() -> optuna.storages.RDBStorage:
        with warnings.catch_warnings():  # heartbeats are marked experimental in Optuna
            warnings.simplefilter("ignore")
            return optuna.storages.RDBStorage(
                url,
                heartbeat_interval=heartbeat or None,
                grace_period=2 * heartbeat or None,
                # called by optuna.storages.fail_stale_trials in the one worker that failed it
                heartbeat_stale_trial_callback=_retry_stale if heartbeat else None,
            )

    for attempt in range(SCHEMA_ATTEMPTS - 1):
        try:
            return open_storage()
        except (IntegrityError, ProgrammingError, OperationalError) as exc:
            # PostgreSQL: a duplicate enum type or table; SQLite: "table ... already exists"
            if isinstance(exc, OperationalError) and "already exists" not in str(exc):
                raise
            time.sleep(0.1 * (attempt + 1))
    return open_storage()


def study_name(cfg: Config) -> str:
    return cfg.search.study or cfg.name


def pareto_paths(cfg: Config) -> tuple[Path, Path]:
    """``pareto.png`` and ``pareto.html``, suffixed with the study name if not the run name."""
    stem = "pareto" if study_name(cfg) == cfg.name else f"pareto-{study_name(cfg)}"
    return cfg.run_dir / f"{stem}.png", cfg.run_dir / f"{stem}.html"


def directions(cfg: Config) -> list[StudyDirection]:
    n = len(cfg.objectives)
    return [StudyDirection.MAXIMIZE] + [StudyDirection.MINIMIZE] * n


def open_study(
    cfg: Config, sampler: optuna.samplers.BaseSampler | None = None, pruner: Any = None
) -> tuple[optuna.Study, bool]:
    """Create the study, or load it to resume; its objectives must match the config's.

    Returns the study and whether this call created it: of several workers started at once
    on a new study, exactly one creates it (and so initialises it).
    """
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    storage = make_storage(cfg)
    kwargs: dict[str, Any] = {"study_name": study_name(cfg), "storage": storage}
    try:
        study = optuna.create_study(
            **kwargs, sampler=sampler, pruner=pruner, directions=directions(cfg)
        )
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study, created = optuna.load_study(**kwargs, sampler=sampler, pruner=pruner), False
    except (ImportError, ValueError, OptunaError) as exc:
        raise _cannot_open(cfg, exc) from None
    _STORAGES[study] = storage
    wanted = ["accuracy", *cfg.objectives]
    if created:
        study.set_user_attr("objectives", wanted)
        with warnings.catch_warnings():  # experimental in Optuna; labels the dashboard's axes
            warnings.simplefilter("ignore")
            study.set_metric_names(["val_accuracy", *(f"{m}_ratio" for m in wanted[1:])])
    else:
        check_compatible(study, cfg)
    return study, created


def existing_study(cfg: Config) -> optuna.Study | None:
    """The study the config names, if it exists already; creates no file or study."""
    url = storage_url(cfg)
    for prefix in ("sqlite:///", "journal:"):
        if url.startswith(prefix) and not Path(url.removeprefix(prefix)).expanduser().exists():
            return None
    try:
        return _load(cfg)
    except KeyError:
        return None


def check_compatible(study: optuna.Study, cfg: Config, knobs: list[str] | None = None) -> None:
    """Refuse to continue a study made with other objectives, or (given ``knobs``, the names
    of the search space's knobs) another search space."""
    where = f"the study '{study_name(cfg)}' in {shown_storage(cfg)}"
    wanted = ["accuracy", *cfg.objectives]
    found = study.user_attrs.get("objectives", wanted)
    if found != wanted or len(study.directions) != len(wanted):
        names = study.user_attrs.get("objectives", f"{len(study.directions)} objectives")
        raise AutocompressError(
            f"{where} optimises {names}, this config {wanted}: "
            "use another name, or restore search.objectives"
        )
    recorded = study.user_attrs.get("knobs")
    if knobs is not None and recorded is not None and recorded != knobs:
        raise AutocompressError(
            f"{where} was made with another search space: use another name "
            "(search.study=NAME, or delete the run's study.db) to search this one"
        )


def with_objectives(cfg: Config, study: optuna.Study | None) -> Config:
    """``cfg`` with ``search.objectives`` made explicit for the search it runs.

    Set in the config, they stay (a study made with others is refused later). Left to the
    default (null), a new study takes :attr:`Config.objectives` (the budget's costs), and an
    existing one keeps the objectives it was made with: a study made when the default was
    accuracy alone resumes single-objective instead of being refused.
    """
    if cfg.search.objectives is not None:
        return cfg
    objectives = cfg.objectives
    if study is not None:
        recorded = study.user_attrs.get("objectives")
        if isinstance(recorded, list) and len(recorded) == len(study.directions):
            objectives = list(recorded[1:])
        elif len(study.directions) == 1:
            objectives = []
    return dataclasses.replace(cfg, search=dataclasses.replace(cfg.search, objectives=objectives))


def study_at(
    storage: str | optuna.storages.BaseStorage, name: str, create: bool = False
) -> optuna.Study:
    """A study by storage (URL or object) and name, opened so this module's recovery and
    heartbeats can use its storage; ``create`` makes it (a maximised single objective)."""
    if isinstance(storage, str):
        storage = optuna.storages.RDBStorage(storage)
    if create:
        study = optuna.create_study(study_name=name, storage=storage)
    else:
        study = optuna.load_study(study_name=name, storage=storage)
    _STORAGES[study] = storage
    return study


def _load(cfg: Config) -> optuna.Study:
    storage = make_storage(cfg)
    study = optuna.load_study(study_name=study_name(cfg), storage=storage)
    _STORAGES[study] = storage
    return study


def load_study(cfg: Config) -> optuna.Study:
    """An existing study, for reading (pareto, export)."""
    try:
        return _load(cfg)
    except KeyError:
        raise AutocompressError(
            f"no study '{study_name(cfg)}' in {shown_storage(cfg)}: run `autocompress search` first"
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
    """Fail trials left RUNNING by a dead worker, and queue them again.

    A search killed with SIGKILL (or a power cut) leaves its trial RUNNING: on resume it is
    marked FAIL with ``interrupted`` set, so it does not count toward the trial budget, and
    its params are enqueued so the same candidate is evaluated again. A worker is dead if it
    ran on this machine and its process is gone, or, on a database storage, if its trial's
    heartbeat is older than the grace period (workers on other machines: Optuna's
    ``fail_stale_trials`` fails it and its stale-trial callback queues it again). A trial
    killed before it named its worker is dead if every worker registered in the study is a
    dead process of this machine (else after ``STALE_WITHOUT_WORKER_S``). Of several workers
    recovering at once, one fails and requeues each trial. Returns the failed trials' numbers.
    """
    host = socket.gethostname()
    now = datetime.datetime.now()
    running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    with warnings.catch_warnings():  # experimental in Optuna
        warnings.simplefilter("ignore")
        optuna.storages.fail_stale_trials(study)
    trials = study.get_trials(deepcopy=False)
    failed = [n for n in running if trials[n].state == TrialState.FAIL]
    storage = storage_of(study)
    workers = [k.partition(":")[2] for k in study.user_attrs if k.startswith("worker:")]
    all_dead = all(_dead(w, host) for w in workers if w != worker_id())
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker")
        if worker is not None:
            dead = _dead(str(worker), host)
        else:
            age = (now - (trial.datetime_start or now)).total_seconds()
            dead = all_dead or age > STALE_WITHOUT_WORKER_S
        if not dead:
            continue
        trial_id = trial_id_of(study, trial.number)
        try:
            storage.set_trial_user_attr(trial_id, "interrupted", True)
            storage.set_trial_user_attr(
                trial_id, "fail_reason", "interrupted: the process running it stopped"
            )
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker recovered it first
        if trial.params:  # killed after sampling: evaluate the same candidate again
            requeue(study, trial.params, trial.user_attrs, retry_of=trial.number)
        failed.append(trial.number)
    return sorted(failed)


def _retry_stale(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna's callback for a trial failed because its worker's heartbeat stopped."""
    if trial.params:
        requeue(study, trial.params, trial.user_attrs, retry_of=trial.number)


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage a study was opened on by this module (Optuna keeps it private)."""
    try:
        return _STORAGES[study]
    except KeyError:
        raise AutocompressError(
            "internal error: a study not opened through autocompress.search.study"
        ) from None


def trial_id_of(study: optuna.Study, number: int) -> int:
    """The storage's id of trial ``number``, through the storage's public lookups."""
    storage = storage_of(study)
    study_id = storage.get_study_id_from_name(study.study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)


def heartbeat_interval(study: optuna.Study) -> int | None:
    """Seconds between heartbeats of a running trial; None where the storage records none."""
    storage = storage_of(study)
    if isinstance(storage, optuna.storages.RDBStorage):
        return storage.get_heartbeat_interval()
    return None


# what a queued trial was queued as, kept when it is queued again
QUEUED_AS = ("baseline", "baseline_kind", "rl_episode", "fidelity", "promoted_from", "finalist_of")


def requeue(
    study: optuna.Study, params: dict[str, Any], attrs: dict[str, Any], retry_of: int
) -> None:
    """Queue a candidate again, keeping what it was queued as (a baseline, an RL episode)."""
    kept = {k: v for k, v in attrs.items() if k in QUEUED_AS}
    study.enqueue_trial(params, user_attrs={**kept, "retry_of": retry_of})


def fidelity_of(trial: FrozenTrial) -> str:
    """How the trial scores its candidate (search.objective.FIDELITIES); "short" if unset."""
    return str(trial.user_attrs.get("fidelity", "short"))


def counts_toward_budget(
    trial: FrozenTrial,
    retried: set[int] | frozenset[int] = frozenset(),
    fidelity: str = "short",
) -> bool:
    """Finished trials of ``fidelity`` count (failures included); interrupted ones are
    retried instead (so are those in ``retried``: failed by a stopped heartbeat and queued
    again), and surplus ones (asked by a worker as another filled the study) were never run.
    ``search.trials`` counts the short (fine-tuned) trials."""
    if fidelity_of(trial) != fidelity:
        return False
    if trial.state == TrialState.RUNNING:
        return True  # another live worker's trial
    if trial.state == TrialState.FAIL:
        return not (
            trial.user_attrs.get("interrupted")
            or trial.user_attrs.get("surplus")
            or trial.number in retried
        )
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED)


def counted(trials: list[FrozenTrial], fidelity: str = "short") -> list[FrozenTrial]:
    """The trials of ``fidelity`` that count toward ``search.trials`` (short ones) or toward
    a schedule's rung (see :func:`counts_toward_budget`)."""
    retried = {int(t.user_attrs["retry_of"]) for t in trials if "retry_of" in t.user_attrs}
    return [t for t in trials if counts_toward_budget(t, retried, fidelity)]


def trials_done(study: optuna.Study) -> int:
    return len(counted(study.get_trials(deepcopy=False)))


def is_surplus(study: optuna.Study, number: int, n_trials: int) -> bool:
    """Whether trial ``number`` would make the study exceed ``n_trials``.

    Workers sharing a study each check the count before asking, so two of them can ask for
    the last trial at once: the one with the lower number runs, the other is surplus.
    """
    numbers = sorted(t.number for t in counted(study.get_trials(deepcopy=False)))
    return number not in numbers[:n_trials]


def is_shared(cfg: Config) -> bool:
    """Whether the storage is made for several workers (anything but the run's SQLite file)."""
    return bool(configured_storage(cfg))


# ------------------------------------------------------------------ the trial-attribute codec
# What a finished trial carries as user attributes, written by :func:`result_attrs` (and the
# queueing helpers above: baseline, rl_episode, retry_of, worker; the recovery: interrupted,
# surplus, fail_reason) and read back by :func:`records` only.


def result_attrs(result: TrialResult, seconds: float, ask_s: float) -> dict[str, Any]:
    """The user attributes of a trial's result (policy, costs, feasibility, timings)."""
    attrs: dict[str, Any] = {
        "policy": result.policy,
        "costs": result.costs,
        "violations": result.violations,
        "feasible": result.feasible,
        "projected": result.projected,
        "val_accuracy": result.val_accuracy,
        "history": [list(h) for h in result.history],
        # Optuna's own ask and tell are timed by the benchmark around the whole loop.
        "timings": {**result.timings, "ask": ask_s},
        "seconds": seconds,
        "fidelity": result.fidelity,
    }
    if result.selection_accuracy is not None:
        attrs["selection_accuracy"] = result.selection_accuracy
    if result.reason:
        attrs["fail_reason"] = result.reason
    return attrs


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
    projected: bool = False  # moved into the budget by projection
    kind: str = "searched"  # the baseline's label, "retry", "rl episode N" or "searched"
    fidelity: str = "short"  # zero-cost, short (the trial fine-tune) or long (a finalist)
    selection_accuracy: float | None = None  # a finalist's score on the selection split
    promoted_from: int | None = None  # the trial a multi-fidelity search promoted it from

    @property
    def scored(self) -> bool:
        """Fine-tuned as a trial and within budget: a candidate for the front and for export
        (the front compares trials of one fidelity; finalists are chosen apart)."""
        return self.done and self.fidelity == "short"

    @property
    def finalist(self) -> bool:
        """A multi-fidelity search's finalist, fine-tuned longer and within budget."""
        return self.done and self.fidelity == "long"

    @property
    def done(self) -> bool:
        return self.state == "complete" and self.feasible and self.val_accuracy is not None


def records(study: optuna.Study) -> list[TrialRecord]:
    """Every trial of the study, decoded from its user attributes."""
    base = study.user_attrs.get("base_costs", {})
    trials = study.get_trials(deepcopy=False)
    retried = {int(t.user_attrs["retry_of"]) for t in trials if "retry_of" in t.user_attrs}
    return [record(t, base, t.number in retried) for t in trials]


def record(trial: FrozenTrial, base: dict[str, float], retried: bool = False) -> TrialRecord:
    """One trial's :class:`TrialRecord` (``base``: the study's base costs)."""
    a = trial.user_attrs
    costs = a.get("costs", {})
    kind = a.get("baseline") or ("retry" if "retry_of" in a else "searched")
    if "rl_episode" in a:
        kind = f"rl episode {a['rl_episode']}"
    reason = a.get("fail_reason")
    if reason is None and retried and trial.state == TrialState.FAIL:
        reason = "interrupted: its worker stopped recording heartbeats"
    return TrialRecord(
        number=trial.number,
        state=trial.state.name.lower(),
        val_accuracy=a.get("val_accuracy"),
        costs=costs,
        ratios={m: v / base[m] for m, v in costs.items() if base.get(m)},
        feasible=bool(a.get("feasible", False)),
        baseline=a.get("baseline"),
        policy=a.get("policy", {}),
        finetune_seconds=float(a.get("timings", {}).get("finetune", 0.0)),
        seconds=float(a.get("seconds", 0.0)),
        reason=reason,
        projected=bool(a.get("projected", False)),
        kind=kind,
        fidelity=fidelity_of(trial),
        selection_accuracy=a.get("selection_accuracy"),
        promoted_from=a.get("promoted_from", a.get("finalist_of")),
    )
