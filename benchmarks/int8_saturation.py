"""ONNX Runtime's integer kernels with and without ``session.x64quantprecision``: LeNet-5 at
W8A8 (random weights, ranges calibrated on random images) against its simulation.

    python benchmarks/int8_saturation.py

On x86 CPUs without VNNI the default uint8 × int8 kernels add pairs of products in 16 bits
with saturation; the option (``autocompress.cost.latency.ORT_SESSION_CONFIG``) selects exact
kernels there. Prints the CPU's int8 instruction sets and, per way of opening the file, the
largest and median output difference (against the output range) and how many of 256 random
inputs change their top class.
"""

from __future__ import annotations

import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import autocompress as ac
from autocompress.cost.latency import ORT_SESSION_CONFIG
from autocompress.export import write_deployed_onnx
from autocompress.models import ZOO


def cpu_flags() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags")[1].split("\n")[0].split()
    except (OSError, IndexError):
        return platform.processor() or "unknown"
    wanted = ("avx2", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")
    return ", ".join(f for f in wanted if f in flags) or "none of AVX2/AVX-512/VNNI/AMX"


def main() -> None:
    torch.manual_seed(0)
    model = ZOO["lenet5"]().eval()
    example = torch.zeros(1, 1, 28, 28)
    profile = ac.profile(model, example, name="lenet5")
    policy = ac.Policy("lenet5", {n: ac.LayerChoice(w_bits=8, a_bits=8) for n in profile.layers})
    calibration = [torch.randn(32, 1, 28, 28) for _ in range(3)]
    small = ac.compress(model, policy, example, calibration=calibration).eval()
    x = torch.randn(256, 1, 28, 28)
    with torch.no_grad():
        simulated = small(x).numpy()
    span = float(simulated.max() - simulated.min())
    print(f"ONNX Runtime {ort.__version__}; CPU int8 instruction sets: {cpu_flags()}")
    print(f"LeNet-5 W8A8, 256 random inputs, output range {span:.3f}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        write_deployed_onnx(small, policy, path, ac.Inputs((example,)))
        for label, config, level in (
            ("QDQ as written (no fusion)", {}, ort.GraphOptimizationLevel.ORT_DISABLE_ALL),
            ("fused kernels, default options", {}, ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
            (
                "fused kernels, ORT_SESSION_CONFIG",
                ORT_SESSION_CONFIG,
                ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            ),
        ):
            options = ort.SessionOptions()
            options.graph_optimization_level = level
            for key, value in config.items():
                options.add_session_config_entry(key, value)
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            out = session.run(None, {"images": x.numpy()})[0]
            diff = np.abs(out - simulated)
            changed = float((out.argmax(1) != simulated.argmax(1)).mean())
            print(
                f"{label:36s} max diff {diff.max() / span:6.1%} of the range, median "
                f"{np.median(diff) / span:6.2%}, top class changed on {changed:5.1%}"
            )


if __name__ == "__main__":
    main()
