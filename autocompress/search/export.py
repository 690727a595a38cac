"""Export a trial of the study: rebuild its policy from the base model, fine-tune it longer,
test it, and write what ``autocompress apply`` writes plus ``model.onnx``.

The whole output folder is written as one set (see :mod:`autocompress.export`): all its files
come from one trial, or the folder is left as it was.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from autocompress.config import Config
from autocompress.cost.profile import Profile
from autocompress.data import Splits
from autocompress.export import build_candidate, write_candidate, write_report
from autocompress.files import check_output_dir, staged_output
from autocompress.policy import Policy
from autocompress.search.study import TrialRecord
from autocompress.train.base import BaseModel

OUTPUT_FILES = ("model.pt", "model.onnx", "model.pt2", "weights.bin", "policy.yaml")


def _export_into(
    folder: Path,
    cfg: Config,
    splits: Splits,
    base: BaseModel,
    profile: Profile,
    record: TrialRecord,
    finetune_epochs: float | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    from autocompress.runs import finetune_length, splits_recipe, target

    policy = Policy.from_dict(record.policy)
    candidate = build_candidate(
        base.model,
        profile,
        policy,
        splits_recipe(cfg, splits),
        finetune_length(cfg, finetune_epochs),
        cfg.finetune_seed,
        cfg.compress,
        base.metrics["test_accuracy"],
        log,
    )
    candidate.report.update(
        trial=record.number, search_val_accuracy=record.val_accuracy, baseline=record.baseline
    )
    write_candidate(folder, candidate, target(cfg, base), profile, cfg.compress, onnx=True)
    return candidate.report


def export_trial(
    cfg: Config,
    splits: Splits,
    base: BaseModel,
    profile: Profile,
    record: TrialRecord,
    out: Path,
    finetune_epochs: float | None,
    log: Callable[[str], None] = print,
    force: bool = False,
) -> dict[str, Any]:
    """Export one trial into ``out`` (checked before the fine-tune, replaced as a whole)."""
    check_output_dir(out, force)
    with staged_output(out, force) as folder:
        return _export_into(folder, cfg, splits, base, profile, record, finetune_epochs, log)


def export_best_of(
    cfg: Config,
    splits: Splits,
    base: BaseModel,
    profile: Profile,
    candidates: Sequence[TrialRecord],
    out: Path,
    finetune_epochs: float | None,
    log: Callable[[str], None] = print,
    force: bool = False,
) -> dict[str, Any]:
    """Export each candidate (into ``out/candidates/trial-N``), keep the one with the best
    selection-split accuracy after the longer fine-tune (validation accuracy without a
    selection split), and copy it to ``out``.

    The search ranks trials after a short fine-tune; a longer one can reorder close trials.
    The search chose them on validation, so the selection split judges them more fairly; the
    test set stays out of the choice either way.
    """
    check_output_dir(out, force)
    with staged_output(out, force) as folder:
        reports = []
        for record in candidates:
            log(f"candidate trial {record.number} (val {record.val_accuracy:.2%} in the search)")
            target = folder / "candidates" / f"trial-{record.number}"
            target.mkdir(parents=True)
            reports.append(
                _export_into(target, cfg, splits, base, profile, record, finetune_epochs, log)
            )
        on = "selection_accuracy" if reports[0].get("selection_accuracy") is not None else None
        key = on or "val_accuracy"
        best = max(range(len(reports)), key=lambda i: (reports[i][key], -i))
        chosen = folder / "candidates" / f"trial-{candidates[best].number}"
        for name in OUTPUT_FILES:
            if (chosen / name).exists():  # model.pt2 only where torch.export traced the model
                shutil.copyfile(chosen / name, folder / name)
        report = {
            **reports[best],
            "candidates": [
                {
                    "trial": r["trial"],
                    "search_val_accuracy": r["search_val_accuracy"],
                    "val_accuracy": r["val_accuracy"],
                    "selection_accuracy": r.get("selection_accuracy"),
                }
                for r in reports
            ],
            "chosen_by": ("selection-split" if on else "validation")
            + " accuracy after the export fine-tune",
        }
        write_report(folder, report)
    return report
