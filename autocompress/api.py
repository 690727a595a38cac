"""The public API: profile, price, compress, search, save and load any ``nn.Module``.

Everything the command line does goes through these functions; a notebook needs nothing else::

    import autocompress as ac

    prof = ac.profile(model, example_inputs)               # one traced call, any input pytree
    costs = ac.price(prof, ac.Policy(prof.model, {"fc1": ac.LayerChoice(prune=0.5)}))
    small = ac.compress(model, policy, example_inputs)     # no fine-tune
    found = ac.search(model, example_inputs, budget={"macs": "30%"},
                      evaluate=my_eval, finetune=my_loop, trials=20)
    found.pareto(); found.plot("pareto.png")
    found.export(found.best(), "out/")                     # model.pt, model.onnx, report.json
    again = ac.load("out/model.pt", model=MyNet())         # in another process
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import optuna
from torch import nn

from autocompress.checkpoint import save_checkpoint
from autocompress.compress import KNOB_METHODS, apply_policy
from autocompress.compress.quantize import calibrate
from autocompress.config import CompressConfig, Config, parse_settings
from autocompress.cost.check import check_policy
from autocompress.cost.metrics import Costs, compute_costs
from autocompress.cost.profile import Example, Profile, as_inputs, profile_model
from autocompress.errors import AutocompressError
from autocompress.export import Target, build, compress_and_export
from autocompress.files import check_output_dir
from autocompress.policy import Policy
from autocompress.recipe import Batches, Evaluate, Finetune, Length, UserRecipe
from autocompress.search.objective import TrialContext
from autocompress.search.study import TrialRecord
from autocompress.sensitivity_analysis import Sensitivity

__all__ = ["Search", "compress", "price", "profile", "save", "search", "sensitivity"]


def profile(model: nn.Module, example_inputs: Example, *, name: str | None = None) -> Profile:
    """Profile ``model`` on ``example_inputs`` (one call): its compressible layers, channel
    groups, shapes and costs — what every policy is priced from.

    ``example_inputs``: a tensor (float images, integer token ids), a tuple of positional
    inputs, or a dict of keyword inputs. Costs are per call on them: give a batch of one for
    per-sample figures. ``name`` (default: the model's class name) is what policies name.

    >>> import torch, autocompress as ac
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32),
    ...                           torch.nn.ReLU(), torch.nn.Linear(32, 10))
    >>> prof = ac.profile(net, torch.zeros(1, 8, 8))
    >>> list(prof.layers), ac.price(prof).macs
    (['1', '3'], 2368)
    """
    return profile_model(model, example_inputs, name or type(model).__name__)


def price(
    prof: Profile, policy: Policy | Mapping[str, Any] | None = None, *, round_to: int = 1
) -> Costs:
    """The costs of ``policy`` on the profiled model (default: the model as it is), computed
    without building it: MACs, params, BitOPs and bytes in total and per layer (``.layers``).

    >>> import torch, autocompress as ac
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32),
    ...                           torch.nn.ReLU(), torch.nn.Linear(32, 10))
    >>> prof = ac.profile(net, torch.zeros(1, 8, 8))
    >>> ac.price(prof, {"layers": {"1": {"prune": 0.5, "w_bits": 8}}}).macs
    1184
    """
    policy = _policy(prof, policy)
    check_policy(policy, prof, KNOB_METHODS, round_to)
    return compute_costs(prof, policy, round_to)


def compress(
    model: nn.Module,
    policy: Policy | Mapping[str, Any],
    example_inputs: Example,
    *,
    calibration: Iterable[Any] = (),
    round_to: int = 1,
) -> nn.Module:
    """A compressed copy of ``model`` (``model`` is left as it is), not fine-tuned.

    Channels really go (Torch-Pruning), factorized layers are two layers, sparsity, sharing
    and bits are weight transforms that fine-tuning respects. Activation quantizers take
    their ranges from ``calibration`` batches of inputs (default: ``example_inputs``).

    >>> import torch, autocompress as ac
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32),
    ...                           torch.nn.ReLU(), torch.nn.Linear(32, 10))
    >>> small = ac.compress(net, {"layers": {"1": {"prune": 0.5}}}, torch.zeros(1, 8, 8))
    >>> small[1].out_features, small[3].in_features
    (16, 16)
    """
    name = policy.model if isinstance(policy, Policy) else policy.get("model")
    prof = profile(model, example_inputs, name=name)
    policy = _policy(prof, policy)
    compressed = apply_policy(model, policy, prof, CompressConfig(round_to=round_to))
    batches = list(calibration) or [as_inputs(example_inputs)]
    calibrate(compressed, batches)
    return compressed.eval()


def save(
    model: nn.Module,
    path: str | Path,
    *,
    policy: Policy | Mapping[str, Any],
    example_inputs: Example,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> None:
    """Save a model made by :func:`compress` (or fine-tuned since) with its policy, written
    atomically. Reload it with ``load(path, model=<a fresh uncompressed instance>)``: the
    policy is applied to that instance and the weights loaded. No code is stored in the file.
    ``mean``/``std``: a normalisation that ``load`` puts in front of the model.
    """
    inputs = as_inputs(example_inputs)
    policy = policy if isinstance(policy, Policy) else Policy.from_dict(_with_model(policy, model))
    save_checkpoint(
        path,
        model,
        _spec(model),
        policy.to_dict(),
        asdict(CompressConfig()),
        inputs.sample_shape or None,
        {"mean": list(mean) if mean else None, "std": list(std) if std else None},
        example=inputs,
    )


def search(
    model: nn.Module,
    example_inputs: Example,
    *,
    budget: Mapping[str, float | str],
    evaluate: Evaluate | None = None,
    finetune: Finetune | None = None,
    train_data: Batches | None = None,
    val_data: Batches | None = None,
    test_data: Batches | None = None,
    select_data: Batches | None = None,
    trials: int = 20,
    sampler: str = "tpe",
    objectives: Sequence[str] | None = None,
    space: Mapping[str, Any] | None = None,
    steps: int = 100,
    lr: float = 0.01,
    storage: str | None = None,
    name: str | None = None,
    runs_root: str | Path = "runs",
    seed: int = 0,
    device: str = "cpu",
    settings: Mapping[str, Any] | None = None,
    callbacks: Sequence[Callable[[TrialRecord], None]] = (),
) -> Search:
    """Search per-layer policies of ``model`` under ``budget``; returns a :class:`Search`.

    ``budget``: metric → limit, as in YAML: ``{"macs": "30%"}`` (of the model as it is) or an
    absolute number. ``evaluate(model) -> float`` scores a candidate (higher is better;
    default: top-1 accuracy on ``val_data``). ``finetune(model, steps, teacher)`` is your
    training loop, run for ``steps`` steps on each candidate with the uncompressed model as
    ``teacher`` (default: the built-in distilled fine-tune over ``train_data`` batches of
    ``(inputs, targets)``; with neither, candidates are scored without fine-tuning).
    The search is multi-fidelity (``search.fidelity``, see :mod:`autocompress.search.schedule`):
    ``8 × trials`` candidates are scored without fine-tuning (BatchNorm statistics and output
    statistics repaired on ``train_data`` batches), the best ``trials`` get the fine-tune, and
    the best 3 of those a longer one, compared on the mean of their validation and
    ``select_data`` scores (batches apart from ``val_data``; without it, on validation;
    ``settings={"search": {"finalist_score": "selection"}}``: on ``select_data`` alone).
    Without ``train_data`` every trial is fine-tuned (``settings={"search": {"fidelity":
    "short"}}`` asks for that anyway).
    ``objectives``: the costs minimised next to accuracy; by default the budget's metrics
    (a Pareto front below the budget; a study made otherwise keeps its own), ``()`` for
    accuracy alone within the budget.
    ``space``: the YAML ``space`` section (rules, skip_first, skip_last); ``settings``: any
    other YAML sections (``search``, ``compress``, ``finetune``) as a dict. Trials live in an
    Optuna study (SQLite ``runs_root/name/study.db`` unless ``storage``); calling ``search``
    again with the same name resumes it up to ``trials`` in all. ``callbacks`` get each
    finished trial's record (progress comes through them: the search prints nothing).

    Example (see ``examples/own_model.py`` for the whole story)::

        found = autocompress.search(net, torch.zeros(1, 1, 28, 28), budget={"macs": "30%"},
                                    train_data=train_loader, val_data=val_loader, trials=30)
        found.export(found.best(), "exports/net")
    """
    from autocompress.search.loop import make_controller, prepare_study, quiet_optuna, run_search
    from autocompress.search.objective import check_budget_reachable, make_context
    from autocompress.search.study import existing_study, with_objectives
    from autocompress.spaces import build_space

    name = name or type(model).__name__.lower()
    raw: dict[str, Any] = {
        **{k: copy.deepcopy(v) for k, v in (settings or {}).items()},
        "name": name,
        "runs_root": str(runs_root),
        "budget": dict(budget),
    }
    raw["search"] = {
        **raw.get("search", {}),
        "trials": trials,
        "sampler": sampler,
        **({"objectives": list(objectives)} if objectives is not None else {}),
        "seed": seed,
        **({"storage": storage} if storage else {}),
    }
    raw["finetune"] = {"steps": steps, "lr": lr, **raw.get("finetune", {})}
    if space is not None:
        raw["space"] = dict(space)
    cfg = parse_settings(raw)
    cfg = with_objectives(cfg, existing_study(cfg))
    if cfg.search.backend != "local":
        raise AutocompressError(
            "search.backend: the API runs trials in this process (your callables are not "
            "sent to workers); use the CLI with a model.factory for Ray"
        )
    if cfg.search.fidelity == "multi" and train_data is None:
        # zero-cost scores re-estimate statistics on training batches: without any, no screen
        cfg = dataclasses.replace(cfg, search=dataclasses.replace(cfg.search, fidelity="short"))
    inputs = as_inputs(example_inputs)
    prof = profile(model, inputs, name=type(model).__name__)
    recipe = UserRecipe(
        evaluate,
        finetune,
        train_data,
        val_data,
        test_data,
        inputs,
        cfg.finetune.lr,
        cfg.finetune.distill_weight,
        cfg.finetune.temperature,
        device,
        select_data,
        cfg.finetune.grad_clip,
    )
    searched = build_space(cfg.space, prof, cfg.compress.round_to)
    check_budget_reachable(cfg, searched)
    base = copy.deepcopy(model).eval()
    ctx = make_context(cfg, recipe, base, prof, searched)
    with quiet_optuna():
        study, _ = prepare_study(ctx, cfg.search.sampler)
    if cfg.search.fidelity == "short" and trials <= cfg.search.uniform:
        warnings.warn(
            f"trials={trials} is not more than the {cfg.search.uniform} uniform baselines "
            "queued first: no sampler trial will run; raise trials",
            stacklevel=2,
        )
    handle = Search(ctx, study)

    def on_trial(trial: optuna.trial.FrozenTrial) -> None:
        record = handle.trial(trial.number)
        for callback in callbacks:
            callback(record)

    with quiet_optuna():
        run_search(ctx, study, trials, on_trial, make_controller(ctx, cfg.search.sampler))
    return handle


def sensitivity(
    model: nn.Module,
    example_inputs: Example,
    *,
    evaluate: Evaluate | None = None,
    train_data: Batches | None = None,
    val_data: Batches | None = None,
    budget: Mapping[str, float | str] | None = None,
    space: Mapping[str, Any] | None = None,
    points: int = 4,
    val_subset: int | None = 1000,
    device: str = "cpu",
    settings: Mapping[str, Any] | None = None,
) -> tuple[Sensitivity, Policy | None]:
    """How much each knob of ``model``'s search space costs alone, without fine-tuning.

    Every knob (a layer's prune ratio, rank, bits …; ``space`` as in YAML) is applied alone at
    ``points`` settings and scored with the zero-cost fidelity: BatchNorm statistics and
    output statistics re-estimated on a few batches of ``train_data`` (or ``example_inputs``),
    then ``evaluate(model)`` or top-1 accuracy on the first ``val_subset`` samples of
    ``val_data``. Returns the :class:`~autocompress.sensitivity_analysis.Sensitivity`
    (``to_dict()``, ``curves()``; ``autocompress.sensitivity_analysis.write`` plots it) and,
    under a ``budget``, the equal-loss allocation as a policy to ``compress`` or to start a
    search from.

    Example::

        found, policy = autocompress.sensitivity(net, torch.zeros(1, 1, 28, 28),
                                                 train_data=train_loader, val_data=val_loader,
                                                 budget={"macs": "30%"})
    """
    from autocompress.sensitivity_analysis import analyze
    from autocompress.spaces import build_space
    from autocompress.spaces.budget import resolve_budget

    raw: dict[str, Any] = {k: copy.deepcopy(v) for k, v in (settings or {}).items()}
    raw["name"] = type(model).__name__.lower()
    if budget is not None:
        raw["budget"] = dict(budget)
    if space is not None:
        raw["space"] = dict(space)
    cfg = parse_settings(raw)
    inputs = as_inputs(example_inputs)
    prof = profile(model, inputs, name=type(model).__name__)
    recipe = UserRecipe(evaluate, None, train_data, val_data, None, inputs, device=device)
    knobs = build_space(cfg.space, prof, cfg.compress.round_to)
    base = copy.deepcopy(model).eval()
    found = analyze(base, prof, knobs, recipe, cfg.compress, points, val_subset)
    base_costs = compute_costs(prof, Policy(prof.model), cfg.compress.round_to).as_dict()
    params = found.allocation(knobs, resolve_budget(cfg.budget, base_costs))
    return found, None if params is None else knobs.policy(params)


class Search:
    """A search's study and what to do with it: read the trials, the Pareto front, the best
    trial within limits; rebuild, export or plot any trial. Made by :func:`search`."""

    def __init__(self, ctx: TrialContext, study: optuna.Study) -> None:
        self._ctx = ctx
        self.study = study  #: the Optuna study: every trial, its params and user attributes

    @property
    def config(self) -> Config:
        return self._ctx.cfg

    @property
    def profile(self) -> Profile:
        return self._ctx.profile

    def trials(self) -> list[TrialRecord]:
        """Every trial as a plain record (policy, costs, ratios to the base, score, state)."""
        from autocompress.search.study import records

        return records(self.study)

    def trial(self, number: int) -> TrialRecord:
        from autocompress.search.pareto import trial_by_number

        return trial_by_number(self.trials(), number)

    def pareto(self) -> list[TrialRecord]:
        """The trials no other beats on score and on every searched cost (within budget)."""
        from autocompress.search.pareto import front_metrics, pareto_front

        return pareto_front(self.trials(), front_metrics(self.config))

    def best(self, **max_ratios: float) -> TrialRecord:
        """The best-scoring trial within budget, and within ``max_ratios`` of the base if
        given (``best(macs=0.3, size_bytes=0.1)``): of a multi-fidelity search, the finalist
        that scores best on held-out data (``search.finalist_score``)."""
        from autocompress.search.pareto import best_trial

        return best_trial(self.trials(), dict(max_ratios), self.config.search.finalist_score)

    def policy(self, trial: int | TrialRecord) -> Policy:
        record = trial if isinstance(trial, TrialRecord) else self.trial(trial)
        return Policy.from_dict(record.policy)

    def compress(self, trial: int | TrialRecord) -> nn.Module:
        """The trial's compressed model, calibrated but not fine-tuned."""
        ctx = self._ctx
        return build(ctx.base, ctx.profile, self.policy(trial), ctx.recipe, ctx.cfg.compress)

    def export(
        self,
        trial: int | TrialRecord,
        out: str | Path,
        *,
        steps: int | None = None,
        finetune: Finetune | None = None,
        onnx: bool = True,
        force: bool = False,
        log: Callable[[str], None] | None = None,
        bits: int | None = None,
    ) -> dict[str, Any]:
        """Rebuild the trial (with ``bits``: at that many bits on the weights and inputs of
        every layer it keeps wider, e.g. 8 for integer kernels), fine-tune it for ``steps``
        (default: twice the search's), test it and write ``out``: ``model.pt``
        (``load(path, model=...)``), ``model.onnx`` and, where ``torch.export`` traces the
        model, ``model.pt2`` (both need no code of yours), ``weights.bin``, ``policy.yaml`` and
        ``report.json``, as one set. ``finetune``: a training loop for this export only,
        ``finetune(model, steps, teacher)`` (default: the search's). ``out`` is refused before
        any work if it is a file or a foreign non-empty folder (unless ``force``). Returns the
        report."""
        ctx = self._ctx
        record = trial if isinstance(trial, TrialRecord) else self.trial(trial)
        out = Path(out)
        check_output_dir(out, force)
        length = Length(steps=steps if steps is not None else 2 * (ctx.cfg.finetune.steps or 0))
        recipe = ctx.recipe
        if finetune is not None:
            if not isinstance(recipe, UserRecipe):
                raise AutocompressError("finetune= is for searches made by autocompress.search")
            recipe = dataclasses.replace(recipe, finetune_fn=finetune)
        policy = self.policy(record)
        if bits is not None:
            policy = policy.with_bits(bits, ctx.profile.layers)
        report = compress_and_export(
            ctx.base,
            ctx.profile,
            policy,
            recipe,
            length,
            out,
            Target(_spec(ctx.base)),
            ctx.cfg.finetune_seed,
            ctx.cfg.compress,
            _base_score(ctx),
            onnx=onnx,
            log=log or (lambda _: None),
            force=force,
        )
        return report

    def plot(self, path: str | Path | None = None) -> Path:
        """Write the accuracy/cost Pareto plot (PNG; default ``<run dir>/pareto.png``)."""
        from autocompress.report.plots import pareto_png
        from autocompress.search.pareto import front_metrics

        metric = front_metrics(self.config)[0]
        target = Path(path) if path is not None else self.config.run_dir / "pareto.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        title = f"{self.config.name}: score vs {metric}"
        pareto_png(self.trials(), self.pareto(), metric, target, title)
        return target


def _base_score(ctx: TrialContext) -> float | None:
    score = ctx.recipe.test(ctx.base)
    return ctx.recipe.validate(ctx.base) if score is None else score


def _spec(model: nn.Module) -> dict[str, Any]:
    """A user module's spec: its class, for messages only (``load`` needs ``model=``)."""
    cls = type(model)
    return {"class": f"{cls.__module__}:{cls.__qualname__}"}


def _policy(prof: Profile, policy: Policy | Mapping[str, Any] | None) -> Policy:
    if policy is None:
        return Policy(prof.model)
    if isinstance(policy, Policy):
        return policy
    return Policy.from_dict({"model": prof.model, **policy})


def _with_model(policy: Mapping[str, Any], model: nn.Module) -> dict[str, Any]:
    return {"model": type(model).__name__, **policy}
