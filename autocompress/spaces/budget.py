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
    out: list[dict[str, Any]] = []
    for t in spread(least, count):
        params = space.uniform(t)
        if params not in out:
            out.append(params)
    return out


def spread(least: float, count: int) -> list[float]:
    """``count`` positions from ``least`` (the least compression within budget) to halfway
    toward full compression: where the uniform baselines go along the front."""
    return [least + (1 - least) * i / (2 * count) for i in range(count)]


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
    out: list[tuple[str, dict[str, Any]]] = []
    for kind in kinds:
        moving = [k.name for k in space.knobs if k.knob == kind]
        out += [(kind, params) for params in _least_moved(space, budget, moving)]
    return out


def _least_moved(
    space: SearchSpace,
    budget: Budget,
    moving: list[str],
    fixed: Mapping[str, float] | None = None,
    count: int = 1,
) -> list[dict[str, Any]]:
    """Params with the ``moving`` knobs at the least common position that meets the analytic
    budget (then ``count - 1`` more compressing ones, :func:`spread`) and the others at their
    ``fixed`` positions (0 where not given); none if even the far end does not meet it."""

    def at(t: float) -> dict[str, Any]:
        return space.at({**dict.fromkeys(moving, t), **(fixed or {})})

    feasible = _feasible(space, budget)
    least = smallest(lambda t: feasible(at(t)))
    if least is None:
        return []
    out: list[dict[str, Any]] = []
    for t in spread(least, count):
        if (params := at(t)) not in out:
            out.append(params)
    return out


INT8 = 8  # the integer width every int8 runtime (ONNX Runtime, TensorRT, TFLite) executes


def int8_baselines(
    space: SearchSpace, budget: Budget, count: int = 1
) -> list[tuple[str, dict[str, Any]]]:
    """The hand policies of integer deployment, for a space whose bit-width knobs offer 8 bits:
    every bit-width knob at 8 (``int8``), and the same with the model's first layer left at its
    least compressing bits (``int8, first layer float``), each with the other knobs (pruning,
    rank, …) moved together to the least common position that meets the analytic budget —
    and, with ``count`` > 1, to ``count - 1`` more compressing positions too, spread as the
    uniform baselines are (:func:`spread`): a search that keeps a Pareto front gets each form
    along it, not only at the budget.

    Keeping the first layer in float is the usual hand choice: it is the layer quantization
    hurts most, and on a CPU runtime a convolution with one to four input channels runs slower
    as an integer kernel than as a float one (``benchmarks/latency_bits.py``). Neither policy
    is a point of the uniform or one-method baselines (those move bits and structure together,
    or one kind alone), and under a latency budget they are where bits pay: a search must
    not have to find them by chance. A pattern gives none when no structure makes it meet the
    budget, or when its bits lower no limited metric (a MACs budget does not see bits: the
    policy would be uniform pruning again); the second is left out when the first layer has no
    bit-width knob (``skip_first``).

    >>> from autocompress.config import Limit, parse_config
    >>> from autocompress.cost.metrics import compute_costs
    >>> from autocompress.cost.profile import profile_model
    >>> from autocompress.models import ZOO
    >>> from autocompress.policy import Policy
    >>> from autocompress.spaces import build_space
    >>> cfg = parse_config({"name": "t", "model": {"name": "lenet5"}, "data": {"name": "digits"},
    ...     "space": {"skip_first": False, "rules": [{"prune": [0.0, 0.9], "w_bits": [8, 32],
    ...     "a_bits": [8, 32]}]}})
    >>> profile = profile_model(ZOO["lenet5"](), (1, 28, 28), "lenet5")
    >>> space = build_space(cfg.space, profile)
    >>> base = compute_costs(profile, Policy("lenet5")).as_dict()
    >>> budget = resolve_budget({"bitops": Limit(0.1, True)}, base)
    >>> [(kind, params["conv1/w_bits"], params["conv2/w_bits"], params["conv1/prune"] > 0)
    ...  for kind, params in int8_baselines(space, budget)]
    [('int8', 8, 8, False), ('int8, first layer float', 32, 8, True)]
    >>> [kind for kind, _ in int8_baselines(space, budget, count=2)]
    ['int8', 'int8', 'int8, first layer float', 'int8, first layer float']
    """
    bits = [k for k in space.knobs if k.knob in BITS and INT8 in k.choices]
    if not budget.analytic or not bits:
        return []
    first = next(iter(space.profile.layers))
    patterns = {"int8": {k.name: k.position(INT8) for k in bits}}
    kept = {k.name: 0.0 for k in bits if first in k.layers}
    if kept:
        patterns["int8, first layer float"] = {**patterns["int8"], **kept}
    structure = [k.name for k in space.knobs if k.knob not in BITS]
    plain = budget.price(space, space.policy(space.at({})))
    out: list[tuple[str, dict[str, Any]]] = []
    for kind, fixed in patterns.items():
        priced = budget.price(space, space.policy(space.at(fixed)))
        if not any(priced[m] < plain[m] for m in budget.limits if m in plain):
            continue  # the budget does not see these bits (MACs): uniform pruning is the same
        out += [(kind, params) for params in _least_moved(space, budget, structure, fixed, count)]
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
