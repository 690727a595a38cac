"""Why the search times candidates side by side, and where integer kernels do not pay.

    python benchmarks/latency_side_by_side.py [--rounds 6]

1. Noise. LeNet-5 (random weights) and three random mixed policies, exported as they deploy
   and timed in ONNX Runtime (1 thread, batch 64) against the uncompressed model, ``--rounds``
   times a second apart: the ratio of separately measured medians (base, then candidate) and
   the ratio with the two models' runs alternated (``cost.latency.alternated_ratio``, what the
   search and ``autocompress latency --compare`` use). Printed: each ratio's range over rounds.
2. Few input channels. One convolution alone (the latency table's one-layer models), its
   integer form (uint8 in, QLinearConv, uint8 out) against its float form, alternated: the
   first convolutions of LeNet-5 (1 input channel) and ResNet-20 (3), and wider ones.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import autocompress as ac
from autocompress.cost.latency import onnx_latency, onnx_latency_ratio
from autocompress.cost.runtime_table import Shape, layer_model
from autocompress.export import batch_feeds, random_policies, write_deployed_onnx
from autocompress.models import ZOO


def noise(rounds: int) -> None:
    torch.manual_seed(0)
    model = ZOO["lenet5"]().eval()
    example = torch.zeros(1, 1, 28, 28)
    inputs = ac.Inputs((example,))
    profile = ac.profile(model, example, name="lenet5")
    folder = Path(tempfile.mkdtemp(prefix="side-by-side-"))
    files = []
    candidates = [(model, ac.Policy("lenet5"))]
    for policy in random_policies(profile, 3, seed=3):
        calibration = [torch.randn(8, 1, 28, 28)]
        candidates.append((ac.compress(model, policy, example, calibration=calibration), policy))
    for i, (net, policy) in enumerate(candidates):
        path = folder / f"{i}.onnx"
        report = write_deployed_onnx(net.eval(), policy, path, inputs)
        files.append((path, batch_feeds(report, inputs, 64)))
    (base, base_feeds), rest = files[0], files[1:]
    separate: list[list[float]] = [[] for _ in rest]
    alternated: list[list[float]] = [[] for _ in rest]
    for _ in range(rounds):
        for i, (path, feeds) in enumerate(rest):
            ms_base = onnx_latency(base, base_feeds)
            ms = onnx_latency(path, feeds)
            separate[i].append(ms / ms_base)
            alternated[i].append(onnx_latency_ratio(path, feeds, base, base_feeds))
        time.sleep(1.0)
    print(f"\n== LeNet-5, {rounds} rounds: candidate / base latency, range over rounds ==")
    for i in range(len(rest)):
        for label, values in (("separate", separate[i]), ("alternated", alternated[i])):
            lo, hi = min(values), max(values)
            print(
                f"policy {i} {label:10s} {lo:.3f} .. {hi:.3f}  (spread {hi / lo - 1:6.1%})  "
                + " ".join(f"{v:.3f}" for v in values)
            )


def few_channels() -> None:
    print("\n== one convolution, integer against float (batch 64, 1 thread, alternated) ==")
    cases = [
        ("LeNet-5 conv1", Shape("conv", (5, 5), size=(28, 28)), 1, 13),
        ("LeNet-5 conv1, 20 out", Shape("conv", (5, 5), size=(28, 28)), 1, 20),
        ("4 in", Shape("conv", (5, 5), size=(28, 28)), 4, 13),
        ("LeNet-5 conv2", Shape("conv", (5, 5), size=(12, 12)), 13, 14),
        ("ResNet-20 conv1", Shape("conv", (3, 3), padding=(1, 1), size=(32, 32)), 3, 16),
        ("ResNet-20 layer1", Shape("conv", (3, 3), padding=(1, 1), size=(32, 32)), 16, 16),
    ]
    for label, shape, cin, cout in cases:
        integer, int_feeds = layer_model(shape, "int8", cin, cout, 64)
        plain, feeds = layer_model(shape, "float", cin, cout, 64)
        ratio = min(
            onnx_latency_ratio(
                integer.SerializeToString(), int_feeds, plain.SerializeToString(), feeds
            )
            for _ in range(3)
        )
        ms = onnx_latency(plain.SerializeToString(), feeds)
        channels = f"{cin:2d} -> {cout:2d}"
        print(f"{label:22s} {channels}: integer / float {ratio:5.2f}  (float {ms:.3f} ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    noise(args.rounds)
    few_channels()
