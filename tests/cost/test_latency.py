"""Latency measured side by side: the ratio of two models' medians, their runs alternated."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from autocompress.cost import latency
from autocompress.cost.latency import alternated_ratio, torch_latency_ratio


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
