"""The Ray backend: the same trials run by Ray Tune, recorded in the same Optuna study.

``run_ray_search`` starts (or joins) a Ray runtime and runs a ``Tuner`` whose search algorithm
is :class:`StudySearcher`, Ray's ``OptunaSearch`` on the search's own study, space and pinned
sampler: every Tune trial is a trial of the study, with the attributes the embedded loop
writes, so ``pareto`` and ``export`` read it unchanged. Each Tune trial runs
:func:`ray_trial` — :func:`~autocompress.search.objective.evaluate_params` in a Ray worker,
which rebuilds the search context once per worker process — with ``cpus_per_trial`` threads,
and reports the fine-tune's intermediate scores, so ASHA can stop poor candidates early.

Resuming: the study, not Ray's experiment state, is what counts. A stopped run leaves its
unfinished trials failed as interrupted (or RUNNING, if the driver was killed: the next run
fails them) with their params queued again; re-running the command runs what is missing.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from autocompress.config import Config
from autocompress.errors import ConfigError
from autocompress.search.loop import give_back, tell_result
from autocompress.search.objective import (
    TrialContext,
    TrialResult,
    evaluate_params,
    load_context,
    price,
)
from autocompress.search.samplers import distributions
from autocompress.search.study import study_name, trials_done, worker_id
from autocompress.signals import Terminated, sigterm_as_interrupt

METRIC = "val_accuracy"
_CONTEXTS: dict[int, TrialContext] = {}  # per Ray worker process: built once, reused


@dataclasses.dataclass(frozen=True)
class RaySetup:
    """How the Ray run was set up and how long its runtime took to start."""

    address: str  # "local" or the cluster's address
    workers: int
    cpus_per_trial: int
    gpus_per_trial: float
    scheduler: str
    startup_s: float


def cpus_per_trial(cfg: Config) -> int:
    """``search.cpus_per_trial``, or this machine's cores shared by the workers."""
    if cfg.search.cpus_per_trial:
        return cfg.search.cpus_per_trial
    return max(1, (os.cpu_count() or 1) // cfg.search.workers)


def ray_trial(config: dict[str, Any], cfg: Config, base_costs: dict[str, float], cwd: str) -> None:
    """One trial in a Ray worker: intermediate scores as results, then the full result."""
    import torch
    from ray import tune

    if os.path.isdir(cwd):  # relative data and run paths mean what they mean to the driver
        os.chdir(cwd)
    torch.set_num_threads(cpus_per_trial(cfg))
    key = hash((repr(cfg), tuple(sorted(base_costs.items()))))
    if key not in _CONTEXTS:
        _CONTEXTS.clear()
        _CONTEXTS[key] = load_context(cfg, base_costs)

    def report(step: int, val: float) -> bool:
        tune.report({METRIC: val, "step": step})
        return True  # ASHA stops a trial by ending it, not by an answer here

    result = evaluate_params(_CONTEXTS[key], config["params"], report)
    score = result.val_accuracy if result.val_accuracy is not None else 0.0
    # one JSON string: Tune flattens nested dicts of results into "a/b" keys
    tune.report(
        {
            METRIC: score,
            "trial_result": json.dumps(dataclasses.asdict(result)),
            "ray_worker": worker_id(),  # the Ray worker process that ran it
        }
    )


def make_searcher(
    ctx: TrialContext,
    study: optuna.Study,
    on_trial: Callable[[FrozenTrial], None] | None,
) -> Any:
    """A Tune ``Searcher`` that asks and tells the study itself (its sampler, pruner, queue of
    baselines and retries), so every Ray trial is an ordinary trial of the study."""
    from ray.tune.search import Searcher

    dists = distributions(ctx.space)

    class StudySearcher(Searcher):
        def __init__(self) -> None:
            super().__init__(metric=METRIC, mode="max")
            self.trials: dict[str, optuna.Trial] = {}
            self.completed: set[str] = set()
            self._started: dict[str, float] = {}
            self._history: dict[str, list[tuple[int, float]]] = {}

        def suggest(self, trial_id: str) -> dict[str, Any] | None:
            started = time.perf_counter()
            trial = study.ask(dists)
            trial.set_user_attr("worker", worker_id())  # the driver owns the study's trial
            self.trials[trial_id] = trial
            self._started[trial_id] = started
            self._history[trial_id] = []
            return {"params": dict(trial.params)}

        def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
            if "trial_result" in result or trial_id in self.completed:
                return
            step, val = int(result["step"]), float(result[METRIC])
            self._history[trial_id].append((step, val))
            if len(study.directions) == 1:
                self.trials[trial_id].report(val, step)

        def on_trial_complete(
            self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
        ) -> None:
            if trial_id in self.completed or trial_id not in self.trials:
                return
            trial = self.trials[trial_id]
            outcome = _outcome(ctx, trial.params, result, error, self._history[trial_id])
            started = self._started.pop(trial_id)
            if result and "ray_worker" in result:
                trial.set_user_attr("ray_worker", result["ray_worker"])
            frozen = tell_result(ctx, study, trial, outcome, started, 0.0)
            self.completed.add(trial_id)
            if on_trial is not None:
                on_trial(frozen)

        def unfinished(self) -> list[optuna.Trial]:
            return [t for i, t in self.trials.items() if i not in self.completed]

        def __reduce__(self) -> tuple[Any, tuple[()]]:
            # Tune pickles its search algorithm with the experiment state; ours holds the
            # study and the context, and is never restored from there (see save)
            return type(None), ()

        def save(self, checkpoint_path: str) -> None:
            pass  # the study is the state: a resumed search reads it, not a pickle of this

        def restore(self, checkpoint_path: str) -> None:
            pass

    return StudySearcher()


def _outcome(
    ctx: TrialContext,
    params: Mapping[str, Any],
    result: dict[str, Any] | None,
    error: bool,
    history: list[tuple[int, float]],
) -> TrialResult:
    """The trial's result: as reported, or pruned by the scheduler, or failed in Ray."""
    if result and "trial_result" in result:
        fields = json.loads(result["trial_result"])
        fields["history"] = [tuple(h) for h in fields.get("history", [])]
        return TrialResult(**fields)
    policy, costs, projected = price(ctx, params)
    if error or not history:
        reason = "the Ray trial failed (its worker raised or died): see the run's ray/ logs"
        return TrialResult("fail", None, policy.to_dict(), costs, reason=reason)
    return TrialResult(  # stopped by ASHA after its last intermediate score
        "pruned",
        history[-1][1],
        policy.to_dict(),
        costs,
        ctx.budget.violations(costs),
        True,
        projected,
        history=history,
    )


def check_backend(cfg: Config) -> None:
    """Settings that only make sense together, checked before any work starts."""
    if cfg.search.backend == "ray" and cfg.search.sampler == "rl":
        raise ConfigError(
            "search.sampler",
            "rl",
            "tpe, nsga2, gp, cmaes or random with search.backend ray "
            "(the RL agent learns from one episode at a time: use search.backend local)",
        )
    if cfg.search.backend == "local" and cfg.search.workers > 1:
        raise ConfigError(
            "search.workers",
            cfg.search.workers,
            "1 with search.backend local (one process, one trial at a time); use "
            "--backend ray --workers N, or start N `autocompress search` processes with "
            "--storage journal (or a PostgreSQL URL) on one study",
        )


# Ray binds a local runtime's servers (GCS, raylet, workers) to the node's address, which it
# takes from the default route: every interface of the machine. With this variable (read when
# Ray is imported) the node's address is the loopback one, and nothing listens beyond it.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _local_ray_on_loopback() -> None:
    """Make the local runtime about to start listen on 127.0.0.1 only, or refuse to start it."""
    if "ray" not in sys.modules:
        os.environ.setdefault(LOOPBACK_ENV, "0")
    import ray.util

    node_ip = ray.util.get_node_ip_address()
    if not ipaddress.ip_address(node_ip).is_loopback:
        raise ConfigError(
            "search.ray_address",
            None,
            f"a local Ray runtime would listen on {node_ip}, reachable from other machines "
            f"(Ray was imported before autocompress could keep it on loopback): set "
            f"{LOOPBACK_ENV}=0 before importing ray, or start a cluster with `ray start` "
            "(token auth) and pass its address",
        )


def init_ray(cfg: Config) -> RaySetup:
    """Start a local Ray runtime sized for the workers, or connect to ``search.ray_address``.

    A local runtime listens on the loopback interface only (and Ray's token authentication is
    on by default); an existing cluster is the cluster's own business (see the README).
    """
    running = "ray" in sys.modules and sys.modules["ray"].is_initialized()  # the caller's own
    if not cfg.search.ray_address and not running:
        _local_ray_on_loopback()
    import ray

    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    cpus, gpus = cpus_per_trial(cfg), cfg.search.gpus_per_trial
    started = time.perf_counter()
    address = cfg.search.ray_address
    if ray.is_initialized():
        pass
    elif address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    else:
        ray.init(
            num_cpus=cfg.search.workers * cpus,
            num_gpus=math.ceil(cfg.search.workers * gpus) if gpus else None,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    startup = time.perf_counter() - started
    return RaySetup(
        address or "local", cfg.search.workers, cpus, gpus, cfg.search.scheduler, startup
    )


def run_ray_search(
    ctx: TrialContext,
    study: optuna.Study,
    n_trials: int,
    on_trial: Callable[[FrozenTrial], None] | None = None,
) -> bool:
    """Run the study's missing trials on Ray; False if the run was stopped before the end."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    cfg = ctx.cfg
    check_backend(cfg)
    missing = n_trials - trials_done(study)
    if missing <= 0:
        return True
    searcher = make_searcher(ctx, study, on_trial)
    scheduler: Any = FIFOScheduler()
    if cfg.search.scheduler == "asha":
        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            metric=METRIC,
            mode="max",
            max_t=10_000,  # more reports than any fine-tune makes: trials end on their own
            grace_period=2,
            reduction_factor=3,
        )
    resources = {"cpu": cpus_per_trial(cfg), "gpu": cfg.search.gpus_per_trial}
    trainable = tune.with_resources(
        tune.with_parameters(ray_trial, cfg=cfg, base_costs=dict(ctx.base_costs), cwd=os.getcwd()),
        resources,
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=missing,
            max_concurrent_trials=cfg.search.workers,
            reuse_actors=True,  # a worker keeps its context (data, base model) across trials
            trial_dirname_creator=lambda trial: f"trial-{trial.trial_id}",
        ),
        run_config=tune.RunConfig(
            name=study_name(cfg),
            storage_path=str((cfg.run_dir / "ray").resolve()),
            verbose=0,
        ),
    )
    # SIGTERM calls Tune's own SIGINT handler: the run ends as after Ctrl-C
    with warnings.catch_warnings(), sigterm_as_interrupt() as received:
        warnings.simplefilter("ignore")
        tuner.fit()
    stopped = searcher.unfinished()
    how = "SIGTERM" if received.sigterm else "Ctrl-C"
    for trial in stopped:  # Ctrl-C: Tune ended them before they reported their result
        state = study.get_trials(deepcopy=False)[trial.number].state
        if state == TrialState.RUNNING:
            reason = f"interrupted: the Ray run stopped ({how})"
            give_back(study, trial, "interrupted", reason, retry=True)
    # a signal between two trials leaves none in flight: Tune ends all the same, short of them
    short = trials_done(study) < n_trials
    if (stopped or short) and received.sigterm:
        raise Terminated("terminated (SIGTERM)")
    return not stopped and not short
