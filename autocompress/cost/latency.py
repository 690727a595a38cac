"""Measured CPU latency: median wall time of repeated runs, fixed threads and batch, in PyTorch
(:func:`measure_latency`) or ONNX Runtime (:func:`onnx_latency`)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
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


def onnx_latency(
    model: Path | bytes,
    feeds: dict[str, np.ndarray],
    threads: int = 1,
    repeats: int = 30,
    warmup: int = 5,
) -> float:
    """Median milliseconds of one ONNX Runtime run of ``model`` (a file, or its bytes) on
    ``feeds`` (CPU, ``threads`` intra-op threads, one inter-op thread, all graph optimisations:
    the integer kernels)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else str(model)
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    for _ in range(warmup):
        session.run(None, feeds)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3
