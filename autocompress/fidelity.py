"""The zero-cost fidelity: score a compressed candidate without fine-tuning it.

Compressing a layer shifts the statistics of everything after it. A short fine-tune repairs
most of that, and is what each search trial pays for today. Much of the repair needs no
gradient (EagleEye, FastNAS; Nagel et al., 2019):

- **adaptive BatchNorm** — every BatchNorm's running mean and variance are estimated again on a
  few hundred training images passed through the compressed model;
- **output correction** — bias correction (Nagel et al.) extended to the scale: for a layer
  whose output keeps the base model's shape (not pruned at its output), each output channel's
  mean and standard deviation on the same images are set back to the base model's, by its
  bias and a factor on its weights' row — the classifier always, and the layers of models
  without BatchNorm (a BatchNorm re-estimated where the model has none). Matching the mean
  alone is not enough: pruning shrinks the classifier's logits (about 3× on LeNet-5 at 25% of
  the MACs), and moving shrunken logits by the base's per-class means makes them worse;

then the candidate is scored on a small fixed subset of the validation split. Everything here
works on the model in place and costs a few forward passes.

>>> import copy, torch
>>> from torch import nn
>>> base = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).eval()
>>> batches = [torch.randn(64, 4) for _ in range(4)]
>>> model = copy.deepcopy(base)
>>> _ = model[0].weight.data.mul_(0.5)  # a crude compression of the first layer
>>> adapt_batchnorm(model, batches), correct_outputs(model, base, batches)
(1, 2)
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from autocompress.compress.layers import WeightLayer, stored_weight, transforms
from autocompress.compress.quantize import calibrate
from autocompress.compress.share import Shared
from autocompress.inputs import Inputs
from autocompress.recipe import Recipe

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
Stats = dict[str, tuple[torch.Tensor, torch.Tensor]]  # layer -> per-channel (mean, std)
VAL_SUBSET = 1000  # validation images the zero-cost score is taken on


@dataclass(frozen=True)
class ZeroCost:
    """What :func:`zero_cost` did and found."""

    score: float  # the recipe's validation score on the subset
    batchnorms: int  # BatchNorm layers whose statistics were estimated again
    corrected: int  # layers whose output statistics were corrected


@torch.no_grad()
def adapt_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor | Inputs]) -> int:
    """Estimate every BatchNorm's running statistics again on ``batches`` (a cumulative
    average over all of them); every other module stays in eval mode, so activation
    quantizers keep their ranges and dropout stays off. Returns the number of BatchNorms."""
    norms = [m for m in model.modules() if isinstance(m, BN_TYPES) and m.track_running_stats]
    if not norms:
        return 0
    was_training = model.training
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
        m.train()
    try:
        for x in batches:
            Inputs.of(x)(model)
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.train(was_training)
    return len(norms)


@torch.no_grad()
def correct_outputs(
    model: nn.Module, base: nn.Module, batches: Sequence[torch.Tensor | Inputs]
) -> int:
    """Set each biased layer's per-channel output mean and standard deviation to the base's.

    A layer is corrected where ``model`` and ``base`` both have a module of that name, the
    model's has a bias on its output (a convolution, a linear layer, or the second factor of
    a low-rank pair), and the two outputs have the same shape. Layers are corrected in the
    order they run, each measured after the ones before it were corrected. A layer whose
    stored weights are not one row per output channel (shared weights: a codebook) gets its
    mean corrected only. Returns how many layers were corrected.
    """
    base_modules = dict(base.named_modules())
    layers = {  # pruned at their output, the others have nothing to compare with
        name: layer
        for name, module in model.named_modules()
        if name in base_modules
        and (layer := _output_layer(module)) is not None
        and _width(layer) == _width(_output_layer(base_modules[name]) or base_modules[name])
    }
    if not layers:
        return 0
    was_training = (model.training, base.training)
    model.eval()
    base.eval()
    try:
        order = _run_order(model, list(layers), batches[:1])
        reference = _reference_stats(base, order, batches)
        corrected = 0
        for name in order:
            stats = _channel_stats(model, [name], batches).get(name)
            if name not in reference or stats is None or stats[0].shape != reference[name][0].shape:
                continue  # pruned at its output: nothing to compare with
            (mean, std), (ref_mean, ref_std) = stats, reference[name]
            layer = layers[name]
            stored = stored_weight(layer)
            scale = torch.ones_like(mean)
            if not any(isinstance(t, Shared) for t in transforms(layer)):
                scale = torch.where(std > 1e-8, ref_std / std.clamp_min(1e-8), scale)
                stored.mul_(scale.view(-1, *[1] * (stored.dim() - 1)))
            bias = layer.bias
            assert bias is not None
            bias.mul_(scale).add_(ref_mean - mean * scale)
            corrected += 1
        return corrected
    finally:
        model.train(was_training[0])
        base.train(was_training[1])


def zero_cost(
    model: nn.Module,
    base: nn.Module,
    recipe: Recipe,
    val_subset: int | None = VAL_SUBSET,
    correct: bool = True,
) -> ZeroCost:
    """Score a candidate made by :func:`autocompress.export.build` without fine-tuning it:
    adaptive BatchNorm and output correction (``correct``) on the recipe's calibration images
    (a few hundred training images), the activation ranges calibrated again after them, then
    the recipe's validation score on its first ``val_subset`` images (None: all). In place."""
    batches = recipe.calibration()
    batchnorms = adapt_batchnorm(model, batches)
    calibrate(model, batches)
    corrected = correct_outputs(model, base, batches) if correct else 0
    if corrected:
        calibrate(model, batches)
    return ZeroCost(recipe.validate(model, limit=val_subset), batchnorms, corrected)


