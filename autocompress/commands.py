"""The YAML path's operations, one per command: library functions the CLI only renders.

Each takes a :class:`~autocompress.config.Config` and callbacks for progress, refuses bad
input before any work (training, writing), and returns plain results. They build the same
objects as the API (:mod:`autocompress.api`) — a profile, a search space, a recipe, a trial
context — and call the same functions: ``train``, ``cost``, ``apply``, ``distill``,
``start_search`` (then ``SearchRun.run``), ``pareto`` and ``export``.

Example::

    cfg = load_config("experiments/lenet5-fashion-mnist.yaml")
    run = start_search(cfg)
    run.run(on_trial=print)
    result = pareto(cfg)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autocompress.config import MAX_EPOCHS, Config
from autocompress.errors import ConfigError
from autocompress.files import check_output_dir
from autocompress.policy import Policy
from autocompress.runs import Prepared, finetune_length, prepare, splits_recipe, target
from autocompress.search.study import TrialRecord

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def check_epochs(epochs: float | None, flag: str = "--finetune-epochs") -> None:
    """A number of epochs given on the command line: in [0, MAX_EPOCHS], not nan."""
    if epochs is not None and not 0 <= epochs <= MAX_EPOCHS:  # also refuses nan
        raise ConfigError(flag, epochs, f"a number of epochs in [0, {MAX_EPOCHS}]")


# --------------------------------------------------------------------------------------- train
@dataclass(frozen=True)
class TrainPlan:
    """What ``train`` is about to do, for the caller to say before it starts."""

    cached: bool
    path: Path
    train: int
    val: int
    test: int
    pretrained: str | None = None  # model.checkpoint: weights loaded, not trained


def train(
    cfg: Config,
    force: bool = False,
    on_start: Callable[[TrainPlan], None] | None = None,
    on_epoch: Callable[[Any], None] | None = None,
) -> Any:
    """Train (or load the cached) base model, or start it from ``model.checkpoint``; returns
    the :class:`BaseModel`."""
    from autocompress.data import load_data
    from autocompress.train.base import base_path, ensure_base

    splits = load_data(cfg.data, seed=cfg.train.seed)
    path = base_path(cfg)
    if on_start is not None:
        cached = path.exists() and not force
        sizes = len(splits.x_train), len(splits.x_val), len(splits.x_test)
        on_start(TrainPlan(cached, path, *sizes, pretrained=cfg.model.checkpoint))
    return ensure_base(cfg, splits, force=force, on_epoch=on_epoch)


# -------------------------------------------------------------------------------- sensitivity
@dataclass(frozen=True)
class SensitivityResult:
    """What ``sensitivity`` measured and wrote."""

    sensitivity: Any  # autocompress.sensitivity_analysis.Sensitivity
    files: dict[str, Path]  # json, png, and policy (the equal-loss allocation) if any
    allocation: Any  # its Policy, or None without an analytic budget
    macs_ratio: float | None  # the allocation's MACs to the base's


def sensitivity(
    cfg: Config, points: int = 4, val_subset: int | None = None, on_point: Any = None
) -> SensitivityResult:
    """Each knob of the config's space alone at ``points`` settings, scored with the
    zero-cost fidelity; writes ``sensitivity.json``/``.png`` and, under an analytic budget,
    the equal-loss allocation as ``sensitivity-policy.yaml`` in the run directory."""
    from autocompress.cost.metrics import compute_costs
    from autocompress.fidelity import VAL_SUBSET
    from autocompress.runs import prepare, splits_recipe
    from autocompress.sensitivity_analysis import analyze, write
    from autocompress.spaces import build_space
    from autocompress.spaces.budget import resolve_budget

    if not 1 <= points <= 100:
        raise ConfigError("--points", points, "an integer in [1, 100]")
    if val_subset is not None and val_subset < 1:
        raise ConfigError("--subset", val_subset, "a positive number of validation images")
    run = prepare(cfg)
    round_to = cfg.compress.round_to
    space = build_space(cfg.space, run.profile, round_to)
    recipe = splits_recipe(cfg, run.splits)
    subset = VAL_SUBSET if val_subset is None else val_subset
    found = analyze(
        run.base.model, run.profile, space, recipe, cfg.compress, points, subset, on_point
    )
    files = write(found, cfg.run_dir)
    base_costs = compute_costs(run.profile, Policy(run.profile.model), round_to)
    params = found.allocation(space, resolve_budget(cfg.budget, base_costs.as_dict()))
    if params is None:
        return SensitivityResult(found, files, None, None)
    policy = space.policy(params)
    files["policy"] = cfg.run_dir / "sensitivity-policy.yaml"
    policy.save(files["policy"])
    macs = compute_costs(run.profile, policy, round_to).macs / base_costs.macs
    return SensitivityResult(found, files, policy, macs)


# ---------------------------------------------------------------------------------------- cost
def cost(
    cfg: Config, policy_path: Path | None = None, latency: bool = False, log: Log = _quiet
) -> dict[str, Any]:
    """Price the configured model as it is, or a policy file, without training: per-layer and
    total costs, ratios to the base, the budget's verdicts, and what no knob touches (why).

    With ``latency`` (or a config that budgets ``latency_ms_predicted``) the report also has
    ``latency_ms_predicted``: ONNX Runtime milliseconds at ``search.latency_threads`` and
    ``search.latency_batch`` predicted by the latency table, built on first use (minutes) and
    kept under the runs' root."""
    from autocompress.compress import KNOB_METHODS
    from autocompress.cost.check import check_policy
    from autocompress.cost.metrics import compute_costs
    from autocompress.runs import untrained_model
    from autocompress.search.objective import needs_prediction, predictor
    from autocompress.spaces.budget import PREDICTED

    model, profile = untrained_model(cfg)
    base_policy = Policy(profile.model)
    policy = Policy.load(policy_path) if policy_path else base_policy
    check_policy(policy, profile, KNOB_METHODS, cfg.compress.round_to)
    base = compute_costs(profile, base_policy, cfg.compress.round_to)
    costs = compute_costs(profile, policy, cfg.compress.round_to)
    metrics: tuple[str, ...] = ("macs", "params", "bitops", "size_bytes")
    report: dict[str, Any] = {m: getattr(costs, m) for m in metrics}
    report["base"] = {m: getattr(base, m) for m in metrics}
    predict = predictor(cfg, model, profile, log) if latency or needs_prediction(cfg) else None
    if predict is not None:
        metrics += (PREDICTED,)
        report[PREDICTED] = predict(policy, costs)
        report["base"][PREDICTED] = predict(base_policy, base)
    report["ratios"] = {m: report[m] / report["base"][m] for m in metrics}
    report["layers"] = {
        name: {
            "type": profile.layers[name].kind,
            "in": c.in_features,
            "out": c.out_features,
            "macs": c.macs,
            "params": c.params,
            "bitops": c.bitops,
            "size_bytes": c.size_bytes,
            **policy.choice(name).changed(),
        }
        for name, c in costs.layers.items()
    }
    report["other_macs"] = profile.other_macs
    report["untouched"] = dict(profile.untouched)
    report["not_prunable"] = {
        ", ".join(g.layers) or g.root: g.why for g in profile.groups.values() if not g.prunable
    }
    report["model"], report["policy"] = policy.model, policy.to_dict()
    report["budget"] = {}
    for metric, limit in cfg.budget.items():
        if metric not in report:  # latency_ms: measured on the built model, not priced
            continue
        bound = limit.resolve(report["base"][metric])
        report["budget"][metric] = {
            "limit": bound,
            "value": report[metric],
            "ok": report[metric] <= bound,
            "as_configured": str(limit),
        }
    return report


