"""ONNX Runtime's integer kernels with and without ``session.x64quantprecision``: what each
computes (LeNet-5 at W8A8 against its simulation) and what each costs (ResNet-20 and LeNet-5 at
W8A8, timed side by side).

    python benchmarks/int8_saturation.py [--rounds 5]

On x86 CPUs without VNNI the default uint8 × int8 kernels add pairs of products in 16 bits
with saturation; the option selects ONNX Runtime's exact uint8 × uint8 kernels. With VNNI the
defaults are exact, and the option still switches every integer layer to the uint8 × uint8
kernels. ``autocompress.cost.latency.ort_session_config`` sets the option only where the CPU
lacks VNNI; this prints what it chose here. Accuracy: per way of opening the file, the largest
and median output difference (against the output range) and how many of 256 random inputs
change their top class. Cost: the two ways' runs alternated (30 after 5, 1 intra-op thread,
batch 64, ``cost.latency.alternated_ratio``), one ratio per round, the median of the rounds
with their range; milliseconds are the defaults' lowest round.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import autocompress as ac
from autocompress.cost.latency import (
    EXACT_INT8_CONFIG,
    alternated_ratio,
    cpu_flags,
    ort_session_config,
)
from autocompress.export import write_deployed_onnx
from autocompress.models import ZOO

FLAGS = ("avx2", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")
SHAPES = {"lenet5": (1, 28, 28), "resnet20": (3, 32, 32)}


def session(path: Path, config: dict[str, str], fused: bool = True) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    if not fused:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    for key, value in config.items():
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def w8a8(name: str, path: Path) -> torch.nn.Module:
    """``name`` of the zoo, random weights, W8A8 on every layer (ranges calibrated on random
    batches), its integer ONNX written to ``path``; returns the simulated model."""
    shape = SHAPES[name]
    model = ZOO[name]().eval()
    example = torch.zeros(1, *shape)
    profile = ac.profile(model, example, name=name)
    policy = ac.Policy(name, {n: ac.LayerChoice(w_bits=8, a_bits=8) for n in profile.layers})
    calibration = [torch.randn(32, *shape) for _ in range(3)]
    small = ac.compress(model, policy, example, calibration=calibration).eval()
    write_deployed_onnx(small, policy, path, ac.Inputs((example,)))
    return small


def accuracy(work: Path) -> None:
    path = work / "lenet5.onnx"
    small = w8a8("lenet5", path)
    x = torch.randn(256, *SHAPES["lenet5"])
    with torch.no_grad():
        simulated = small(x).numpy()
    span = float(simulated.max() - simulated.min())
    print(f"LeNet-5 W8A8, 256 random inputs, output range {span:.3f}")
    for label, config, fused in (
        ("QDQ as written (no fusion)", {}, False),
        ("fused kernels, default options", {}, True),
        ("fused kernels, x64quantprecision=1", EXACT_INT8_CONFIG, True),
    ):
        out = session(path, config, fused).run(None, {"images": x.numpy()})[0]
        diff = np.abs(out - simulated)
        changed = float((out.argmax(1) != simulated.argmax(1)).mean())
        print(
            f"{label:36s} max diff {diff.max() / span:6.1%} of the range, median "
            f"{np.median(diff) / span:6.2%}, top class changed on {changed:5.1%}"
        )


def cost(work: Path, rounds: int) -> None:
    print("\n| W8A8 model, batch 64, 1 thread | defaults ms | x64quantprecision=1 / defaults |")
    print("|---|---|---|")
    for name, shape in SHAPES.items():
        path = work / f"{name}.onnx"
        w8a8(name, path)
        feeds = {"images": np.random.default_rng(0).standard_normal((64, *shape), np.float32)}
        default, exact = session(path, {}), session(path, EXACT_INT8_CONFIG)
        ratios, lows = [], []
        with_option = lambda s=exact, f=feeds: s.run(None, f)  # noqa: E731
        without = lambda s=default, f=feeds: s.run(None, f)  # noqa: E731
        for _ in range(rounds):
            ratios.append(alternated_ratio(with_option, without))
            times = []
            for _ in range(30):
                start = time.perf_counter()
                default.run(None, feeds)
                times.append(time.perf_counter() - start)
            lows.append(statistics.median(times) * 1e3)
        print(
            f"| {name} | {min(lows):.2f} | {statistics.median(ratios):.3f} "
            f"({min(ratios):.3f}–{max(ratios):.3f}) |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    flags = cpu_flags() or frozenset()
    isa = ", ".join(f for f in FLAGS if f in flags) or "none of AVX2/AVX-512/VNNI/AMX"
    print(f"ONNX Runtime {ort.__version__}; CPU int8 instruction sets: {isa}")
    print(f"autocompress opens integer files here with: {ort_session_config() or 'the defaults'}")
    with tempfile.TemporaryDirectory() as tmp:
        accuracy(Path(tmp))
        cost(Path(tmp), args.rounds)


if __name__ == "__main__":
    main()
