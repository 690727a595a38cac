"""Search spaces: knobs from rules, coupling, valid policies everywhere, projection, baselines."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autocompress.compress import KNOB_METHODS
from autocompress.config import Limit, parse_config
from autocompress.cost.check import check_policy
from autocompress.cost.metrics import compute_costs
from autocompress.errors import ConfigError
from autocompress.policy import Policy
from autocompress.spaces import SearchSpace, build_space, project, resolve_budget
from autocompress.spaces.budget import int8_baselines, method_baselines, uniform_baselines
from tests.cost.test_cost_model import MODELS, model_and_profile

EVERY_KNOB = [
    {
        "prune": [0.0, 0.9],
        "sparsity": [0.0, 0.95],
        "rank": [0.1, 1.0],
        "w_bits": [2, 3, 4, 6, 8, 32],
        "a_bits": [4, 8, 32],
        "clusters": [4, 16, None],
    }
]


def space_for(name: str, rules: list[dict[str, Any]] = EVERY_KNOB, **flags: Any) -> SearchSpace:
    cfg = parse_config(
        {
            "name": "t",
            "model": {"name": "lenet5"},
            "data": {"name": "digits"},
            "space": {"rules": rules, **flags},
        }
    )
    return build_space(cfg.space, model_and_profile(name)[1])


@st.composite
def params_in(draw: st.DrawFn, space: SearchSpace) -> dict[str, Any]:
    return {
        k.name: draw(st.floats(k.low, k.high) if k.continuous else st.sampled_from(k.choices))
        for k in space.knobs
    }


@pytest.mark.parametrize("name", MODELS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), budget=st.floats(0.05, 0.9))
def test_every_point_is_a_valid_policy_and_projection_meets_the_budget(name, data, budget):
    space = space_for(name)
    profile = space.profile
    params = data.draw(params_in(space))
    policy = space.policy(params)
    check_policy(policy, profile, KNOB_METHODS)  # raises on anything invalid
    base = compute_costs(profile, Policy(profile.model)).as_dict()
    limits = resolve_budget({"macs": Limit(budget, True), "size_bytes": Limit(budget, True)}, base)
    moved = project(space, limits, params)
    if moved is None:  # even the most compressing corner of the space does not fit
        corner = compute_costs(profile, space.policy(space.uniform(1.0))).as_dict()
        assert not limits.holds(corner)
        return
    costs = compute_costs(profile, space.policy(moved)).as_dict()
    assert limits.holds(costs)
    # projection only ever compresses more: every knob's position grows or stays
    before, after = space.positions(params), space.positions(moved)
    assert all(after[k] >= before[k] - 1e-9 for k in before)


def test_coupled_layers_share_one_prune_knob() -> None:
    space = space_for("tiny_resnet", [{"prune": [0.0, 0.5]}], skip_first=False)
    knobs = {k.name: k.layers for k in space.knobs}
    # stem and conv_b feed the same residual add; dw/pw are a depthwise chain
    coupled = next(layers for layers in knobs.values() if "stem" in layers)
    assert set(coupled) >= {"stem", "conv_b"}
    policy = space.policy({name: 0.5 for name in knobs})
    assert policy.layers["stem"].prune == policy.layers["conv_b"].prune == 0.5
    check_policy(policy, space.profile, KNOB_METHODS)
    # with the first layer skipped, its whole group stays untouched
    skipped = space_for("tiny_resnet", [{"prune": [0.0, 0.5]}])
    assert not any("stem" in k.layers for k in skipped.knobs)
    assert not any("head" in k.layers for k in skipped.knobs)  # the classifier is never pruned


def test_rules_select_by_glob_and_type_and_later_rules_override() -> None:
    rules = [
        {"prune": [0.0, 0.8], "w_bits": [8, 4, 32]},
        {"layers": "fc*", "types": ["linear"], "w_bits": [2, 4], "clusters": [16, None, 4]},
    ]
    space = space_for("lenet5", rules, skip_first=False, skip_last=False)
    knobs = {k.name: k for k in space.knobs}
    assert knobs["conv2/w_bits"].choices == (32, 8, 4)  # least to most compressing
    assert knobs["fc1/w_bits"].choices == (4, 2)
    assert knobs["fc1/clusters"].choices == (None, 16, 4)
    assert "conv1/clusters" not in knobs and "fc2/prune" not in knobs  # output layer
    assert knobs["fc2/w_bits"].choices == (4, 2)


def test_sharing_overrides_bits_and_useless_ranks_mean_no_factorization() -> None:
    space = space_for("lenet5", [{"rank": [0.1, 1.0], "w_bits": [4, 32], "clusters": [8, None]}])
    policy = space.policy({"conv2/rank": 0.99, "conv2/w_bits": 4, "conv2/clusters": 8})
    assert policy.layers["conv2"].rank == 1.0  # a 99% rank would not shrink conv2
    assert policy.layers["conv2"].w_bits == 32 and policy.layers["conv2"].clusters == 8


def test_every_position_gives_a_value_inside_the_knobs_range() -> None:
    # a rank range [0.1, 1.0] at its far end once gave 0.0999…98: Optuna warned that the
    # enqueued sensitivity allocation was out of the study's range
    space = space_for("lenet5", [{"prune": [0.0, 0.9], "rank": [0.1, 1.0]}], skip_first=False)
    for knob in space.knobs:
        for position in (0.0, 1 / 3, 0.5, 0.7, 0.9, 1.0, 1.5, -0.5):
            assert knob.low <= knob.at(position) <= knob.high, (knob.name, position)
    ranks = [k for k in space.knobs if k.knob == "rank"]
    assert ranks and all(k.at(1.0) == 0.1 for k in ranks)


def test_uniform_baselines_are_the_least_compression_within_budget() -> None:
    space = space_for("lenet5", [{"prune": [0.0, 0.9]}], skip_first=False)
    profile = space.profile
    base = compute_costs(profile, Policy("lenet5")).as_dict()
    budget = resolve_budget({"macs": Limit(0.25, True)}, base)
    baselines = uniform_baselines(space, budget, 3)
    assert len(baselines) == 3
    ratios = [compute_costs(profile, space.policy(p)).macs / base["macs"] for p in baselines]
    assert all(r <= 0.25 for r in ratios) and ratios == sorted(ratios, reverse=True)
    for params in baselines:
        assert len(set(params.values())) == 1  # one value for every layer
    first = next(iter(baselines[0].values()))
    looser = space.policy({k: first - 0.01 for k in baselines[0]})
    assert compute_costs(profile, looser).macs / base["macs"] > 0.25
    # no analytic budget: spread over the range
    spread = uniform_baselines(space, resolve_budget({}, base), 3)
    assert [next(iter(p.values())) for p in spread] == pytest.approx([0.225, 0.45, 0.675])


def test_method_baselines_are_each_kind_alone_at_the_budget() -> None:
    """Uniform pruning and uniform rank, each the least compression within budget; a kind
    that cannot meet a MACs budget alone (bits) gives none; a one-kind space gives none."""
    rules = [{"prune": [0.0, 0.9], "rank": [0.1, 1.0], "w_bits": [4, 8, 32]}]
    space = space_for("lenet5", rules, skip_first=False)
    profile = space.profile
    base = compute_costs(profile, Policy("lenet5")).as_dict()
    budget = resolve_budget({"macs": Limit(0.3, True)}, base)
    found = dict(method_baselines(space, budget))
    assert set(found) == {"prune", "rank"}
    for kind, params in found.items():
        moved = {k.name: params[k.name] for k in space.knobs if k.knob == kind}
        still = {k.name: params[k.name] for k in space.knobs if k.knob != kind}
        assert len(set(moved.values())) == 1  # one position for every layer of that kind
        assert all(k.at(0.0) == still[k.name] for k in space.knobs if k.name in still)
        assert compute_costs(profile, space.policy(params)).macs <= 0.3 * base["macs"]
        position = next(k.position(params[k.name]) for k in space.knobs if k.knob == kind)
        looser = space.uniform(position - 0.01, kind)
        assert compute_costs(profile, space.policy(looser)).macs > 0.3 * base["macs"]
    assert method_baselines(space_for("lenet5", [{"prune": [0.0, 0.9]}]), budget) == []


@pytest.mark.parametrize(
    ("rules", "flags", "key"),
    [
        ([{"layers": "conv9", "prune": [0, 0.5]}], {}, "space.rules[0].layers"),
        ([{"types": ["conv"]}], {}, "space.rules[0]"),
        ([{"layers": "fc2", "prune": [0, 0.5]}], {}, "space.rules[0].layers"),
    ],
)
def test_rules_that_select_nothing_usable_are_errors(rules, flags, key) -> None:
    with pytest.raises(ConfigError) as err:
        space_for("lenet5", rules, **flags)
    assert err.value.key == key


def test_a_predicted_latency_budget_is_projected_without_forcing_bits() -> None:
    """With a predicted latency budget (a budget's ``predict``, here a runtime where 8-bit
    layers cost more than float ones, as small layers do on ONNX Runtime) projection first
    moves every knob, then the structure alone with the sampler's bits kept; reachability
    checks that corner too."""
    from autocompress.errors import AutocompressError
    from autocompress.spaces import check_reachable
    from autocompress.spaces.budget import PREDICTED

    rule = {"prune": [0.0, 0.9], "w_bits": [8, 32]}
    space = space_for("lenet5", [rule], skip_first=False, skip_last=False)
    profile = space.profile
    base_costs = compute_costs(profile, Policy("lenet5"))

    def predict(policy: Policy, costs: Any) -> float:
        integer = [policy.choice(n).w_bits <= 8 for n in profile.layers]
        return costs.macs / base_costs.macs + 0.6 * sum(integer) / len(integer)

    base = {**base_costs.as_dict(), PREDICTED: predict(Policy("lenet5"), base_costs)}
    budget = resolve_budget({PREDICTED: Limit(0.5, True)}, base, predict)
    params = space.at({k.name: 0.0 for k in space.knobs})  # float, nothing pruned
    moved = project(space, budget, params)
    assert moved is not None and budget.holds(budget.price(space, space.policy(moved)))
    bits = [k.name for k in space.knobs if k.knob == "w_bits"]
    assert all(moved[k] == 32 for k in bits)  # 8 bits everywhere would cost 0.6 alone
    check_reachable(space, budget, base)  # the float corner fits
    tight = resolve_budget({PREDICTED: Limit(0.01, True)}, base, predict)
    with pytest.raises(AutocompressError, match="latency_ms_predicted"):
        check_reachable(space, tight, base)


def test_int8_baselines_fix_the_bits_and_move_the_structure_to_the_budget() -> None:
    """All bit-width knobs at 8, then the same with the first layer float, each with pruning
    and rank at the least common position within budget; none without 8 among the choices or
    under a budget bits do not lower, and no first-float variant when the first layer has no
    knob (skip_first)."""
    rules = [{"prune": [0.0, 0.9], "rank": [0.1, 1.0], "w_bits": [4, 8, 32], "a_bits": [8, 32]}]
    space = space_for("lenet5", rules, skip_first=False)
    profile = space.profile
    base = compute_costs(profile, Policy("lenet5")).as_dict()
    limit = 0.04
    budget = resolve_budget({"bitops": Limit(limit, True)}, base)
    found = dict(int8_baselines(space, budget))
    assert list(found) == ["int8", "int8, first layer float"]
    for kind, params in found.items():
        policy = space.policy(params)
        first_float = kind.endswith("first layer float")
        for knob in space.knobs:
            if knob.knob in ("w_bits", "a_bits"):
                float_layer = first_float and "conv1" in knob.layers
                assert params[knob.name] == (32 if float_layer else 8), (kind, knob.name)
        structure = [k for k in space.knobs if k.knob in ("prune", "rank")]
        positions = {round(k.position(params[k.name]), 6) for k in structure}
        assert len(positions) == 1  # one common position
        position = positions.pop()
        assert compute_costs(profile, policy).bitops <= limit * base["bitops"]
        # the least such position: a little less compression breaks the budget
        looser = {**params, **{k.name: k.at(position - 0.01) for k in structure}}
        assert compute_costs(profile, space.policy(looser)).bitops > limit * base["bitops"]
    assert found["int8, first layer float"]["conv1/prune"] > found["int8"]["conv1/prune"]
    # conv1 left float by skip_first holds about an eighth of the base's bit operations
    looser_budget = resolve_budget({"bitops": Limit(0.2, True)}, base)
    skipped = dict(int8_baselines(space_for("lenet5", rules), looser_budget))
    assert list(skipped) == ["int8"]
    assert (
        int8_baselines(space_for("lenet5", [{"prune": [0.0, 0.9], "w_bits": [4, 32]}]), budget)
        == []
    )
    assert int8_baselines(space, resolve_budget({}, base)) == []  # nothing to meet
    macs = resolve_budget({"macs": Limit(0.3, True)}, base)
    assert int8_baselines(space, macs) == []  # bits buy no MACs: uniform pruning again