# ------------------------------------------------------------------------------ apply, distill
def apply(
    cfg: Config,
    policy_path: Path,
    out: Path,
    epochs: float | None = None,
    force: bool = False,
    log: Log = _quiet,
    on_epoch: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Compress the base model with a policy file, fine-tune, test and write ``out``."""
    from autocompress.compress import KNOB_METHODS
    from autocompress.cost.check import check_policy
    from autocompress.export import compress_and_export
    from autocompress.runs import untrained_profile

    policy = Policy.load(policy_path)
    check_epochs(epochs)
    # everything that can be refused is refused before the base model is trained or loaded
    check_policy(policy, untrained_profile(cfg), KNOB_METHODS, cfg.compress.round_to)
    check_output_dir(out, force)
    run = prepare(cfg, on_epoch)
    return compress_and_export(
        run.base.model,
        run.profile,
        policy,
        splits_recipe(cfg, run.splits),
        finetune_length(cfg, epochs),
        out,
        target(cfg, run.base),
        cfg.finetune_seed,
        cfg.compress,
        run.base.metrics["test_accuracy"],
        onnx=True,
        log=log,
        force=force,
    )


def distill(
    cfg: Config,
    student: str,
    out: Path,
    epochs: float | None = None,
    force: bool = False,
    log: Log = _quiet,
    on_epoch: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Train a zoo student (``name:key=value,...``) with the base as teacher, and alone."""
    from autocompress.distill import distill as run_distill
    from autocompress.distill import parse_student

    parsed = parse_student(student)
    check_epochs(epochs, "--epochs")
    check_output_dir(out, force)
    run = prepare(cfg, on_epoch)
    return run_distill(
        cfg, run.splits, run.base, run.profile, parsed, out, epochs, log=log, force=force
    )


# -------------------------------------------------------------------------------------- search
@dataclass
class SearchRun:
    """A search set up and ready to run: its context, study and what the setup found."""

    cfg: Config
    prepared: Prepared
    ctx: Any  # TrialContext
    study: Any  # optuna.Study
    controller: Any  # RLController | None
    recovered: list[int]
    done: int  # trials already in the study (resumed)
    layers: list[str]  # layers the space compresses, in model order
    ray: Any = None  # RaySetup when search.backend is ray
    notes: list[str] = field(default_factory=list)  # warnings worth a line

    def run(self, on_trial: Callable[[Any], None] | None = None) -> bool:
        """Run trials until the study holds ``search.trials``. Ctrl-C or SIGTERM raise
        KeyboardInterrupt (:class:`~autocompress.signals.Terminated` for SIGTERM) after the
        running trial is failed and queued again; the Ray backend returns False instead.
        Either way the finished trials are kept and a rerun resumes."""
        from autocompress.search.loop import run_search

        n = self.cfg.search.trials
        if self.cfg.search.backend == "ray":
            from autocompress.search.ray_runner import run_ray_search

            return bool(run_ray_search(self.ctx, self.study, n, on_trial))
        run_search(self.ctx, self.study, n, on_trial, self.controller)
        return True

    def records(self) -> list[TrialRecord]:
        from autocompress.search.study import records

        return records(self.study)


def start_search(
    cfg: Config, on_epoch: Callable[[Any], None] | None = None, log: Log = _quiet
) -> SearchRun:
    """Check everything that can refuse the search, then train or load the base model, record
    the run's config and open (or resume) the study. Nothing is written if it refuses.
    ``log`` hears of slow preparations (the latency table's first build)."""
    from optuna.trial import TrialState

    from autocompress.runs import untrained_profile, write_run_config
    from autocompress.search.loop import make_controller, prepare_study, quiet_optuna
    from autocompress.search.objective import check_budget_reachable, make_context
    from autocompress.search.ray_runner import check_backend
    from autocompress.search.samplers import make_sampler
    from autocompress.search.schedule import refusal, uses_schedule
    from autocompress.search.study import (
        check_compatible,
        existing_study,
        trials_done,
        with_objectives,
        worker_id,
    )
    from autocompress.spaces import build_space

    # The backend, the storage, the existing study's objectives and space, the budget (a
    # space depends on shapes only: the untrained model gives the same one).
    check_backend(cfg)
    space = build_space(cfg.space, untrained_profile(cfg), cfg.compress.round_to)
    check_budget_reachable(cfg, space)
    previous = existing_study(cfg)
    cfg = with_objectives(cfg, previous)
    # the sampler accepts the space (CMA-ES refuses bit-width choices)
    make_sampler(cfg.search.sampler, cfg.search.seed, space, 1 + len(cfg.objectives))
    if previous is not None:
        check_compatible(previous, cfg, [k.name for k in space.knobs])
    run = prepare(cfg, on_epoch)
    space = build_space(cfg.space, run.profile, cfg.compress.round_to)
    write_run_config(cfg)
    recipe = splits_recipe(cfg, run.splits)
    ctx = make_context(cfg, recipe, run.base.model, run.profile, space, log)
    with quiet_optuna():
        study, recovered = prepare_study(ctx, cfg.search.sampler)
    order = list(run.profile.layers)
    layers = sorted({layer for k in space.knobs for layer in k.layers}, key=order.index)
    search_run = SearchRun(
        cfg,
        run,
        ctx,
        study,
        make_controller(ctx, cfg.search.sampler),
        recovered,
        trials_done(study),
        layers,
    )
    why_not = refusal(cfg)
    if why_not is not None:
        search_run.notes.append(f"search.fidelity=multi: {why_not}; every trial is fine-tuned")
    selection = run.splits.x_select
    if uses_schedule(cfg) and cfg.search.finalists and (selection is None or not len(selection)):
        search_run.notes.append(
            "no selection split (data.selection=0, or a data.factory returning Splits "
            "without one): the finalists are compared on the validation split"
        )
    queued = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    if not uses_schedule(cfg) and cfg.search.trials <= queued and search_run.done == 0:
        search_run.notes.append(
            f"search.trials={cfg.search.trials} is not more than the {queued} "
            "baselines queued first: no sampler trial will run (raise --trials)"
        )
    if cfg.search.backend == "ray":
        from autocompress.search.ray_runner import init_ray

        search_run.ray = init_ray(cfg)
        study.set_user_attr(f"ray:{worker_id()}", dataclasses.asdict(search_run.ray))
    return search_run


def front(cfg: Config, recs: Sequence[TrialRecord]) -> list[TrialRecord]:
    """The Pareto front of a search's records over its objectives."""
    from autocompress.search.pareto import front_metrics, pareto_front

    return pareto_front(recs, front_metrics(cfg))


def write_pareto(cfg: Config, recs: Sequence[TrialRecord]) -> tuple[list[TrialRecord], Path, Path]:
    """Write ``pareto.png`` and ``pareto.html`` into the run; returns (front, png, html)."""
    from autocompress.report.plots import pareto_html, pareto_png
    from autocompress.search.pareto import front_metrics
    from autocompress.search.study import pareto_paths, study_name

    points = front(cfg, recs)
    metric = front_metrics(cfg)[0]
    title = f"{study_name(cfg)}: validation accuracy vs {metric}"
    png, html = pareto_paths(cfg)
    pareto_png(recs, points, metric, png, title)
    pareto_html(recs, points, metric, html, title)
    return points, png, html


@dataclass(frozen=True)
class ParetoResult:
    records: list[TrialRecord]
    front: list[TrialRecord]
    metrics: list[str]
    png: Path
    html: Path
    latency: Mapping[str, Any] | None


def pareto(cfg: Config) -> ParetoResult:
    """Read a search's study, write its Pareto plots, return the front."""
    from autocompress.search.pareto import front_metrics
    from autocompress.search.study import load_study, records

    study = load_study(cfg)
    recs = records(study)
    points, png, html = write_pareto(cfg, recs)
    return ParetoResult(
        recs, points, front_metrics(cfg), png, html, study.user_attrs.get("latency")
    )


# -------------------------------------------------------------------------------------- export
RATIO_METRICS = ("macs", "size_bytes", "latency_ms", "params")


@dataclass(frozen=True)
class Selection:
    """Which trials an export takes: ``trial`` by number, or the ``best`` (the ``top`` K
    best kept on validation) within ``limits`` (metric → ratio of the base)."""

    trial: int | None = None
    best: bool = False
    limits: Mapping[str, float] = field(default_factory=dict)
    top: int = 1

    def check(self) -> None:
        if (self.limits or self.top != 1) and not self.best:
            raise ConfigError(
                "--max-*/--top",
                dict(self.limits) or self.top,
                "they choose among trials: use them with --best",
            )
        if self.top < 1:
            raise ConfigError("--top", self.top, "an integer >= 1")
        for metric, value in self.limits.items():
            if value <= 0:
                raise ConfigError(
                    f"--max-{metric}", value, "a ratio to the base model > 0, e.g. 0.25"
                )


def select(cfg: Config, selection: Selection) -> list[TrialRecord]:
    """The trials a selection names (one, or the ``top`` best), read from the study."""
    from autocompress.search.pareto import best_trial, best_trials, trial_by_number
    from autocompress.search.study import load_study, records

    selection.check()
    recs = records(load_study(cfg))
    if selection.best and selection.top > 1:
        return best_trials(recs, dict(selection.limits), selection.top, cfg.search.finalist_score)
    if selection.best:
        return [best_trial(recs, dict(selection.limits), cfg.search.finalist_score)]
    assert selection.trial is not None
    return [trial_by_number(recs, selection.trial)]


def export(
    cfg: Config,
    chosen: Sequence[TrialRecord],
    out: Path,
    epochs: float | None = None,
    force: bool = False,
    log: Log = _quiet,
    on_epoch: Callable[[Any], None] | None = None,
    bits: int | None = None,
) -> dict[str, Any]:
    """Rebuild the chosen trial(s), fine-tune for ``epochs`` (default
    ``finetune.export_epochs``), test (the simulated model, and ``model.onnx`` in ONNX
    Runtime), and write ``out`` (several: keep the best on validation). ``bits`` (8 or
    fewer): deploy the policy with that many bits on the weights and inputs of every layer it
    keeps wider — a searched pruning / low-rank policy as integer kernels."""
    if bits is not None and not (isinstance(bits, int) and 2 <= bits <= 8):
        raise ConfigError("--bits", bits, "an integer from 2 to 8")
    from autocompress.search.export import export_best_of, export_trial

    epochs = cfg.finetune.export_epochs if epochs is None else epochs
    check_epochs(epochs)
    check_output_dir(out, force)
    run = prepare(cfg, on_epoch)
    if len(chosen) > 1:
        return export_best_of(
            cfg, run.splits, run.base, run.profile, chosen, out, epochs, log, force, bits
        )
    return export_trial(
        cfg, run.splits, run.base, run.profile, chosen[0], out, epochs, log, force, bits
    )


# ------------------------------------------------------------------------------------- latency
def latency(
    path: Path,
    runtime: str = "onnxruntime",
    threads: int = 1,
    batch: int = 64,
    allow_factories: Sequence[str] = (),
    repeats: int = 30,
) -> dict[str, Any]:
    """Median milliseconds of a model as it will run: ``model.onnx`` in ONNX Runtime (its
    integer kernels where the file is integer), or ``model.pt`` in PyTorch (the float execution
    of the compressed structure). ``path``: an export folder, or the file itself. The batch
    is ``batch`` copies of the example inputs the checkpoint recorded (random images of the
    model's input shape for a bare ONNX file)."""
    import torch

    from autocompress.checkpoint import read_checkpoint, stored_inputs
    from autocompress.compress.layers import folded
    from autocompress.cost.latency import measure_latency, onnx_latency
    from autocompress.errors import AutocompressError

    if runtime not in ("onnxruntime", "torch"):
        raise ConfigError("--runtime", runtime, "onnxruntime or torch")
    if not 1 <= batch <= 65536 or not 1 <= threads <= 1024:
        raise ConfigError("--batch/--threads", (batch, threads), "integers ≥ 1")
    if not path.exists():
        raise AutocompressError(f"{path} does not exist: give an export folder or its model file")
    folder = path if path.is_dir() else path.parent
    checkpoint = folder / "model.pt"
    example = stored_inputs(read_checkpoint(checkpoint)) if checkpoint.is_file() else None
    result: dict[str, Any] = {"runtime": runtime, "threads": threads, "batch": batch}
    if runtime == "onnxruntime":
        onnx_file, feeds = _onnx_target(path, batch)
        result["file"] = str(onnx_file)
        result["ms"] = onnx_latency(onnx_file, feeds, threads, repeats)
    else:
        if not checkpoint.is_file():
            raise AutocompressError(f"no model.pt at {path}")
        from autocompress import load

        model = load(checkpoint, allow_factories=allow_factories)
        assert example is not None
        previous = torch.get_num_threads()
        result["file"] = str(checkpoint)
        result["ms"] = measure_latency(
            folded(model, float_inputs=True), example, batch, repeats, 5, threads
        )
        torch.set_num_threads(previous)
    result["ms_per_sample"] = result["ms"] / batch
    return result


def onnx_latency_ratio(
    path: Path, other: Path, threads: int = 1, batch: int = 64, repeats: int = 30
) -> float:
    """``path``'s ``model.onnx`` latency as a fraction of ``other``'s in ONNX Runtime, their
    runs alternated so that a busy moment of the machine slows both alike
    (:func:`autocompress.cost.latency.alternated_ratio`). Paths as for :func:`latency`."""
    from autocompress.cost.latency import onnx_latency_ratio as ratio

    (mine, feeds), (theirs, their_feeds) = _onnx_target(path, batch), _onnx_target(other, batch)
    return ratio(mine, feeds, theirs, their_feeds, threads, repeats)


def _onnx_target(path: Path, batch: int) -> tuple[Path, dict[str, Any]]:
    """The ``model.onnx`` a path names (an export folder, or a file in it) and its feeds."""
    from autocompress.checkpoint import read_checkpoint, stored_inputs
    from autocompress.errors import AutocompressError

    folder = path if path.is_dir() else path.parent
    onnx_file = path if path.suffix == ".onnx" else folder / "model.onnx"
    if not onnx_file.is_file():
        raise AutocompressError(f"no model.onnx at {path}: export the model first")
    checkpoint = folder / "model.pt"
    example = stored_inputs(read_checkpoint(checkpoint)) if checkpoint.is_file() else None
    return onnx_file, _onnx_feeds(onnx_file, example, batch)


def _onnx_feeds(path: Path, example: Any, batch: int) -> dict[str, Any]:
    """ONNX Runtime feeds: the recorded example inputs repeated ``batch`` times, else random
    tensors of the file's input shapes (dynamic dimensions set to ``batch``)."""
    import numpy as np
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    names = [i.name for i in graph.input]
    if example is not None:
        tensors = example.repeated(batch).tensors()
        if example.sample_shape:  # images: the file normalises raw [0, 1] images itself
            tensors = [np.random.default_rng(0).random(tuple(tensors[0].shape), np.float32)]
        else:
            tensors = [t.numpy() for t in tensors]
        return dict(zip(names, tensors, strict=False))
    feeds = {}
    for value in graph.input:
        t = value.type.tensor_type
        shape = [d.dim_value if d.dim_value else batch for d in t.shape.dim]
        if t.elem_type == onnx.TensorProto.FLOAT:
            feeds[value.name] = np.random.default_rng(0).random(shape, np.float32)
        else:
            feeds[value.name] = np.zeros(shape, dtype=np.int64)
    return feeds
