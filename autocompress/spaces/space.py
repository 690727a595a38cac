"""The per-layer search space: which layers, which knobs, which ranges, which are coupled.

A :class:`SearchSpace` is plain data built once from the config's ``space:`` section and the
model's profile. Controllers see only its knobs (name, range or choices); the space turns
their suggestions into a :class:`~autocompress.policy.Policy` and makes uniform baselines.

Every knob has a *position*: 0 is its least compressing value, 1 its most compressing one.
Uniform baselines put every knob at the same position; budget projection moves positions
toward 1 (see :mod:`autocompress.spaces.budget`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autocompress.config import RuleConfig, SpaceConfig
from autocompress.cost.check import rank_problem
from autocompress.cost.metrics import group_channels
from autocompress.cost.profile import Profile
from autocompress.errors import ConfigError
from autocompress.policy import LayerChoice, Policy

CONTINUOUS = ("prune", "sparsity", "rank")
DISCRETE = ("w_bits", "a_bits", "clusters")
SPACE_KNOBS = CONTINUOUS + DISCRETE


@dataclass(frozen=True)
class Knob:
    """One search dimension: a float range or an ordered list of choices."""

    name: str  # parameter name in the study, "<layer>/<knob>"
    knob: str  # LayerChoice field it sets
    layers: tuple[str, ...]  # layers it sets (coupled layers share one prune knob)
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()  # least to most compressing

    @property
    def continuous(self) -> bool:
        return not self.choices

    def at(self, position: float) -> Any:
        """The value at ``position`` in [0, 1] (0: least compression)."""
        position = min(max(position, 0.0), 1.0)
        if self.continuous:
            # prune and sparsity compress more as they grow, rank as it shrinks
            lo, hi = (self.high, self.low) if self.knob == "rank" else (self.low, self.high)
            # clamped: 1.0 + 1.0 * (0.1 - 1.0) is 0.0999…98, below the study's range
            return min(max(lo + position * (hi - lo), self.low), self.high)
        return self.choices[min(int(position * len(self.choices)), len(self.choices) - 1)]

    def position(self, value: Any) -> float:
        """Inverse of :meth:`at` (the centre of a choice's slot for discrete knobs)."""
        if self.continuous:
            if self.high == self.low:
                return 0.0
            t = (value - self.low) / (self.high - self.low)
            return 1.0 - t if self.knob == "rank" else t
        return (self.choices.index(value) + 0.5) / len(self.choices)


@dataclass(frozen=True)
class SearchSpace:
    """The knobs of one model; :meth:`policy` turns a params mapping into a Policy."""

    model: str
    knobs: tuple[Knob, ...]
    profile: Profile
    round_to: int = 1

    def policy(self, params: Mapping[str, Any]) -> Policy:
        """Policy from controller params (one value per knob name; missing knobs untouched).

        Two combinations are resolved rather than refused, so every point of the space is a
        valid candidate: with ``clusters`` the weights are stored as indices into a float
        codebook, so ``w_bits`` is ignored; a ``rank`` whose factorization would not shrink the
        layer (after pruning) means no factorization.
        """
        values: dict[str, dict[str, Any]] = {}
        for knob in self.knobs:
            if knob.name in params:
                for layer in knob.layers:
                    values.setdefault(layer, {})[knob.knob] = params[knob.name]
        layers: dict[str, LayerChoice] = {}
        for name in self.profile.layers:  # model order
            if name not in values:
                continue
            choice = LayerChoice(**values[name])
            if choice.clusters is not None:
                choice = dataclasses.replace(choice, w_bits=32)
            layers[name] = choice
        policy = Policy(self.model, layers)
        kept = group_channels(self.profile, policy, self.round_to)
        fixed = {
            name: dataclasses.replace(c, rank=1.0)
            if rank_problem(self.profile, kept, name, c)
            else c
            for name, c in layers.items()
        }
        return Policy(self.model, {n: c for n, c in fixed.items() if c.changed()})

    def at(self, positions: Mapping[str, float]) -> dict[str, Any]:
        """Params with each knob at its position (knobs not named stay at position 0)."""
        return {k.name: k.at(positions.get(k.name, 0.0)) for k in self.knobs}

    def positions(self, params: Mapping[str, Any]) -> dict[str, float]:
        return {k.name: k.position(params[k.name]) for k in self.knobs if k.name in params}

    def uniform(self, position: float, kind: str | None = None) -> dict[str, Any]:
        """Params of the uniform policy: every knob (of ``kind`` alone, say ``prune``, the
        others left at 0) at the same ``position``."""
        return self.at({k.name: position for k in self.knobs if kind in (None, k.knob)})

    def kinds(self) -> list[str]:
        """The knob kinds the space holds (prune, rank, w_bits, …), in knob order."""
        return list(dict.fromkeys(k.knob for k in self.knobs))


def build_space(cfg: SpaceConfig, profile: Profile, round_to: int = 1) -> SearchSpace:
    """Resolve the config's rules against the profiled model into knobs.

    Rules apply in order; a later rule overrides an earlier one knob by knob. The first and
    last compressible layers are left untouched unless ``skip_first``/``skip_last`` are off.
    A rule that selects no layer, or whose knobs no selected layer can take, is an error.
    """
    names = list(profile.layers)
    skipped = {names[0]} if cfg.skip_first else set()
    if cfg.skip_last:
        skipped.add(names[-1])
    per_layer: dict[str, dict[str, RuleConfig]] = {n: {} for n in names}
    for i, rule in enumerate(cfg.rules):
        key = f"space.rules[{i}]"
        selected = [
            n
            for n in names
            if fnmatch.fnmatchcase(n, rule.layers) and profile.layers[n].kind in rule.types
        ]
        if not selected:
            raise ConfigError(
                f"{key}.layers",
                rule.layers,
                f"selects no {'/'.join(rule.types)} layer; layers: {', '.join(names)}",
            )
        given = [k for k in SPACE_KNOBS if getattr(rule, k) is not None]
        if not given:
            raise ConfigError(
                key, rule.layers, f"give at least one knob ({', '.join(SPACE_KNOBS)})"
            )
        usable = [n for n in selected if n not in skipped]
        if not usable:
            raise ConfigError(
                f"{key}.layers",
                rule.layers,
                f"selects only {', '.join(selected)}, left untouched by "
                "space.skip_first/skip_last; set those to false to search them",
            )
        for n in usable:
            for k in given:
                per_layer[n][k] = rule
    knobs = _prune_knobs(profile, per_layer, skipped) + _layer_knobs(profile, per_layer)
    if not knobs:
        raise ConfigError(
            "space.rules", "...", "no layer can take any of the rules' knobs; widen the rules"
        )
    return SearchSpace(profile.model, tuple(knobs), profile, round_to)


def _prune_knobs(
    profile: Profile, per_layer: dict[str, dict[str, RuleConfig]], skipped: set[str]
) -> list[Knob]:
    """One prune knob per channel group: coupled layers are decided together."""
    knobs = []
    for group in profile.groups.values():
        if not group.prunable or skipped & set(group.layers):
            continue
        rules = [per_layer[n]["prune"] for n in group.layers if "prune" in per_layer[n]]
        if not rules:
            continue
        low, high = rules[0].prune or (0.0, 0.0)
        knobs.append(Knob(f"{group.root}/prune", "prune", group.layers, low, high))
    return knobs


def _layer_knobs(profile: Profile, per_layer: dict[str, dict[str, RuleConfig]]) -> list[Knob]:
    knobs = []
    for name, rules in per_layer.items():
        for knob in SPACE_KNOBS[1:]:  # prune is per group
            if knob not in rules:
                continue
            value = getattr(rules[knob], knob)
            if knob == "rank" and profile.layers[name].depthwise:
                continue  # a depthwise conv has no rank to cut
            if knob in CONTINUOUS:
                knobs.append(Knob(f"{name}/{knob}", knob, (name,), value[0], value[1]))
            else:
                knobs.append(Knob(f"{name}/{knob}", knob, (name,), choices=_ordered(knob, value)))
    return knobs


def _ordered(knob: str, choices: list[Any]) -> tuple[Any, ...]:
    """Choices from least to most compressing: more bits or clusters first, no sharing first."""
    unique = list(dict.fromkeys(choices))
    shared = sorted((c for c in unique if c is not None), reverse=True)
    return (
        tuple(([None] if None in unique else []) + shared)
        if knob == "clusters"
        else tuple(sorted(unique, reverse=True))
    )