def _output_layer(module: nn.Module) -> WeightLayer | None:
    """The biased layer that computes ``module``'s output: itself, or a low-rank pair's
    second factor (compress/lowrank.Factorized)."""
    if isinstance(module, WeightLayer):
        return module if module.bias is not None else None
    second = getattr(module, "second", None)
    if isinstance(second, WeightLayer) and hasattr(module, "first") and second.bias is not None:
        return second
    return None


def _width(module: nn.Module) -> int | None:
    """Output channels (features) of a convolution or linear layer, else None."""
    width = getattr(module, "out_channels", getattr(module, "out_features", None))
    return width if isinstance(width, int) else None


# the base model's output statistics per (layers, calibration batches): the same for every
# candidate of a search, so measured once (a candidate's zero-cost score then costs one pass
# per corrected layer instead of one more for the base)
_REFERENCES: weakref.WeakKeyDictionary[nn.Module, dict[tuple[object, ...], Stats]] = (
    weakref.WeakKeyDictionary()
)


def _reference_stats(
    base: nn.Module, names: list[str], batches: Sequence[torch.Tensor | Inputs]
) -> Stats:
    """:func:`_channel_stats` of ``base``, remembered while ``base`` lives; keyed by the layers,
    the batches' contents and the base's weights (a changed base is measured again)."""
    weights = sum(
        float(t.double().sum()) for t in base.state_dict().values() if t.is_floating_point()
    )
    data = tuple(
        (tuple(t.shape), float(t.double().sum())) for x in batches for t in Inputs.of(x).tensors()
    )
    key = (tuple(names), data, weights)
    known = _REFERENCES.setdefault(base, {})
    if key not in known:
        known.clear()  # one entry per base: a search uses one set of batches
        known[key] = _channel_stats(base, names, batches)
    return known[key]


def _channel_axis(module: nn.Module) -> int:
    linear = isinstance(module, nn.Linear) or isinstance(getattr(module, "second", None), nn.Linear)
    return -1 if linear else 1


def _run_with_hooks(
    model: nn.Module,
    names: list[str],
    batches: Sequence[torch.Tensor | Inputs],
    hook: Callable[[nn.Module, object, str], None],
) -> None:
    """Run ``batches`` through ``model`` with ``hook(module, output, name)`` on each named
    module's forward; the hooks are removed afterwards."""
    handles = [
        model.get_submodule(name).register_forward_hook(
            lambda m, _i, o, name=name: hook(m, o, name)
        )
        for name in names
    ]
    try:
        for x in batches:
            Inputs.of(x)(model)
    finally:
        for h in handles:
            h.remove()


def _run_order(
    model: nn.Module, names: list[str], batches: Sequence[torch.Tensor | Inputs]
) -> list[str]:
    order: list[str] = []
    _run_with_hooks(
        model,
        names,
        batches,
        lambda _m, _o, name: order.append(name) if name not in order else None,
    )
    return order


def _channel_stats(
    model: nn.Module, names: list[str], batches: Sequence[torch.Tensor | Inputs]
) -> Stats:
    """Per-channel mean and standard deviation of each named module's output over
    ``batches``."""
    sums: dict[str, torch.Tensor] = {}
    squares: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def hook(module: nn.Module, output: object, name: str) -> None:
        if not torch.is_tensor(output) or output.dim() < 2:
            return
        axis = _channel_axis(module) % output.dim()
        flat = output.detach().double().transpose(axis, -1).reshape(-1, output.shape[axis])
        sums[name] = sums.get(name, 0) + flat.sum(0)
        squares[name] = squares.get(name, 0) + (flat * flat).sum(0)
        counts[name] = counts.get(name, 0) + flat.shape[0]

    _run_with_hooks(model, names, batches, hook)
    out = {}
    for name, total in sums.items():
        mean = total / counts[name]
        var = (squares[name] / counts[name] - mean * mean).clamp_min(0)
        out[name] = (mean.float(), var.sqrt().float())
    return out
