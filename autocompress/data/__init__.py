"""Datasets as in-memory tensors: built-in readers of the standard files, and user factories.

Every dataset becomes a :class:`Splits`: normalised float tensors for train / val / test, the
validation split carved deterministically from the training set. These sets fit in RAM, so
batches are sliced from tensors with no DataLoader workers.

A user factory ``module:function`` is called with ``data.args`` and returns
``(x_train, y_train, x_test, y_test)`` as tensors (images N×C×H×W already normalised, or
integer token ids N×L), a dict of the same with optional ``mean``/``std`` (the normalisation
applied, which exports then put inside the model so it takes raw [0, 1] images), or a
:class:`Splits` itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch

from typing import TYPE_CHECKING

from autocompress.data import cifar10, digits, mnist
from autocompress.errors import ConfigError

if TYPE_CHECKING:  # the config module checks dataset names against this one: no cycle
    from autocompress.config import DataConfig


@dataclass(frozen=True)
class DatasetInfo:
    """What the engine knows of a built-in dataset without reading its files."""

    input_shape: tuple[int, int, int]
    num_classes: int
    load: Callable[[str], tuple[torch.Tensor, ...]]  # root -> images in [0, 1], labels
    mean: tuple[float, ...]  # per-channel normalisation applied to the [0, 1] images
    std: tuple[float, ...]
    augment: bool = False  # random crop + flip by default


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo((1, 28, 28), 10, mnist.load_mnist, (0.1307,), (0.3081,)),
    "fashion_mnist": DatasetInfo((1, 28, 28), 10, mnist.load_fashion_mnist, (0.2860,), (0.3530,)),
    "cifar10": DatasetInfo((3, 32, 32), 10, cifar10.load, (0.4914, 0.4822, 0.4465),
                           (0.2470, 0.2435, 0.2616), augment=True),
    "digits": DatasetInfo((1, 8, 8), 10, digits.load, (0.3050,), (0.3773,)),
}


@dataclass(frozen=True)
class Splits:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    augment: bool = False
    # normalisation already applied to x_*; export puts it inside the model (raw [0, 1] in)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    # the selection split: held out like validation, kept apart from it (empty: none)
    x_select: torch.Tensor | None = None
    y_select: torch.Tensor | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def data_shape(cfg: DataConfig) -> tuple[tuple[int, ...], int]:
    """(input shape of one sample, number of classes), without loading a built-in dataset."""
    if cfg.name is not None:
        info = DATASETS[cfg.name]
        return info.input_shape, info.num_classes
    splits = load_data(cfg)
    return splits.input_shape, splits.num_classes


def load_data(cfg: DataConfig, seed: int = 0) -> Splits:
    """Load the configured dataset and carve ``cfg.val_size`` held-out images from train:
    the last ``cfg.selection`` of them are the selection split, the others validation.

    The split depends only on ``seed`` and the dataset, so every trial and every rerun
    validates on the same images.
    """
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    if cfg.name is not None:
        info = DATASETS[cfg.name]
        x_train, y_train, x_test, y_test = (normalize(t, info.mean, info.std) if t.is_floating_point()
                                            else t for t in info.load(cfg.root))
        num_classes, augment, mean, std = info.num_classes, info.augment, info.mean, info.std
    else:
        from autocompress.models import load_factory

        assert cfg.factory is not None
        result = load_factory(cfg.factory, "data.factory")(**cfg.args)
        if isinstance(result, Splits):
            return result
        mean = std = None
        if isinstance(result, Mapping):  # may carry the normalisation export puts in the model
            mean, std = _floats(result.get("mean")), _floats(result.get("std"))
            result = tuple(result.get(k) for k in ("x_train", "y_train", "x_test", "y_test"))
        try:
            x_train, y_train, x_test, y_test = result
        except (TypeError, ValueError):
            raise ConfigError("data.factory", cfg.factory, "must return (x_train, y_train, "
                              "x_test, y_test) tensors, a dict of them (with optional 'mean' and "
                              "'std' already applied to x), or a Splits") from None
        num_classes, augment = int(max(y_train.max(), y_test.max())) + 1, False
    if cfg.augment is not None:
        augment = cfg.augment
    if not 0 <= cfg.val_size < len(x_train):
        raise ConfigError("data.val_size", cfg.val_size,
                          f"must be below the {len(x_train)} training images")
    order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(seed))
    held_out, train = order[: cfg.val_size], order[cfg.val_size:]
    n_select = int(cfg.val_size * cfg.selection)
    val, select = held_out[: cfg.val_size - n_select], held_out[cfg.val_size - n_select:]
    if cfg.train_size is not None:
        if cfg.train_size > len(train):
            raise ConfigError("data.train_size", cfg.train_size,
                              f"at most the {len(train)} training images left after validation")
        train = train[: cfg.train_size]
    return Splits(x_train[train], y_train[train], x_train[val], y_train[val], x_test, y_test,
                  num_classes, augment, mean, std, x_train[select], y_train[select])


def _floats(value: object) -> tuple[float, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not all(isinstance(v, int | float) for v in value):
        raise ConfigError("data.factory", value, "'mean' and 'std' are lists of numbers")
    return tuple(float(v) for v in value)


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(x - mean) / std per channel, in place on a fresh tensor."""
    shape = (1, len(mean), 1, 1)
    return x.sub_(torch.tensor(mean).view(shape)).div_(torch.tensor(std).view(shape))


def batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator | None = None,
    augment: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches; shuffled when a generator is given, cropped and flipped when ``augment``."""
    order = torch.randperm(len(x), generator=generator) if generator is not None else None
    for start in range(0, len(x), batch_size):
        idx = order[start:start + batch_size] if order is not None else slice(start, start + batch_size)
        xb, yb = x[idx], y[idx]
        if augment:
            xb = crop_flip(xb, generator)
        yield xb, yb


def crop_flip(x: torch.Tensor, generator: torch.Generator | None, pad: int = 4) -> torch.Tensor:
    """Random crop after zero padding, and random horizontal flip, on a batch (N, C, H, W)."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # n, h, 1
    cols = (dx[:, None] + torch.arange(w))[:, None, :]  # n, 1, w
    flip = torch.rand(n, generator=generator) < 0.5
    cols = torch.where(flip[:, None, None], cols.flip(-1), cols)
    out = padded[torch.arange(n)[:, None, None], :, rows, cols]  # n, h, w, c
    return out.permute(0, 3, 1, 2).contiguous()
