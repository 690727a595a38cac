"""The deployed file computes what the report says, on real test sets (`make test-slow`).

Each export's integer ``model.onnx`` runs in ONNX Runtime with its graph optimisations (the
fused integer kernels a deployment gets) over the whole test set; its accuracy must equal the
accuracy ``report.json`` states for the simulated model within 0.1 pt.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnxruntime as ort
import pytest

from autocompress.cli import main
from autocompress.config import load_config
from autocompress.cost.latency import onnx_session_options
from autocompress.data import DATASETS

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def onnx_accuracy(path: Path, config: Path) -> float:
    cfg = load_config(config, [f"data.root={ROOT / 'data'}"])
    assert cfg.data.name is not None
    _, _, x, y = DATASETS[cfg.data.name].load(cfg.data.root)  # raw [0, 1] images
    session = ort.InferenceSession(str(path), onnx_session_options())
    correct = 0
    for i in range(0, len(x), 1000):
        logits = session.run(None, {"images": x[i : i + 1000].numpy()})[0]
        correct += int((logits.argmax(1) == y[i : i + 1000].numpy()).sum())
    return correct / len(y)


@pytest.mark.parametrize(
    ("config", "policy", "train"),
    [
        ("lenet5-mnist.yaml", "policy-lenet5-int8.yaml", "3"),
        ("lenet5-mnist.yaml", "policy-lenet5-mixed-4-8.yaml", "3"),
        # the committed GPU-trained base (model.checkpoint): no training here
        ("resnet20-cifar10.yaml", "policy-resnet20-int8.yaml", None),
    ],
)
def test_integer_onnx_matches_the_report(
    tmp_path_factory: pytest.TempPathFactory, config: str, policy: str, train: str | None
) -> None:
    runs = tmp_path_factory.getbasetemp() / "deploy-runs"
    out = tmp_path_factory.mktemp("export")
    sets = [f"runs_root={runs}", f"data.root={ROOT / 'data'}"]
    if train:
        sets.append(f"train.epochs={train}")
    args = ["--policy", str(ROOT / "experiments" / policy), "--finetune-epochs", "0"]
    argv = ["apply", str(ROOT / "experiments" / config), *args, "--out", str(out)]
    assert main([*argv, *[a for s in sets for a in ("--set", s)]]) == 0
    report = json.loads((out / "report.json").read_text())
    deployed = onnx_accuracy(out / "model.onnx", ROOT / "experiments" / config)
    assert abs(deployed - report["accuracy"]) <= 0.001, (deployed, report["accuracy"])
    assert report["onnx_bytes"] < 0.35 * report["base_size_bytes"]  # integer weights
