"""Pareto fronts over a study's trials, and the choice of a trial to export.

The front holds the fine-tuned, within-budget trials that no other such trial beats on
validation accuracy and on every cost at once. Costs are compared as ratios to the base model.
A multi-fidelity search's screened candidates (zero-cost) and finalists (a longer fine-tune)
are scored differently and stay off the front; the best trial is the finalist that scores
best on held-out data (``search.finalist_score``: the mean of its validation and
selection-split scores, or the selection split alone).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from autocompress.config import Config, FinalistScore
from autocompress.errors import AutocompressError
from autocompress.search.study import TrialRecord


def front_metrics(cfg: Config) -> list[str]:
    """The costs the front trades accuracy against: objectives, else budget keys, else MACs."""
    if cfg.objectives:
        return [str(m) for m in cfg.objectives]
    if cfg.budget:
        return list(cfg.budget)
    return ["macs"]


def dominates(a: TrialRecord, b: TrialRecord, metrics: Sequence[str]) -> bool:
    assert a.val_accuracy is not None and b.val_accuracy is not None
    no_worse = a.val_accuracy >= b.val_accuracy and all(a.ratios[m] <= b.ratios[m] for m in metrics)
    better = a.val_accuracy > b.val_accuracy or any(a.ratios[m] < b.ratios[m] for m in metrics)
    return no_worse and better


def pareto_front(records: Sequence[TrialRecord], metrics: Sequence[str]) -> list[TrialRecord]:
    """Non-dominated scored trials, by ascending first cost ratio."""
    scored = [r for r in records if r.scored and all(m in r.ratios for m in metrics)]
    front = [r for r in scored if not any(dominates(o, r, metrics) for o in scored)]
    # keep one of several trials with identical figures (the earliest)
    unique: dict[tuple[float, ...], TrialRecord] = {}
    for r in front:
        key = (r.val_accuracy or 0.0, *(r.ratios[m] for m in metrics))
        unique.setdefault(key, r)
    return sorted(unique.values(), key=lambda r: (r.ratios[metrics[0]], -(r.val_accuracy or 0)))


# what each search.finalist_score compares, in words
SCORE_WORDS: dict[str, str] = {
    "mean": "the mean of validation and selection-split accuracy",
    "selection": "the selection split",
}


def held_out_score(
    val_accuracy: float | None, selection_accuracy: float | None, rule: FinalistScore = "mean"
) -> float:
    """How a finalist (or an exported candidate) is compared after its long fine-tune.

    ``mean``: the mean of its validation and selection-split scores; ``selection``: the
    selection split alone. Either falls back to validation where there is no selection
    split. The mean weighs the two sets equally whatever their sizes (a user's ``evaluate``
    does not say how many samples it scores), so the selection split, which the search never
    saw, counts as much as validation, on which the searched finalists were promoted.

    >>> held_out_score(0.9350, 0.9360), held_out_score(0.9397, 0.9355)
    (0.9355, 0.9376)
    >>> held_out_score(0.9350, 0.9360, "selection"), held_out_score(0.93, None)
    (0.936, 0.93)
    """
    val = val_accuracy if val_accuracy is not None else 0.0
    if selection_accuracy is None:
        return val
    if rule == "selection":
        return selection_accuracy
    return round((val + selection_accuracy) / 2, 12)


def best_trial(
    records: Sequence[TrialRecord],
    max_ratios: Mapping[str, float] | None = None,
    score: FinalistScore = "mean",
) -> TrialRecord:
    """The best trial whose cost ratios are all within ``max_ratios`` (e.g.
    ``{"macs": 0.2}``): of a multi-fidelity search, the finalist that scores best on held-out
    data (``score``, see :func:`held_out_score`), else the best on validation."""
    return best_trials(records, max_ratios, 1, score)[0]


def best_trials(
    records: Sequence[TrialRecord],
    max_ratios: Mapping[str, float] | None,
    count: int,
    score: FinalistScore = "mean",
) -> list[TrialRecord]:
    """The ``count`` best trials within ``max_ratios``, best first: a multi-fidelity search's
    finalists by their held-out score (``score``, see :func:`held_out_score`), then the other
    scored trials by validation accuracy (ties: cheaper in MACs, then earlier)."""
    limits = dict(max_ratios or {})

    def fits(r: TrialRecord) -> bool:
        return all(m in r.ratios and r.ratios[m] <= lim for m, lim in limits.items())

    def held_out(r: TrialRecord) -> float:
        return held_out_score(r.val_accuracy, r.selection_accuracy, score)

    finalists = [r for r in records if r.finalist and fits(r)]
    finalists.sort(key=lambda r: (-held_out(r), r.ratios.get("macs", 0.0), r.number))
    final_policies = [r.policy for r in finalists]
    chosen = [r for r in records if r.scored and fits(r) and r.policy not in final_policies]
    if not chosen and not finalists:
        within = " within " + ", ".join(f"{m} ≤ {v:g}× base" for m, v in limits.items())
        raise AutocompressError(
            "no fully fine-tuned, within-budget trial"
            + (within if limits else "")
            + f" among {len(records)} trials; run more trials or loosen the limits"
        )
    chosen.sort(key=lambda r: (-(r.val_accuracy or 0.0), r.ratios.get("macs", 0.0), r.number))
    return (finalists + chosen)[:count]


def trial_by_number(records: Sequence[TrialRecord], number: int) -> TrialRecord:
    found = [r for r in records if r.number == number]
    if not found:
        raise AutocompressError(f"no trial {number}: the study has trials 0–{len(records) - 1}")
    record = found[0]
    if record.state != "complete" or record.val_accuracy is None:
        raise AutocompressError(
            f"trial {number} is {record.state}"
            + (f" ({record.reason})" if record.reason else "")
            + ": export a complete trial"
        )
    return record


def hypervolume(
    records: Sequence[TrialRecord], metric: str, ref_accuracy: float, ref_ratio: float
) -> float:
    """Area dominated by the scored trials in (accuracy up, ``metric`` ratio down) space,
    bounded by the reference point (``ref_accuracy``, ``ref_ratio``)."""
    points = sorted(
        (r.ratios[metric], r.val_accuracy or 0.0)
        for r in records
        if r.scored and metric in r.ratios
    )
    area, best = 0.0, ref_accuracy
    # sweep from the cheapest point: each point adds the strip its accuracy gains
    for i, (cost, acc) in enumerate(points):
        if cost >= ref_ratio:
            break
        best = max(best, acc)
        right = min(points[i + 1][0], ref_ratio) if i + 1 < len(points) else ref_ratio
        area += (right - cost) * (best - ref_accuracy)
    return area
