"""`autocompress apply` and `autocompress distill`, in-process, on digits."""

from __future__ import annotations

import json

import pytest
import torch

import autocompress
from autocompress.cli import main
from autocompress.data import digits
from tests.tiny_models import tiny_resnet

REPORT_KEYS = {
    "base_accuracy",
    "accuracy_before_finetune",
    "accuracy",
    "macs",
    "base_macs",
    "bitops",
    "params",
    "base_params",
    "size_bytes",
    "size_bytes_huffman",
    "base_size_bytes",
    "compression_ratio",
    "latency_ms",
    "base_latency_ms",
}


def raw_digits_test() -> tuple[torch.Tensor, torch.Tensor]:
    _, _, x_test, y_test = digits.load("")
    return x_test, y_test  # in [0, 1], not normalised


def test_apply_writes_a_model_that_runs_on_raw_images(write_config, tmp_path, capsys) -> None:
    config = write_config({"finetune": {"epochs": 1}})
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "model: tests.tiny_models:tiny_resnet\n"
        "layers:\n"
        "  conv_a: {prune: 0.5, sparsity: 0.5, w_bits: 4, a_bits: 8}\n"
        "  pw: {rank: 0.3}\n"
        "  head: {sparsity: 0.8, clusters: 16}\n"
    )
    out = tmp_path / "out"
    assert main(["apply", str(config), "--policy", str(policy), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "compression" in printed
    report = json.loads((out / "report.json").read_text())
    assert set(report) >= REPORT_KEYS
    assert set(report["latency_ms"]) == {"batch_1", "batch_64"}
    assert (out / "weights.bin").stat().st_size == report["size_bytes"]
    assert report["compression_ratio"] == report["base_size_bytes"] / report["size_bytes"] > 1
    assert report["macs"] < report["base_macs"] and report["accuracy"] > 0.5
    assert (out / "policy.yaml").is_file()
    assert report["finetune"]["stages"] == 2  # prune/sparsity first, then sharing and bits
    # sparse layers store only their kept weights: fewer than the architecture's parameters
    assert 0 < report["nonzero_params"] < report["params"]

    payload = torch.load(out / "model.pt", weights_only=True)
    assert payload["policy"]["layers"]["pw"] == {"rank": 0.3}
    model = autocompress.load(out / "model.pt", model=tiny_resnet())  # the user's own module
    x, y = raw_digits_test()
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy == pytest.approx(report["accuracy"], abs=1e-6)


def test_apply_with_a_policy_for_another_model_exits_2(write_config, tmp_path, capsys) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("model: lenet5\nlayers:\n  conv1: {prune: 0.5}\n")
    code = main(["apply", str(write_config()), "--policy", str(policy), "--out", str(tmp_path)])
    assert code == 2
    assert "for model 'lenet5'" in capsys.readouterr().err


def test_distill_trains_the_student_with_and_without_teacher(write_config, tmp_path, capsys):
    out = tmp_path / "student"
    config = write_config()
    code = main(
        ["distill", str(config), "--student", "lenet300_100", "--epochs", "2", "--out", str(out)]
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report) == {"distilled", "alone"}
    assert report["distilled"]["distill_weight"] > 0 and report["alone"]["distill_weight"] == 0
    assert report["distilled"]["params"] == 64 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert all(r["accuracy"] > 0.5 for r in report.values())
    model = autocompress.load(out / "model.pt")
    x, y = raw_digits_test()
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy == pytest.approx(report["distilled"]["accuracy"], abs=1e-6)


def test_distill_bad_student_spec_exits_2(write_config, tmp_path, capsys) -> None:
    assert (
        main(
            ["distill", str(write_config()), "--student", "lenet5:depth=3", "--out", str(tmp_path)]
        )
        == 2
    )
    assert "--student" in capsys.readouterr().err


def test_a_diverging_fine_tune_exits_1_with_one_line(write_config, tmp_path, capsys) -> None:
    # uncapped: the default gradient cap keeps even this rate finite
    config = write_config({"finetune": {"epochs": 1, "lr": 1.0e6, "grad_clip": None}})
    policy = tmp_path / "policy.yaml"
    policy.write_text("model: tests.tiny_models:tiny_resnet\nlayers:\n  conv_a: {prune: 0.5}\n")
    code = main(["apply", str(config), "--policy", str(policy), "--out", str(tmp_path / "o")])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lower the learning rate" in err


def test_finetune_seed_changes_only_the_fine_tune(write_config, tmp_path) -> None:
    """`finetune.seed` reorders the fine-tune's data (the base model is reused, not retrained);
    the same seed reproduces the same compressed model."""
    config = write_config({"finetune": {"steps": 20}})
    policy = tmp_path / "policy.yaml"
    policy.write_text("model: tests.tiny_models:tiny_resnet\nlayers:\n  conv_a: {prune: 0.5}\n")

    def apply(out: str, *sets: str) -> dict[str, torch.Tensor]:
        argv = ["apply", str(config), "--policy", str(policy), "--out", str(tmp_path / out)]
        assert main([*argv, *(x for s in sets for x in ("--set", s))]) == 0
        return torch.load(tmp_path / out / "model.pt", weights_only=True)["state_dict"]

    default, again = apply("default"), apply("seed0", "finetune.seed=0")  # train.seed is 0
    other = apply("seed1", "finetune.seed=1")
    bases = list((tmp_path / "runs").rglob("base-*.pt"))
    assert len(bases) == 1  # one cached base model for the three runs
    assert all(torch.equal(default[k], again[k]) for k in default)
    assert any(not torch.equal(default[k], other[k]) for k in default if k.endswith("weight"))


def test_a_fine_tune_that_diverges_uncapped_finishes_under_the_default_gradient_cap(
    write_config, tmp_path, capsys
) -> None:
    """A heavily factorized candidate starts far from its teacher: with momentum SGD at this
    rate its loss turns NaN within a few steps unless each step's gradient norm is capped
    (`finetune.grad_clip`, 10 by default; null turns the cap off)."""
    policy = tmp_path / "policy.yaml"
    layers = "".join(f"  {n}: {{rank: 0.2}}\n" for n in ("stem", "conv_a", "conv_b", "pw", "head"))
    policy.write_text(f"model: tests.tiny_models:tiny_resnet\nlayers:\n{layers}")
    config = write_config({"finetune": {"steps": 60, "lr": 1.0}})
    out = tmp_path / "capped"
    assert main(["apply", str(config), "--policy", str(policy), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert 0.0 <= report["accuracy"] <= 1.0
    uncapped = ["--set", "finetune.grad_clip=null", "--out", str(tmp_path / "uncapped")]
    assert main(["apply", str(config), "--policy", str(policy), *uncapped]) == 1
    assert "lower the learning rate" in capsys.readouterr().err
    assert not (tmp_path / "uncapped").exists()
