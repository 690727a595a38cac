"""Test accuracy of an export's integer ``model.onnx`` in ONNX Runtime against the accuracy
its ``report.json`` states for the simulated model (and ``autocompress.load`` recomputed).

    autocompress apply CONFIG --policy POLICY --out DIR
    python benchmarks/int8_accuracy.py CONFIG DIR

ONNX Runtime runs twice: with its graph optimisations (the fused integer kernels a deployment
gets) and without (every QDQ op as written).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import autocompress
from autocompress.config import load_config
from autocompress.cost.latency import onnx_session_options
from autocompress.data import DATASETS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config", type=Path)
    parser.add_argument("export", type=Path)
    args = parser.parse_args()
    cfg = load_config(args.config)
    assert cfg.data.name is not None, "a built-in dataset"
    _, _, x, y = DATASETS[cfg.data.name].load(cfg.data.root)  # raw [0, 1] images
    report = json.loads((args.export / "report.json").read_text())
    model = autocompress.load(args.export / "model.pt")
    with torch.no_grad():
        simulated = torch.cat([model(x[i : i + 1000]) for i in range(0, len(x), 1000)]).numpy()
    row = {
        "report.json": report["accuracy"],
        "load()": float((simulated.argmax(1) == y.numpy()).mean()),
    }
    for label, level in (
        ("ONNX Runtime, integer kernels", ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
        ("ONNX Runtime, QDQ as written", ort.GraphOptimizationLevel.ORT_DISABLE_ALL),
    ):
        options = onnx_session_options()  # exact integer kernels on CPUs without VNNI too
        options.graph_optimization_level = level
        session = ort.InferenceSession(
            str(args.export / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        logits = session.run(None, {"images": x.numpy()})[0]
        row[label] = float((logits.argmax(1) == y.numpy()).mean())
        row[label + " agreement"] = float((logits.argmax(1) == simulated.argmax(1)).mean())
    for key, value in row.items():
        print(f"{key}: {value:.4%}")
    print(f"model.onnx {report['onnx_bytes']:,} B; size_bytes {report['size_bytes']:,} B")


if __name__ == "__main__":
    main()
