"""The search loop: ask → params → trial objective → tell, until the study holds N trials.

Re-running the same search resumes it: trials already finished count, trials left RUNNING
by a killed process are failed and queued again, and the loop continues to N. Ctrl-C fails
the running trial the same way and stops.
"""

from __future__ import annotations

import math
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from autocompress.search.objective import (
    Fidelity,
    TrialContext,
    TrialResult,
    evaluate_params,
    latency_setup,
)
from autocompress.search.rl import AgentConfig, RLController
from autocompress.search.samplers import distributions, make_pruner, make_sampler
from autocompress.search.schedule import QUEUED, next_step, uses_schedule
from autocompress.search.study import (
    QUEUED_AS,
    check_compatible,
    heartbeat_interval,
    is_shared,
    is_surplus,
    open_study,
    recover_interrupted,
    register_worker,
    requeue,
    result_attrs,
    storage_of,
    study_name,
    trial_id_of,
    trials_done,
    worker_id,
)
from autocompress.signals import Terminated, sigterm_as_interrupt
from autocompress.spaces import Knob, int8_baselines, method_baselines, uniform_baselines
from autocompress.spaces.budget import BITS


@contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna's per-trial INFO lines and two known warnings off, for the duration only.

    Constraints are recorded for every sampler (tables and plots read them); CMA-ES and random
    search ignore them by design, which Optuna would otherwise repeat after every trial.
    Heartbeats are recorded by the loop itself around each trial (see :func:`run_search`).
    """
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Constraints have been set, but")
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be")
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def make_controller(ctx: TrialContext, sampler_name: str) -> RLController | None:
    """The RL agent for ``sampler: rl`` (resumed from the run directory), else None."""
    if sampler_name != "rl":
        return None
    cfg = ctx.cfg
    path = cfg.run_dir / f"rl-agent-{study_name(cfg)}.pt"
    agent = replace(AgentConfig(), warmup=cfg.search.rl_warmup)
    return RLController(ctx.space, ctx.budget, path, cfg.search.seed, cfg.search.rl_reward, agent)


INIT_WAIT_S = 120  # how long a worker waits for the one that created the study to set it up


def prepare_study(ctx: TrialContext, sampler_name: str) -> tuple[optuna.Study, list[int]]:
    """Open (or resume) the study with a pinned sampler; enqueue uniform baselines once.

    Of several workers started together on a new study, the one that created it stores the
    base costs and enqueues the baselines; the others wait until it has.
    """
    cfg = ctx.cfg
    n_obj = 1 + len(cfg.objectives)
    study, created = open_study(cfg, pruner=make_pruner(cfg.search.pruner, n_obj))
    # A resumed search must not replay the proposals it already made: offset the seed; workers
    # sharing a study must not make the same proposals either: offset it by the worker too.
    seed = cfg.search.seed + len(study.get_trials(deepcopy=False))
    if is_shared(cfg):
        seed += zlib.crc32(worker_id().encode()) % 1_000_003
    study.sampler = make_sampler(sampler_name, seed, ctx.space, n_obj)
    recovered = recover_interrupted(study)
    register_worker(study)
    if not created:
        deadline = time.monotonic() + INIT_WAIT_S
        while "knobs" not in study.user_attrs and time.monotonic() < deadline:
            time.sleep(0.5)
    if "knobs" not in study.user_attrs:  # new, or its creator stopped before setting it up
        study.set_user_attr("base_costs", dict(ctx.base_costs))
        if ctx.needs_latency:
            study.set_user_attr("latency", latency_setup(cfg))
        # a multi-fidelity search screens them like any candidate (search/schedule.py)
        screened = {"fidelity": "zero-cost"} if uses_schedule(cfg) else {}
        space = ctx.space

        def enqueue(params: dict[str, Any], kind: str, moved: list[Knob]) -> None:
            """Queue a baseline labelled with its kind and the mean position of what it moved."""
            t = sum(k.position(params[k.name]) for k in moved) / max(len(moved), 1)
            label = {"baseline": f"{kind} {t:.3f}", "baseline_kind": kind}
            study.enqueue_trial(params, user_attrs={**label, **screened})

        knobs = list(space.knobs)
        for params in uniform_baselines(space, ctx.budget, cfg.search.uniform):
            enqueue(params, "uniform", knobs)
        if cfg.search.uniform:  # and each method alone: uniform pruning, uniform rank, …
            for kind, params in method_baselines(space, ctx.budget):
                enqueue(params, f"uniform {kind}", [k for k in knobs if k.knob == kind])
            # and the hand policies of integer deployment, structure moved to the budget (and,
            # where the search keeps a front, along it like the uniform ones)
            structure = [k for k in knobs if k.knob not in BITS]
            along = cfg.search.uniform if cfg.objectives else 1
            for kind, params in int8_baselines(space, ctx.budget, along):
                enqueue(params, f"uniform {kind}", structure)
        if cfg.search.sensitivity:
            allocation = sensitivity_allocation(ctx)
            if allocation is not None:
                label = {"baseline": SENSITIVITY_BASELINE, "baseline_kind": SENSITIVITY_BASELINE}
                study.enqueue_trial(allocation, user_attrs={**label, **screened})
        study.set_user_attr("knobs", [k.name for k in ctx.space.knobs])  # last: "set up"
    else:
        check_compatible(study, cfg, [k.name for k in ctx.space.knobs])
    return study, recovered


SENSITIVITY_BASELINE = "sensitivity (equal loss)"


def sensitivity_allocation(ctx: TrialContext) -> dict[str, Any] | None:
    """The equal-loss allocation of a zero-cost sensitivity analysis of the search's space
    (its table written to the run directory), or None without an analytic budget."""
    from autocompress.sensitivity_analysis import analyze, write

    found = analyze(ctx.base, ctx.profile, ctx.space, ctx.recipe, ctx.cfg.compress)
    write(found, ctx.cfg.run_dir)
    return found.allocation(ctx.space, ctx.budget)


def run_search(
    ctx: TrialContext,
    study: optuna.Study,
    n_trials: int,
    on_trial: Callable[[FrozenTrial], None] | None = None,
    controller: RLController | None = None,
) -> None:
    """Run trials until ``n_trials`` count in the study (see ``counts_toward_budget``).

    With a ``controller`` (the RL agent), each trial's params are its next episode, enqueued
    so the trial is an ordinary one in the study; queued trials (baselines, retries) go first.
    A multi-fidelity search (:mod:`autocompress.search.schedule`) runs its rungs instead,
    ``n_trials`` being ``search.trials``, the rung of fine-tuned trials.
    """
    # a `kill` fails and requeues the running trial, as Ctrl-C
    with sigterm_as_interrupt(), quiet_optuna():
        if controller is None and uses_schedule(ctx.cfg):
            cfg = replace(ctx.cfg, search=replace(ctx.cfg.search, trials=n_trials))
            _run_schedule(replace(ctx, cfg=cfg), study, on_trial)
        else:
            _run_trials(ctx, study, n_trials, on_trial, controller)


def _run_schedule(
    ctx: TrialContext, study: optuna.Study, on_trial: Callable[[FrozenTrial], None] | None
) -> None:
    dists = distributions(ctx.space)
    while (step := next_step(study, ctx.cfg)) is not None:
        started = time.perf_counter()
        trial = study.ask(dists)
        # a queued trial says its rung; a new one is proposed for the rung that is due
        fidelity = trial.user_attrs.get("fidelity", "short" if step == QUEUED else step)
        trial.set_user_attr("fidelity", fidelity)
        trial.set_user_attr("worker", worker_id())
        # no pruner: the screen already chose these candidates, and a trial stopped early
        # could not become a finalist
        frozen = _run_one(
            ctx, study, trial, fidelity, started, time.perf_counter() - started, prune=False
        )
        if on_trial is not None:
            on_trial(frozen)


def _run_one(
    ctx: TrialContext,
    study: optuna.Study,
    trial: optuna.Trial,
    fidelity: Fidelity,
    started: float,
    ask_s: float,
    prune: bool = True,
) -> FrozenTrial:
    """Evaluate an asked trial at ``fidelity`` and tell the study (its fine-tune reported to
    the pruner if ``prune``); an interruption fails it and queues it again before it
    propagates."""
    report = _reporter(trial) if prune else None
    try:
        with heartbeats(study, trial.number):
            result = evaluate_params(ctx, trial.params, report, fidelity)
    except KeyboardInterrupt as exc:
        how = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
        give_back(study, trial, "interrupted", f"interrupted: {how}", retry=True)
        raise
    return tell_result(ctx, study, trial, result, started, ask_s)


def _run_trials(
    ctx: TrialContext,
    study: optuna.Study,
    n_trials: int,
    on_trial: Callable[[FrozenTrial], None] | None,
    controller: RLController | None,
) -> None:
    dists = distributions(ctx.space)
    while trials_done(study) < n_trials:
        started = time.perf_counter()
        if controller is not None and not study.get_trials(
            deepcopy=False, states=(TrialState.WAITING,)
        ):
            episode, params = controller.propose()
            study.enqueue_trial(params, user_attrs={"rl_episode": episode})
        trial = study.ask(dists)
        trial.set_user_attr("worker", worker_id())
        ask_s = time.perf_counter() - started
        if is_surplus(study, trial.number, n_trials):  # another worker took the last trial
            give_back(study, trial, "surplus", f"surplus: the study reached {n_trials} trials")
            break
        frozen = _run_one(ctx, study, trial, "short", started, ask_s)
        if controller is not None and "rl_episode" in frozen.user_attrs:
            attrs = frozen.user_attrs
            feasible = attrs.get("feasible") and attrs.get("val_accuracy") is not None
            accuracy = float(attrs["val_accuracy"]) if feasible else 0.0
            macs = attrs.get("costs", {}).get("macs", ctx.base_costs["macs"])
            controller.observe(int(frozen.user_attrs["rl_episode"]), accuracy, macs)
        if on_trial is not None:
            on_trial(frozen)


@contextmanager
def heartbeats(study: optuna.Study, number: int) -> Iterator[None]:
    """Record the running trial's heartbeat every ``search.heartbeat`` seconds on a database
    storage (RDBStorage.record_heartbeat), so other workers can tell a dead trial from a slow
    one; nothing on storages without heartbeats."""
    interval = heartbeat_interval(study)
    if not interval:
        yield
        return
    storage = storage_of(study)
    assert isinstance(storage, optuna.storages.RDBStorage)
    trial_id = trial_id_of(study, number)
    stop = threading.Event()

    def beat() -> None:
        storage.record_heartbeat(trial_id)
        while not stop.wait(interval):
            storage.record_heartbeat(trial_id)

    thread = threading.Thread(target=beat, name=f"heartbeat-{number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def give_back(
    study: optuna.Study, trial: optuna.Trial, flag: str, reason: str, retry: bool = False
) -> None:
    """Fail a trial that will not be run to its end; queue its params again if they were
    queued (a baseline, a retry, an RL episode) or if ``retry``."""
    trial.set_user_attr(flag, True)
    trial.set_user_attr("fail_reason", reason)
    study.tell(trial, state=TrialState.FAIL)
    attrs = trial.user_attrs
    if retry or ({"retry_of", *QUEUED_AS} - {"fidelity"}) & attrs.keys():
        retry_of = trial.number if retry else attrs.get("retry_of", trial.number)
        requeue(study, trial.params, attrs, retry_of)


def _reporter(trial: optuna.Trial) -> Callable[[int, float], bool]:
    multi = len(trial.study.directions) > 1

    def report(step: int, val: float) -> bool:
        if multi:  # Optuna keeps intermediate values for single-objective studies only
            return True
        trial.report(val, step)
        return not trial.should_prune()

    return report


def tell_result(
    ctx: TrialContext,
    study: optuna.Study,
    trial: optuna.Trial,
    result: TrialResult,
    started: float,
    ask_s: float,
) -> FrozenTrial:
    """Record a trial's result (:func:`result_attrs`), its constraints, and tell the study."""
    attrs = result_attrs(result, time.perf_counter() - started, ask_s)
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    if result.state != "fail":
        for metric in ctx.budget.limits:  # <= 0 within budget; read by constrained samplers
            trial.set_constraint(metric, result.violations.get(metric, 0.0))
    if result.state == "fail":
        study.tell(trial, state=TrialState.FAIL)
    elif result.state == "pruned":
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, _values(ctx, result))
    return study.get_trials(deepcopy=False)[trial.number]


def _values(ctx: TrialContext, result: TrialResult) -> list[float]:
    accuracy = result.val_accuracy if result.val_accuracy is not None else math.nan
    # an over-budget candidate may be refused before its latency is measured: ratio 1 then
    costs = {**ctx.base_costs, **result.costs}
    ratios = [costs[m] / ctx.base_costs[m] for m in ctx.cfg.objectives]
    return [accuracy, *ratios]
