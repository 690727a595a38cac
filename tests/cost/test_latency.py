"""Latency measured side by side: the ratio of two models' medians, their runs alternated."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from autocompress.cost import latency
from autocompress.cost.latency import EXACT_INT8_CONFIG, alternated_ratio, torch_latency_ratio


class Clock:
    """A stand-in for ``time.perf_counter`` that the measured calls advance."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_ratio_alternates_runs_so_a_slow_episode_hits_both(monkeypatch) -> None:
    clock = Clock()
    monkeypatch.setattr(latency.time, "perf_counter", clock)
    calls: list[str] = []
    # the machine slows everything down 3x during the middle third of the measurement
    slowdown = itertools.chain([1.0] * 20, [3.0] * 20, itertools.repeat(1.0))

    def run() -> None:
        calls.append("run")
        clock.now += 1.0 * next(slowdown)

    def reference() -> None:
        calls.append("reference")
        clock.now += 4.0 * next(slowdown)

    ratio = alternated_ratio(run, reference, repeats=30, warmup=2)
    assert ratio == pytest.approx(0.25)  # separate medians would not agree
    assert calls[:4] == ["reference", "run", "reference", "run"]
    assert calls.count("run") == calls.count("reference") == 32


def test_pytorch_models_are_measured_at_the_threads_asked_then_restored(monkeypatch) -> None:
    seen: list[int] = []

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(torch.get_num_threads())
            return x * 2

    before = torch.get_num_threads()
    wanted = 1 if before > 1 else 2
    ratio = torch_latency_ratio(
        Probe(), Probe(), (8,), batch=4, repeats=5, warmup=1, threads=wanted
    )
    assert ratio > 0
    assert seen == [wanted] * 12  # 1 warm-up and 5 timed runs of each model
    assert torch.get_num_threads() == before


def cpuinfo(tmp_path, flags: str):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 {flags}\n")
    return path


@pytest.mark.parametrize(
    ("flags", "machine", "config"),
    [
        ("avx2 fma", "x86_64", EXACT_INT8_CONFIG),  # AVX2 only: 16-bit sums saturate
        ("avx2 avx512f avx512bw", "x86_64", EXACT_INT8_CONFIG),  # AVX-512 without VNNI too
        ("avx2 avx512f avx512_vnni", "x86_64", {}),  # VNNI: exact, and 2x faster without
        ("avx2 avx_vnni", "AMD64", {}),  # AVX-VNNI (Alder Lake and later)
        ("", "aarch64", {}),  # the option is an x86 one
    ],
)
def test_the_exact_kernels_are_asked_for_only_where_the_default_ones_saturate(
    tmp_path, flags, machine, config
) -> None:
    assert latency.ort_session_config(cpuinfo(tmp_path, flags), machine) == config


def test_an_x86_host_whose_flags_cannot_be_read_gets_the_exact_kernels(tmp_path) -> None:
    assert latency.ort_session_config(tmp_path / "missing", "x86_64") == EXACT_INT8_CONFIG


def test_this_hosts_session_settings_give_exact_integer_products() -> None:
    # uint8 255 x int8 127, pairs of which overflow a 16-bit sum (64,770 > 32,767): ONNX
    # Runtime's uint8 x int8 kernels without VNNI saturate them unless the session asks for
    # its exact kernels; the settings this host gets must make the product exact
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    a = np.full((8, 64), 255, np.uint8)
    b = np.full((64, 16), 127, np.int8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])],
        "saturation",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [8, 64])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [8, 16])],
        [numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    session = ort.InferenceSession(model.SerializeToString(), latency.onnx_session_options())
    (y,) = session.run(None, {"a": a})
    assert (y == 255 * 127 * 64).all()
