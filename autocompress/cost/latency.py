"""Measured CPU latency: median wall time of repeated forward passes, fixed threads and batch."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from autocompress.inputs import Inputs


@torch.no_grad()
def measure_latency(
    model: nn.Module,
    example: tuple[int, ...] | Inputs,
    batch: int = 1,
    repeats: int = 30,
    warmup: int = 5,
    threads: int | None = None,
) -> float:
    """Median milliseconds per forward pass on ``batch`` random images of a sample shape,
    or on the example inputs repeated ``batch`` times along their first dimension."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        model = model.eval()
        x = (
            example.repeated(batch)
            if isinstance(example, Inputs)
            else Inputs((torch.randn(batch, *example),))
        )
        for _ in range(warmup):
            x(model)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            x(model)
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1e3
    finally:
        torch.set_num_threads(previous)
