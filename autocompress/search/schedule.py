"""Multi-fidelity search: successive halving over fidelities, in one Optuna study.

With ``search.fidelity: multi`` (the default on the local backend) a search runs three rungs:

1. **screen** — the sampler proposes ``search.screen × search.trials`` candidates, each scored
   at the zero-cost fidelity (:mod:`autocompress.fidelity`: no fine-tune; about 0.5 s a
   candidate on LeNet-5 where a trial's fine-tune takes 7 s). The uniform baselines (and the
   sensitivity allocation) are screened like any other candidate;
2. **trials** — the best ``search.trials`` screened candidates (distinct policies, ranked by
   their zero-cost score, or by non-dominated rank when costs are objectives too) get the
   trial's short fine-tune: these are the study's trials, its Pareto front and progress;
3. **finals** — the best ``search.finalists`` fine-tuned trials get a fine-tune
   ``search.finalist_length`` times longer (``export``: as long as the export's), scored on
   validation and on the *selection split*, held out apart from the validation split every
   earlier rung was chosen on (choosing on the same images that ranked thousands of
   candidates over-fits them). ``best`` picks among these by ``search.finalist_score``:
   the mean of both scores (default; the selection split alone is too small to resolve
   the best allocations) or the selection split alone.

With ``search.finalist_baselines`` (the default) the least compressing baseline of each kind
(the uniform policy moving every knob at the budget, each method's uniform policy, the
sensitivity allocation) is promoted to the trials and to the finals whatever its rank: the
short fine-tune and the zero-cost score can rank a baseline low that the export's fine-tune
puts first (``vgg_small`` at 30% of the MACs: uniform pruning was 0.6 pt behind the
search's best after 150 steps and 0.15 pt ahead after two epochs), and a search must not
return less than the baseline a user would try first.

Each rung's trials are queued with their fidelity and the trial they were promoted from
(user attributes), so the sampler learns from the screen only, every trial says how it was
scored, and the schedule is a function of the study alone: an interrupted search resumes
where it stopped, and raising ``search.trials`` extends every rung.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Literal

import optuna
from optuna.trial import FrozenTrial, TrialState

from autocompress.config import Config
from autocompress.search.objective import Fidelity
from autocompress.search.study import counted, is_shared

QUEUED: Literal["queued"] = "queued"  # waiting trials hold the next work
Next = Fidelity | Literal["queued"] | None  # None: every rung is full


def refusal(cfg: Config) -> str | None:
    """Why ``search.fidelity: multi`` cannot run with ``cfg`` (its trials are then all
    fine-tuned, as with ``short``), or None."""
    if cfg.search.fidelity != "multi":
        return None
    if cfg.search.backend == "ray":
        return "the Ray backend fine-tunes every trial (its ASHA scheduler stops poor ones)"
    if cfg.search.sampler == "rl":
        return "the RL agent learns from fine-tuned rewards"
    if is_shared(cfg):
        return "workers sharing a study each fine-tune their own trials"
    return None


def uses_schedule(cfg: Config) -> bool:
    return cfg.search.fidelity == "multi" and refusal(cfg) is None


def next_step(study: optuna.Study, cfg: Config) -> Next:
    """What the search does next, queueing the next rung's trials when one is due: the
    fidelity of a new candidate the sampler proposes, :data:`QUEUED` (ask, and the queue
    answers), or None when the search is complete."""
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return QUEUED
    search = cfg.search
    screened = counted(trials, "zero-cost")
    if len(screened) < search.screen * search.trials:
        return "zero-cost"
    tuned = counted(trials, "short")
    if len(tuned) < search.trials:
        promoted = {t.user_attrs.get("promoted_from") for t in trials}
        taken = {_policy_key(t) for t in tuned}
        pool = _ranked(_done(screened), len(study.directions) > 1)
        heads = _baseline_heads(pool) if search.finalist_baselines else []
        picks = _distinct([t for t in heads + pool if t.number not in promoted], taken)
        for t in picks[: search.trials - len(tuned)]:
            _queue(study, t, "short", "promoted_from")
        # nothing left to promote (every screened candidate failed or broke the budget):
        # the sampler proposes fine-tuned trials itself
        return QUEUED if picks else "short"
    if search.finalists:
        finalized = {t.user_attrs.get("finalist_of") for t in trials}
        ranked = _ranked(_done(tuned), multi=False)
        best = _distinct(ranked, set())[: search.finalists]
        if search.finalist_baselines:
            best = _distinct(best + _baseline_heads(ranked), set())
        missing = [t for t in best if t.number not in finalized]
        for t in missing:
            _queue(study, t, "long", "finalist_of")
        if missing:
            return QUEUED
    return None


def _baseline_heads(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The least compressing trial of each kind of baseline (``uniform``, ``uniform prune``,
    the sensitivity allocation, …) among ``trials``: the policy a user would try first, at
    the budget. Each kind's positions are queued from the least compression within the
    budget toward more, so it is the one screened first (a promoted trial counts as the
    screened trial it came from). Not the best-scored one: the zero-cost score ranks one
    kind's positions by noise under heavy compression (``vgg_small`` at 15% of the MACs: the
    uniform policy at the budget scored 40.1%, one at 11.8% of the MACs 44.2%)."""
    heads: dict[str, FrozenTrial] = {}
    for t in sorted(trials, key=_screened_as):
        kind = baseline_kind(t.user_attrs)
        if kind is not None:
            heads.setdefault(kind, t)
    return list(heads.values())


