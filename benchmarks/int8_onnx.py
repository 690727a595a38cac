"""Integer ONNX against float ONNX, side by side in one run: ONNX Runtime latency and file size.

For each model (random weights; the zoo's CIFAR-10 ResNet-20 and VGG-16-BN, and LeNet-5), a
W8A8 policy on every layer is built with ``autocompress.compress`` (activation ranges
calibrated on random batches), and two files are written: the float ONNX of the same
structure (what export wrote before integer deployment) and the integer one
(``export.write_deployed_onnx``). A third file is the reference of what this runtime can do:
ONNX Runtime's own static quantizer (``quantize_static``: QDQ, uint8 activations, int8 weights
per channel, calibrated on the same random batches) applied to the float file. All run in ONNX
Runtime, 1 intra-op thread, batch 64. The ratios are timed side by side: the integer file's
runs alternate with the float file's (30 each after 5, ``cost.latency.onnx_latency_ratio``), so
machine load hits both alike; each round gives one ratio, and the table shows the median of the
rounds with their range. The milliseconds are each file's lowest round, timed apart (context).

``--first-float`` adds a row per convolutional model whose first layer (3 or 1 input channels,
where ONNX Runtime's QLinearConv is slower than its float convolution on this CPU) stays float.

    python benchmarks/int8_onnx.py [--rounds 5] [--batch 64] [--threads 1] [--first-float]
        [--models resnet20 vgg16_bn lenet5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import autocompress as ac
from autocompress.compress.layers import folded
from autocompress.cost.latency import onnx_latency, onnx_latency_ratio, onnx_session_options
from autocompress.export import write_deployed_onnx, write_onnx
from autocompress.models import ZOO

MODELS = {
    "resnet20": (lambda: ZOO["resnet20"](), (3, 32, 32)),
    "vgg16_bn": (lambda: ZOO["vgg16_bn"](), (3, 32, 32)),
    "lenet5": (lambda: ZOO["lenet5"](), (1, 28, 28)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--first-float", action="store_true")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    args = parser.parse_args()
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="int8-onnx-"))
    print(
        "| model | float ONNX ms | integer ONNX ms | latency ratio (side by side) "
        "| ORT quantize_static ratio | float bytes | integer bytes | size ratio "
        "| argmax agreement |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        build, shape = MODELS[name]
        for first_float in (False, True) if args.first_float else (False,):
            row(name, build, shape, first_float, work, args)


def row(
    name: str,
    build: Callable[[], torch.nn.Module],
    shape: tuple[int, ...],
    first_float: bool,
    work: Path,
    args: argparse.Namespace,
) -> None:
    """Build, write, time and print one model's W8A8 row (its first layer float if asked)."""
    model = build().eval()
    example = torch.zeros(1, *shape)
    prof = ac.profile(model, example, name=name)
    layers = list(prof.layers)[1:] if first_float else list(prof.layers)
    policy = ac.Policy(name, {n: ac.LayerChoice(w_bits=8, a_bits=8) for n in layers})
    calibration = [torch.randn(64, *shape) for _ in range(4)]
    small = ac.compress(model, policy, example, calibration=calibration)
    tag = f"{name}-first-float" if first_float else name
    float_path, int_path = work / f"{tag}-float.onnx", work / f"{tag}-int8.onnx"
    write_onnx(folded(small, float_inputs=True).eval(), float_path, ac.Inputs((example,)))
    report = write_deployed_onnx(small, policy, int_path, ac.Inputs((example,)))
    reference = work / f"{tag}-ort-static.onnx"
    ort_static(float_path, reference, calibration, first_float)
    x = np.random.default_rng(0).standard_normal((args.batch, *shape)).astype(np.float32)
    feeds = {"images": x}
    times: dict[str, list[float]] = {"float": [], "int8": []}
    ratios: dict[str, list[float]] = {"int8": [], "ort": []}
    for _ in range(args.rounds):
        times["float"].append(onnx_latency(float_path, feeds, args.threads))
        times["int8"].append(onnx_latency(int_path, feeds, args.threads))
        ratios["int8"].append(onnx_latency_ratio(int_path, feeds, float_path, feeds, args.threads))
        ratios["ort"].append(onnx_latency_ratio(reference, feeds, float_path, feeds, args.threads))
    # the lowest round: a shared machine slows whole sessions down by up to 1.7x for a
    # second or so, never speeds one up (export.deployed_latencies does the same)
    fl, q = min(times["float"]), min(times["int8"])
    session = ort.InferenceSession(str(int_path), onnx_session_options())
    with torch.no_grad():
        simulated = small(torch.from_numpy(x)).argmax(1).numpy()
    agree = float((session.run(None, feeds)[0].argmax(1) == simulated).mean())
    fb, qb = float_path.stat().st_size, report["bytes"]
    label = f"{name}, first layer float" if first_float else name
    print(
        f"| {label} | {fl:.2f} | {q:.2f} | {spread(ratios['int8'])} | {spread(ratios['ort'])} "
        f"| {fb:,} | {qb:,} | {qb / fb:.3f} | {agree:.1%} |",
        flush=True,
    )


def spread(values: list[float]) -> str:
    """The median of the rounds' ratios and their range."""
    return f"{statistics.median(values):.3f} ({min(values):.3f}–{max(values):.3f})"


def ort_static(
    source: Path, out: Path, calibration: list[torch.Tensor], first_float: bool = False
) -> None:
    """ONNX Runtime's own static int8 quantization of ``source``: the runtime's reference
    (``first_float``: its first layer left float)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"images": b.numpy()} for b in calibration])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    quantize_static(
        str(source),
        str(out),
        Batches(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=first_layer(source) if first_float else None,
    )


def first_layer(source: Path) -> list[str]:
    """The name of ``source``'s first Conv or Gemm node (the model's first layer)."""
    import onnx

    graph = onnx.load(str(source)).graph
    return [next(n.name for n in graph.node if n.op_type in ("Conv", "Gemm", "MatMul"))]


if __name__ == "__main__":
    main()
