"""The train and cost commands, run in-process as a user would."""

from __future__ import annotations

import json

import torch

import autocompress
from autocompress.checkpoint import load_checkpoint
from autocompress.cli import main
from autocompress.config import base_key, load_config

TINY = "tests.tiny_models:tiny_resnet"  # the factory the test config names: allowed to load


def test_train_caches_the_base_model_and_reuses_it(write_config, capsys) -> None:
    path = write_config()
    assert main(["train", str(path)]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "epoch   3/3" in out
    cfg = load_config(path)
    ckpt = cfg.run_dir / f"base-{base_key(cfg)}.pt"
    # only a search records the run's config (pareto and export build on it)
    assert ckpt.is_file() and not (cfg.run_dir / "config.yaml").exists()
    payload = torch.load(ckpt, weights_only=True)
    assert payload["format_version"] == 2 and len(payload["sha256"]) == 64
    assert payload["model"] == {"factory": "tests.tiny_models:tiny_resnet", "args": {}}
    assert payload["meta"]["test_accuracy"] > 0.8  # 3 epochs on digits
    metrics = json.loads(ckpt.with_suffix(".json").read_text())
    assert metrics["test_accuracy"] == payload["meta"]["test_accuracy"]

    stamp = ckpt.stat().st_mtime_ns
    assert main(["train", str(path)]) == 0
    out = capsys.readouterr().out
    assert "cached" in out and "epoch   1/3" not in out
    assert ckpt.stat().st_mtime_ns == stamp

    model, _ = load_checkpoint(ckpt, allow_factories=[TINY])
    assert torch.equal(model.state_dict()["head.weight"], payload["state_dict"]["head.weight"])
    # autocompress.load puts the dataset's normalisation inside: it takes [0, 1] images
    wrapped = autocompress.load(str(ckpt), allow_factories=[TINY])
    x = torch.rand(4, 1, 8, 8)
    mean, std = payload["meta"]["mean"][0], payload["meta"]["std"][0]
    with torch.no_grad():
        assert torch.allclose(wrapped(x), model((x - mean) / std), atol=1e-6)

    # a different training setting trains a different base model, next to the first
    assert main(["train", str(path), "--set", "train.epochs=1"]) == 0
    assert len(list(cfg.run_dir.glob("base-*.pt"))) == 2


def test_training_is_reproducible(write_config, tmp_path) -> None:
    a = write_config({"name": "a", "train": {"epochs": 1}})
    b = write_config({"name": "b", "train": {"epochs": 1}}, name="b.yaml")
    assert main(["train", str(a)]) == 0 and main(["train", str(b)]) == 0
    sa = torch.load(next((tmp_path / "runs" / "a").glob("base-*.pt")), weights_only=True)
    sb = torch.load(next((tmp_path / "runs" / "b").glob("base-*.pt")), weights_only=True)
    assert all(torch.equal(sa["state_dict"][k], sb["state_dict"][k]) for k in sa["state_dict"])


def test_cost_json_for_lenet5(write_config, capsys) -> None:
    path = write_config(
        {
            "model": {"name": "lenet5", "factory": None},
            "data": {"name": "mnist", "root": "/nonexistent"},
        }
    )
    assert main(["cost", str(path), "--json"]) == 0  # costs need no data files
    report = json.loads(capsys.readouterr().out)
    assert (report["macs"], report["params"]) == (2_293_000, 431_080)
    assert set(report) >= {"macs", "params", "bitops", "size_bytes", "layers"}
    assert report["layers"]["conv2"]["macs"] == 1_600_000


def test_cost_of_a_policy_with_budget(write_config, tmp_path, capsys) -> None:
    path = write_config(
        {
            "model": {"name": "lenet5", "factory": None},
            "data": {"name": "mnist"},
            "budget": {"macs": "50%"},
        }
    )
    policy = tmp_path / "policy.yaml"
    policy.write_text("model: lenet5\nlayers:\n  conv2: {prune: 0.5}\n  fc1: {prune: 0.8}\n")
    assert main(["cost", str(path), "--policy", str(policy), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["layers"]["fc1"]["in"] == 400 and report["layers"]["fc1"]["out"] == 100
    assert report["macs"] == 288_000 + 800_000 + 40_000 + 1_000
    assert report["budget"]["macs"] == {
        "limit": 1_146_500.0,
        "value": 1_129_000,
        "ok": True,
        "as_configured": "50% of base",
    }
    assert main(["cost", str(path), "--policy", str(policy)]) == 0
    assert "within" in capsys.readouterr().out


def test_cost_with_a_bad_policy_exits_2(write_config, tmp_path, capsys) -> None:
    path = write_config({"model": {"name": "lenet5", "factory": None}, "data": {"name": "mnist"}})
    policy = tmp_path / "policy.yaml"
    policy.write_text("model: lenet5\nlayers:\n  conv9: {prune: 0.5}\n")
    assert main(["cost", str(path), "--policy", str(policy)]) == 2
    err = capsys.readouterr().err
    assert "layer 'conv9'" in err and "conv1, conv2, fc1, fc2" in err


def test_train_with_missing_data_exits_2_and_writes_nothing(write_config, tmp_path, capsys):
    path = write_config({"data": {"name": "mnist", "root": str(tmp_path / "nodata")}})
    assert main(["train", str(path)]) == 2
    assert "fetch-datasets" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_python_dash_m_entry_point() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "autocompress", "--help"], capture_output=True, text=True, check=True
    )
    assert "train" in done.stdout and "cost" in done.stdout
