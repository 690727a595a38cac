"""How a candidate is calibrated, fine-tuned and scored: the part of the work that is the user's.

A :class:`Recipe` is what the search and the export call between "compress" and "record":

- :class:`SplitsRecipe` — the built-in one of the YAML path: in-memory splits of a built-in
  dataset or a ``data.factory``, cross-entropy plus distillation from the base model;
- :class:`UserRecipe` — the API's: the user's own ``evaluate(model) -> float`` and
  ``finetune(model, steps, teacher) -> None`` callables, or their data loaders with the
  built-in distilled fine-tune, or any mix of the two.

Both return the same :class:`Tuned`, so trials and exports are built one way.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import torch
from torch import nn

from autocompress.config import FinetuneConfig
from autocompress.data import Splits
from autocompress.errors import AutocompressError
from autocompress.inputs import Inputs
from autocompress.train.device import on_device, resolve_device
from autocompress.train.finetune import Callback, distillation_loss, finetune, total_steps
from autocompress.train.fit import evaluate

CALIBRATION_BATCHES = 4

Evaluate = Callable[[nn.Module], float]  # model -> score to maximise (accuracy, say)
Finetune = Callable[[nn.Module, int, nn.Module], None]  # (model, steps, teacher), in place


@dataclass(frozen=True)
class Length:
    """How long a fine-tune runs: ``steps`` (batches), or ``epochs`` over the training data."""

    steps: int | None = None
    epochs: float | None = None

    def half(self) -> Length:
        if self.steps is not None:
            return Length(steps=max(1, self.steps // 2))
        return Length(epochs=(self.epochs or 0) / 2)

    def describe(self) -> str:
        if self.steps is not None:
            return f"{self.steps} steps"
        return "0 epochs (none)" if not self.epochs else f"{self.epochs:g} epochs"


@dataclass(frozen=True)
class Tuned:
    """The outcome of a fine-tune: the validation score, and its history (step, score)."""

    val_accuracy: float
    stopped_early: bool = False
    history: list[tuple[int, float]] = field(default_factory=list)


class Recipe(Protocol):
    """Calibrate, fine-tune and score compressed models (see the module's docstring)."""

    def calibration(self) -> list[Inputs]:
        """A few batches of inputs that set the activation quantizers' ranges."""
        ...

    def steps(self, length: Length) -> int:
        """The number of steps ``length`` means (0: no fine-tune)."""
        ...

    def finetune(
        self,
        model: nn.Module,
        teacher: nn.Module,
        length: Length,
        seed: int,
        report: Callback | None = None,
    ) -> Tuned:
        """Fine-tune ``model`` in place; validate it (at the end, and in between if the recipe
        can, each score passed to ``report``, which may stop it by returning False)."""
        ...

    def validate(self, model: nn.Module, limit: int | None = None) -> float:
        """The validation score; on the first ``limit`` samples where the recipe can take
        fewer (a user's own ``evaluate`` callable always scores its whole set)."""
        ...

    def select(self, model: nn.Module) -> float | None:
        """The score on the selection split (held out apart from validation; it compares a
        multi-fidelity search's finalists), None where the recipe has none."""
        ...

    def test(self, model: nn.Module) -> float | None:
        """The test score for reports, None where there is no test data."""
        ...


@dataclass(frozen=True)
class SplitsRecipe:
    """The YAML path's recipe: in-memory splits, distillation from the base (DESIGN.md #7)."""

    splits: Splits
    settings: FinetuneConfig
    batch_size: int
    device: str = "cpu"

    def calibration(self) -> list[Inputs]:
        x = self.splits.x_train
        return [Inputs((x[i * 128 : (i + 1) * 128],)) for i in range(CALIBRATION_BATCHES)]

    def _config(self, length: Length) -> FinetuneConfig:
        if length.steps is not None:
            return replace(self.settings, steps=length.steps)
        return replace(self.settings, epochs=length.epochs or 0.0, steps=None)

    def steps(self, length: Length) -> int:
        return total_steps(self._config(length), len(self.splits.x_train), self.batch_size)

    def finetune(
        self,
        model: nn.Module,
        teacher: nn.Module,
        length: Length,
        seed: int,
        report: Callback | None = None,
    ) -> Tuned:
        result = finetune(
            model,
            teacher,
            self.splits,
            self._config(length),
            self.batch_size,
            seed,
            callback=report,
            device=resolve_device(self.device),
        )
        return Tuned(result.val_accuracy, result.stopped_early, result.history)

    def validate(self, model: nn.Module, limit: int | None = None) -> float:
        x, y = self.splits.x_val[:limit], self.splits.y_val[:limit]
        with on_device(resolve_device(self.device), model):
            return evaluate(model, x, y)

    def select(self, model: nn.Module) -> float | None:
        x, y = self.splits.x_select, self.splits.y_select
        if x is None or y is None or not len(x):
            return None
        with on_device(resolve_device(self.device), model):
            return evaluate(model, x, y)

    def test(self, model: nn.Module) -> float | None:
        with on_device(resolve_device(self.device), model):
            return evaluate(model, self.splits.x_test, self.splits.y_test)


Batches = Iterable[Sequence[Any]]  # a DataLoader, or any re-iterable of (inputs, targets)


@dataclass
class UserRecipe:
    """The API's recipe: the user's callables and/or data loaders.

    ``evaluate``: the score to maximise (default: top-1 accuracy on ``val_data``).
    ``finetune``: the user's training loop, called as ``finetune(model, steps, teacher)``
    (default: the built-in distilled fine-tune over ``train_data``; with neither, candidates
    are scored as compressed, without fine-tuning). ``train_data`` / ``val_data`` /
    ``test_data`` yield ``(inputs, targets)`` batches; inputs may be a tensor, a tuple or a
    dict, as the model takes them. ``select_data``, batches apart from ``val_data``, compare
    a multi-fidelity search's finalists (without it they are compared on validation).
    """

    evaluate: Evaluate | None = None
    finetune_fn: Finetune | None = None
    train_data: Batches | None = None
    val_data: Batches | None = None
    test_data: Batches | None = None
    example: Inputs | None = None
    lr: float = 0.01
    distill_weight: float = 0.5
    temperature: float = 4.0
    device: str = "cpu"
    select_data: Batches | None = None
    grad_clip: float | None = FinetuneConfig.grad_clip  # finetune.grad_clip: norm cap per step

    def __post_init__(self) -> None:
        if self.evaluate is None and self.val_data is None:
            raise AutocompressError(
                "give evaluate= (a function model -> score) or val_data= (batches of "
                "(inputs, targets)) so candidates can be scored"
            )

    def calibration(self) -> list[Inputs]:
        if self.train_data is not None:
            batches = itertools.islice(iter(self.train_data), CALIBRATION_BATCHES)
            return [Inputs.of(batch[0]) for batch in batches]
        return [self.example] if self.example is not None else []

    def steps(self, length: Length) -> int:
        if length.steps is not None:
            return length.steps
        if not length.epochs:
            return 0
        size = _length_of(self.train_data)
        if size is None:
            raise AutocompressError(
                "a fine-tune given in epochs needs train_data with a length; give steps instead"
            )
        return math.ceil(length.epochs * size)

    def finetune(
        self,
        model: nn.Module,
        teacher: nn.Module,
        length: Length,
        seed: int,
        report: Callback | None = None,
    ) -> Tuned:
        steps = self.steps(length)
        if steps and self.finetune_fn is not None:
            model.train()
            self.finetune_fn(model, steps, teacher)
        elif steps and self.train_data is not None:
            self._distill(model, teacher, steps, seed)
        val = self.validate(model)
        if not math.isfinite(val):
            raise FloatingPointError(f"the validation score is {val}")
        if report is not None:
            report(steps, steps, val)
        return Tuned(val, False, [(steps, val)])

    def _distill(self, model: nn.Module, teacher: nn.Module, steps: int, seed: int) -> None:
        assert self.train_data is not None
        device = resolve_device(self.device)
        torch.manual_seed(seed)
        optimizer = torch.optim.SGD(model.parameters(), lr=self.lr, momentum=0.9, nesterov=True)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps))
        )
        teacher.eval()
        with on_device(device, model, teacher):
            step = 0
            while step < steps:
                seen = 0
                for batch in self.train_data:
                    inputs, targets = Inputs.of(batch[0]).to(device), batch[1].to(device)
                    model.train()
                    with torch.no_grad():
                        soft = inputs(teacher)
                    loss = distillation_loss(
                        inputs(model), targets, soft, self.distill_weight, self.temperature
                    )
                    if not torch.isfinite(loss):
                        raise FloatingPointError(
                            f"fine-tune loss became {loss.item()} at step {step}; lower lr"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if self.grad_clip is not None:
                        nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
                    optimizer.step()
                    schedule.step()
                    step, seen = step + 1, seen + 1
                    if step >= steps:
                        break
                if not seen:
                    raise AutocompressError("train_data yielded no batch")

    def validate(self, model: nn.Module, limit: int | None = None) -> float:
        if self.evaluate is not None:
            model.eval()
            with torch.no_grad():
                return float(self.evaluate(model))
        assert self.val_data is not None
        data = self.val_data if limit is None else _first_samples(self.val_data, limit)
        return accuracy(model, data, self.device)

    def select(self, model: nn.Module) -> float | None:
        return None if self.select_data is None else accuracy(model, self.select_data, self.device)

    def test(self, model: nn.Module) -> float | None:
        return None if self.test_data is None else accuracy(model, self.test_data, self.device)


def _first_samples(data: Batches, limit: int) -> Iterable[Sequence[Any]]:
    """The batches of ``data`` until ``limit`` samples have been seen (the last one whole)."""
    seen = 0
    for batch in data:
        if seen >= limit:
            return
        yield batch
        seen += len(batch[1])


def _length_of(data: Any) -> int | None:
    try:
        return len(data)
    except TypeError:
        return None


@torch.no_grad()
def accuracy(model: nn.Module, data: Batches, device: str = "cpu") -> float:
    """Top-1 accuracy of ``model`` over ``(inputs, targets)`` batches, in eval mode."""
    was_training = model.training
    model.eval()
    correct = total = 0
    target_device = resolve_device(device)
    with on_device(target_device, model):
        for batch in data:
            inputs, targets = Inputs.of(batch[0]).to(target_device), batch[1]
            correct += int((inputs(model).argmax(-1).cpu() == targets).sum())
            total += len(targets)
    model.train(was_training)
    return correct / max(total, 1)
