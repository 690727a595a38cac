"""Model zoo and user factories.

A model is described by a *spec*, plain data that a checkpoint stores and :func:`build_model`
turns back into a module: ``{"name": "lenet5", "args": {...}}`` for the zoo or
``{"factory": "pkg.mod:fn", "args": {...}}`` for user code. For zoo models the dataset's
``num_classes``, ``in_channels`` and ``input_size`` are filled in by :func:`model_spec`.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from autocompress.errors import ConfigError
from autocompress.models.lenet import LeNet5, LeNet300100
from autocompress.models.mobilenetv2 import MobileNetV2Cifar
from autocompress.models.resnet_cifar import ResNetCifar
from autocompress.models.vgg import VGG
from autocompress.models.vgg_small import VGGSmall

ZOO: dict[str, Callable[..., nn.Module]] = {
    "lenet300_100": LeNet300100,
    "lenet5": LeNet5,
    "vgg16_bn": functools.partial(VGG, 16),
    "vgg_small": VGGSmall,
    "resnet20": functools.partial(ResNetCifar, 20),
    "resnet32": functools.partial(ResNetCifar, 32),
    "resnet56": functools.partial(ResNetCifar, 56),
    "mobilenetv2_cifar": MobileNetV2Cifar,
}

# Filled from the dataset, never from model.args.
DATA_ARGS = ("num_classes", "in_channels", "input_size")
# Finite ranges of the zoo's numeric arguments: a typo such as width 100000 would otherwise
# allocate until the machine runs out of memory.
ARG_RANGES = {"width": (0.0, 16.0)}


def check_args(name: str, args: Mapping[str, Any]) -> None:
    """Raise ConfigError for a model.args key the zoo model does not take."""
    params = inspect.signature(ZOO[name]).parameters
    allowed = [p for p in params if p not in DATA_ARGS]
    for key in args:
        if key in DATA_ARGS:
            raise ConfigError(f"model.args.{key}", args[key], "set from the dataset; remove it")
        if key not in params:
            raise ConfigError(
                f"model.args.{key}",
                args[key],
                f"unknown argument of {name}; allowed: {', '.join(allowed) or 'none'}",
            )
        if key in ARG_RANGES:
            low, high = ARG_RANGES[key]
            value = args[key]
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not (number and low < value <= high):
                raise ConfigError(f"model.args.{key}", value, f"a number in ({low:g}, {high:g}]")


def model_spec(
    name: str | None,
    factory: str | None,
    args: Mapping[str, Any],
    data_shape: tuple[int, ...],
    num_classes: int,
) -> dict[str, Any]:
    """The spec of the configured model for a dataset of ``data_shape`` = (C, H, W) images."""
    if name is not None:
        full = {
            "num_classes": num_classes,
            "in_channels": data_shape[0],
            "input_size": data_shape[-1],
            **args,
        }
        return {"name": name, "args": full}
    return {"factory": factory, "args": dict(args)}


def build_model(spec: Mapping[str, Any]) -> nn.Module:
    """Instantiate a model from its spec (zoo name or user factory), in training mode."""
    args = dict(spec.get("args", {}))
    if "name" in spec:
        if spec["name"] not in ZOO:
            raise ConfigError("model.name", spec["name"], f"one of {', '.join(sorted(ZOO))}")
        try:
            return ZOO[spec["name"]](**args)
        except (TypeError, ValueError) as exc:
            raise ConfigError("model.args", args, str(exc)) from None
    fn = load_factory(spec["factory"], "model.factory")
    _check_size(fn, args)
    model = fn(**args)
    if not isinstance(model, nn.Module):
        raise ConfigError(
            "model.factory",
            spec["factory"],
            f"must return a torch.nn.Module, returned {type(model).__name__}",
        )
    return model


MAX_PARAMS = 4_000_000_000  # 16 GB of float32 weights: a typo, not a model for this tool


def _check_size(fn: Callable[..., Any], args: Mapping[str, Any]) -> None:
    """Refuse factory arguments that would allocate more than :data:`MAX_PARAMS` weights.

    The model is built first on PyTorch's meta device (shapes, no memory), so a typo such as
    ``width: 100000`` is an error naming ``model.args`` instead of minutes of swapping. A
    factory that cannot build on the meta device is built normally.
    """
    try:
        with torch.device("meta"):
            shadow = fn(**args)
    except Exception:  # the real build below reports the factory's own errors
        return
    if not isinstance(shadow, nn.Module):
        return
    count = sum(p.numel() for p in shadow.parameters()) + sum(b.numel() for b in shadow.buffers())
    if count > MAX_PARAMS:
        raise ConfigError(
            "model.args",
            dict(args),
            f"the model would hold {count:,} parameters ({count * 4 / 2**30:,.0f} GiB); "
            f"at most {MAX_PARAMS:,}",
        )


def load_factory(path: str, key: str) -> Callable[..., Any]:
    """Import ``module:function``; errors name the config key."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(key, path, f"cannot import module '{module_name}': {exc}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(key, path, f"module '{module_name}' has no function '{attr}'")
    return fn
