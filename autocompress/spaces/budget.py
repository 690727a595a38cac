"""Budgets: resolved cost limits, violations, AMC-style projection and uniform baselines.

Analytic metrics (MACs, params, BitOPs, bytes) are priced by the cost model in microseconds,
and ``latency_ms_predicted`` by the ONNX Runtime latency table (:mod:`autocompress.cost.
runtime_table`, a budget's ``predict``), so a candidate that breaks them can be moved back
inside the budget before any fine-tune is spent on it. Measured latency (``latency_ms``) is
measured on the built model and is checked later, in the trial.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from autocompress.config import Limit
from autocompress.cost.metrics import Costs, compute_costs
from autocompress.errors import AutocompressError
from autocompress.policy import Policy
from autocompress.spaces.space import SearchSpace

PREDICTED = "latency_ms_predicted"
BITS = ("w_bits", "a_bits")
ANALYTIC = ("macs", "params", "bitops", "size_bytes", PREDICTED)
Predictor = Callable[[Policy, Costs], float]
BISECTION_STEPS = 14  # positions resolved to 2**-14 of a knob's range


@dataclass(frozen=True)
class Budget:
    """Absolute limits per metric (``metric <= limit``)."""

    limits: Mapping[str, float]
    described: Mapping[str, str]  # as configured, e.g. "25% of base"
    # the latency table's prediction (milliseconds) of a policy, when latency_ms_predicted
    # is limited or an objective
    predict: Predictor | None = field(default=None, compare=False)

    def price(self, space: SearchSpace, policy: Policy) -> dict[str, float]:
        """``policy``'s analytic costs, with its predicted latency where the budget has a
        predictor."""
        costs = compute_costs(space.profile, policy, space.round_to)
        out = dict(costs.as_dict())
        if self.predict is not None:
            out[PREDICTED] = self.predict(policy, costs)
        return out

    def violations(self, values: Mapping[str, float]) -> dict[str, float]:
        """``value / limit - 1`` per limited metric present in ``values``: <= 0 means within."""
        return {m: values[m] / lim - 1.0 for m, lim in self.limits.items() if m in values}

    def holds(self, values: Mapping[str, float]) -> bool:
        return all(v <= 0 for v in self.violations(values).values())

    @property
    def analytic(self) -> bool:
        return any(m in ANALYTIC for m in self.limits)


def resolve_budget(
    limits: Mapping[str, Limit], base: Mapping[str, float], predict: Predictor | None = None
) -> Budget:
    """Turn configured limits (absolute or ratios) into absolute ones using the base's values
    (``predict``: the latency table's, for ``latency_ms_predicted``)."""
    return Budget(
        {m: lim.resolve(base[m]) for m, lim in limits.items()},
        {m: str(lim) for m, lim in limits.items()},
        predict,
    )


def feasible(space: SearchSpace, budget: Budget, params: Mapping[str, Any]) -> bool:
    """Whether ``params`` meet the budget's analytic limits (priced, never built)."""
    return budget.holds(budget.price(space, space.policy(params)))


def _feasible(space: SearchSpace, budget: Budget) -> Callable[[Mapping[str, Any]], bool]:
    return lambda params: feasible(space, budget, params)


def project(space: SearchSpace, budget: Budget, params: Mapping[str, Any]) -> dict[str, Any] | None:
    """Move ``params`` toward more compression until the analytic budget holds (AMC).

    Every knob's position p goes to p + s(1 - p) for the smallest s in [0, 1] that fits, so
    the layers the controller chose to compress most stay the most compressed. Returns the
    params unchanged if they already fit, None if even full compression does not.
    """
    feasible = _feasible(space, budget)
    if feasible(params):
        return dict(params)
    start = space.positions(params)
    for moving in _movable(space, budget):

        def moved(s: float, moving: set[str] = moving) -> dict[str, Any]:
            return space.at({k: p + s * (1 - p) if k in moving else p for k, p in start.items()})

        s = smallest(lambda s: feasible(moved(s)))
        if s is not None:
            return moved(s)
    return None


def _movable(space: SearchSpace, budget: Budget) -> list[set[str]]:
    """The knobs projection moves: all of them; with a predicted latency budget, then the
    structural ones alone (the sampler's bits kept). Fewer bits is not always faster on a
    runtime: on small layers an integer kernel costs more than the float one, and every
    float/integer boundary converts the activations."""
    every = {k.name for k in space.knobs}
    structure = {k.name for k in space.knobs if k.knob not in BITS}
    if budget.predict is None or not structure or structure == every:
        return [every]
    return [every, structure]


def check_reachable(space: SearchSpace, budget: Budget, base: Mapping[str, float]) -> None:
    """Refuse, before any trial, a budget that no policy of the space meets.

    The most compressed policy the space holds (every knob at its far end) is priced; if it
    breaks an analytic limit, every trial would be "over budget". The message says the best
    the space can do and what to change.
    """
    if not budget.analytic or not space.knobs:
        if budget.analytic and budget.limits:
            raise AutocompressError(
                "the search space has no knob (no layer matches space.rules after skip_first/"
                "skip_last), so no policy can meet the budget: widen space.rules"
            )
        return
    corners = [space.uniform(1.0)]  # every knob at its most compressing end
    if budget.predict is not None:  # and the same structure left float (see _movable)
        corners.append(space.at({k.name: 0.0 if k.knob in BITS else 1.0 for k in space.knobs}))
    priced = [budget.price(space, space.policy(c)) for c in corners]
    if any(budget.holds(costs) for costs in priced):
        return
    costs = min(priced, key=lambda c: max(budget.violations(c).values()))
    over = [
        f"{m} ≤ {budget.described[m]} asked, {costs[m] / base[m]:.1%} of the base at best"
        for m, v in budget.violations(costs).items()
        if v > 0 and m in costs
    ]
    raise AutocompressError(
        "the budget cannot be met by any policy of the search space ("
        + "; ".join(over)
        + "): allow more compression (space.skip_first=false, space.skip_last=false, wider "
        "space.rules ranges, more knobs) or relax the budget"
    )


def uniform_baselines(space: SearchSpace, budget: Budget, count: int) -> list[dict[str, Any]]:
    """``count`` uniform policies: the least compressing one within budget, then more.

    Without an analytic budget they are spread evenly over the positions (0, 1).
    """
    if count == 0:
        return []
    if not budget.analytic:
        return [space.uniform((i + 1) / (count + 1)) for i in range(count)]
    feasible = _feasible(space, budget)
    least = smallest(lambda t: feasible(space.uniform(t)))
    if least is None:
        return []
    positions = [least + (1 - least) * i / (2 * count) for i in range(count)]
    out: list[dict[str, Any]] = []
    for t in positions:
        params = space.uniform(t)
        if params not in out:
            out.append(params)
    return out


def method_baselines(space: SearchSpace, budget: Budget) -> list[tuple[str, dict[str, Any]]]:
    """The classic one-method uniform policies: for each kind of knob (prune, rank, w_bits, …),
    when the space holds more than one, that kind alone at the least compressing common
    position that meets the analytic budget (uniform pruning, uniform rank, …), labelled with
    the kind. A kind that cannot meet the budget alone gives none.

    Uniform baselines move every knob together; users compare with these.
    """
    kinds = space.kinds()
    if not budget.analytic or len(kinds) < 2:
        return []
    feasible = _feasible(space, budget)
    out: list[tuple[str, dict[str, Any]]] = []
    for kind in kinds:

        def fits(t: float, kind: str = kind) -> bool:
            return feasible(space.uniform(t, kind))

        least = smallest(fits)
        if least is not None:
            out.append((kind, space.uniform(least, kind)))
    return out


def smallest(ok: Callable[[float], bool]) -> float | None:
    """Smallest s in [0, 1] with ok(s), assuming ok is monotone; None if ok(1) fails.

    Bisection to 2**-BISECTION_STEPS: the one search for "just enough compression" that the
    projection, the uniform baselines and the RL agent's clipping share.
    """
    if ok(0.0):
        return 0.0
    if not ok(1.0):
        return None
    lo, hi = 0.0, 1.0
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi
