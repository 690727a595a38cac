from __future__ import annotations

from pathlib import Path

import pytest
import yaml

DIGITS_CONFIG = {
    "name": "digits-test",
    "model": {"factory": "tests.tiny_models:tiny_resnet"},
    "data": {"name": "digits", "val_size": 300, "batch_size": 64},
    "train": {"epochs": 3, "lr": 0.05, "seed": 0},
}


@pytest.fixture
def write_config(tmp_path: Path):
    """Write a config (the digits one, updated with ``changes``) and return its path."""

    def write(changes: dict | None = None, name: str = "config.yaml") -> Path:
        raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DIGITS_CONFIG.items()}
        raw["runs_root"] = str(tmp_path / "runs")
        for key, value in (changes or {}).items():
            if isinstance(value, dict) and isinstance(raw.get(key), dict):
                raw[key].update(value)
            else:
                raw[key] = value
        path = tmp_path / name
        path.write_text(yaml.safe_dump(raw))
        return path

    return write
