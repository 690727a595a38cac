"""Real-data base training (minutes on 2 cores): `make test-slow` fetches the data first."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autocompress.cli import main
from autocompress.config import base_key, load_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize(
    ("config", "target"),
    [("lenet5-fashion-mnist.yaml", 0.905), ("lenet5-mnist.yaml", 0.990)],
)
def test_lenet5_base_reaches_its_target(tmp_path, config: str, target: float) -> None:
    overrides = [f"runs_root={tmp_path}", f"data.root={ROOT / 'data'}"]
    path = ROOT / "experiments" / config
    assert main(["train", str(path), *[a for o in overrides for a in ("--set", o)]]) == 0
    cfg = load_config(path, overrides)
    payload = torch.load(cfg.run_dir / f"base-{base_key(cfg)}.pt", weights_only=True)
    assert payload["meta"]["test_accuracy"] >= target
    assert payload["meta"]["train_seconds"] < 600
