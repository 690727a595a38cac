"""Weight sharing (Deep Compression): per-layer k-means over the kept weights.

Each kept weight becomes an index into ``clusters`` shared values (centroids). The centroids are
parameters, fine-tuned with the gradients of every weight in their cluster pooled together, as
in Deep Compression; the pool is the mean rather than the sum, so one learning rate serves
clusters of 10 and of 30,000 weights. Pruned weights stay zero.
Centroids start linearly spaced between the smallest and largest weight (the paper's best
initialisation) and are refined by Lloyd iterations.
"""

from __future__ import annotations

import torch
from torch import nn

from autocompress.compress.layers import add_weight_transform, weight_layers
from autocompress.compress.sparsity import keep_mask
from autocompress.config import CompressConfig
from autocompress.cost.profile import Profile
from autocompress.policy import Policy

KNOBS = ("clusters",)


class _Gather(torch.autograd.Function):
    """centroids[index] * keep, whose backward averages each cluster's weight gradients."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        centroids: torch.Tensor,
        index: torch.Tensor,
        keep: torch.Tensor,
    ) -> torch.Tensor:
        ctx.save_for_backward(index, keep)
        ctx.clusters = centroids.numel()  # type: ignore[attr-defined]
        return centroids[index] * keep

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor, None, None]:
        index, keep = ctx.saved_tensors  # type: ignore[attr-defined]
        k = ctx.clusters  # type: ignore[attr-defined]
        flat, mask = index.flatten(), keep.flatten()
        sums = torch.bincount(flat, weights=(grad.flatten() * mask).double(), minlength=k)
        counts = torch.bincount(flat, weights=mask.double(), minlength=k).clamp(min=1)
        return (sums / counts).to(grad.dtype), None, None


class Shared(nn.Module):
    """weight = centroids[index] where kept, 0 elsewhere."""

    index: torch.Tensor
    keep: torch.Tensor

    def __init__(self, centroids: torch.Tensor, index: torch.Tensor, keep: torch.Tensor) -> None:
        super().__init__()
        self.centroids = nn.Parameter(centroids)
        self.register_buffer("index", index)
        self.register_buffer("keep", keep)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        del weight  # replaced by the shared values
        out: torch.Tensor = _Gather.apply(self.centroids, self.index, self.keep)
        return out


def kmeans_1d(
    values: torch.Tensor, k: int, iterations: int = 30
) -> tuple[torch.Tensor, torch.Tensor]:
    """(centroids, index) of a linear-initialised 1-D k-means; deterministic."""
    lo, hi = values.min(), values.max()
    centroids = torch.linspace(float(lo), float(hi), k, dtype=values.dtype)
    index = torch.zeros(values.numel(), dtype=torch.long)
    for _ in range(iterations):
        edges = (centroids[1:] + centroids[:-1]) / 2
        index = torch.bucketize(values, edges)
        sums = torch.zeros(k, dtype=values.dtype).index_add_(0, index, values)
        counts = torch.bincount(index, minlength=k).to(values.dtype)
        updated = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
        updated, _ = torch.sort(updated)
        if torch.equal(updated, centroids):
            break
        centroids = updated
    edges = (centroids[1:] + centroids[:-1]) / 2
    return centroids, torch.bucketize(values, edges)


def apply(
    model: nn.Module, policy: Policy, profile: Profile, settings: CompressConfig
) -> nn.Module:
    for name, choice in policy.layers.items():
        if choice.clusters is None:
            continue
        for layer in weight_layers(model, name):
            weight = layer.weight.detach()
            keep = keep_mask(layer)
            keep = torch.ones_like(weight, dtype=torch.bool) if keep is None else keep
            kept = weight[keep]
            k = min(choice.clusters, max(1, kept.numel()))
            centroids, kept_index = kmeans_1d(kept, k)
            index = torch.zeros(weight.shape, dtype=torch.long)
            index[keep] = kept_index
            if k < choice.clusters:  # tiny layers: pad the codebook, it is priced at full size
                centroids = torch.cat([centroids, centroids[-1:].expand(choice.clusters - k)])
            add_weight_transform(layer, Shared(centroids, index, keep.to(weight.dtype)))
    return model
