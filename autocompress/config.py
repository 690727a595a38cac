"""Experiment configs: one YAML file per experiment, loaded into frozen, validated dataclasses.

Every key is checked against the schema below: an unknown key, a wrong type or an
out-of-range value raises :class:`ConfigError` naming the dotted key, the value and what is
allowed. ``--set a.b=v`` overrides are applied to the raw mapping before validation, so they
are checked exactly like the file.

Example::

    cfg = load_config("experiments/lenet5-mnist.yaml", overrides=["train.epochs=2"])
    cfg.train.epochs  # 2
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from autocompress.errors import ConfigError
from autocompress.redact import strip_password
from autocompress.yamlio import load_yaml

# latency_ms: measured on each built candidate (search.latency_runtime); latency_ms_predicted:
# ONNX Runtime latency priced by the latency table without building (autocompress.cost.
# runtime_table), so over-budget candidates are projected inside it like MACs
Metric = Literal["macs", "params", "bitops", "size_bytes", "latency_ms", "latency_ms_predicted"]
FinalistScore = Literal["mean", "selection"]  # search.finalist_score (pareto.held_out_score)
METRICS: tuple[str, ...] = typing.get_args(Metric)
SAMPLERS = ("tpe", "nsga2", "gp", "cmaes", "random", "rl")


def _check(check: Callable[[Any], bool], allowed: str, default: Any = dataclasses.MISSING) -> Any:
    """A dataclass field whose value must pass ``check``; ``allowed`` is shown on failure."""
    meta = {"check": check, "allowed": allowed}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    if callable(default):
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


def _positive(x: float) -> bool:
    return x > 0


def _between(low: float, high: float, low_open: bool = False) -> Callable[[float], bool]:
    """A range check; every numeric key has a finite one, so no value allocates without end."""
    return lambda x: (low < x if low_open else low <= x) and x <= high


# Upper bounds: far above any real use, low enough that a typo fails at once.
MAX_SEED = 2**32 - 1
MAX_EPOCHS = 100_000
MAX_THREADS = 4096
MAX_BATCH = 1_000_000
SEED = _check(_between(0, MAX_SEED), f"an integer in [0, {MAX_SEED}]", 0)


@dataclass(frozen=True)
class _Source:
    """``name`` picks a built-in, ``factory`` ("module:function") user code; ``args`` go to it."""

    name: str | None = None
    factory: str | None = _check(
        lambda s: re.fullmatch(r"[\w.]+:\w+", s) is not None, "a 'module:function' string", None
    )
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelConfig(_Source):
    """A zoo model by ``name``, or a user ``factory`` returning an nn.Module.

    ``checkpoint``: start from these pretrained weights instead of training the base model
    (a state dict saved by ``torch.save``, or an autocompress base checkpoint); a path relative
    to the working directory, like ``data.root``.
    """

    checkpoint: str | None = _check(
        lambda s: bool(s.strip()), "a path to a weights file, or null to train the base", None
    )


@dataclass(frozen=True)
class DataConfig(_Source):
    """A built-in dataset by ``name``, or a user ``factory`` (see autocompress.data)."""

    root: str = "data"
    val_size: int = _check(
        _between(0, 10**9), "an integer in [0, 1e9] (images held out for validation)", 5000
    )
    batch_size: int = _check(_between(1, MAX_BATCH), f"an integer in [1, {MAX_BATCH}]", 128)
    # train on this many of the training images (a fixed random subset), null for all of them:
    # reduced runs of large datasets on small machines
    train_size: int | None = _check(
        _between(1, 10**9), "an integer in [1, 1e9], or null for every image", None
    )
    augment: bool | None = None  # None: the dataset's default (crop + flip for CIFAR-10)
    # the fraction of the held-out images kept apart from validation as the selection split,
    # on which a multi-fidelity search compares its finalists (0: compare them on validation)
    selection: float = _check(lambda x: 0 <= x < 1, "a number in [0, 1)", 0.4)


@dataclass(frozen=True)
class TrainConfig:
    """Base-model training."""

    epochs: int = _check(_between(1, MAX_EPOCHS), f"an integer in [1, {MAX_EPOCHS}]", 10)
    lr: float = _check(_between(0, 1e6, low_open=True), "a number in (0, 1e6]", 0.05)
    momentum: float = _check(lambda x: 0 <= x < 1, "a number in [0, 1)", 0.9)
    weight_decay: float = _check(_between(0, 1), "a number in [0, 1]", 5e-4)
    optimizer: Literal["sgd", "adam"] = "sgd"
    schedule: Literal["cosine", "constant"] = "cosine"
    seed: int = SEED
    threads: int | None = _check(
        _between(1, MAX_THREADS), f"an integer in [1, {MAX_THREADS}], or null for all cores", None
    )
    # where training, fine-tuning and evaluation run: cpu, cuda, cuda:N, or auto (a GPU if any)
    device: str = _check(
        lambda d: re.fullmatch(r"cpu|auto|cuda(:\d+)?", d) is not None,
        "cpu, cuda, cuda:N or auto",
        "cpu",
    )


@dataclass(frozen=True)
class FinetuneConfig:
    """Short fine-tune of each compressed candidate, distilled from the base model."""

    epochs: float = _check(_between(0, MAX_EPOCHS), f"a number of epochs in [0, {MAX_EPOCHS}]", 1.0)
    steps: int | None = _check(
        _between(1, 10**9), "an integer in [1, 1e9], or null to use epochs", None
    )
    lr: float = _check(_between(0, 1e6, low_open=True), "a number in (0, 1e6]", 0.01)
    distill_weight: float = _check(lambda x: 0 <= x <= 1, "a number in [0, 1]", 0.5)
    temperature: float = _check(_between(0, 1000, low_open=True), "a number in (0, 1000]", 4.0)
    # the gradient norm of each step is capped at it (null: no cap): a heavily compressed
    # candidate (say an 8 → 2 → 16 channel bottleneck) starts far from the teacher, its
    # T²-scaled distillation term spikes, and momentum SGD diverged to a NaN loss within 20
    # steps; capped, it fine-tunes. Gradients of candidates that recover alike stay below it.
    grad_clip: float | None = _check(
        _between(0, 1e6, low_open=True), "a number in (0, 1e6], or null for no cap", 10.0
    )
    export_epochs: float = _check(
        _between(0, MAX_EPOCHS),
        f"a number of epochs in [0, {MAX_EPOCHS}] (the longer fine-tune of `export`)",
        2.0,
    )
    # data order of the fine-tunes (null: train.seed); the cached base model stays the same
    seed: int | None = _check(
        _between(0, MAX_SEED), f"an integer in [0, {MAX_SEED}], or null for train.seed", None
    )


@dataclass(frozen=True)
class CompressConfig:
    """How methods are applied: channel-importance criterion and channel rounding."""

    importance: Literal["l1", "l2"] = "l2"
    round_to: int = _check(
        _between(1, 4096), "an integer in [1, 4096] (kept channels are a multiple of it)", 1
    )


def _fraction_range(low_open: bool) -> Any:
    allowed = "[low, high] with " + ("0 < low <= high <= 1" if low_open else "0 <= low <= high < 1")

    def ok(v: list[float]) -> bool:
        if len(v) != 2 or v[0] > v[1]:
            return False
        return (v[0] > 0 and v[1] <= 1) if low_open else (v[0] >= 0 and v[1] < 1)

    return _check(ok, allowed, None)


def _choices(valid: Callable[[Any], bool], allowed: str) -> Any:
    return _check(lambda v: len(v) > 0 and all(valid(x) for x in v), allowed, None)


_BITS = (2, 3, 4, 5, 6, 7, 8, 16, 32)


@dataclass(frozen=True)
class RuleConfig:
    """Knobs and ranges for the layers a rule selects (by name glob and module type).

    Continuous knobs take ``[low, high]``; bit-widths and clusters take a list of choices.
    """

    layers: str = "*"  # fnmatch glob on layer names, e.g. "features.*" or "fc1"
    types: list[Literal["conv", "linear"]] = _check(
        lambda v: len(v) > 0, "a non-empty list of conv, linear", ["conv", "linear"]
    )
    prune: list[float] | None = _fraction_range(low_open=False)
    sparsity: list[float] | None = _fraction_range(low_open=False)
    rank: list[float] | None = _fraction_range(low_open=True)
    w_bits: list[int] | None = _choices(
        lambda b: b in _BITS, f"a non-empty list of bit-widths from {_BITS}"
    )
    a_bits: list[int] | None = _choices(
        lambda b: b in _BITS, f"a non-empty list of bit-widths from {_BITS}"
    )
    clusters: list[int | None] | None = _choices(
        lambda c: c is None or 2 <= c <= 65536,
        "a non-empty list of cluster counts in [2, 65536], null meaning no sharing",
    )


def _default_rules() -> list[RuleConfig]:
    return [RuleConfig(prune=[0.0, 0.8])]


@dataclass(frozen=True)
class SpaceConfig:
    """The per-layer search space: rules applied in order, later ones overriding knob by knob."""

    skip_first: bool = True  # leave the first compressible layer untouched
    skip_last: bool = True  # and the last (the classifier)
    rules: list[RuleConfig] = _check(
        lambda v: len(v) > 0, "a non-empty list of rules", _default_rules
    )


@dataclass(frozen=True)
class Limit:
    """One budget limit: an absolute value, or a ratio of the base model's value."""

    value: float
    relative: bool

    def resolve(self, base: float) -> float:
        return self.value * base if self.relative else self.value

    def __str__(self) -> str:
        return f"{self.value * 100:g}% of base" if self.relative else f"{self.value:g}"


