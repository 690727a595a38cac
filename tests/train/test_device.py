from __future__ import annotations

import json

import pytest
import torch

from autocompress.cli import main
from autocompress.config import base_key, load_config
from autocompress.errors import ConfigError
from autocompress.train.device import resolve_device

NO_CUDA = not torch.cuda.is_available()


def test_auto_is_the_cpu_without_a_gpu_and_cpu_is_the_default(write_config) -> None:
    cfg = load_config(write_config())
    assert cfg.train.device == "cpu"
    if NO_CUDA:
        assert resolve_device("auto") == torch.device("cpu")


def test_device_does_not_change_the_cached_base_model_key(write_config) -> None:
    path = write_config()
    assert base_key(load_config(path)) == base_key(load_config(path, ["train.device=auto"]))


@pytest.mark.skipif(not NO_CUDA, reason="checks the error seen without CUDA; this machine has it")
def test_asking_for_cuda_without_one_is_a_one_line_error(write_config, capsys) -> None:
    with pytest.raises(ConfigError, match="train.device.*PyTorch sees none"):
        resolve_device("cuda")
    assert main(["train", str(write_config()), "--set", "train.device=cuda"]) == 2
    assert "train.device" in capsys.readouterr().err


def test_a_malformed_device_names_the_key_and_the_choices(write_config, capsys) -> None:
    assert main(["train", str(write_config()), "--set", "train.device=gpu"]) == 2
    assert "cpu, cuda, cuda:N or auto" in capsys.readouterr().err


@pytest.mark.gpu
def test_training_search_and_export_on_the_gpu(write_config, tmp_path) -> None:
    """On the lent device machine: base training, a short search and an export with
    train.device=cuda; the exported model is back on the CPU and runs there."""
    import autocompress

    config = write_config({"train": {"epochs": 2, "device": "cuda"}, "search": {"trials": 3}})
    assert main(["train", str(config)]) == 0
    assert main(["search", str(config), "--set", "finetune.steps=20"]) == 0
    run = tmp_path / "runs" / "digits-test"
    assert json.loads(next(run.glob("base-*.json")).read_text())["device"] == "cuda"
    out = tmp_path / "export"
    assert main(["export", str(run), "--best", "--finetune-epochs", "1", "--out", str(out)]) == 0
    model = autocompress.load(out / "model.pt", allow_factories=["tests.tiny_models:tiny_resnet"])
    assert next(model.parameters()).device.type == "cpu"
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)
