"""The integer export's channel padding, end to end: the same W8A8 model written with its
2–3-channel convolutions padded to 4 (the default) and without, timed side by side.

    python benchmarks/pad_channels.py [--rounds 5] [--models resnet20 vgg16_bn]

Each model (random weights, ranges calibrated on random batches, as ``int8_onnx.py`` builds
it) is written twice by ``export.write_deployed_onnx``, once with ``deploy.PAD_CHANNELS``
emptied; the padded file's runs alternate with the other's (``onnx_latency_ratio``, 1 thread,
batch 64), one ratio a round, and the outputs of both files are compared.

First, one integer convolution alone (``runtime_table.layer_model``, the table's one-layer
model: uint8 in, QLinearConv, uint8 out) with 1–3 input channels, padded to 4 against as it is,
side by side the same way: why the export pads 2 and 3 channels and not 1.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import autocompress as ac
from autocompress import deploy
from autocompress.cost import runtime_table
from autocompress.cost.latency import onnx_latency_ratio, onnx_session_options
from autocompress.cost.runtime_table import Shape, layer_model
from autocompress.export import write_deployed_onnx
from autocompress.models import ZOO


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=["resnet20", "vgg16_bn"])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pad-channels-"))
    print("| one convolution, batch 64 | padded to 4 / as it is (median of rounds, range) |")
    print("|---|---|")
    cases = [
        ("3x3 on 32x32 (ResNet-20 / VGG first layer)", 3, 1, 32, cin, cout)
        for cin, cout in ((3, 16), (3, 64), (2, 16))
    ] + [("5x5 on 28x28 (LeNet-5 conv1)", 5, 0, 28, 1, cout) for cout in (13, 20)]
    for label, k, pad, size, cin, cout in cases:
        ratios = one_layer(
            Shape("conv", (k, k), padding=(pad, pad), size=(size, size)), cin, cout, args.rounds
        )
        print(f"| {label}, {cin} → {cout} | {spread(ratios)} |", flush=True)
    print("\n| W8A8 model | padded / as it is (median of rounds, range) | max output difference |")
    print("|---|---|---|")
    for name in args.models:
        torch.manual_seed(0)
        model, shape = ZOO[name]().eval(), (3, 32, 32)  # the CIFAR-10 models
        example = torch.zeros(1, *shape)
        prof = ac.profile(model, example, name=name)
        policy = ac.Policy(name, {n: ac.LayerChoice(w_bits=8, a_bits=8) for n in prof.layers})
        calibration = [torch.randn(64, *shape) for _ in range(4)]
        small = ac.compress(model, policy, example, calibration=calibration)
        padded, plain = work / f"{name}-padded.onnx", work / f"{name}-plain.onnx"
        write_deployed_onnx(small, policy, padded, ac.Inputs((example,)))
        with mock.patch.object(deploy, "PAD_CHANNELS", ()):
            write_deployed_onnx(small, policy, plain, ac.Inputs((example,)))
        x = np.random.default_rng(0).standard_normal((64, *shape)).astype(np.float32)
        feeds = {"images": x}
        outs = [
            ort.InferenceSession(str(p), onnx_session_options()).run(None, feeds)[0]
            for p in (padded, plain)
        ]
        ratios = [onnx_latency_ratio(padded, feeds, plain, feeds, 1) for _ in range(args.rounds)]
        print(
            f"| {name} | {spread(ratios)} | {float(np.abs(outs[0] - outs[1]).max()):.2e} |",
            flush=True,
        )


def one_layer(shape: Shape, cin: int, cout: int, rounds: int) -> list[float]:
    """Side-by-side ratios of the integer convolution with its uint8 input padded to 4 channels
    (zero point; zero weights on the added ones) against the same convolution as it is."""
    from onnx import helper, numpy_helper

    with mock.patch.object(runtime_table, "PAD_CHANNELS", ()):  # the table pads as the export
        plain, feeds = layer_model(shape, "int8", cin, cout, 64)
    padded, _ = layer_model(shape, "int8", 4, cout, 64)
    graph = padded.graph
    graph.input[0].type.tensor_type.shape.dim[1].dim_value = cin
    for node in graph.node:
        node.input[:] = ["xp" if name == "x" else name for name in node.input]
    widths = np.array([0, 0, 0, 0, 0, 4 - cin, 0, 0], np.int64)
    graph.initializer.append(numpy_helper.from_array(widths, "widths"))
    graph.node.insert(0, helper.make_node("Pad", ["x", "widths", "z"], ["xp"]))
    mine, theirs = padded.SerializeToString(), plain.SerializeToString()
    return [onnx_latency_ratio(mine, feeds, theirs, feeds, 1) for _ in range(rounds)]


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}–{max(values):.3f})"


if __name__ == "__main__":
    main()
