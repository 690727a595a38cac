"""Supervised training of base models, and accuracy evaluation."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from autocompress.config import TrainConfig
from autocompress.data import Splits, batches
from autocompress.train.device import model_device, on_device


@dataclass(frozen=True)
class EpochLog:
    epoch: int
    epochs: int
    train_loss: float
    val_accuracy: float
    seconds: float


def fit(
    model: nn.Module,
    splits: Splits,
    cfg: TrainConfig,
    batch_size: int,
    on_epoch: Callable[[EpochLog], None] | None = None,
    device: torch.device | None = None,
) -> list[EpochLog]:
    """Train ``model`` in place with cross-entropy; returns one log line per epoch.

    SGD with Nesterov momentum (or Adam) and a cosine or constant learning rate, stepped per
    batch. Shuffling and augmentation draw from a generator seeded with ``cfg.seed``. The model
    trains on ``device`` (default: the CPU) and is back on the CPU afterwards.
    """
    with on_device(device or torch.device("cpu"), model):
        return _fit(model, splits, cfg, batch_size, on_epoch)


def _fit(
    model: nn.Module,
    splits: Splits,
    cfg: TrainConfig,
    batch_size: int,
    on_epoch: Callable[[EpochLog], None] | None,
) -> list[EpochLog]:
    device = model_device(model)
    generator = torch.Generator().manual_seed(cfg.seed)
    if cfg.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(),
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(splits.x_train) / batch_size)
    total = cfg.epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            0.5 * (1 + math.cos(math.pi * step / total)) if cfg.schedule == "cosine" else 1.0
        ),
    )
    history = []
    for epoch in range(1, cfg.epochs + 1):
        start = time.perf_counter()
        model.train()
        loss_sum, seen = 0.0, 0
        for xb, yb in batches(
            splits.x_train, splits.y_train, batch_size, generator, splits.augment
        ):
            xb, yb = xb.to(device), yb.to(device)
            loss = nn.functional.cross_entropy(model(xb), yb)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"training loss became {loss.item()} in epoch {epoch}; lower train.lr"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.item() * len(yb)
            seen += len(yb)
        val = evaluate(model, splits.x_val, splits.y_val) if len(splits.x_val) else float("nan")
        log = EpochLog(epoch, cfg.epochs, loss_sum / seen, val, time.perf_counter() - start)
        history.append(log)
        if on_epoch is not None:
            on_epoch(log)
    return history


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy in [0, 1], in eval mode (the model's mode is restored), on the device
    the model is on."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    correct = 0
    for xb, yb in batches(x, y, batch_size):
        correct += int((model(xb.to(device)).argmax(1).cpu() == yb).sum())
    model.train(was_training)
    return correct / max(1, len(y))
