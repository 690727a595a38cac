"""Measured CPU latency: median wall time of repeated runs, fixed threads and batch, in PyTorch
(:func:`measure_latency`) or ONNX Runtime (:func:`onnx_latency`); and the ratio of two models'
latencies measured side by side, their runs alternated (:func:`alternated_ratio`,
:func:`onnx_latency_ratio`), which a shared machine's slow-downs do not move."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
    with _threads(threads):
        model = model.eval()
        x = _batch(example, batch)
        for _ in range(warmup):
            x(model)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            x(model)
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1e3


@torch.no_grad()
def torch_latency_ratio(
    model: nn.Module,
    reference: nn.Module,
    example: tuple[int, ...] | Inputs,
    batch: int = 1,
    repeats: int = 30,
    warmup: int = 5,
    threads: int | None = None,
) -> float:
    """``model``'s PyTorch latency as a fraction of ``reference``'s on the same inputs, their
    runs alternated (:func:`alternated_ratio`)."""
    with _threads(threads):
        x = _batch(example, batch)
        mine, theirs = model.eval(), reference.eval()
        return alternated_ratio(lambda: x(mine), lambda: x(theirs), repeats, warmup)


@contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    """PyTorch's intra-op threads set to ``threads`` (if given), restored afterwards."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _batch(example: tuple[int, ...] | Inputs, batch: int) -> Inputs:
    """``batch`` copies of the example inputs, or ``batch`` random images of a sample shape."""
    if isinstance(example, Inputs):
        return example.repeated(batch)
    return Inputs((torch.randn(batch, *example),))


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
    session = onnx_session(model, threads)
    for _ in range(warmup):
        session.run(None, feeds)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def alternated_ratio(
    run: Callable[[], Any], reference: Callable[[], Any], repeats: int = 30, warmup: int = 5
) -> float:
    """Median wall time of ``run`` over the median of ``reference``, their runs alternated.

    A shared machine has episodes that slow every run down by up to 1.7x for seconds (measured
    here: the same ONNX file at 5.1 ms, then 7.3 ms, then 5.1 ms); two models measured one after
    the other can land in different episodes, so the ratio of separate medians jumps (0.81 to
    1.22 for the same pair). Alternated run by run, both see the same machine: over six rounds
    the separate ratios of three LeNet-5 policies spread by up to 91%, the alternated ones by
    6% at most (``benchmarks/latency_side_by_side.py``)."""
    for _ in range(warmup):
        reference()
        run()
    mine, theirs = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        reference()
        middle = time.perf_counter()
        run()
        theirs.append(middle - start)
        mine.append(time.perf_counter() - middle)
    return statistics.median(mine) / statistics.median(theirs)


CPUINFO = Path("/proc/cpuinfo")
X86 = ("x86_64", "amd64", "i386", "i686", "x86")
# x86 instruction sets whose uint8 × int8 dot products add in 32 bits (VPDPBUSD): with either,
# ONNX Runtime's default integer kernels are exact (AMX hosts have AVX-512 VNNI too)
VNNI = frozenset({"avx512_vnni", "avx_vnni"})
# ONNX Runtime's exact uint8 × uint8 kernels, for x86 CPUs without VNNI
EXACT_INT8_CONFIG = {"session.x64quantprecision": "1"}
SESSION_CONFIG_RULE = (
    "on x86 CPUs without AVX-512 VNNI or AVX-VNNI, open model.onnx with "
    "session.x64quantprecision=1 (the default kernels saturate there); elsewhere leave it "
    "unset (the default kernels are exact, and the option makes integer layers about 2x slower)"
)


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str] | None:
    """The CPU's feature flags as ``/proc/cpuinfo`` lists them (Linux), or None where that
    file cannot be read."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "flags:")
    return frozenset(line.split(":", 1)[1].split())


def ort_session_config(cpuinfo: Path = CPUINFO, machine: str | None = None) -> dict[str, str]:
    """ONNX Runtime's session settings an integer ``model.onnx`` needs on this host to compute
    what its report says, and no more.

    On x86 CPUs without VNNI (AVX2, or AVX-512 without VNNI: AMD before Zen 4, Intel before
    Cascade Lake) the default uint8 × int8 kernels add pairs of products in 16 bits with
    saturation, and 8-bit weights times activations near the top of their range overflow it
    (LeNet-5 at W8A8 on an AVX2 EPYC: outputs off by a tenth of their range, 4% of predictions
    changed): there :data:`EXACT_INT8_CONFIG` selects the exact uint8 × uint8 kernels. With
    VNNI the default kernels are exact already, and the option costs speed (ResNet-20 at W8A8
    ran 2.3x slower with it on an AVX-512 VNNI EPYC); on other machines it does nothing. Where
    the CPU's flags cannot be read on x86 (no ``/proc/cpuinfo``), exactness wins: the option.

    >>> ort_session_config(machine="arm64")
    {}
    >>> ort_session_config(Path("/no/cpuinfo"), machine="x86_64")
    {'session.x64quantprecision': '1'}
    """
    import platform

    if (machine or platform.machine()).lower() not in X86:
        return {}
    flags = cpu_flags(cpuinfo)
    if flags is not None and flags & VNNI:
        return {}
    return dict(EXACT_INT8_CONFIG)


def onnx_session_options(threads: int = 1, optimise: bool = True) -> Any:
    """ONNX Runtime session options as autocompress runs a deployed ``model.onnx``:
    ``threads`` intra-op threads, one inter-op thread, :func:`ort_session_config`, and all
    graph optimisations (the fused integer kernels) unless ``optimise`` is False (every op as
    written).

    Example::

        import onnxruntime as ort
        from autocompress.cost.latency import onnx_session_options

        session = ort.InferenceSession("export/model.onnx", onnx_session_options())
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    for key, value in ort_session_config().items():
        options.add_session_config_entry(key, value)
    if not optimise:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return options


def onnx_session(model: Path | bytes, threads: int = 1) -> Any:
    """An ONNX Runtime CPU session of ``model`` (a file, or its bytes) with
    :func:`onnx_session_options`: ``threads`` intra-op threads, one inter-op thread, all graph
    optimisations (the integer kernels)."""
    import onnxruntime as ort

    options = onnx_session_options(threads)
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def onnx_latency_ratio(
    model: Path | bytes,
    feeds: dict[str, np.ndarray],
    reference: Path | bytes,
    reference_feeds: dict[str, np.ndarray],
    threads: int = 1,
    repeats: int = 30,
    warmup: int = 5,
) -> float:
    """``model``'s ONNX Runtime latency as a fraction of ``reference``'s, their runs alternated
    (:func:`alternated_ratio`)."""
    mine, theirs = onnx_session(model, threads), onnx_session(reference, threads)
    return alternated_ratio(
        lambda: mine.run(None, feeds), lambda: theirs.run(None, reference_feeds), repeats, warmup
    )
