"""Compress your own model, from a notebook or a script: no config, no factory, no zoo.

A CNN defined right here, plain DataLoaders, your own evaluate function; the search runs the
built-in distilled fine-tune over your train loader, shows the Pareto front, exports the best
policy, and the export is reloaded in a fresh process that does not have this file's class:
through ONNX Runtime (no code needed) and through ``autocompress.load(model=...)``.

    python examples/own_model.py                 # full run: digits, 24 trials (a few minutes)
    python examples/own_model.py --quick         # seconds: what the test suite runs
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import autocompress


class DigitNet(nn.Module):
    """Yours: any nn.Module. Here a small VGG-style CNN for 8×8 digits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 2 * 2, 128), nn.ReLU(), nn.Linear(128, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def loaders(batch: int = 64) -> tuple[DataLoader, DataLoader, DataLoader]:
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).div(16).unsqueeze(1)
    y = torch.tensor(digits.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    parts = order[:1200], order[1200:1500], order[1500:]
    shuffle = torch.Generator().manual_seed(1)
    train, val, test = (TensorDataset(x[i], y[i]) for i in parts)
    return (
        DataLoader(train, batch, shuffle=True, generator=shuffle),
        DataLoader(val, 256),
        DataLoader(test, 256),
    )


def accuracy(model: nn.Module, loader: DataLoader) -> float:
    with torch.no_grad():
        hits = sum(int((model(x).argmax(1) == y).sum()) for x, y in loader)
    return hits / sum(len(y) for _, y in loader)


def train(model: nn.Module, loader: DataLoader, epochs: int) -> None:
    """Your pretrained model: here trained for a few epochs so the example stands alone."""
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()


RELOAD = """
import sys, json, numpy as np, onnxruntime as ort, torch
from sklearn.datasets import load_digits
x = torch.tensor(load_digits().images[-64:], dtype=torch.float32).div(16).unsqueeze(1)
from autocompress.cost.latency import onnx_session_options  # exact integer kernels on AVX2
session = ort.InferenceSession(sys.argv[1] + "/model.onnx", onnx_session_options())
logits = session.run(None, {"images": x.numpy()})[0]
print(json.dumps({"classes": logits.argmax(1).tolist(), "logits": logits.tolist()}))
"""


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny run for tests (seconds)")
    parser.add_argument("--out", type=Path, default=None, help="where the run and export go")
    args = parser.parse_args(argv)
    work = args.out or Path(tempfile.mkdtemp(prefix="own-model-"))
    torch.manual_seed(0)
    train_loader, val_loader, test_loader = loaders()

    model = DigitNet()
    train(model, train_loader, 2 if args.quick else 15)
    print(f"base model: test accuracy {accuracy(model.eval(), test_loader):.2%}")

    example = torch.zeros(1, 1, 8, 8)
    prof = autocompress.profile(model, example)
    print(f"{len(prof.layers)} layers, {autocompress.price(prof).macs:,} MACs per image")

    found = autocompress.search(
        model,
        example,
        budget={"macs": "30%"},
        train_data=train_loader,
        val_data=val_loader,
        test_data=test_loader,
        evaluate=lambda m: accuracy(m, val_loader),  # any score you like; higher is better
        trials=6 if args.quick else 24,
        steps=5 if args.quick else 60,
        runs_root=work / "runs",
        name="digitnet",
        # 8 candidates screened without fine-tuning per fine-tuned trial (search.screen)
        callbacks=[
            lambda t: print(f"  trial {t.number} ({t.fidelity}): {t.state} {t.val_accuracy}")
        ],
    )
    front = found.pareto()
    print("Pareto front:", [(r.number, round(r.ratios["macs"], 3), r.val_accuracy) for r in front])
    plot = found.plot(work / "pareto.png")
    best = found.best()
    out = work / "export"
    report = found.export(best, out, steps=10 if args.quick else 300)
    print(
        f"exported trial {best.number}: test accuracy {report['accuracy']:.2%} "
        f"(base {report['base_accuracy']:.2%}), MACs ×{report['macs_ratio']:.3f}, "
        f"size {report['size_bytes']:,} B ({report['compression_ratio']:.1f}× smaller)"
    )

    # A fresh process without DigitNet: the ONNX file needs no code of ours or yours.
    done = subprocess.run(
        [sys.executable, "-c", RELOAD, str(out)], capture_output=True, text=True, check=True
    )
    onnx = json.loads(done.stdout)
    # With the class at hand, load() rebuilds the compressed module from model.pt.
    reloaded = autocompress.load(out / "model.pt", model=DigitNet())
    digits = torch.tensor(load_digits().images[-64:], dtype=torch.float32).div(16).unsqueeze(1)
    with torch.no_grad():
        torch_logits = reloaded(digits)
    gap = (torch_logits - torch.tensor(onnx["logits"])).abs().max().item()
    print(f"ONNX Runtime in a fresh process vs load(): max |Δlogit| {gap:.2e}")
    return {
        "report": report,
        "front": len(front),
        "plot": str(plot),
        "onnx_gap": gap,
        "export": str(out),
        "trials": sum(t.fidelity == "short" for t in found.trials()),
        "screened": sum(t.fidelity == "zero-cost" for t in found.trials()),
    }


if __name__ == "__main__":
    main()
