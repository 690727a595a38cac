"""Knowledge distillation into a compact network, and the same network trained alone.

``autocompress distill CONFIG --student lenet5:width=0.5`` trains the student from scratch with
the base model as teacher (Hinton et al.: cross-entropy plus temperature-softened KL), then
trains the same student, from the same initialisation, without a teacher: the compact-network
baseline. Both are tested and reported like ``apply``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import yaml

from autocompress.checkpoint import save_checkpoint, state_dict_sha256
from autocompress.config import Config
from autocompress.cost.metrics import compute_costs
from autocompress.cost.profile import Profile, profile_model
from autocompress.data import Splits
from autocompress.errors import ConfigError
from autocompress.export import latency
from autocompress.files import check_output_dir, staged_output, write_atomic
from autocompress.models import ZOO, check_args, model_spec
from autocompress.policy import Policy
from autocompress.train.base import BaseModel, init_model
from autocompress.train.device import on_device, resolve_device
from autocompress.train.finetune import GRAD_CLIP, finetune, log_progress
from autocompress.train.fit import evaluate
from autocompress.yamlio import load_yaml


def parse_student(spec: str) -> tuple[str, dict[str, Any]]:
    """``"lenet5:width=0.5,..."`` → ("lenet5", {"width": 0.5}); errors name the bad part."""
    name, _, rest = spec.partition(":")
    if name not in ZOO:
        raise ConfigError("--student", spec, f"a zoo model, one of {', '.join(sorted(ZOO))}")
    args: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError("--student", spec, "arguments as key=value, e.g. lenet5:width=0.5")
        try:
            args[key.strip()] = load_yaml(value)
        except yaml.YAMLError:
            raise ConfigError("--student", spec, f"{value!r} is not a value") from None
    try:
        check_args(name, args)
    except ConfigError as exc:
        raise ConfigError("--student", spec, exc.allowed) from None
    return name, args


def distill(
    cfg: Config,
    splits: Splits,
    base: BaseModel,
    base_profile: Profile,
    student: tuple[str, dict[str, Any]],
    out: Path,
    epochs: float | None = None,
    log: Callable[[str], None] = print,
    force: bool = False,
) -> dict[str, Any]:
    """Train the student with and without the teacher; write ``out`` (checked before training,
    replaced as a whole at the end: ``model.pt`` of the distilled student and ``report.json``)."""
    check_output_dir(out, force)
    name, args = student
    spec = model_spec(name, None, args, splits.input_shape, splits.num_classes)
    base_costs = compute_costs(base_profile, Policy(base_profile.model))
    train = replace(
        cfg.finetune,
        epochs=epochs if epochs is not None else cfg.train.epochs,
        steps=None,
        lr=cfg.train.lr,
    )
    base_latency = {
        "base_latency_ms": latency(base.model, splits.input_shape, torch.get_num_threads())
    }
    device = resolve_device(cfg.train.device)
    reports = {}
    distilled: torch.nn.Module | None = None
    for label, teacher, weight in (
        ("distilled", base.model, cfg.finetune.distill_weight),
        ("alone", None, 0.0),
    ):
        start = time.perf_counter()
        model = init_model(spec, cfg.train.seed)
        log(f"training {name} {args or ''} {label} for {train.epochs:g} epochs")
        tuned = finetune(
            model,
            teacher,
            splits,
            replace(train, distill_weight=weight),
            cfg.data.batch_size,
            cfg.train.seed,
            callback=log_progress(log),
            grad_clip=GRAD_CLIP,
            device=device,
        )
        with on_device(device, model):
            accuracy = evaluate(model, splits.x_test, splits.y_test)
        costs = compute_costs(profile_model(model, splits.input_shape, name), Policy(name))
        reports[label] = {
            "student": {"name": name, "args": args},
            "base_accuracy": base.metrics["test_accuracy"],
            "accuracy": accuracy,
            "val_accuracy": tuned.val_accuracy,
            **costs.as_dict(),
            **{f"base_{k}": v for k, v in base_costs.as_dict().items()},
            "nonzero_params": costs.params,
            "size_bytes_huffman": costs.size_bytes,
            "compression_ratio": base_costs.size_bytes / costs.size_bytes,
            "compression_ratio_huffman": base_costs.size_bytes / costs.size_bytes,
            "macs_ratio": costs.macs / base_costs.macs,
            "latency_ms": latency(model, splits.input_shape, torch.get_num_threads()),
            **base_latency,
            "distill_weight": weight,
            "temperature": cfg.finetune.temperature,
            "epochs": train.epochs,
            "seconds": round(time.perf_counter() - start, 2),
        }
        if label == "distilled":
            distilled = model
            reports[label]["state_dict_sha256"] = state_dict_sha256(model.state_dict())
    assert distilled is not None
    meta = {
        "report": reports["distilled"],
        "mean": base.metrics.get("mean"),
        "std": base.metrics.get("std"),
    }
    with staged_output(out, force) as folder:
        save_checkpoint(
            folder / "model.pt", distilled, spec, input_shape=splits.input_shape, meta=meta
        )
        write_atomic(folder / "report.json", json.dumps(reports, indent=2) + "\n")
    return reports
