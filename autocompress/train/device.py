"""Where training and evaluation run: ``train.device`` (cpu, cuda, cuda:N or auto).

Models live on the CPU between steps of the pipeline — compression, packing, export and
latency measurement all work on CPU tensors — and are moved to the device only while they
train or are evaluated; batches are moved one at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from autocompress.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` is the first GPU when PyTorch sees one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(
                "train.device", name, "a CUDA device, but PyTorch sees none here; use cpu or auto"
            )
        if device.index is not None and device.index >= count:
            raise ConfigError("train.device", name, f"one of cuda:0..cuda:{count - 1}")
    return device


def model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return torch.device("cpu") if param is None else param.device


@contextmanager
def on_device(device: torch.device, *models: nn.Module | None) -> Iterator[None]:
    """Move ``models`` to ``device`` for the block, and back to the CPU after it."""
    if device.type == "cpu":
        yield
        return
    moved = [m for m in models if m is not None]
    for m in moved:
        m.to(device)
    try:
        yield
    finally:
        for m in moved:
            m.to("cpu")
