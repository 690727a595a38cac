"""Sensitivity analysis: how much each layer's knob costs when it alone is compressed.

For every knob of a search space (a layer's — or a coupled group's — prune ratio, rank,
sparsity, bits or clusters) the base model is compressed at that knob alone, at several
settings, and scored with the zero-cost fidelity (:mod:`autocompress.fidelity`: adaptive
BatchNorm, output correction, a validation subset), the way AIMET, Distiller and NNCF users read
a model before compressing it. From the table an **equal-loss allocation** follows: the one
loss threshold at which every knob, set as far as it stays within that loss, meets the budget
— a per-layer policy the search can start from beside the uniform ones.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from autocompress.config import CompressConfig
from autocompress.cost.metrics import compute_costs
from autocompress.cost.profile import Profile
from autocompress.errors import AutocompressError
from autocompress.export import build
from autocompress.fidelity import VAL_SUBSET, zero_cost
from autocompress.files import write_atomic
from autocompress.policy import Policy
from autocompress.recipe import Recipe
from autocompress.spaces import SearchSpace
from autocompress.spaces.budget import Budget, feasible, project, smallest


@dataclass(frozen=True)
class Point:
    """One knob at one setting, every other knob untouched."""

    knob: str  # the search parameter, "<layer>/<knob>"
    layers: tuple[str, ...]  # the layers it sets
    position: float  # in [0, 1]: 0 is no compression, 1 the space's far end
    value: Any  # the knob's value there (a ratio, a rank, bits, clusters)
    score: float  # zero-cost score on the validation subset
    macs_ratio: float  # the model's MACs with this knob alone, to the base's


@dataclass(frozen=True)
class Sensitivity:
    """The analysis of one model: its own score and every knob's points."""

    model: str
    base_score: float
    val_subset: int | None
    points: list[Point] = field(default_factory=list)

    def curves(self) -> dict[str, list[Point]]:
        """Points per knob, in increasing compression."""
        out: dict[str, list[Point]] = {}
        for p in self.points:
            out.setdefault(p.knob, []).append(p)
        return {k: sorted(v, key=lambda p: p.position) for k, v in out.items()}

    def within(self, knob: str, loss: float) -> float:
        """The furthest position of ``knob`` whose loss stays within ``loss``, walking its
        measured points in order (linear between them; a later recovery does not count)."""
        prev_x, prev_y = 0.0, 0.0
        for p in self.curves()[knob]:
            y = self.base_score - p.score
            if y > loss:
                if loss <= prev_y:
                    return prev_x
                return prev_x + (p.position - prev_x) * (loss - prev_y) / (y - prev_y)
            prev_x, prev_y = p.position, y
        return prev_x

    def allocation(self, space: SearchSpace, budget: Budget) -> dict[str, Any] | None:
        """Equal-loss params: the smallest loss threshold at which every knob, as far as it
        stays within it, meets ``budget``; projected onto it if even the largest does not.
        None when the budget has no analytic limit or cannot be met."""
        if not budget.analytic or not self.points:
            return None
        curves = self.curves()
        worst = max(self.base_score - p.score for p in self.points)

        def params(t: float) -> dict[str, Any]:
            loss = t * max(worst, 1e-9)
            positions = {k.name: self.within(k.name, loss) for k in space.knobs if k.name in curves}
            return space.at(positions)

        t = smallest(lambda t: feasible(space, budget, params(t)))
        return params(t) if t is not None else project(space, budget, params(1.0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "base_score": self.base_score,
            "val_subset": self.val_subset,
            "points": [asdict(p) for p in self.points],
        }


def analyze(
    base: nn.Module,
    profile: Profile,
    space: SearchSpace,
    recipe: Recipe,
    settings: CompressConfig | None = None,
    points: int = 4,
    val_subset: int | None = VAL_SUBSET,
    on_point: Callable[[Point], None] | None = None,
) -> Sensitivity:
    """Score every knob of ``space`` alone at ``points`` settings (continuous knobs at
    1/points … 1 of their range; discrete ones at each choice that compresses) with the
    zero-cost fidelity. ``on_point`` sees each point as it is measured."""
    if points < 1:
        raise AutocompressError(f"points: at least one setting per knob, got {points}")
    settings = settings or CompressConfig()
    base_costs = compute_costs(profile, Policy(profile.model), settings.round_to)
    base_score = recipe.validate(base, limit=val_subset)  # evaluation restores its mode
    out = Sensitivity(profile.model, base_score, val_subset)
    for knob in space.knobs:
        if knob.continuous:
            positions = [(i + 1) / points for i in range(points)]
        else:
            positions = [(i + 0.5) / len(knob.choices) for i in range(1, len(knob.choices))]
        for position in positions:
            params = {knob.name: knob.at(position)}
            policy = space.policy(params)
            model = build(base, profile, policy, recipe, settings)
            score = zero_cost(model, base, recipe, val_subset).score
            macs = compute_costs(profile, policy, settings.round_to).macs / base_costs.macs
            point = Point(knob.name, knob.layers, position, params[knob.name], score, macs)
            out.points.append(point)
            if on_point is not None:
                on_point(point)
    return out


def write(sensitivity: Sensitivity, folder: Path) -> dict[str, Path]:
    """``sensitivity.json`` and ``sensitivity.png`` in ``folder``, each written whole."""
    from autocompress.report.plots import sensitivity_png

    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "sensitivity.json", "png": folder / "sensitivity.png"}
    write_atomic(paths["json"], json.dumps(sensitivity.to_dict(), indent=2, default=str) + "\n")
    sensitivity_png(sensitivity, paths["png"])
    return paths


def read(path: Path) -> Sensitivity:
    """A ``sensitivity.json`` back as a :class:`Sensitivity`."""
    raw: Mapping[str, Any] = json.loads(path.read_text())
    points = [
        Point(p["knob"], tuple(p["layers"]), p["position"], p["value"], p["score"], p["macs_ratio"])
        for p in raw["points"]
    ]
    return Sensitivity(raw["model"], raw["base_score"], raw["val_subset"], points)
