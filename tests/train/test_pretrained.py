"""``model.checkpoint``: a search starts from the user's pretrained weights instead of training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from autocompress.cli import main
from autocompress.config import base_key, load_config
from tests.tiny_models import tiny_resnet


@pytest.fixture
def trained(write_config, tmp_path) -> tuple[Path, dict]:
    """A base trained by `train` on digits, and its checkpoint's payload."""
    config = write_config({"name": "trained"}, name="trained.yaml")
    assert main(["train", str(config)]) == 0
    path = next((tmp_path / "runs" / "trained").glob("base-*.pt"))
    return path, torch.load(path, weights_only=True)


def test_plain_state_dict_is_loaded_tested_and_cached(write_config, trained, tmp_path, capsys):
    _, payload = trained
    weights = tmp_path / "weights.pt"
    # as training scripts often save it: nested, with DataParallel's prefix
    state = {f"module.{k}": v for k, v in payload["state_dict"].items()}
    torch.save({"epoch": 3, "state_dict": state}, weights)
    config = write_config({"model": {"checkpoint": str(weights)}, "train": {"epochs": 50}})
    capsys.readouterr()
    assert main(["train", str(config)]) == 0
    out = capsys.readouterr().out
    assert "Loading the pretrained weights" in out and "epoch" not in out.split("test accuracy")[0]
    cfg = load_config(config)
    base = cfg.run_dir / f"base-{base_key(cfg)}.pt"
    saved = torch.load(base, weights_only=True)
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in payload["state_dict"].items())
    metrics = json.loads(base.with_suffix(".json").read_text())
    # the same weights on the same test split: the same accuracy as when they were trained
    assert metrics["test_accuracy"] == payload["meta"]["test_accuracy"]
    assert metrics["epochs"] == 0 and metrics["checkpoint"] == str(weights)
    assert len(metrics["checkpoint_sha256"]) == 64

    # the key follows the file's contents, not the (unused) train settings
    key = base_key(cfg)
    assert base_key(load_config(config, ["train.epochs=7", "train.lr=0.5"])) == key
    torch.save(payload["state_dict"], weights)  # same tensors, another file
    assert base_key(cfg) != key


def test_search_starts_from_the_given_weights(write_config, trained, tmp_path) -> None:
    path, _ = trained
    # an autocompress base checkpoint is itself a weights file (its hash is checked)
    config = write_config({"model": {"checkpoint": str(path)}, "search": {"trials": 2}})
    assert main(["search", str(config), "--set", "finetune.steps=5"]) == 0
    run = tmp_path / "runs" / "digits-test"
    metrics = json.loads(next(run.glob("base-*.json")).read_text())
    assert metrics["checkpoint"] == str(path) and metrics["epochs"] == 0


def test_weights_that_do_not_fit_are_refused_and_nothing_is_cached(
    write_config, tmp_path, capsys
) -> None:
    weights = tmp_path / "wide.pt"
    torch.save(tiny_resnet(width=16).state_dict(), weights)
    config = write_config({"model": {"checkpoint": str(weights)}})
    assert main(["train", str(config)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "model.checkpoint" in err and "do not fit" in err and "size mismatch" in err
    assert not list((tmp_path / "runs").glob("*/base-*"))


def test_a_pickle_with_code_is_refused_without_running_it(write_config, tmp_path, capsys) -> None:
    weights = tmp_path / "module.pt"
    torch.save(tiny_resnet(), weights)  # a whole module: loading it would import and run code
    config = write_config({"model": {"checkpoint": str(weights)}})
    assert main(["train", str(config)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "weights_only=True" in err and "torch.save(model.state_dict(), path)" in err


def test_a_compressed_checkpoint_is_not_a_base(write_config, trained, tmp_path, capsys) -> None:
    _, payload = trained
    compressed = tmp_path / "compressed.pt"
    torch.save({**payload, "policy": {"layers": {}}}, compressed)
    config = write_config({"model": {"checkpoint": str(compressed)}})
    assert main(["train", str(config)]) == 2
    assert "holds a compressed model" in capsys.readouterr().err


def test_a_missing_file_names_the_key(write_config, tmp_path, capsys) -> None:
    config = write_config({"model": {"checkpoint": str(tmp_path / "nope.pt")}})
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert "model.checkpoint" in err and "an existing file" in err
