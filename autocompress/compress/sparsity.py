"""Unstructured magnitude pruning: zero the ``sparsity`` fraction of a layer's smallest weights.

The mask is a parametrization of the weight, so it holds through fine-tuning (a masked weight
gets no gradient and is always zero in the forward pass).
"""

from __future__ import annotations

import torch
from torch import nn

from autocompress.compress.layers import (
    WeightLayer,
    add_weight_transform,
    transforms,
    weight_layers,
)
from autocompress.config import CompressConfig
from autocompress.cost.metrics import zeroed
from autocompress.cost.profile import Profile
from autocompress.policy import Policy

KNOBS = ("sparsity",)


class Mask(nn.Module):
    mask: torch.Tensor

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


def magnitude_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """1 for kept weights, 0 for the ``zeroed(numel, sparsity)`` smallest |w| (ties by index)."""
    flat = weight.detach().abs().flatten()
    mask = torch.ones_like(flat)
    drop = zeroed(flat.numel(), sparsity)
    if drop:
        mask[torch.argsort(flat, stable=True)[:drop]] = 0
    return mask.view_as(weight)


def apply(
    model: nn.Module, policy: Policy, profile: Profile, settings: CompressConfig
) -> nn.Module:
    for name, choice in policy.layers.items():
        if choice.sparsity > 0:
            for layer in weight_layers(model, name):
                add_weight_transform(layer, Mask(magnitude_mask(layer.weight, choice.sparsity)))
    return model


def keep_mask(layer: WeightLayer) -> torch.Tensor | None:
    """The layer's sparsity mask as booleans, or None if it is dense."""
    for t in transforms(layer):
        if isinstance(t, Mask):
            return t.mask.bool()
    return None
