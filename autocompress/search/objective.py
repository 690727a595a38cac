"""The trial objective: params → policy → cost → budget → apply → short fine-tune → validate.

:func:`evaluate_params` knows nothing of Optuna: it takes plain params and a ``report``
callback (intermediate validation scores; returning False stops the fine-tune) and returns a
:class:`TrialResult`, so any controller or runner can call it.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from autocompress.compress.layers import folded
from autocompress.config import Config
from autocompress.cost.latency import measure_latency, torch_latency_ratio
from autocompress.cost.metrics import compute_costs
from autocompress.cost.profile import Profile
from autocompress.export import build, tune
from autocompress.fidelity import zero_cost
from autocompress.inputs import Inputs
from autocompress.policy import Policy
from autocompress.recipe import Length, Recipe
from autocompress.runs import finetune_length
from autocompress.spaces import Budget, SearchSpace, check_reachable, project, resolve_budget
from autocompress.spaces.budget import PREDICTED, Predictor

Report = Callable[[int, float], bool]  # (step, validation accuracy) -> continue?
# how a candidate is scored: without fine-tuning, after the trial's fine-tune, or after a
# longer one (a multi-fidelity search's finalists; see autocompress.search.schedule)
Fidelity = Literal["zero-cost", "short", "long"]
FIDELITIES: tuple[Fidelity, ...] = ("zero-cost", "short", "long")


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial needs besides its params; built once per search."""

    cfg: Config  # the search's settings (search, budget, space, compress, finetune)
    recipe: Recipe  # how candidates are fine-tuned and scored
    base: nn.Module  # the uncompressed model, also the distillation teacher
    profile: Profile
    space: SearchSpace
    budget: Budget
    base_costs: Mapping[str, float]  # analytic costs, plus latency_ms when it is used
    # what candidates are timed against, made once (:func:`latency_reference`): the base
    # model's deployed file (ONNX Runtime) or its folded float module (PyTorch); None when
    # latency is not measured
    reference: Any = None

    @property
    def needs_latency(self) -> bool:
        return needs_latency(self.cfg)


def needs_latency(cfg: Config) -> bool:
    """Latency is measured per trial only when it is budgeted or an objective."""
    return "latency_ms" in cfg.budget or "latency_ms" in cfg.objectives


