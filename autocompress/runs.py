"""The run directory ``runs/<name>/``: its recorded config, its base model and profile.

``search`` records the config it ran with (``config.yaml``, or ``config-<study>.yaml`` for a
named study); ``pareto`` and ``export`` read it back, so they build on the same base model.
Only a search that really starts writes it, so a refused command changes nothing. The file
may name a database, so it is written readable by its owner only (0600), without passwords.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import yaml
from torch import nn

from autocompress.config import Config, parse_config, read_raw_config
from autocompress.errors import ConfigError
from autocompress.files import write_atomic

if TYPE_CHECKING:
    from autocompress.cost.profile import Profile
    from autocompress.data import Splits
    from autocompress.export import Target
    from autocompress.inputs import Inputs
    from autocompress.recipe import Length, SplitsRecipe
    from autocompress.train.base import BaseModel
    from autocompress.train.fit import EpochLog


def run_config_name(study: str | None) -> str:
    """``config.yaml`` for the run's own study, ``config-<study>.yaml`` for the others."""
    return "config.yaml" if study is None else f"config-{study}.yaml"


def write_run_config(cfg: Config) -> Path:
    """Record the config a search runs with, atomically, owner-only, passwords left out."""
    path = cfg.run_dir / run_config_name(cfg.search.study)
    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    return write_atomic(path, text, mode=0o600)


def load_run_config(
    run_dir: str | Path, overrides: Iterable[str] = (), study: str | None = None
) -> Config:
    """The config a search ran with (``RUN_DIR/config.yaml``), located at ``run_dir``.

    The run may have been moved: its name and root are taken from where it is now (set as
    values, never spliced into config text, so any path works).

    Example::

        cfg = load_run_config("runs/lenet5-fashion-mnist")
    """
    run_dir = Path(run_dir)
    path = run_dir / run_config_name(study)
    if not path.is_file():
        raise ConfigError(
            "RUN_DIR", str(run_dir), f"a run directory holding {path.name} (made by `search`)"
        )
    raw = read_raw_config(path, overrides)
    resolved = run_dir.resolve()
    raw["runs_root"], raw["name"] = str(resolved.parent), resolved.name
    return parse_config(raw)


@dataclass(frozen=True)
class Prepared:
    """What every command that compresses the base model starts from."""

    splits: Splits
    base: BaseModel
    profile: Profile


def prepare(cfg: Config, on_epoch: Callable[[EpochLog], None] | None = None) -> Prepared:
    """Data, the (cached or freshly trained) base model and its profile. Writes no config."""
    from autocompress.cost.profile import profile_model
    from autocompress.data import load_data
    from autocompress.train.base import ensure_base

    splits = load_data(cfg.data, seed=cfg.train.seed)
    base = ensure_base(cfg, splits, on_epoch=on_epoch)
    name = base.spec.get("name") or base.spec["factory"]
    return Prepared(splits, base, profile_model(base.model, example_of(splits), name))


def example_of(splits: Splits) -> Inputs:
    """One sample of the data as the model takes it: a zero image for float images (the cost
    model's convention), the first sample itself for anything else (token ids, say)."""
    from autocompress.inputs import Inputs

    x = splits.x_train[:1]
    return Inputs((torch.zeros_like(x),)) if x.is_floating_point() else Inputs((x.clone(),))


def untrained_profile(cfg: Config) -> Profile:
    """The profile of the configured model before training: shapes only, no data loaded for
    built-in datasets. Enough to build and check a search space before any work."""
    return untrained_model(cfg)[1]


def untrained_model(cfg: Config) -> tuple[nn.Module, Profile]:
    """The configured model with its initial weights, and its profile (see
    :func:`untrained_profile`): what shapes and latency depend on."""
    from autocompress.cost.profile import profile_model
    from autocompress.data import data_shape, load_data
    from autocompress.train.base import init_model, spec_for

    shape, num_classes = data_shape(cfg.data)
    spec = spec_for(cfg, shape, num_classes)
    example: Inputs | tuple[int, ...] = shape
    if cfg.data.name is None:  # a factory's data may be tokens: profile on a real sample
        example = example_of(load_data(cfg.data, seed=cfg.train.seed))
    model = init_model(spec, cfg.train.seed)
    return model, profile_model(model, example, spec.get("name") or spec["factory"])


def splits_recipe(cfg: Config, splits: Splits) -> SplitsRecipe:
    """The built-in recipe of a config: its data, fine-tune settings, batch size and device."""
    from autocompress.recipe import SplitsRecipe

    return SplitsRecipe(splits, cfg.finetune, cfg.data.batch_size, cfg.train.device)


def target(cfg: Config, base: BaseModel) -> Target:
    """How a config's candidates are written: its model's spec, the data's normalisation, and
    the factory the config names (the user allowed it by pointing the command at it)."""
    from autocompress.export import Target
    from autocompress.train.base import allowed_by

    return Target(
        base.spec, base.metrics.get("mean"), base.metrics.get("std"), tuple(allowed_by(cfg))
    )


def finetune_length(cfg: Config, epochs: float | None = None) -> Length:
    """A candidate's fine-tune: ``epochs`` if given (an export's), else ``finetune.steps`` or
    ``finetune.epochs`` (a trial's)."""
    from autocompress.recipe import Length

    if epochs is not None:
        return Length(epochs=epochs)
    if cfg.finetune.steps is not None:
        return Length(steps=cfg.finetune.steps)
    return Length(epochs=cfg.finetune.epochs)
