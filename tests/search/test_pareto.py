"""Pareto fronts, trial choice and hypervolume on hand-made records."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autocompress.errors import AutocompressError
from autocompress.search.pareto import (
    best_trial,
    best_trials,
    dominates,
    hypervolume,
    pareto_front,
)
from autocompress.search.study import TrialRecord


def rec(number: int, acc: float | None, macs: float, state: str = "complete", **kw) -> TrialRecord:
    return TrialRecord(
        number=number,
        state=state,
        val_accuracy=acc,
        costs={"macs": macs * 1000},
        ratios={"macs": macs, "size_bytes": kw.pop("size", macs)},
        feasible=kw.pop("feasible", True),
        baseline=kw.pop("baseline", None),
        policy=kw.pop("policy", {}),
        fidelity=kw.pop("fidelity", "short"),
        selection_accuracy=kw.pop("selection", None),
        finetune_seconds=1.0,
        seconds=1.1,
        reason=None,
    )


def test_front_keeps_only_scored_non_dominated_trials() -> None:
    records = [
        rec(0, 0.90, 0.5),
        rec(1, 0.85, 0.2),
        rec(2, 0.80, 0.3),  # dominated by 1
        rec(3, 0.95, 0.25, feasible=False),  # over budget: not on the front
        rec(4, 0.99, 0.1, state="pruned"),  # stopped early: not on the front
        rec(5, None, 0.1, state="fail"),
        rec(6, 0.90, 0.5),  # same figures as 0: kept once
    ]
    front = pareto_front(records, ["macs"])
    assert [r.number for r in front] == [1, 0]


@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0.01, 1), st.floats(0.01, 1)), min_size=1))
def test_front_is_exactly_the_non_dominated_set(points) -> None:
    records = [rec(i, a, m, size=s) for i, (a, m, s) in enumerate(points)]
    metrics = ["macs", "size_bytes"]
    front = pareto_front(records, metrics)
    on = {r.number for r in front}
    for r in records:
        beaten = any(dominates(o, r, metrics) for o in records)
        assert (
            beaten
            or r.number in on
            or any((o.val_accuracy, o.ratios) == (r.val_accuracy, r.ratios) for o in front)
        )
        if r.number in on:
            assert not beaten


def test_best_trial_respects_ratio_limits_and_says_when_none_fit() -> None:
    records = [rec(0, 0.9, 0.5), rec(1, 0.85, 0.2), rec(2, 0.95, 0.1, state="pruned")]
    assert best_trial(records).number == 0
    assert best_trial(records, {"macs": 0.3}).number == 1
    with pytest.raises(AutocompressError, match=r"macs ≤ 0.05× base"):
        best_trial(records, {"macs": 0.05})


def test_finalists_are_compared_on_held_out_data_by_the_configured_rule() -> None:
    # the 30%-MACs vgg_small finals (RESULTS.md): a searched finalist one selection image
    # ahead of uniform pruning, which validation puts 0.47 pt ahead
    def final(number: int, val: float, sel: float, macs: float) -> TrialRecord:
        policy = {"layers": {"x": {"prune": (number % 10) / 10}}}
        return rec(number, val, macs, fidelity="long", selection=sel, policy=policy)

    records = [
        rec(1, 0.9420, 0.29, policy={"layers": {"x": {"prune": 0.1}}}),  # 11's short trial
        final(11, 0.9350, 0.9360, 0.298),  # searched
        final(12, 0.9397, 0.9355, 0.284),  # uniform prune
        final(13, 0.9350, 0.9290, 0.296),  # sensitivity
        rec(4, 0.9300, 0.25),  # a trial that never reached the finals
    ]
    assert [r.number for r in best_trials(records, None, 4)] == [12, 11, 13, 4]
    assert [r.number for r in best_trials(records, None, 4, "selection")] == [11, 12, 13, 4]
    assert best_trial(records).fidelity == "long"  # the finalist, not its short trial
    assert best_trial(records, {"macs": 0.29}, "selection").number == 12
    # no selection split: validation alone, either way
    bare = [final(11, 0.93, 0.95, 0.3), final(12, 0.94, 0.90, 0.3)]
    bare = [dataclasses.replace(r, selection_accuracy=None) for r in bare]
    assert best_trial(bare, score="selection").number == best_trial(bare).number == 12


def test_hypervolume_of_a_staircase() -> None:
    # reference (accuracy 0.5, MACs ratio 1.0); points (0.2, 0.7) and (0.6, 0.9)
    records = [rec(0, 0.7, 0.2), rec(1, 0.9, 0.6), rec(2, 0.6, 0.8)]
    # [0.2, 0.6) at height 0.2, [0.6, 1.0) at height 0.4
    assert hypervolume(records, "macs", 0.5, 1.0) == pytest.approx(0.4 * 0.2 + 0.4 * 0.4)
    assert hypervolume(records, "macs", 0.95, 1.0) == 0.0
    assert hypervolume([], "macs", 0.5, 1.0) == 0.0
