"""Search spaces: knobs per layer, coupling, uniform baselines and budget projection."""

from autocompress.spaces.budget import Budget, project, resolve_budget, uniform_baselines
from autocompress.spaces.space import Knob, SearchSpace, build_space

__all__ = [
    "Budget",
    "Knob",
    "SearchSpace",
    "build_space",
    "project",
    "resolve_budget",
    "uniform_baselines",
]
