"""apply_policy: base model + policy → compressed model (a new module; the base is untouched).

Methods run in the canonical order of DESIGN.md (structural prune → low-rank → sparsity →
sharing → quantization). Adding a method is one module with ``KNOB`` and ``apply`` plus one
line in :data:`METHODS`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from torch import nn

from autocompress.compress import prune
from autocompress.config import CompressConfig
from autocompress.cost.profile import Profile
from autocompress.policy import Policy, check_policy

Method = Callable[[nn.Module, Policy, Profile, CompressConfig], nn.Module]

# knob -> method, in the order the methods are applied
METHODS: dict[str, Method] = {
    prune.KNOB: prune.apply,
}


def apply_policy(
    model: nn.Module, policy: Policy, profile: Profile, settings: CompressConfig | None = None
) -> nn.Module:
    """Return a compressed copy of ``model``; raise PolicyError if the policy does not fit it."""
    check_policy(policy, profile, METHODS)
    settings = settings or CompressConfig()
    compressed = copy.deepcopy(model)
    for method in METHODS.values():
        compressed = method(compressed, policy, profile, settings)
    return compressed
