from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

# Test modules import Ray at collection; `autocompress search` sets this itself before it imports
# Ray, so that a local runtime listens on loopback only (search/ray_runner.py).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

DIGITS_CONFIG = {
    "name": "digits-test",
    "model": {"factory": "tests.tiny_models:tiny_resnet"},
    "data": {"name": "digits", "val_size": 300, "batch_size": 64},
    # one thread: the test models are tiny, and a second thread only waits on the first (on a
    # busy machine, much longer: see the README's test section)
    "train": {"epochs": 3, "lr": 0.05, "seed": 0, "threads": 1},
    # the tests of search mechanics (resume, samplers, workers, export) count fine-tuned
    # trials; tests/search/test_schedule.py runs the default multi-fidelity schedule
    "search": {"fidelity": "short"},
}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Each test runs with one torch thread and leaves the count as it found it (the CLI sets
    it from ``train.threads`` for the rest of the process)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
