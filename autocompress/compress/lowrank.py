"""Low-rank decomposition: Linear → two Linears by truncated SVD; Conv k×k → Conv k×k to r
channels, then Conv 1×1. ``rank`` is the fraction of full rank kept.

SVDs are cached per layer weight, so a search that tries many ranks on one layer decomposes it
once.
"""

from __future__ import annotations

import copy
import hashlib
from collections import OrderedDict

import torch
from torch import nn

from autocompress.compress.layers import weight_layers
from autocompress.config import CompressConfig
from autocompress.cost.metrics import kept_rank
from autocompress.cost.profile import Profile
from autocompress.policy import Policy

KNOBS = ("rank",)
_CACHE: OrderedDict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = OrderedDict()
_CACHE_SIZE = 256


class Factorized(nn.Module):
    """``second(first(x))``; keeps the layer's name, its factors are ``<name>.first/second``."""

    def __init__(self, first: nn.Module, second: nn.Module) -> None:
        super().__init__()
        self.first, self.second = first, second

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


def apply(
    model: nn.Module, policy: Policy, profile: Profile, settings: CompressConfig
) -> nn.Module:
    for name, choice in policy.layers.items():
        if choice.rank < 1.0:
            (layer,) = weight_layers(model, name)
            parent, _, child = name.rpartition(".")
            owner = model.get_submodule(parent) if parent else model
            setattr(owner, child, factorize(layer, choice.rank))
    return model


def factorize(layer: nn.Conv2d | nn.Linear, rank: float) -> Factorized:
    weight = layer.weight.detach()
    out = weight.shape[0]
    matrix = weight.reshape(out, -1)
    r = kept_rank(rank, out, matrix.shape[1])
    u, s, vh = _svd(matrix)
    root = s[:r].sqrt()
    left, right = u[:, :r] * root, root[:, None] * vh[:r]  # out×r, r×fan_in
    first: nn.Conv2d | nn.Linear
    second: nn.Conv2d | nn.Linear
    if isinstance(layer, nn.Linear):
        first = nn.Linear(layer.in_features, r, bias=False)
        second = nn.Linear(r, out, bias=layer.bias is not None)
        first.weight.data.copy_(right)
        second.weight.data.copy_(left)
    else:
        # same geometry as the layer, r output channels
        first = copy.deepcopy(layer)
        first.out_channels, first.bias = r, None
        first.weight = nn.Parameter(torch.empty(r, *weight.shape[1:]))
        second = nn.Conv2d(r, out, 1, bias=layer.bias is not None)
        first.weight.data.copy_(right.reshape(r, *weight.shape[1:]))
        second.weight.data.copy_(left.reshape(out, r, 1, 1))
    if layer.bias is not None:
        assert second.bias is not None
        second.bias.data.copy_(layer.bias.detach())
    return Factorized(first, second)


def _svd(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    key = hashlib.blake2b(matrix.contiguous().numpy().tobytes(), digest_size=16).hexdigest()
    key += str(tuple(matrix.shape))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    result = torch.linalg.svd(matrix.double(), full_matrices=False)
    u, s, vh = (t.float() for t in result)
    _CACHE[key] = (u, s, vh)
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return u, s, vh
