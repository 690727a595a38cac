"""apply_policy: base model + policy → compressed model (a new module; the base is untouched).

Methods run in the canonical order of DESIGN.md: structural prune → low-rank → sparsity →
sharing → quantization. Adding a method is one module with ``KNOBS`` and ``apply`` plus one
line in :data:`METHODS`.
"""

from __future__ import annotations

import copy
from types import ModuleType

from torch import nn

from autocompress.compress import lowrank, prune, quantize, share, sparsity
from autocompress.config import CompressConfig
from autocompress.cost.check import check_policy
from autocompress.cost.profile import Profile
from autocompress.policy import Policy

# in the order they are applied
METHODS: tuple[ModuleType, ...] = (prune, lowrank, sparsity, share, quantize)
KNOB_METHODS: dict[str, ModuleType] = {knob: m for m in METHODS for knob in m.KNOBS}


def apply_policy(
    model: nn.Module, policy: Policy, profile: Profile, settings: CompressConfig | None = None
) -> nn.Module:
    """Return a compressed copy of ``model``; raise PolicyError if the policy does not fit it."""
    settings = settings or CompressConfig()
    check_policy(policy, profile, KNOB_METHODS, settings.round_to)
    compressed = copy.deepcopy(model)
    for method in METHODS:
        compressed = method.apply(compressed, policy, profile, settings)
    return without_fused_paths(compressed)


LATE_METHODS = (share, quantize)  # Deep Compression's second stage


def apply_late_methods(
    model: nn.Module, policy: Policy, profile: Profile, settings: CompressConfig | None = None
) -> nn.Module:
    """Add the second stage's methods (sharing, quantization) of ``policy`` to ``model``, in
    place: a model already built with the policy's structure and sparsity, then fine-tuned."""
    settings = settings or CompressConfig()
    for method in LATE_METHODS:
        model = method.apply(model, policy, profile, settings)
    return without_fused_paths(model)


def without_fused_paths(model: nn.Module) -> nn.Module:
    """Turn off the fused inference kernels of PyTorch's Transformer layers in ``model``.

    In eval mode ``nn.TransformerEncoderLayer`` runs one fused kernel that reads
    ``linear1.weight`` / ``linear2.weight`` directly: it would bypass activation quantizers,
    and a factorized Linear has no ``weight`` at all. The layer-by-layer path computes the same
    function. (``activation_relu_or_gelu`` is the per-layer switch PyTorch checks first.)
    """
    for module in model.modules():
        if isinstance(module, nn.TransformerEncoderLayer | nn.TransformerDecoderLayer):
            module.activation_relu_or_gelu = 0
        elif isinstance(module, nn.TransformerEncoder):
            module.use_nested_tensor = False
    return model
