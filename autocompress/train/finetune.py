"""Fine-tuning of compressed models: cross-entropy plus distillation from the base model.

Masks, quantizers and shared weights are parametrizations and input hooks of the compressed
model, so plain gradient steps respect them. A callback receives intermediate validation
scores and may stop a poor candidate early (the search uses it for pruning trials).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from autocompress.config import FinetuneConfig
from autocompress.data import Splits, batches
from autocompress.train.device import on_device
from autocompress.train.fit import evaluate

# Students trained from scratch clip gradients: the T²-scaled distillation term can spike while
# the student is still far from the teacher.
GRAD_CLIP = 5.0

# (step, total steps, validation accuracy) -> False to stop now
Callback = Callable[[int, int, float], bool]


@dataclass(frozen=True)
class FinetuneResult:
    steps: int
    total_steps: int
    val_accuracy: float
    stopped_early: bool
    history: list[tuple[int, float]]  # (step, validation accuracy)


def distillation_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    teacher: torch.Tensor | None,
    weight: float,
    temperature: float,
) -> torch.Tensor:
    """(1 - weight) · CE + weight · T² · KL(teacher_T ‖ student_T) (Hinton et al., 2015)."""
    ce = nn.functional.cross_entropy(logits, targets)
    if teacher is None or weight == 0:
        return ce
    kl = nn.functional.kl_div(
        nn.functional.log_softmax(logits / temperature, dim=1),
        nn.functional.log_softmax(teacher / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return (1 - weight) * ce + weight * temperature**2 * kl


def total_steps(cfg: FinetuneConfig, train_size: int, batch_size: int) -> int:
    if cfg.steps is not None:
        return cfg.steps
    return math.ceil(cfg.epochs * math.ceil(train_size / batch_size))


def finetune(
    student: nn.Module,
    teacher: nn.Module | None,
    splits: Splits,
    cfg: FinetuneConfig,
    batch_size: int,
    seed: int = 0,
    callback: Callback | None = None,
    evaluations: int = 4,
    grad_clip: float | None = None,
    device: torch.device | None = None,
) -> FinetuneResult:
    """Fine-tune ``student`` in place for ``cfg.steps`` (or ``cfg.epochs``) SGD steps.

    Validation runs ``evaluations`` times, evenly spaced, and at the end; each score goes to
    ``callback``. ``grad_clip`` caps the gradient norm of each step (None: ``cfg.grad_clip``,
    the config's cap). A non-finite loss raises
    FloatingPointError (the search marks the trial failed). Student and teacher run on
    ``device`` (default: the CPU) and are back on the CPU afterwards.
    """
    device = device or torch.device("cpu")
    grad_clip = cfg.grad_clip if grad_clip is None else grad_clip
    with on_device(device, student, teacher):
        return _finetune(
            student,
            teacher,
            splits,
            cfg,
            batch_size,
            seed,
            callback,
            evaluations,
            grad_clip,
            device,
        )


def _finetune(
    student: nn.Module,
    teacher: nn.Module | None,
    splits: Splits,
    cfg: FinetuneConfig,
    batch_size: int,
    seed: int,
    callback: Callback | None,
    evaluations: int,
    grad_clip: float | None,
    device: torch.device,
) -> FinetuneResult:
    steps = total_steps(cfg, len(splits.x_train), batch_size)
    if teacher is not None:
        teacher.eval()
    if steps == 0:
        val = evaluate(student, splits.x_val, splits.y_val)
        return FinetuneResult(0, 0, val, False, [(0, val)])
    optimizer = torch.optim.SGD(student.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    checkpoints = {round(steps * (i + 1) / evaluations) for i in range(evaluations)}
    generator = torch.Generator().manual_seed(seed)
    history: list[tuple[int, float]] = []
    step = 0
    while step < steps:
        for xb, yb in batches(
            splits.x_train, splits.y_train, batch_size, generator, splits.augment
        ):
            student.train()
            xb, yb = xb.to(device), yb.to(device)
            with torch.no_grad():
                soft = teacher(xb) if teacher is not None else None
            loss = distillation_loss(student(xb), yb, soft, cfg.distill_weight, cfg.temperature)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"fine-tune loss became {loss.item()} at step {step}; lower the learning rate"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(student.parameters(), grad_clip)
            optimizer.step()
            schedule.step()
            step += 1
            if step in checkpoints:
                val = evaluate(student, splits.x_val, splits.y_val)
                history.append((step, val))
                if callback is not None and not callback(step, steps, val) and step < steps:
                    return FinetuneResult(step, steps, val, True, history)
            if step >= steps:
                break
    return FinetuneResult(steps, steps, history[-1][1], False, history)


def log_progress(log: Callable[[str], None]) -> Callback:
    """A callback that prints each intermediate validation score and never stops early."""

    def callback(step: int, steps: int, val: float) -> bool:
        log(f"  step {step}/{steps}  val {val:.2%}")
        return True

    return callback
