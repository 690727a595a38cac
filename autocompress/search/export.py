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

import torch

from autocompress.config import Config
from autocompress.cost.profile import Profile
from autocompress.data import Splits
from autocompress.export import build_candidate, onnx_accuracy, write_candidate, write_report
from autocompress.files import check_output_dir, staged_output
from autocompress.policy import Policy
from autocompress.search.pareto import SCORE_WORDS, held_out_score
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
    bits: int | None = None,
) -> dict[str, Any]:
    from autocompress.runs import finetune_length, splits_recipe, target

    policy = Policy.from_dict(record.policy)
    if bits is not None:
        policy = policy.with_bits(bits, profile.layers)
        log(f"deployed at {bits} bits: weights and inputs of every layer kept wider")
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
    if bits is not None:
        candidate.report["bits"] = bits
    write_candidate(folder, candidate, target(cfg, base), profile, cfg.compress, onnx=True)
    candidate.report["onnx_accuracy"] = onnx_accuracy(
        folder / "model.onnx", raw_inputs(splits, splits.x_test), splits.y_test
    )
    write_report(folder, candidate.report)
    return candidate.report


def raw_inputs(splits: Splits, x: torch.Tensor) -> torch.Tensor:
    """``x`` (normalised, as the splits hold it) as the exported files take it: raw."""
    if splits.mean is None or splits.std is None:
        return x
    shape = (1, -1) + (1,) * (x.dim() - 2)
    std = torch.tensor(splits.std).reshape(shape)
    return x * std + torch.tensor(splits.mean).reshape(shape)


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
    bits: int | None = None,
) -> dict[str, Any]:
    """Export one trial into ``out`` (checked before the fine-tune, replaced as a whole);
    ``bits``: deploy it with that many bits on every layer it keeps wider
    (:meth:`~autocompress.policy.Policy.with_bits`)."""
    check_output_dir(out, force)
    with staged_output(out, force) as folder:
        return _export_into(folder, cfg, splits, base, profile, record, finetune_epochs, log, bits)


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
    bits: int | None = None,
) -> dict[str, Any]:
    """Export each candidate (into ``out/candidates/trial-N``), keep the one with the best
    held-out score after the longer fine-tune (``search.finalist_score``: the mean of its
    validation and selection-split accuracy, or the selection split alone; validation
    without a selection split), and copy it to ``out``.

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
                _export_into(target, cfg, splits, base, profile, record, finetune_epochs, log, bits)
            )
        rule = cfg.search.finalist_score
        scores = [
            held_out_score(r["val_accuracy"], r.get("selection_accuracy"), rule) for r in reports
        ]
        split = reports[0].get("selection_accuracy") is not None
        best = max(range(len(reports)), key=lambda i: (scores[i], -i))
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
                    "score": score,
                }
                for r, score in zip(reports, scores, strict=True)
            ],
            "chosen_by": (SCORE_WORDS[rule] if split else "validation accuracy")
            + " after the export fine-tune",
        }
        write_report(folder, report)
    return report