@dataclass(frozen=True)
class TrialResult:
    state: Literal["complete", "pruned", "fail"]
    val_accuracy: float | None
    policy: dict[str, Any]
    costs: dict[str, float] = field(default_factory=dict)
    violations: dict[str, float] = field(default_factory=dict)
    feasible: bool = True
    projected: bool = False
    reason: str | None = None
    history: list[tuple[int, float]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase
    fidelity: Fidelity = "short"
    selection_accuracy: float | None = None  # a finalist's score on the selection split


def make_context(
    cfg: Config,
    recipe: Recipe,
    base: nn.Module,
    profile: Profile,
    space: SearchSpace,
    log: Callable[[str], None] = lambda _: None,
) -> TrialContext:
    base_policy = Policy(profile.model)
    base_cost = compute_costs(profile, base_policy, cfg.compress.round_to)
    base_costs: dict[str, float] = dict(base_cost.as_dict())
    reference = latency_reference(cfg, profile.inputs, base) if needs_latency(cfg) else None
    if reference is not None:
        base_costs["latency_ms"] = base_latency(cfg, profile.inputs, reference)
    predict = predictor(cfg, base, profile, log)
    if predict is not None:
        base_costs[PREDICTED] = predict(base_policy, base_cost)
    budget = resolve_budget(cfg.budget, base_costs, predict)
    if predict is not None:  # now that the table can price it: refuse an unreachable budget
        check_reachable(space, budget, base_costs)
    return TrialContext(cfg, recipe, base, profile, space, budget, base_costs, reference)


def needs_prediction(cfg: Config) -> bool:
    """The latency table is built when predicted latency is budgeted or an objective."""
    return PREDICTED in cfg.budget or PREDICTED in cfg.objectives


def latency_table_path(cfg: Config) -> Path:
    """Where latency tables are kept: one file under the runs' root, shared by every run on
    this machine (its entries are keyed by machine, runtime version, threads and batch)."""
    return Path(cfg.runs_root) / "latency-table.json"


def predictor(
    cfg: Config, base: nn.Module, profile: Profile, log: Callable[[str], None] = lambda _: None
) -> Predictor | None:
    """The latency table's prediction for this search's model, threads and batch, or None
    when the search does not use it. Built once (minutes: every layer timed, 30 calibration
    policies built and timed) and read back from :func:`latency_table_path` afterwards."""
    if not needs_prediction(cfg):
        return None
    from autocompress.export import latency_table

    path = latency_table_path(cfg)
    threads, batch = cfg.search.latency_threads, cfg.search.latency_batch
    log(f"latency table: {path} (ONNX Runtime, {threads} thread(s), batch {batch})")
    start = time.perf_counter()
    table = latency_table(base, profile, threads, batch, path, round_to=cfg.compress.round_to)
    if table.measured:
        log(
            f"latency table: {table.measured} layer measurements and its calibration in "
            f"{time.perf_counter() - start:.0f} s"
        )
    return table.predictor(profile, path)  # what it times on the way is kept too


def check_budget_reachable(cfg: Config, space: SearchSpace) -> None:
    """Refuse a budget no policy of ``space`` meets (before any training or trial)."""
    base = compute_costs(space.profile, Policy(space.profile.model), cfg.compress.round_to)
    costs = dict(base.as_dict())
    analytic = {m: lim for m, lim in cfg.budget.items() if m in costs}
    check_reachable(space, resolve_budget(analytic, costs), costs)


LATENCY_REPEATS, LATENCY_WARMUP = 30, 5
# the base model's latency: the lowest of this many rounds of LATENCY_REPEATS runs
BASE_LATENCY_ROUNDS = 3


def latency_setup(cfg: Config) -> dict[str, Any]:
    """How trial latency is measured, as stored in the study and printed by the search."""
    execution = (
        "ONNX Runtime, the deployed model.onnx (integer where the policy sets 8 bits or fewer)"
        if cfg.search.latency_runtime == "onnxruntime"
        else "CPU, float weights with every transform folded in"
    )
    return {
        "batch": cfg.search.latency_batch,
        "threads": cfg.search.latency_threads,
        "statistic": (
            f"the median of {LATENCY_REPEATS} runs (after {LATENCY_WARMUP} warm-up runs) as a "
            "fraction of the base model's median, their runs alternated, times the base "
            f"model's latency (the lowest of {BASE_LATENCY_ROUNDS} rounds)"
        ),
        "execution": execution,
        "runtime": cfg.search.latency_runtime,
    }


def latency_reference(cfg: Config, example: Inputs, base: torch.nn.Module) -> Any:
    """What candidates are timed against, made once per search: the base model's deployed
    float ``model.onnx`` in memory (ONNX Runtime), or its folded float module (PyTorch)."""
    if cfg.search.latency_runtime == "onnxruntime":
        from autocompress.export import deployed

        return deployed(base, Policy(""), example, cfg.search.latency_batch)
    return folded(base, float_inputs=True)


def base_latency(cfg: Config, example: Inputs, reference: Any) -> float:
    """The base model's milliseconds at the configured batch and threads, in the configured
    runtime (float; ``reference``: :func:`latency_reference`): the lowest of
    :data:`BASE_LATENCY_ROUNDS` medians, so a round caught in one of the machine's slow
    episodes does not set every candidate's scale."""
    search = cfg.search
    if search.latency_runtime == "onnxruntime":
        from autocompress.export import deployed_latencies

        return deployed_latencies(
            [reference],
            example,
            search.latency_threads,
            search.latency_batch,
            BASE_LATENCY_ROUNDS,
        )[0]
    return min(
        measure_latency(
            reference,
            example,
            batch=search.latency_batch,
            repeats=LATENCY_REPEATS,
            warmup=LATENCY_WARMUP,
            threads=search.latency_threads,
        )
        for _ in range(BASE_LATENCY_ROUNDS)
    )


def model_latency(ctx: TrialContext, model: torch.nn.Module, policy: Policy | None = None) -> float:
    """A candidate's milliseconds at the configured batch and threads, in the configured
    runtime (PyTorch's float execution, or ONNX Runtime on its deployed, integer ``model.onnx``):
    its latency as a fraction of the base model's (``ctx.reference``), their runs alternated so
    that the machine's slow-downs cancel, times the base latency the search measured at its
    start."""
    search = ctx.cfg.search
    example = ctx.profile.inputs
    reference = ctx.reference
    if reference is None:
        reference = latency_reference(ctx.cfg, example, ctx.base)
    if search.latency_runtime == "onnxruntime":
        from autocompress.export import deployed_latency_ratio

        ratio = deployed_latency_ratio(
            model,
            policy or Policy(ctx.profile.model),
            reference,
            example,
            search.latency_threads,
            search.latency_batch,
            LATENCY_REPEATS,
            LATENCY_WARMUP,
        )
    else:
        ratio = torch_latency_ratio(
            folded(model, float_inputs=True),
            reference,
            example,
            batch=search.latency_batch,
            repeats=LATENCY_REPEATS,
            warmup=LATENCY_WARMUP,
            threads=search.latency_threads,
        )
    return ratio * ctx.base_costs["latency_ms"]


def evaluate_params(
    ctx: TrialContext,
    params: Mapping[str, Any],
    report: Report | None = None,
    fidelity: Fidelity = "short",
) -> TrialResult:
    """Score one candidate at ``fidelity``: ``zero-cost`` (no fine-tune: adaptive BatchNorm
    and output correction, scored on a validation subset), ``short`` (the trial fine-tune) or
    ``long`` (``search.finalist_length`` times longer, or as long as the export's; also
    scored on the selection split).
    Exceptions and non-finite losses become failed results."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    policy = Policy(ctx.profile.model)
    try:
        policy = ctx.space.policy(params)
        return replace(_evaluate(ctx, params, report, timings, clock, fidelity), fidelity=fidelity)
    except Exception as exc:  # a failing candidate is recorded, never the end of the search
        reason = f"{type(exc).__name__}: {exc}".strip()
        last = traceback.extract_tb(exc.__traceback__)[-1:]
        where = f" ({last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})" if last else ""
        return TrialResult(
            "fail",
            None,
            policy.to_dict(),
            reason=reason + where,
            timings=timings,
            fidelity=fidelity,
        )


def _evaluate(
    ctx: TrialContext,
    params: Mapping[str, Any],
    report: Report | None,
    timings: dict[str, float],
    clock: float,
    fidelity: Fidelity,
) -> TrialResult:
    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = timings.get(name, 0.0) + now - clock
        clock = now

    cfg = ctx.cfg
    policy, costs, projected = price(ctx, params)
    lap("cost")
    if not ctx.budget.holds(costs):  # analytic budget broken: no fine-tune spent on it
        return _infeasible(ctx, policy, costs, projected, timings)
    model = build(ctx.base, ctx.profile, policy, ctx.recipe, cfg.compress)
    lap("apply")
    if ctx.needs_latency:
        costs["latency_ms"] = model_latency(ctx, model, policy)
        lap("latency")
        if not ctx.budget.holds(costs):
            return _infeasible(ctx, policy, costs, projected, timings)
    if fidelity == "zero-cost":
        score = zero_cost(model, ctx.base, ctx.recipe).score
        lap("zero-cost")
        if not math.isfinite(score):
            raise FloatingPointError(f"zero-cost validation accuracy is {score}")
        return TrialResult(
            "complete",
            score,
            policy.to_dict(),
            costs,
            ctx.budget.violations(costs),
            True,
            projected,
            timings=timings,
        )
    length = finetune_length(cfg)
    if fidelity == "long":  # a finalist: longer, and never stopped early
        length = finalist_length(ctx.recipe, cfg)
        report = None
    callback = None if report is None else (lambda step, steps, val: report(step, val))
    tuned, result, _ = tune(
        model,
        ctx.base,
        ctx.profile,
        policy,
        ctx.recipe,
        length,
        cfg.finetune_seed,
        cfg.compress,
        callback,
    )
    lap("finetune")
    if not math.isfinite(result.val_accuracy):
        raise FloatingPointError(f"validation accuracy is {result.val_accuracy}")
    selection = None
    if fidelity == "long":
        selection = ctx.recipe.select(tuned)
        lap("select")
    return TrialResult(
        "pruned" if result.stopped_early else "complete",
        result.val_accuracy,
        policy.to_dict(),
        costs,
        ctx.budget.violations(costs),
        True,
        projected,
        history=result.history,
        timings=timings,
        selection_accuracy=selection,
    )


def finalist_length(recipe: Recipe, cfg: Config) -> Length:
    """A finalist's fine-tune: ``search.finalist_length`` times a trial's, or the export's
    (``finetune.export_epochs``) with ``finalist_length: export``."""
    if cfg.search.finalist_length == "export":
        return finetune_length(cfg, cfg.finetune.export_epochs)
    return scaled(recipe, finetune_length(cfg), cfg.search.finalist_length)


def scaled(recipe: Recipe, length: Length, factor: float) -> Length:
    """``length`` ``factor`` times longer, in whole steps (no fine-tune stays none)."""
    steps = recipe.steps(length)
    return Length(steps=round(steps * factor)) if steps else length


def price(ctx: TrialContext, params: Mapping[str, Any]) -> tuple[Policy, dict[str, float], bool]:
    """The policy a trial runs, its analytic costs, and whether projection moved it."""
    policy = ctx.space.policy(params)
    costs = _costs(ctx, policy)
    if ctx.cfg.search.project and not ctx.budget.holds(costs):
        moved = project(ctx.space, ctx.budget, params)
        if moved is not None:
            policy = ctx.space.policy(moved)
            return policy, _costs(ctx, policy), True
    return policy, costs, False


def load_context(cfg: Config, base_costs: Mapping[str, float]) -> TrialContext:
    """The context of a search, rebuilt from its config in another process (a Ray worker):
    data, the cached base model, its profile and space; base costs as the search measured."""
    from autocompress.runs import prepare, splits_recipe
    from autocompress.spaces import build_space

    run = prepare(cfg)
    space = build_space(cfg.space, run.profile, cfg.compress.round_to)
    # the table was built and cached by the search before its workers started
    budget = resolve_budget(cfg.budget, base_costs, predictor(cfg, run.base.model, run.profile))
    recipe = splits_recipe(cfg, run.splits)
    model, example = run.base.model, run.profile.inputs
    reference = latency_reference(cfg, example, model) if needs_latency(cfg) else None
    return TrialContext(cfg, recipe, model, run.profile, space, budget, dict(base_costs), reference)


def _costs(ctx: TrialContext, policy: Policy) -> dict[str, float]:
    return ctx.budget.price(ctx.space, policy)


def _infeasible(
    ctx: TrialContext,
    policy: Policy,
    costs: dict[str, float],
    projected: bool,
    timings: dict[str, float],
) -> TrialResult:
    violations = ctx.budget.violations(costs)
    over = ", ".join(
        f"{m} {costs[m] / ctx.base_costs[m]:.1%} of base > {ctx.budget.described[m]}"
        for m, v in violations.items()
        if v > 0
    )
    return TrialResult(
        "complete",
        0.0,  # never fine-tuned: scored as useless, and flagged infeasible for the samplers
        policy.to_dict(),
        costs,
        violations,
        feasible=False,
        projected=projected,
        reason=f"over budget: {over}",
        timings=timings,
    )
