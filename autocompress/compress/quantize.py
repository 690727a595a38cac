"""Simulated quantization per layer, with a straight-through estimator.

Weights: per-output-channel symmetric, 2–8 bits (``w_bits``), the scale taken from the current
weights, so fine-tuning moves values between levels. Activations (``a_bits``): each layer's
input, per tensor, asymmetric; the range is calibrated on a few batches and then tracked with an
exponential moving average while fine-tuning. 16 bits means float16 and 32 means float32. Where
integer layers feed a residual add, its operands are quantized to 8 bits as well
(:mod:`autocompress.compress.residual`), as an integer runtime computes the add.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import torch
from torch import nn

from autocompress.compress import residual
from autocompress.compress.layers import add_weight_transform, weight_layers
from autocompress.compress.residual import integer_layer
from autocompress.config import CompressConfig
from autocompress.cost.profile import Profile
from autocompress.inputs import Inputs
from autocompress.policy import Policy

KNOBS = ("w_bits", "a_bits")


def channel_scale(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-output-channel step of a symmetric ``bits`` quantizer (shape broadcastable to w)."""
    qmax = 2 ** (bits - 1) - 1
    amax = weight.detach().abs().amax(dim=tuple(range(1, weight.ndim)), keepdim=True)
    return amax.clamp(min=1e-12) / qmax


def quantize_weight(weight: torch.Tensor, bits: int) -> torch.Tensor:
    if bits >= 32:
        return weight
    if bits == 16:
        return weight.half().float()
    qmax = 2 ** (bits - 1) - 1
    scale = channel_scale(weight, bits)
    return torch.round(weight / scale).clamp(-qmax, qmax) * scale


class WeightQuant(nn.Module):
    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        q = quantize_weight(weight, self.bits)
        return weight + (q - weight).detach()  # straight-through estimator


class ActQuant(nn.Module):
    """Quantizes a layer's input; range from calibration, then an EMA while training."""

    lo: torch.Tensor
    hi: torch.Tensor
    calibrated: torch.Tensor

    def __init__(self, bits: int, momentum: float = 0.1) -> None:
        super().__init__()
        self.bits, self.momentum = bits, momentum
        self.register_buffer("lo", torch.zeros(()))
        self.register_buffer("hi", torch.zeros(()))
        self.register_buffer("calibrated", torch.zeros((), dtype=torch.bool))
        self.collect: list[tuple[float, float]] | None = None
        self.frozen: tuple[float, int] | None = None

    def freeze(self, on: bool = True) -> None:
        """Export as :func:`quantize_dequantize` on the calibrated grid, read now: an ONNX
        export with a dynamic batch traces on fake tensors, which have no values to read."""
        scale, zero = grid(self.lo, self.hi, self.bits)
        self.frozen = (float(scale), int(zero)) if on else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bits == 16:
            return x + (x.half().float() - x).detach()
        if torch.compiler.is_exporting():  # the calibrated range, frozen
            if self.frozen is None:  # torch.export: the simulation's own arithmetic
                return fake_quant(x, self.lo, self.hi, self.bits)
            if self.bits < 8:  # the narrower grid's levels sit on the uint8 codes exactly
                x = fake_quant(x, self.lo, self.hi, self.bits)
            return quantize_dequantize(x, *self.frozen)
        lo, hi = x.detach().min().clamp(max=0), x.detach().max().clamp(min=0)
        if self.collect is not None:
            self.collect.append((float(lo), float(hi)))
        elif not bool(self.calibrated):
            self.lo.fill_(lo)
            self.hi.fill_(hi)
            self.calibrated.fill_(True)
        elif self.training:
            self.lo.lerp_(lo, self.momentum)
            self.hi.lerp_(hi, self.momentum)
        if self.collect is not None and not bool(self.calibrated):
            lo_q, hi_q = lo, hi  # still collecting: quantize with this batch's own range
        else:
            lo_q, hi_q = self.lo, self.hi
        return x + (fake_quant(x, lo_q, hi_q, self.bits) - x).detach()


def fake_quant(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, bits: int) -> torch.Tensor:
    levels = 2**bits - 1
    scale, zero = grid(lo, hi, bits)
    return (torch.clamp(torch.round(x / scale) + zero, 0, levels) - zero) * scale


@torch.library.custom_op("autocompress::quantize_dequantize", mutates_args=())
def quantize_dequantize(x: torch.Tensor, scale: float, zero: int) -> torch.Tensor:
    """ONNX's uint8 ``QuantizeLinear`` then ``DequantizeLinear``: the ONNX export's form of an
    activation quantizer (:func:`autocompress.export.write_onnx` translates it to that pair)."""
    return (torch.clamp(torch.round(x / scale) + zero, 0, 255) - zero) * scale


@quantize_dequantize.register_fake
def _(x: torch.Tensor, scale: float, zero: int) -> torch.Tensor:
    return torch.empty_like(x)


def grid(lo: torch.Tensor, hi: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The scale and zero point of :func:`fake_quant` for the range [lo, hi]."""
    scale = ((hi - lo) / (2**bits - 1)).clamp(min=1e-12)
    return scale, torch.round(-lo / scale)


def _quantize_input(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    quantizer = cast(ActQuant, module.input_quant)
    return (quantizer(args[0]), *args[1:])


def apply(
    model: nn.Module, policy: Policy, profile: Profile, settings: CompressConfig
) -> nn.Module:
    for name, choice in policy.layers.items():
        for layer in weight_layers(model, name):
            if choice.w_bits < 32:
                add_weight_transform(layer, WeightQuant(choice.w_bits))
            if choice.a_bits < 32:
                layer.add_module("input_quant", ActQuant(choice.a_bits))
                layer.register_forward_pre_hook(_quantize_input)
    if any(integer_layer(m) for m in model.modules()):
        quantizers = [m for m in model.modules() if isinstance(m, ActQuant)]
        for q in quantizers:
            q.collect = []  # finding the adds must not calibrate anything
        try:
            adds = residual.find_residual_adds(model, profile.inputs)
        finally:
            for q in quantizers:
                q.collect = None
        residual.install(model, adds, lambda: ActQuant(8))
    return model


@torch.no_grad()
def calibrate(model: nn.Module, inputs: Iterable[torch.Tensor | Inputs]) -> int:
    """Set every activation range to the mean of its per-batch min/max over ``inputs``
    (batches: tensors, or :class:`~autocompress.inputs.Inputs` for any other model input).

    Returns the number of quantized inputs calibrated (0 when the model has none).
    """
    quantizers = [m for m in model.modules() if isinstance(m, ActQuant) and m.bits < 16]
    if not quantizers:
        return 0
    for q in quantizers:
        q.collect = []
        q.calibrated.fill_(False)
    was_training = model.training
    model.eval()
    for x in inputs:
        Inputs.of(x)(model)
    for q in quantizers:
        assert q.collect, "calibration saw no batch"
        q.lo.fill_(sum(lo for lo, _ in q.collect) / len(q.collect))
        q.hi.fill_(sum(hi for _, hi in q.collect) / len(q.collect))
        q.calibrated.fill_(True)
        q.collect = None
    model.train(was_training)
    return len(quantizers)
