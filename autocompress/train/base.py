"""The base model: trained once per (model, data, train settings), cached in the run directory."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autocompress.checkpoint import load_checkpoint, read_pretrained, save_checkpoint
from autocompress.config import Config, base_key, file_sha256
from autocompress.data import Splits
from autocompress.errors import CheckpointError
from autocompress.files import write_atomic
from autocompress.models import build_model, model_spec
from autocompress.train.device import on_device, resolve_device
from autocompress.train.fit import EpochLog, evaluate, fit


@dataclass(frozen=True)
class BaseModel:
    model: nn.Module
    spec: dict[str, Any]
    path: Path
    metrics: dict[str, Any]  # test_accuracy, val_accuracy, train_seconds, epochs, ...
    cached: bool


def spec_for(cfg: Config, input_shape: tuple[int, ...], num_classes: int) -> dict[str, Any]:
    return model_spec(cfg.model.name, cfg.model.factory, cfg.model.args, input_shape, num_classes)


def allowed_by(cfg: Config) -> list[str]:
    """The model factory a config names, which the user allowed by pointing a command at it."""
    return [cfg.model.factory] if cfg.model.factory else []


def base_path(cfg: Config) -> Path:
    """``runs/<name>/base-<hash>.pt``: the hash covers model, data and train settings (or the
    contents of ``model.checkpoint``, when the base starts from given weights)."""
    return cfg.run_dir / f"base-{base_key(cfg)}.pt"


def init_model(spec: dict[str, Any], seed: int) -> nn.Module:
    """The untrained model, initialised from ``seed`` (the same weights on every call)."""
    torch.manual_seed(seed)
    return build_model(spec)


def load_pretrained(model: nn.Module, spec: dict[str, Any], path: Path) -> dict[str, Any]:
    """Load the weights of ``model.checkpoint`` into ``model``; returns where they came from.

    The tensors must fit the model exactly (every name, every shape): a partial load would
    start the search from a model that is neither the user's nor a trained one.
    """
    state = read_pretrained(path, spec)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise CheckpointError(
            f"model.checkpoint {path}: the weights do not fit the configured model "
            f"{spec.get('name') or spec.get('factory')}: {detail[:1500]}"
        ) from None
    return {"checkpoint": str(path), "checkpoint_sha256": file_sha256(path, "model.checkpoint")}


def ensure_base(
    cfg: Config,
    splits: Splits,
    force: bool = False,
    on_epoch: Callable[[EpochLog], None] | None = None,
) -> BaseModel:
    """Load the cached base model, or train it (or load ``model.checkpoint``), evaluate it on
    the test set and cache it."""
    path = base_path(cfg)
    if path.exists() and not force:
        # the factory the user's config names may be imported; any other in the file is refused
        model, payload = load_checkpoint(path, allow_factories=allowed_by(cfg))
        return BaseModel(model, payload["model"], path, payload["meta"], cached=True)
    spec = spec_for(cfg, splits.input_shape, splits.num_classes)
    model = init_model(spec, cfg.train.seed)
    start = time.perf_counter()
    device = resolve_device(cfg.train.device)
    source: dict[str, Any] = {}
    if cfg.model.checkpoint is None:
        history = fit(model, splits, cfg.train, cfg.data.batch_size, on_epoch, device)
    else:
        source = load_pretrained(model, spec, Path(cfg.model.checkpoint))
        history = []
    seconds = time.perf_counter() - start
    with on_device(device, model):
        test_accuracy = evaluate(model, splits.x_test, splits.y_test)
        val_accuracy = (
            history[-1].val_accuracy
            if history
            else evaluate(model, splits.x_val, splits.y_val)
            if len(splits.x_val)
            else float("nan")
        )
    metrics = {
        "test_accuracy": test_accuracy,
        "device": str(device),
        "val_accuracy": val_accuracy,
        **source,
        "train_seconds": round(seconds, 2),
        "epochs": cfg.train.epochs if history else 0,
        "threads": torch.get_num_threads(),
        "history": [
            {
                "epoch": h.epoch,
                "train_loss": h.train_loss,
                "val_accuracy": h.val_accuracy,
                "seconds": h.seconds,
            }
            for h in history
        ],
    }
    meta = {
        **metrics,
        "config": cfg.to_dict(),
        "input_shape": list(splits.input_shape),
        "mean": list(splits.mean) if splits.mean else None,
        "std": list(splits.std) if splits.std else None,
    }
    save_checkpoint(path, model, spec, input_shape=splits.input_shape, meta=meta)
    write_atomic(path.with_suffix(".json"), json.dumps(metrics, indent=2) + "\n")
    return BaseModel(model.eval(), spec, path, meta, cached=False)
