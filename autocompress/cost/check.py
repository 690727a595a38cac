"""Whether a policy can be applied to a profiled model: the rules every method obeys.

Pure checks on (policy, profile) — no model is built. :func:`check_policy` raises a
:class:`~autocompress.errors.PolicyError` naming the layer and knob; :func:`rank_problem`
says why a rank does not fit a layer (the search space uses it to offer only useful ranks).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from autocompress.cost.metrics import group_channels, kept_rank, weight_bits
from autocompress.cost.profile import Profile
from autocompress.errors import PolicyError
from autocompress.policy import LayerChoice, Policy


def reduces_macs(r: int, out: int, fan_in: int) -> bool:
    """Whether rank ``r`` factors of an ``out`` × ``fan_in`` layer cost fewer MACs."""
    return r * (fan_in + out) < out * fan_in


def rank_unusable(kind: str, groups: int, rank: float, out: int, fan_in: int) -> str | None:
    """Why ``rank`` cannot be applied to this layer, or None."""
    if groups > 1:
        return "grouped and depthwise convolutions cannot be factorized"
    r = kept_rank(rank, out, fan_in)
    if not reduces_macs(r, out, fan_in):
        best = (out * fan_in - 1) // (out + fan_in)
        return (
            f"rank {r} of {min(out, fan_in)} ({kind} {out}×{fan_in}) does not reduce MACs; "
            f"keep at most {best} (rank ≤ {best / min(out, fan_in):.3f})"
        )
    return None


def names_model(written: str, model: str) -> bool:
    """Whether a policy's ``model:`` names ``model``: its name, or for a factory
    ``pkg.module:function`` also the function's name alone."""
    return written == model or (":" in model and model.rpartition(":")[2] == written)


def check_policy(
    policy: Policy, profile: Profile, methods: Mapping[str, object], round_to: int = 1
) -> None:
    """Raise PolicyError if the policy cannot be applied to the profiled model.

    ``methods`` is the registry of implemented knobs; a knob set away from its default with
    no method behind it is an error, never a silent no-op.
    """
    if not names_model(policy.model, profile.model):
        raise PolicyError(
            "<file>", None, f"the policy is for model '{policy.model}', not '{profile.model}'"
        )
    group_ratio: dict[int, tuple[str, float]] = {}
    for name, choice in policy.layers.items():
        if name not in profile.layers:
            raise PolicyError(
                name,
                None,
                "no such compressible layer in the model; layers: " + ", ".join(profile.layers),
            )
        for knob in choice.changed():
            if knob not in methods:
                raise PolicyError(
                    name, knob, "this knob has no method yet; implemented: " + ", ".join(methods)
                )
        if choice.prune:
            group = profile.groups[profile.layers[name].out_group]
            if not group.prunable:
                raise PolicyError(
                    name, "prune", f"its output channels cannot be pruned: {group.why}"
                )
            other = group_ratio.setdefault(group.id, (name, choice.prune))
            if other[1] != choice.prune:
                raise PolicyError(
                    name,
                    "prune",
                    f"coupled with layer '{other[0]}' (same channel "
                    f"group: {', '.join(group.layers)}); give them the same value "
                    "or set it on one of them",
                )
    kept = group_channels(profile, policy, round_to)
    for name, choice in policy.layers.items():
        why = rank_problem(profile, kept, name, choice)
        if why:
            raise PolicyError(name, "rank", why)
        if choice.clusters is not None and choice.w_bits < 16:
            raise PolicyError(
                name,
                "w_bits",
                "with clusters the weights are stored as "
                "log2(clusters)-bit indices into a float codebook: use w_bits 16 "
                "or 32 (the codebook's precision)",
            )


def rank_problem(
    profile: Profile, kept: Mapping[int, int], name: str, choice: LayerChoice
) -> str | None:
    """Why ``choice.rank`` cannot be applied to layer ``name`` (None if it can, or is 1.0).

    ``kept`` is the channel count of each group after pruning (see ``group_channels``).
    """
    if choice.rank >= 1.0:
        return None
    layer = profile.layers[name]
    out = kept[layer.out_group]
    per_out = (layer.in_fixed + sum(kept[g] * m for g, m in layer.in_groups)) * layer.kernel
    why = rank_unusable(layer.kind, layer.groups, choice.rank, out, per_out)
    if not why and weight_bits(out, per_out, choice) >= weight_bits(
        out, per_out, dataclasses.replace(choice, rank=1.0)
    ):
        why = (
            f"rank {choice.rank:g} does not shrink the layer at w_bits {choice.w_bits}: "
            "the two factors' per-channel tables cost more than the weights saved"
        )
    return why or None
