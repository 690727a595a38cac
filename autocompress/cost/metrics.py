"""The analytic cost model: any policy's MACs, params, BitOPs and bytes, from the profile alone.

It must agree exactly with counting on the really compressed model (tests check it against
``FlopCounterMode`` and the model's tensors), so every rule here mirrors what
:mod:`autocompress.compress` builds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from autocompress.cost.profile import Profile
from autocompress.policy import Policy

FLOAT_BITS = 32  # biases, norms and other parameters stay float32


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

    The policy must have passed :func:`autocompress.policy.check_policy`.
    """
    kept = group_channels(profile, policy, round_to)
    layers = {}
    macs = params = bitops = size_bits = 0
    for name, layer in profile.layers.items():
        choice = policy.choice(name)
        out = kept[layer.out_group]
        fan_in = layer.in_fixed + sum(kept[g] * mult for g, mult in layer.in_groups)
        groups = out if layer.depthwise else layer.groups
        weights = out * (fan_in // groups) * layer.kernel
        bias = out if layer.bias else 0
        lmacs = layer.positions * weights
        lbitops = lmacs * choice.w_bits * choice.a_bits
        lbits = weights * choice.w_bits + bias * FLOAT_BITS
        layers[name] = LayerCost(lmacs, weights + bias, lbitops, -(-lbits // 8), fan_in, out)
        macs += lmacs
        params += weights + bias
        bitops += lbitops
        size_bits += lbits
    floats = profile.fixed_params + profile.fixed_state
    params += profile.fixed_params
    for norm in profile.norms.values():
        channels = norm.channels if norm.group is None else kept[norm.group]
        affine = 2 * channels if norm.affine else 0
        params += affine
        floats += affine + (2 * channels if norm.running_stats else 0)
    size_bytes = -(-size_bits // 8) + floats * FLOAT_BITS // 8
    return Costs(macs, params, bitops, size_bytes, layers)
