"""Build a compressed model from a policy, fine-tune it, measure it and write it out.

Shared by ``autocompress apply`` and the search's export. The output directory holds
``model.pt`` (checkpoint, rebuilt by :func:`autocompress.load`), ``weights.bin`` (the weights
packed to their bits: its size is the cost model's ``size_bytes``), ``policy.yaml``,
``report.json`` and, for the search's export, ``model.onnx``.

The folder is checked before any fine-tune (a file, a foreign non-empty folder, no write
permission: refused at once) and written as one set (:func:`autocompress.files.staged_output`):
a crash, a kill or a full disk leaves the previous output exactly as it was.
"""

from __future__ import annotations

import io
import json
import logging
import time
import warnings
from collections.abc import Callable, Iterable
from contextlib import redirect_stdout
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autocompress.checkpoint import save_checkpoint, state_dict_sha256
from autocompress.compress import apply_policy, quantize, share
from autocompress.compress.layers import folded
from autocompress.compress.pack import encode_model, huffman_size, nonzero_params, pack_model
from autocompress.compress.quantize import calibrate
from autocompress.config import Config, FinetuneConfig
from autocompress.cost.latency import measure_latency
from autocompress.cost.metrics import compute_costs
from autocompress.cost.profile import Profile
from autocompress.data import Splits
from autocompress.files import check_output_dir, staged_output, write_atomic
from autocompress.models.normalize import Normalized
from autocompress.policy import LayerChoice, Policy
from autocompress.train.base import BaseModel, allowed_by
from autocompress.train.device import on_device, resolve_device
from autocompress.train.finetune import finetune, log_progress, total_steps
from autocompress.train.fit import evaluate

LATENCY_BATCHES = (1, 64)
CALIBRATION_BATCHES = 4
ONNX_OPSET = 18


def latency(model: nn.Module, shape: tuple[int, ...], threads: int) -> dict[str, float]:
    """Median CPU milliseconds at each of :data:`LATENCY_BATCHES`, float execution."""
    plain = folded(model, float_inputs=True)
    return {
        f"batch_{b}": round(measure_latency(plain, shape, batch=b, threads=threads), 4)
        for b in LATENCY_BATCHES
    }


def _calibration_batches(splits: Splits) -> list[torch.Tensor]:
    return [splits.x_train[i * 128 : (i + 1) * 128] for i in range(CALIBRATION_BATCHES)]


def _stages(policy: Policy) -> tuple[Policy, Policy] | None:
    """(structure and sparsity, sharing and bits) when a policy has knobs of both kinds."""
    late = {"clusters", "w_bits", "a_bits"}
    first = {n: replace(c, clusters=None, w_bits=32, a_bits=32) for n, c in policy.layers.items()}
    second = {
        n: LayerChoice(w_bits=c.w_bits, a_bits=c.a_bits, clusters=c.clusters)
        for n, c in policy.layers.items()
    }
    has_late = any(late & set(c.changed()) for c in policy.layers.values())
    has_early = any(set(c.changed()) - late for c in policy.layers.values())
    if not (has_late and has_early):
        return None
    return Policy(policy.model, first), Policy(policy.model, second)


def _knobs(policy: Policy) -> list[str]:
    return sorted({k for c in policy.layers.values() for k in c.changed()})