@dataclass(frozen=True)
class SearchConfig:
    trials: int = _check(_between(1, 10**7), "an integer in [1, 1e7]", 40)
    sampler: Literal["tpe", "nsga2", "gp", "cmaes", "random", "rl"] = "tpe"
    storage: str | None = None  # None: SQLite file study.db in the run directory
    # several studies can share a run directory (and its base model); None: the run's name
    study: str | None = _check(
        lambda s: re.fullmatch(r"[A-Za-z0-9][\w.-]{0,99}", s) is not None,
        "up to 100 letters, digits, '_', '-', '.'",
        None,
    )
    seed: int = SEED
    # cost metrics minimised next to accuracy (a Pareto front); null (the default): the
    # budget's metrics, or macs without a budget (Config.objectives); []: accuracy alone
    objectives: list[Metric] | None = None
    # stops poor fine-tunes (single objective, short fidelity: a multi-fidelity search's
    # screen has already chosen the candidates it fine-tunes)
    pruner: Literal["median", "none"] = "median"
    # multi: successive halving over fidelities. `screen` × `trials` candidates are scored
    # without fine-tuning (zero-cost: adaptive BatchNorm, output correction), the best `trials`
    # of them get the short fine-tune, and the best `finalists` of those a fine-tune
    # `finalist_length` times longer (or, with `export`, as long as the export's fine-tune,
    # finetune.export_epochs: the finalists are then ranked as they will be delivered),
    # compared by `finalist_score`. With `finalist_baselines`, the baselines (the least
    # compressing uniform policy of each kind and the sensitivity allocation) are always
    # fine-tuned and always finalists, so the search never returns a policy that scores
    # below them.
    # short: every candidate gets the short fine-tune (the local backend only runs multi)
    fidelity: Literal["multi", "short"] = "multi"
    screen: int = _check(
        _between(1, 10_000), "an integer in [1, 10000] (zero-cost candidates per trial)", 8
    )
    finalists: int = _check(_between(0, 1000), "an integer in [0, 1000]", 3)
    finalist_length: float | Literal["export"] = _check(
        lambda x: x == "export" or 1 <= x <= 1000,
        "a number in [1, 1000] (times a trial's fine-tune), or export",
        2.0,
    )
    finalist_baselines: bool = True
    # how finalists (and `export --best --top K` candidates) are compared after their long
    # fine-tune: mean, the mean of their validation and selection-split scores (the two
    # held-out sets: 5,000 images resolve differences 2,000 cannot); selection, the selection
    # split alone (never seen by the search, but one image of 2,000 is 0.05 pt)
    finalist_score: FinalistScore = "mean"
    project: bool = True  # move over-budget candidates toward more compression (AMC)
    uniform: int = _check(
        _between(0, 1000), "an integer in [0, 1000]", 3
    )  # uniform baselines enqueued
    # also enqueue the equal-loss allocation of a zero-cost sensitivity analysis (each knob
    # alone at a few settings, scored without fine-tuning; written beside the study)
    sensitivity: bool = False
    # the RL agent (sampler: rl): reward, and episodes of random actions before it learns
    rl_reward: Literal["accuracy", "amc"] = "accuracy"
    rl_warmup: int = _check(_between(0, 10**7), "an integer in [0, 1e7]", 10)
    latency_batch: int = _check(_between(1, 65536), "an integer in [1, 65536]", 64)
    latency_threads: int = _check(_between(1, MAX_THREADS), f"an integer in [1, {MAX_THREADS}]", 1)
    # torch: the float execution of the compressed structure in PyTorch (pruning and low rank
    # show); onnxruntime: the deployed model.onnx, integer where bits <= 8, in ONNX Runtime
    latency_runtime: Literal["torch", "onnxruntime"] = "torch"
    # seconds between a worker's heartbeats on a database storage; a RUNNING trial silent for
    # twice as long belongs to a dead worker and is retried (0: no heartbeats)
    heartbeat: int = _check(
        _between(0, 86400), "an integer in [0, 86400] (seconds; 0 turns it off)", 30
    )
    # where trials run: this process ("local"), or Ray Tune trials on a local or existing cluster
    backend: Literal["local", "ray"] = "local"
    workers: int = _check(
        _between(1, 100_000), "an integer in [1, 100000] (concurrent Ray trials)", 1
    )
    ray_address: str | None = None  # None: start a local Ray runtime with workers × cpus
    scheduler: Literal["fifo", "asha"] = "fifo"  # asha: stop poor fine-tunes early (Ray)
    cpus_per_trial: int | None = _check(
        _between(1, MAX_THREADS),
        f"an integer in [1, {MAX_THREADS}], or null for the cores divided by the workers",
        None,
    )
    gpus_per_trial: float = _check(
        _between(0, 64), "a number in [0, 64] (fractions share a GPU)", 0.0
    )


