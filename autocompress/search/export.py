"""Export a trial of the study: rebuild its policy from the base model, fine-tune it longer,
test it, and write what ``autocompress apply`` writes plus ``model.onnx``."""

from __future__ import annotations

import io
import json
import logging
import shutil
import warnings
from collections.abc import Callable, Sequence
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import torch

from autocompress import load
from autocompress.compress.layers import folded
from autocompress.config import Config
from autocompress.cost.profile import Profile
from autocompress.data import Splits
from autocompress.export import compress_and_export
from autocompress.models.normalize import Normalized
from autocompress.policy import Policy
from autocompress.search.study import TrialRecord
from autocompress.train.base import BaseModel

ONNX_OPSET = 18


def export_onnx(checkpoint: Path, path: Path, input_shape: tuple[int, ...]) -> None:
    """``model.onnx`` from an exported checkpoint: float weights (transforms evaluated),
    activation quantizers kept, normalisation inside, any batch size; input ``images``."""
    loaded = load(checkpoint)
    model = (
        Normalized(
            folded(loaded.model), loaded.mean.flatten().tolist(), loaded.std.flatten().tolist()
        )
        if isinstance(loaded, Normalized)
        else folded(loaded)
    ).eval()
    example = torch.rand(2, *input_shape)
    # The exporter narrates every step on stdout and warns about torchvision: keep it quiet.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            opset_version=ONNX_OPSET,
            dynamo=True,
            external_data=False,
        )


def export_trial(
    cfg: Config,
    splits: Splits,
    base: BaseModel,
    profile: Profile,
    record: TrialRecord,
    out: Path,
    finetune_epochs: float | None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    policy = Policy.from_dict(record.policy)
    report = compress_and_export(cfg, splits, base, profile, policy, out, finetune_epochs, log=log)
    export_onnx(out / "model.pt", out / "model.onnx", profile.input_shape)
    report["trial"] = record.number
    report["search_val_accuracy"] = record.val_accuracy
    report["baseline"] = record.baseline
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def export_best_of(
    cfg: Config,
    splits: Splits,
    base: BaseModel,
    profile: Profile,
    candidates: Sequence[TrialRecord],
    out: Path,
    finetune_epochs: float | None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Export each candidate (into ``out/candidates/trial-N``), keep the one with the best
    validation accuracy after the longer fine-tune, and copy it to ``out``.

    The search ranks trials after a short fine-tune; a longer one can reorder close trials.
    Choosing on validation accuracy keeps the test set out of the choice.
    """
    reports = []
    for record in candidates:
        log(f"candidate trial {record.number} (val {record.val_accuracy:.2%} in the search)")
        target = out / "candidates" / f"trial-{record.number}"
        reports.append(
            export_trial(cfg, splits, base, profile, record, target, finetune_epochs, log=log)
        )
    best = max(range(len(reports)), key=lambda i: (reports[i]["val_accuracy"], -i))
    chosen = out / "candidates" / f"trial-{candidates[best].number}"
    for name in ("model.pt", "model.onnx", "weights.bin", "policy.yaml"):
        shutil.copyfile(chosen / name, out / name)
    report = {
        **reports[best],
        "candidates": [
            {
                "trial": r["trial"],
                "search_val_accuracy": r["search_val_accuracy"],
                "val_accuracy": r["val_accuracy"],
            }
            for r in reports
        ],
        "chosen_by": "validation accuracy after the export fine-tune",
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