def _screened_as(trial: FrozenTrial) -> int:
    """The number of the screened trial ``trial`` is, or was promoted from."""
    origin = trial.user_attrs.get("promoted_from")
    return int(origin) if isinstance(origin, int) else trial.number


def baseline_kind(attrs: dict[str, object]) -> str | None:
    """What kind of baseline a trial is (``uniform``, ``uniform prune``, …), None if it is not
    one. Studies started before the kind was stored give it by their label less its position."""
    kind = attrs.get("baseline_kind")
    if isinstance(kind, str):
        return kind
    label = attrs.get("baseline")
    return re.sub(r" [0-9.]+$", "", label) if isinstance(label, str) else None


def _done(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """Complete, within-budget trials with a score."""
    return [
        t
        for t in trials
        if t.state == TrialState.COMPLETE
        and t.user_attrs.get("feasible")
        and t.user_attrs.get("val_accuracy") is not None
    ]


def _ranked(trials: list[FrozenTrial], multi: bool) -> list[FrozenTrial]:
    """Best first: by score (earlier first on ties); with cost objectives, front by front
    (non-dominated sorting over score up, cost ratios down), each front by score."""

    def by_score(ts: list[FrozenTrial]) -> list[FrozenTrial]:
        return sorted(ts, key=lambda t: (-float(t.user_attrs["val_accuracy"]), t.number))

    if not multi:
        return by_score(trials)
    remaining, ranked = list(trials), []
    while remaining:
        front = [t for t in remaining if not any(_dominates(o, t) for o in remaining)]
        ranked += by_score(front)
        remaining = [t for t in remaining if t not in front]
    return ranked


def _dominates(a: FrozenTrial, b: FrozenTrial) -> bool:
    va, vb = a.values, b.values
    no_worse = va[0] >= vb[0] and all(x <= y for x, y in zip(va[1:], vb[1:], strict=True))
    return no_worse and list(va) != list(vb)


def _policy_key(trial: FrozenTrial) -> str:
    return json.dumps(trial.user_attrs.get("policy", trial.params), sort_keys=True)


def _distinct(trials: list[FrozenTrial], taken: set[str]) -> list[FrozenTrial]:
    """``trials`` in order, without a policy in ``taken`` or met before (samplers repeat
    themselves; two equal policies are one candidate)."""
    seen, kept = set(taken), []
    for t in trials:
        key = _policy_key(t)
        if key not in seen:
            seen.add(key)
            kept.append(t)
    return kept


# what marks a promoted trial as the baseline it was promoted from
BASELINE_ATTRS = ("baseline", "baseline_kind")


def _queue(study: optuna.Study, trial: FrozenTrial, fidelity: Fidelity, link: str) -> None:
    """Queue ``trial``'s params at ``fidelity``, linked back to it (``link``: its number);
    a baseline stays labelled as one."""
    attrs: dict[str, object] = {"fidelity": fidelity, link: trial.number}
    attrs.update({k: v for k, v in trial.user_attrs.items() if k in BASELINE_ATTRS})
    study.enqueue_trial(trial.params, user_attrs=attrs, skip_if_exists=False)


def rung_counts(study: optuna.Study) -> dict[str, int]:
    """Finished trials per fidelity (as they count toward the rungs)."""
    trials = study.get_trials(deepcopy=False)
    return {f: len(counted(trials, f)) for f in ("zero-cost", "short", "long")}