@dataclass(frozen=True)
class Config:
    name: str = _check(
        lambda s: re.fullmatch(r"[A-Za-z0-9][\w.-]{0,99}", s) is not None,
        "up to 100 letters, digits, '_', '-', '.' (it names the run directory)",
    )
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    compress: CompressConfig = field(default_factory=CompressConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    # metric -> limit; YAML values are numbers (absolute) or "25%" (ratio of the base model)
    budget: dict[str, Limit] = field(default_factory=dict)
    search: SearchConfig = field(default_factory=SearchConfig)
    runs_root: str = "runs"

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_root) / self.name

    @property
    def objectives(self) -> list[Metric]:
        """The costs the search minimises next to accuracy: ``search.objectives`` as set;
        by default (null) the budget's metrics, or MACs without a budget, so that the study
        keeps the candidates below the budget that buy accuracy per cost; none for CMA-ES
        (single-objective). ``[]`` maximises accuracy alone within the budget."""
        if self.search.objectives is not None:
            return list(self.search.objectives)
        if self.search.sampler == "cmaes":
            return []
        return [typing.cast(Metric, m) for m in self.budget] or ["macs"]

    @property
    def finetune_seed(self) -> int:
        """Seed of the compressed models' fine-tunes: ``finetune.seed``, else ``train.seed``."""
        return self.train.seed if self.finetune.seed is None else self.finetune.seed

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping that :func:`parse_config` turns back into an equal Config.

        It is what the tool writes to files, so a storage URL's password is left out (the
        connection finds it in ``PGPASSWORD``, ``~/.pgpass`` or ``AUTOCOMPRESS_STORAGE``).
        """
        raw = dataclasses.asdict(self)
        if self.search.storage:
            raw["search"]["storage"] = strip_password(self.search.storage)
        raw["budget"] = {
            k: f"{v.value * 100:g}%" if v.relative else v.value for k, v in self.budget.items()
        }
        return raw


def base_key(cfg: Config) -> str:
    """Hash of everything that determines the trained base model (not paths, not search)."""
    # the selection split is carved from the held-out images: the base trains on the same set
    data = {k: v for k, v in dataclasses.asdict(cfg.data).items() if k not in ("root", "selection")}
    if data["train_size"] is None:
        del data["train_size"]  # added later: models cached before it keep their key
    model = dataclasses.asdict(cfg.model)
    train: dict[str, Any] | str = {
        k: v for k, v in dataclasses.asdict(cfg.train).items() if k not in ("threads", "device")
    }
    if cfg.model.checkpoint is None:
        del model["checkpoint"]  # added later: trained bases cached before it keep their key
    else:
        # weights that were given, not trained: the file's contents decide, not its name
        model["checkpoint"] = file_sha256(Path(cfg.model.checkpoint), "model.checkpoint")
        train = "pretrained"
    payload = {"model": model, "data": data, "train": train}
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def file_sha256(path: Path, key: str) -> str:
    """SHA-256 of a file's bytes; a missing file is a ConfigError naming ``key``."""
    if not path.is_file():
        raise ConfigError(key, str(path), "an existing file (relative to the working directory)")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Loading and validation


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> Config:
    """Read a YAML config, apply ``key=value`` overrides, validate, return a frozen Config."""
    return parse_config(read_raw_config(path, overrides))


