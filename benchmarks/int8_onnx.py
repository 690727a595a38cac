"""Integer ONNX against float ONNX, side by side in one run: ONNX Runtime latency and file size.

For each model (random weights; the zoo's CIFAR-10 ResNet-20 and VGG-16-BN, and LeNet-5), a
W8A8 policy on every layer is built with ``autocompress.compress`` (activation ranges
calibrated on random batches), and two files are written: the float ONNX of the same
structure (what export wrote before integer deployment) and the integer one
(``export.write_deployed_onnx``). A third file is the reference of what this runtime can do:
ONNX Runtime's own static quantizer (``quantize_static``: QDQ, uint8 activations, int8 weights
per channel, calibrated on the same random batches) applied to the float file. All run in ONNX
Runtime, 1 intra-op thread, batch 64, median of 30 runs after 5, interleaved in rounds so that
machine load hits them alike; the lowest round of each file is kept.

    python benchmarks/int8_onnx.py [--rounds 3] [--batch 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import autocompress as ac
from autocompress.compress.layers import folded
from autocompress.cost.latency import onnx_latency
from autocompress.export import write_deployed_onnx, write_onnx
from autocompress.models import ZOO

MODELS = {
    "resnet20": (lambda: ZOO["resnet20"](), (3, 32, 32)),
    "vgg16_bn": (lambda: ZOO["vgg16_bn"](), (3, 32, 32)),
    "lenet5": (lambda: ZOO["lenet5"](), (1, 28, 28)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="int8-onnx-"))
    print(
        "| model | float ONNX ms | integer ONNX ms | latency ratio | ORT quantize_static ratio "
        "| float bytes | integer bytes | size ratio | argmax agreement |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (build, shape) in MODELS.items():
        model = build().eval()
        example = torch.zeros(1, *shape)
        prof = ac.profile(model, example, name=name)
        policy = ac.Policy(name, {n: ac.LayerChoice(w_bits=8, a_bits=8) for n in prof.layers})
        calibration = [torch.randn(64, *shape) for _ in range(4)]
        small = ac.compress(model, policy, example, calibration=calibration)
        float_path, int_path = work / f"{name}-float.onnx", work / f"{name}-int8.onnx"
        write_onnx(folded(small, float_inputs=True).eval(), float_path, ac.Inputs((example,)))
        report = write_deployed_onnx(small, policy, int_path, ac.Inputs((example,)))
        reference = work / f"{name}-ort-static.onnx"
        ort_static(float_path, reference, calibration)
        x = np.random.default_rng(0).standard_normal((args.batch, *shape)).astype(np.float32)
        feeds = {"images": x}
        times: dict[str, list[float]] = {"float": [], "int8": [], "ort": []}
        for _ in range(args.rounds):
            times["float"].append(onnx_latency(float_path, feeds, args.threads))
            times["int8"].append(onnx_latency(int_path, feeds, args.threads))
            times["ort"].append(onnx_latency(reference, feeds, args.threads))
        # the lowest round: a shared machine slows whole sessions down by up to 1.7x for a
        # second or so, never speeds one up (export.deployed_latencies does the same)
        fl, q, ref = min(times["float"]), min(times["int8"]), min(times["ort"])
        session = ort.InferenceSession(str(int_path), providers=["CPUExecutionProvider"])
        with torch.no_grad():
            simulated = small(torch.from_numpy(x)).argmax(1).numpy()
        agree = float((session.run(None, feeds)[0].argmax(1) == simulated).mean())
        fb, qb = float_path.stat().st_size, report["bytes"]
        print(
            f"| {name} | {fl:.2f} | {q:.2f} | {q / fl:.3f} | {ref / fl:.3f} | {fb:,} | {qb:,} "
            f"| {qb / fb:.3f} "
            f"| {agree:.1%} |"
        )


def ort_static(source: Path, out: Path, calibration: list[torch.Tensor]) -> None:
    """ONNX Runtime's own static int8 quantization of ``source``: the runtime's reference."""
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
    )


if __name__ == "__main__":
    main()