def _halve(cfg: FinetuneConfig) -> FinetuneConfig:
    if cfg.steps is not None:
        return replace(cfg, steps=max(1, cfg.steps // 2))
    return replace(cfg, epochs=cfg.epochs / 2)


def _describe(cfg: FinetuneConfig) -> str:
    if cfg.steps is None and cfg.epochs == 0:
        return "0 epochs (none)"
    return f"{cfg.steps} steps" if cfg.steps is not None else f"{cfg.epochs:g} epochs"


@dataclass
class Candidate:
    """A compressed, fine-tuned and measured model, not yet written anywhere."""

    model: nn.Module
    policy: Policy
    report: dict[str, Any]
    packed: bytes  # weights.bin


def build_candidate(
    cfg: Config,
    splits: Splits,
    base: BaseModel,
    profile: Profile,
    policy: Policy,
    finetune_epochs: float | None = None,
    log: Callable[[str], None] = print,
) -> Candidate:
    """Apply ``policy`` to the base model, fine-tune with distillation, test and measure it."""
    start = time.perf_counter()
    ft_cfg = (
        cfg.finetune
        if finetune_epochs is None
        else replace(cfg.finetune, epochs=finetune_epochs, steps=None)
    )
    base_costs = compute_costs(profile, Policy(profile.model), cfg.compress.round_to)
    costs = compute_costs(profile, policy, cfg.compress.round_to)
    model = apply_policy(base.model, policy, profile, cfg.compress)
    calibrate(model, _calibration_batches(splits))
    device = resolve_device(cfg.train.device)
    with on_device(device, model):
        before = evaluate(model, splits.x_test, splits.y_test)
    log(f"test accuracy before fine-tuning: {before:.2%}")
    stages = _stages(policy)
    if stages is None or total_steps(ft_cfg, len(splits.x_train), cfg.data.batch_size) < 2:
        log(f"fine-tuning {_describe(ft_cfg)} with distillation")
        tuned = finetune(
            model,
            base.model,
            splits,
            ft_cfg,
            cfg.data.batch_size,
            cfg.finetune_seed,
            callback=log_progress(log),
            device=device,
        )
    else:
        # Deep Compression's pipeline: prune and retrain, then share/quantize and retrain
        # again. The second stage appends to the same weight transforms as a single apply.
        first, second = stages
        half = _halve(ft_cfg)
        model = apply_policy(base.model, first, profile, cfg.compress)
        log(f"stage 1 ({', '.join(_knobs(first))}): fine-tuning {_describe(half)}")
        finetune(
            model,
            base.model,
            splits,
            half,
            cfg.data.batch_size,
            cfg.finetune_seed,
            callback=log_progress(log),
            device=device,
        )
        for method in (share, quantize):
            model = method.apply(model, policy, profile, cfg.compress)
        calibrate(model, _calibration_batches(splits))
        log(f"stage 2 ({', '.join(_knobs(second))}): fine-tuning {_describe(half)}")
        tuned = finetune(
            model,
            base.model,
            splits,
            half,
            cfg.data.batch_size,
            cfg.finetune_seed + 1,
            callback=log_progress(log),
            device=device,
        )
    with on_device(device, model):
        accuracy = evaluate(model, splits.x_test, splits.y_test)

    names = list(profile.layers)
    encoded = encode_model(model, policy, names)  # once, for the three accounts below
    blobs = pack_model(model, policy, names, encoded)
    packed = b"".join(blobs.values())
    assert len(packed) == costs.size_bytes, "cost model and packed export disagree"
    huffman = huffman_size(model, policy, names, encoded)
    stored_params = nonzero_params(model, policy, names, encoded)
    threads = torch.get_num_threads()
    report = {
        "model": profile.model,
        "base_accuracy": base.metrics["test_accuracy"],
        "accuracy_before_finetune": before,
        "accuracy": accuracy,
        "val_accuracy": tuned.val_accuracy,
        **{k: v for k, v in costs.as_dict().items()},
        **{f"base_{k}": v for k, v in base_costs.as_dict().items()},
        "nonzero_params": stored_params,
        "size_bytes_huffman": huffman,
        "compression_ratio": base_costs.size_bytes / costs.size_bytes,
        "compression_ratio_huffman": base_costs.size_bytes / huffman,
        "macs_ratio": costs.macs / base_costs.macs,
        "latency_ms": latency(model, profile.input_shape, threads),
        "base_latency_ms": latency(base.model, profile.input_shape, threads),
        "latency_threads": threads,
        "finetune": {**asdict(ft_cfg), "stages": 1 if stages is None else 2},
        "seconds": round(time.perf_counter() - start, 2),
        "policy": policy.to_dict(),
        # checked by autocompress.load: the weights in model.pt are the ones reported here
        "state_dict_sha256": state_dict_sha256(model.state_dict()),
    }
    return Candidate(model, policy, report, packed)


def write_candidate(
    folder: Path,
    candidate: Candidate,
    cfg: Config,
    base: BaseModel,
    profile: Profile,
    onnx: bool = False,
) -> None:
    """Write a candidate's files into ``folder``: a folder staged by
    :func:`autocompress.files.staged_output`, swapped in by the caller once it is complete."""
    report = candidate.report
    write_atomic(folder / "weights.bin", candidate.packed)
    meta = {"report": report, "mean": base.metrics.get("mean"), "std": base.metrics.get("std")}
    save_checkpoint(
        folder / "model.pt",
        candidate.model,
        base.spec,
        candidate.policy.to_dict(),
        asdict(cfg.compress),
        profile.input_shape,
        meta,
    )
    if onnx:
        export_onnx(
            folder / "model.pt", folder / "model.onnx", profile.input_shape, allowed_by(cfg)
        )
    candidate.policy.save(folder / "policy.yaml")
    write_report(folder, report)


def write_report(folder: Path, report: dict[str, Any]) -> None:
    write_atomic(folder / "report.json", json.dumps(report, indent=2) + "\n")


def compress_and_export(
    cfg: Config,
    splits: Splits,
    base: BaseModel,
    profile: Profile,
    policy: Policy,
    out: Path,
    finetune_epochs: float | None = None,
    log: Callable[[str], None] = print,
    force: bool = False,
) -> dict[str, Any]:
    """Apply ``policy`` to the base model, fine-tune with distillation, test, write ``out``.

    ``out`` is refused before the fine-tune if it is a file, not writable, or a non-empty
    folder that is not an earlier output of this tool (unless ``force``); it is replaced as a
    whole at the end, or left as it was.
    """
    check_output_dir(out, force)
    candidate = build_candidate(cfg, splits, base, profile, policy, finetune_epochs, log)
    with staged_output(out, force) as folder:
        write_candidate(folder, candidate, cfg, base, profile)
    return candidate.report


def export_onnx(
    checkpoint: Path, path: Path, input_shape: tuple[int, ...], allow_factories: Iterable[str] = ()
) -> None:
    """``model.onnx`` from an exported checkpoint: float weights (transforms evaluated),
    activation quantizers kept, normalisation inside, any batch size; input ``images``."""
    from autocompress import load

    loaded = load(checkpoint, allow_factories=allow_factories)
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