def read_raw_config(path: str | Path, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """The config file as a plain mapping with ``key=value`` overrides applied, unvalidated."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("<file>", str(path), "the config file does not exist")
    try:
        raw = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError("<file>", str(path), f"the file is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError("<root>", raw, "the config must be a mapping of sections")
    for item in overrides:
        apply_override(raw, item)
    return raw


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set ``a.b.c=value`` in a raw config mapping; the value is read as a YAML scalar."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(
            "--set", item, "expected KEY=VALUE with a dotted key, e.g. train.epochs=3"
        )
    parts = key.strip().split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(
                ".".join(parts[: i + 1]), child, "is not a section; cannot set a key in it"
            )
        node = child
    try:
        node[parts[-1]] = load_yaml(text) if text.strip() else None
    except yaml.YAMLError:
        node[parts[-1]] = text


# The built-in datasets (autocompress.data.DATASETS has their readers; a test keeps the two
# equal). Named here so that the config module does not import the data package, which
# imports it.
DATASET_NAMES = ("cifar10", "digits", "fashion_mnist", "mnist")


def parse_config(raw: Mapping[str, Any]) -> Config:
    cfg = _build(Config, raw, "")
    if (cfg.model.name is None) == (cfg.model.factory is None):
        raise ConfigError(
            "model",
            dataclasses.asdict(cfg.model),
            "set exactly one of model.name (a zoo model) or model.factory",
        )
    if (cfg.data.name is None) == (cfg.data.factory is None):
        raise ConfigError(
            "data",
            dataclasses.asdict(cfg.data),
            "set exactly one of data.name (a built-in dataset) or data.factory",
        )
    _check_names(cfg)
    return cfg


def parse_settings(raw: Mapping[str, Any]) -> Config:
    """A config's settings for the API, where the model and data are the caller's objects:
    every section is checked as in YAML, but ``model`` and ``data`` may be left out."""
    cfg = _build(Config, raw, "")
    _check_names(cfg)
    return cfg


def _check_names(cfg: Config) -> None:
    # Imported here: the zoo imports torch, which the config module itself does not need.
    from autocompress.models import ZOO, check_args

    if cfg.model.name is not None:
        if cfg.model.name not in ZOO:
            raise ConfigError("model.name", cfg.model.name, f"one of {', '.join(sorted(ZOO))}")
        check_args(cfg.model.name, cfg.model.args)
    if cfg.data.name is not None and cfg.data.name not in DATASET_NAMES:
        raise ConfigError("data.name", cfg.data.name, f"one of {', '.join(DATASET_NAMES)}")


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(prefix or "<root>", raw, "expected a mapping of keys")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            allowed = ", ".join(fields) if fields else "no keys yet (this section is filled later)"
            raise ConfigError(_join(prefix, str(key)), raw[key], f"unknown key; allowed: {allowed}")
    values = {}
    for name, f in fields.items():
        dotted = _join(prefix, name)
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(dotted, None, "this key is required")
            continue
        value = _coerce(hints[name], raw[name], dotted)
        check = f.metadata.get("check")
        if check is not None and value is not None and not check(value):
            raise ConfigError(dotted, raw[name], f"allowed: {f.metadata['allowed']}")
        values[name] = value
    return cls(**values)


def _coerce(tp: Any, value: Any, dotted: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for option in inner:  # the first that fits (finalist_length: 6 or export)
            try:
                return _coerce(option, value, dotted)
            except ConfigError as exc:
                errors.append(exc)
        if len(inner) == 1:
            raise errors[0]
        described = " or ".join(_describe(a) for a in inner)
        raise ConfigError(dotted, value, f"expected {described}")
    if value is None:
        raise ConfigError(dotted, value, f"expected {_describe(tp)}, not null")
    if origin is Literal:
        if value not in args:
            raise ConfigError(dotted, value, f"one of {', '.join(map(str, args))}")
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _build(tp, value, dotted)
    if origin is dict and args[1] is Limit:
        return _budget(value, dotted)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(dotted, value, f"expected a list, each item {_describe(args[0])}")
        return [_coerce(args[0], v, f"{dotted}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise ConfigError(dotted, value, "expected a mapping with string keys")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(dotted, value, "expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(dotted, value, "expected an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(dotted, value, "expected a number")
        if not math.isfinite(value):
            raise ConfigError(dotted, value, "expected a finite number (not inf or nan)")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(dotted, value, "expected a string")
        return value
    raise AssertionError(f"config schema uses an unsupported type {tp!r} at {dotted}")


def _budget(value: Any, dotted: str) -> dict[str, Limit]:
    if not isinstance(value, Mapping):
        raise ConfigError(dotted, value, "expected a mapping of metric: limit")
    limits = {}
    for metric, limit in value.items():
        key = _join(dotted, str(metric))
        if metric not in METRICS:
            raise ConfigError(key, limit, f"unknown metric; allowed: {', '.join(METRICS)}")
        limits[metric] = _limit(limit, key)
    return limits


def _limit(value: Any, key: str) -> Limit:
    allowed = "a number > 0 (absolute) or a percentage of the base model such as '25%'"
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            pct = float(value.strip()[:-1])
        except ValueError:
            raise ConfigError(key, value, allowed) from None
        if not 0 < pct <= 100:
            raise ConfigError(key, value, "a percentage in (0%, 100%]")
        return Limit(pct / 100, relative=True)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        if not math.isfinite(value):
            raise ConfigError(key, value, "a finite number > 0 (not inf), or a percentage")
        return Limit(float(value), relative=False)
    raise ConfigError(key, value, allowed)


def _describe(tp: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    if dataclasses.is_dataclass(tp):
        return "a mapping of keys"
    if typing.get_origin(tp) is Literal:
        words = list(map(str, typing.get_args(tp)))
        return words[0] if len(words) == 1 else "one of " + ", ".join(words)
    return names.get(tp, "a mapping" if typing.get_origin(tp) is dict else "a value")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
