"""The public API on users' own modules, and the same families through the CLI's factories.

For every architecture family: search (3 trials, tiny fine-tunes), export, and the exported
ONNX file in ONNX Runtime must match ``autocompress.load(...)`` of the exported checkpoint.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml

import autocompress as ac
from autocompress.cli import main
from autocompress.errors import AutocompressError, CheckpointError
from tests.architectures import FAMILIES, VOCAB

ROOT = Path(__file__).resolve().parents[1]
SPACE = {"skip_first": False, "rules": [{"prune": [0.0, 0.5], "w_bits": [8, 32]}]}
TOKENS = {"text_transformer", "lstm", "gru"}


def batches(name: str, n: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(FAMILIES[name].inputs(8), torch.randint(0, 4, (8,), generator=g)) for _ in range(n)]


def onnx_logits(path: Path, inputs: list[torch.Tensor], names: list[str]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {n: t.numpy() for n, t in zip(names, inputs, strict=True)}
    return np.asarray(session.run(None, feed)[0])


@pytest.mark.parametrize("name", list(FAMILIES))
def test_search_export_and_reload_through_the_api(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = FAMILIES[name].build().eval()
    seen = []
    found = ac.search(
        model,
        FAMILIES[name].inputs(1),
        budget={"size_bytes": "99%"},
        train_data=batches(name),
        val_data=batches(name),
        trials=3,
        steps=2,
        space=SPACE,
        runs_root=tmp_path / "runs",
        settings={"search": {"uniform": 1}},
        callbacks=[seen.append],
    )
    # multi-fidelity: 24 screened (zero-cost scores work on every family), 3 fine-tuned
    # trials, 3 finalists; every one complete
    assert [r.number for r in seen] == [r.number for r in found.trials()]
    assert [r.fidelity for r in seen].count("short") == 3
    assert [r.fidelity for r in seen].count("zero-cost") == 24
    assert all(r.state == "complete" for r in found.trials())
    # by default the budget's cost is an objective too: a front below the budget
    assert found.config.objectives == ["size_bytes"] and len(found.study.directions) == 2
    assert found.pareto()
    best = found.best()
    assert best.fidelity == "long"
    report = found.export(best, tmp_path / "out", steps=2)
    assert {"model.pt", "model.onnx", "weights.bin", "policy.yaml", "report.json"} <= {
        p.name for p in (tmp_path / "out").iterdir()
    }
    assert report["size_bytes"] == (tmp_path / "out" / "weights.bin").stat().st_size
    reloaded = ac.load(tmp_path / "out" / "model.pt", model=FAMILIES[name].build())
    x = FAMILIES[name].inputs(3)
    with torch.no_grad():
        expected = reloaded(x).numpy()
    got = onnx_logits(tmp_path / "out" / "model.onnx", [x], report["onnx"]["inputs"])
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
    if report["pt2"]["written"]:  # torch.export's program: no code of the model needed either
        program = torch.export.load(tmp_path / "out" / "model.pt2").module()
        one = FAMILIES[name].inputs(1)
        with torch.no_grad():
            np.testing.assert_allclose(program(one).numpy(), reloaded(one).numpy(), atol=1e-4)
    assert found.plot(tmp_path / "front.png").stat().st_size > 0


# three families in the default suite (a residual CNN, a concatenating one, a token model); all
# nine under `make test-slow`, which CI runs too
CLI_DEFAULT = ("resnet", "densenet", "text_transformer")


@pytest.mark.parametrize(
    "name",
    [n if n in CLI_DEFAULT else pytest.param(n, marks=pytest.mark.slow) for n in FAMILIES],
)
def test_factory_models_search_apply_and_export_through_the_cli(name: str, tmp_path: Path) -> None:
    factory = f"tests.architectures:{name}"
    data = "tests.architectures:" + ("token_data" if name in TOKENS else "image_data")
    config = {
        "name": name,
        "runs_root": str(tmp_path / "runs"),
        "model": {"factory": factory},
        "data": {"factory": data, "val_size": 30, "batch_size": 16},
        "train": {"epochs": 1, "threads": 1},
        "finetune": {"steps": 2},
        "space": SPACE,
        "budget": {"size_bytes": "99%"},
        "search": {"trials": 3, "uniform": 1},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["search", str(path)]) == 0
    out = tmp_path / "export"
    assert main(["export", str(tmp_path / "runs" / name), "--best", "--out", str(out),
                 "--finetune-epochs", "0.05"]) == 0  # fmt: skip
    loaded = ac.load(out / "model.pt", allow_factories=[factory])
    if name in TOKENS:
        x = torch.randint(0, VOCAB, (3, 12))
        names = ["input_0"]
    else:
        x = torch.rand(3, 3, 16, 16)  # raw [0, 1] images: the normalisation is inside
        names = ["images"]
    with torch.no_grad():
        expected = loaded(x).numpy()
    np.testing.assert_allclose(onnx_logits(out / "model.onnx", [x], names), expected, atol=1e-4)
    # a policy names a factory model by its function's name alone
    prof = ac.profile(FAMILIES[name].build(), FAMILIES[name].inputs(1), name=factory)
    root = next(g.root for g in prof.groups.values() if g.prunable)
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({"model": name, "layers": {root: {"prune": 0.25}}}))
    applied = tmp_path / "applied"
    argv = ["apply", str(path), "--policy", str(policy), "--out", str(applied)]
    assert main([*argv, "--finetune-epochs", "0.05"]) == 0
    assert (applied / "model.pt").is_file()


def test_profile_price_compress_save_load_round_trip(tmp_path: Path) -> None:
    model = FAMILIES["text_transformer"].build().eval()
    example = FAMILIES["text_transformer"].inputs(1)
    prof = ac.profile(model, example)
    assert prof.model == "TextTransformer"
    policy = ac.Policy(
        prof.model,
        {
            "encoder.layers.0.linear1": ac.LayerChoice(prune=0.5, w_bits=4),
            "encoder.layers.1.linear2": ac.LayerChoice(rank=0.3),
        },
    )
    costs = ac.price(prof, policy)
    assert costs.params < ac.price(prof).params
    small = ac.compress(model, policy, example)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
    ac.save(small, tmp_path / "small.pt", policy=policy, example_inputs=example)
    with pytest.raises(CheckpointError, match="model=<a fresh uncompressed instance>"):
        ac.load(tmp_path / "small.pt")
    again = ac.load(tmp_path / "small.pt", model=FAMILIES["text_transformer"].build())
    x = FAMILIES["text_transformer"].inputs(4)
    with torch.no_grad():
        assert torch.allclose(again(x), small(x), atol=1e-6)


def test_keyword_and_several_inputs_are_profiled_as_the_model_takes_them() -> None:
    class TwoInputs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(10, 8)
            self.fc = torch.nn.Linear(8, 16)
            self.head = torch.nn.Linear(16, 2)

        def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
            x = self.embed(ids) * (1 if mask is None else mask.unsqueeze(-1))
            return self.head(torch.relu(self.fc(x)).mean(1))

    ids, mask = torch.zeros(1, 5, dtype=torch.long), torch.ones(1, 5)
    for example in ((ids, mask), {"ids": ids, "mask": mask}):
        prof = ac.profile(TwoInputs(), example)
        assert prof.layers["fc"].positions == 5
        assert ac.price(prof).macs == 5 * 8 * 16 + 16 * 2


def test_an_unreachable_budget_is_refused_before_any_trial(tmp_path: Path) -> None:
    model = FAMILIES["lstm"].build()
    with pytest.raises(AutocompressError, match=r"cannot be met.*at best"):
        ac.search(
            model,
            FAMILIES["lstm"].inputs(1),
            budget={"macs": "10%"},  # the LSTM's own MACs are most of it
            val_data=batches("lstm"),
            space=SPACE,
            runs_root=tmp_path,
        )
    assert not any(tmp_path.iterdir())  # nothing written


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_example_own_model_runs_end_to_end(tmp_path: Path) -> None:
    result = load_example("own_model.py").main(["--quick", "--out", str(tmp_path)])
    assert result["onnx_gap"] < 1e-4  # ONNX Runtime in a fresh process vs load(model=...)
    assert result["trials"] == 6 and result["screened"] == 48 and result["front"] >= 1
    assert Path(str(result["plot"])).stat().st_size > 0


def test_example_custom_loop_runs_end_to_end(tmp_path: Path) -> None:
    result = load_example("custom_loop.py").main(["--quick", "--out", str(tmp_path)])
    assert result["trials"] == 6
    report = result["report"]
    assert isinstance(report, dict) and report["params"] < report["base_params"]
