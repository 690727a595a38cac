"""Measured CPU latency: median wall time of repeated forward passes, fixed threads and batch."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn


@torch.no_grad()
def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, ...],
    batch: int = 1,
    repeats: int = 30,
    warmup: int = 5,
    threads: int | None = None,
) -> float:
    """Median milliseconds per forward pass of a ``batch`` of ``input_shape`` inputs."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        model = model.eval()
        x = torch.randn(batch, *input_shape)
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1e3
    finally:
        torch.set_num_threads(previous)
