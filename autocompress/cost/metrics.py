"""The analytic cost model: any policy's MACs, params, BitOPs and bytes, from the profile alone.

It must agree exactly with counting on the really compressed model (tests check it against
``FlopCounterMode`` and the model's tensors), so every rule here mirrors what
:mod:`autocompress.compress` builds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from autocompress.cost.profile import Profile
from autocompress.policy import LayerChoice, Policy

FLOAT_BITS = 32  # biases, norms and other parameters stay float32
UNTOUCHED = LayerChoice()


@dataclass(frozen=True)
class LayerCost:
    macs: int
    params: int
    bitops: int
    size_bytes: int
    in_features: int
    out_features: int


@dataclass(frozen=True)
class Costs:
    """Totals for the whole model, and the compressible layers one by one."""

    macs: int
    params: int
    bitops: int
    size_bytes: int
    layers: dict[str, LayerCost] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        return {
            "macs": self.macs,
            "params": self.params,
            "bitops": self.bitops,
            "size_bytes": self.size_bytes,
        }


def kept_channels(channels: int, prune: float, round_to: int = 1) -> int:
    """Channels left after removing a ``prune`` fraction, rounded to a multiple of ``round_to``.

    Never below one channel (or one ``round_to`` block), never above ``channels``; pruning more
    never keeps more.

    >>> kept_channels(50, 0.5), kept_channels(50, 0.5, round_to=8), kept_channels(20, 0.99)
    (25, 24, 1)
    """
    if prune <= 0:
        return channels
    keep = channels - int(prune * channels + 1e-9)
    if round_to > 1:
        keep = max(round_to, round(keep / round_to) * round_to)
    return max(1, min(channels, keep))


def kept_rank(rank: float, out: int, fan_in: int) -> int:
    """Rank kept of an ``out`` × ``fan_in`` matrix (fan_in = in channels × kernel area)."""
    return max(1, round(rank * min(out, fan_in)))


def zeroed(count: int, sparsity: float) -> int:
    """How many of ``count`` weights a ``sparsity`` fraction zeroes."""
    return int(sparsity * count + 1e-9)


def index_bits(clusters: int) -> int:
    """Bits of one index into a codebook of ``clusters`` shared values."""
    return max(1, math.ceil(math.log2(clusters)))


def group_channels(profile: Profile, policy: Policy, round_to: int = 1) -> dict[int, int]:
    """Kept channels of every channel group under ``policy``."""
    kept = {gid: g.channels for gid, g in profile.groups.items()}
    for name, choice in policy.layers.items():
        if choice.prune:
            gid = profile.layers[name].out_group
            kept[gid] = kept_channels(profile.groups[gid].channels, choice.prune, round_to)
    return kept


def compute_costs(profile: Profile, policy: Policy, round_to: int = 1) -> Costs:
    """Price ``policy`` on the profiled model without building it (microseconds).

    The policy must have passed :func:`autocompress.policy.check_policy`. Storage per layer
    (DESIGN.md decision 5): values at ``w_bits`` (plus a float32 scale per output channel below
    16 bits) or, with ``clusters``, log2(clusters)-bit indices plus the codebook; a sparse layer
    adds a one-bit-per-weight bitmap and stores only kept values; biases are float32. Each
    layer is packed to whole bytes. Norm layers and other tensors stay float32.
    """
    kept = group_channels(profile, policy, round_to)
    layers = {}
    macs = params = bitops = size_bytes = 0
    chosen = policy.layers
    for name, layer in profile.layers.items():
        choice = chosen.get(name, UNTOUCHED)
        out = kept[layer.out_group]
        fan_in = layer.in_fixed + sum(kept[g] * mult for g, mult in layer.in_groups)
        groups = out if layer.depthwise else layer.groups
        per_out = (fan_in // groups) * layer.kernel
        factors = weight_tensors(out, per_out, choice.rank)
        weights = sum(n for _, n in factors)
        bias = out if layer.bias else 0
        lmacs = layer.positions * weights
        lbits = bias * FLOAT_BITS + weight_bits(out, per_out, choice)
        lbitops = lmacs * choice.w_bits * choice.a_bits
        lbytes = -(-lbits // 8)
        layers[name] = LayerCost(lmacs, weights + bias, lbitops, lbytes, fan_in, out)
        macs += lmacs
        params += weights + bias
        bitops += lbitops
        size_bytes += lbytes
    floats = profile.fixed_params + profile.fixed_state
    params += profile.fixed_params
    macs += profile.other_macs  # attention products, recurrent layers: float, never changed
    bitops += profile.other_macs * FLOAT_BITS * FLOAT_BITS
    for norm in profile.norms.values():
        channels = norm.fixed + sum(kept[g] for g in norm.groups)
        affine = 2 * channels if norm.affine else 0
        params += affine
        floats += affine + (2 * channels if norm.running_stats else 0)
    size_bytes += floats * FLOAT_BITS // 8
    return Costs(macs, params, bitops, size_bytes, layers)


def weight_tensors(out: int, per_out: int, rank: float) -> tuple[tuple[int, int], ...]:
    """(output channels, weights) of each stored weight tensor: one, or two after low-rank."""
    if rank >= 1.0:
        return ((out, out * per_out),)
    r = kept_rank(rank, out, per_out)
    return ((r, r * per_out), (out, out * r))


def weight_bits(out: int, per_out: int, choice: LayerChoice) -> int:
    """Stored bits of a layer's weights (biases excluded) under ``choice``."""
    if choice.rank >= 1.0 and not choice.sparsity and not choice.clusters and choice.w_bits >= 16:
        return out * per_out * choice.w_bits  # dense floats: the common case, kept fast
    return sum(_weight_bits(c, n, choice) for c, n in weight_tensors(out, per_out, choice.rank))


def _weight_bits(channels: int, count: int, choice: LayerChoice) -> int:
    """Stored bits of one weight tensor of ``count`` values and ``channels`` output channels."""
    kept = count - zeroed(count, choice.sparsity)
    bits, dense_bits, side = value_bits(choice.w_bits, choice.clusters, channels)
    return storage_bits(count, kept, bits, dense_bits) + side


def value_bits(w_bits: int, clusters: int | None, channels: int) -> tuple[int, int, int]:
    """(bits per kept value, bits per value when zeros are stored too, side-table bits).

    Codes below 16 bits carry a float32 scale per output channel and store zero as a code; a
    codebook of ``clusters`` values (at ``w_bits`` 16 or 32) needs one more index for zero.
    """
    if clusters is not None:
        return index_bits(clusters), index_bits(clusters + 1), clusters * min(w_bits, 32)
    return w_bits, w_bits, channels * FLOAT_BITS if w_bits < 16 else 0


def storage_bits(count: int, kept: int, bits: int, dense_bits: int) -> int:
    """The cheaper of dense storage and a bitmap plus the kept values."""
    dense = count * dense_bits
    return dense if kept == count else min(dense, kept * bits + count)


def sparse_storage(count: int, kept: int, bits: int, dense_bits: int) -> bool:
    """Whether :func:`storage_bits` picks the bitmap form."""
    return kept < count and kept * bits + count < count * dense_bits
