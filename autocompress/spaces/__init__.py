"""Search spaces: knobs per layer, coupling, uniform baselines and budget projection."""

from autocompress.spaces.budget import (
    Budget,
    check_reachable,
    int8_baselines,
    method_baselines,
    project,
    resolve_budget,
    uniform_baselines,
)
from autocompress.spaces.space import Knob, SearchSpace, build_space

__all__ = [
    "Budget",
    "Knob",
    "SearchSpace",
    "build_space",
    "check_reachable",
    "int8_baselines",
    "method_baselines",
    "project",
    "resolve_budget",
    "uniform_baselines",
]
