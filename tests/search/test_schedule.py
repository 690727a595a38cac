"""The multi-fidelity search (search/schedule.py): screen → trials → finalists, in one study."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import FrozenTrial, TrialState

import autocompress
from autocompress.cli import main
from autocompress.config import DataConfig, load_config
from autocompress.data import load_data
from autocompress.search.schedule import QUEUED, baseline_kind, next_step
from autocompress.search.study import counts_toward_budget
from tests.tiny_models import tiny_resnet

MULTI = {
    "finetune": {"steps": 12, "lr": 0.01, "export_epochs": 0.25},
    "space": {"rules": [{"prune": [0.0, 0.8]}]},
    "budget": {"macs": "60%"},
    "search": {
        "fidelity": "multi",
        "trials": 4,
        "screen": 3,
        "finalists": 2,
        "uniform": 2,
        "pruner": "none",
    },
}


def trials_of(run_dir: Path) -> list[FrozenTrial]:
    study = optuna.load_study(study_name="digits-test", storage=f"sqlite:///{run_dir / 'study.db'}")
    return study.get_trials()


def rung(trials: list[FrozenTrial], fidelity: str) -> list[FrozenTrial]:
    return [t for t in trials if t.user_attrs.get("fidelity") == fidelity]


def score(t: FrozenTrial) -> float:
    return float(t.user_attrs["val_accuracy"])


def front_ranks(trials: list[FrozenTrial]) -> dict[int, int]:
    """Each trial's non-dominated front, 0 the first, over its values (score up, costs down)."""

    def dominates(a: FrozenTrial, b: FrozenTrial) -> bool:
        no_worse = a.values[0] >= b.values[0] and all(
            x <= y for x, y in zip(a.values[1:], b.values[1:], strict=True)
        )
        return no_worse and a.values != b.values

    ranks, remaining, r = {}, list(trials), 0
    while remaining:
        front = [t for t in remaining if not any(dominates(o, t) for o in remaining)]
        ranks.update({t.number: r for t in front})
        remaining, r = [t for t in remaining if t not in front], r + 1
    return ranks


def check_schedule(
    trials: list[FrozenTrial], n: int, screen: int, finalists: int, one_promotion: bool = True
) -> None:
    """Every rung is full, and the promotion (``one_promotion``: all at once) took the best
    of the rung below."""
    screened, tuned, final = (rung(trials, f) for f in ("zero-cost", "short", "long"))
    assert len(trials) == len(screened) + len(tuned) + len(final)
    assert sum(counts_toward_budget(t, fidelity="zero-cost") for t in screened) == screen * n
    assert sum(counts_toward_budget(t) for t in tuned) == n
    # the uniform baselines (one kind here) are promoted to the trials and the finals
    # whatever their rank (search.finalist_baselines): at most one more finalist
    assert finalists <= len(final) <= finalists + 1 if one_promotion else len(final) >= finalists
    assert any("baseline" in t.user_attrs for t in tuned)
    assert any("baseline" in t.user_attrs for t in final)
    assert all(
        "timings" in t.user_attrs and "zero-cost" in t.user_attrs["timings"]
        for t in screened
        if t.user_attrs.get("feasible")
    )
    # the trials are the best-scored screened candidates (distinct policies)
    promoted = {t.user_attrs["promoted_from"] for t in tuned}
    assert len(promoted) == n
    by_number = {t.number: t for t in trials}
    feasible = [t for t in screened if t.state == TrialState.COMPLETE and t.user_attrs["feasible"]]
    # best first: front by front over (score up, cost ratios down) when costs are objectives
    # (the default), each front by score; by score alone for accuracy alone
    rank = front_ranks(feasible)
    key = {t.number: (rank[t.number], -score(t)) for t in feasible}
    worst_promoted = max(key[p] for p in promoted if "baseline" not in by_number[p].user_attrs)
    left_out = [t for t in feasible if t.number not in promoted]
    policies = {json.dumps(by_number[p].user_attrs["policy"], sort_keys=True) for p in promoted}
    assert not one_promotion or all(
        key[t.number] >= worst_promoted
        or json.dumps(t.user_attrs["policy"], sort_keys=True) in policies
        for t in left_out
    )
    for t in tuned:  # each was fine-tuned on the params it was screened with
        assert t.params == by_number[t.user_attrs["promoted_from"]].params
        assert t.user_attrs["timings"]["finetune"] > 0
    # the finalists are the best fine-tuned trials, fine-tuned longer, scored on selection
    done = sorted((t for t in tuned if t.state == TrialState.COMPLETE), key=lambda t: -score(t))
    assert {t.number for t in done[:finalists]} <= {t.user_attrs["finalist_of"] for t in final}
    for t in final:
        assert 0 <= t.user_attrs["selection_accuracy"] <= 1
        assert t.params == by_number[t.user_attrs["finalist_of"]].params


def test_multi_fidelity_search_runs_every_rung_and_exports_the_finalist_best_held_out(
    write_config, tmp_path, capsys
) -> None:
    config = write_config(MULTI)
    run_dir = tmp_path / "runs" / "digits-test"
    assert main(["search", str(config)]) == 0
    out = capsys.readouterr().out
    assert "12 candidates screened without fine-tuning" in out
    assert "screened without fine-tuning: 12" in out.replace(" complete", "") or (
        "screened without fine-tuning:" in out
    )
    assert "finalists ·" in out
    assert "chosen on the mean of validation and selection-split accuracy" in " ".join(out.split())
    trials = trials_of(run_dir)
    check_schedule(trials, n=4, screen=3, finalists=2)
    # the uniform baselines were screened first, like any candidate
    assert [t.user_attrs.get("fidelity") for t in trials[:2]] == ["zero-cost"] * 2
    assert all(t.user_attrs["baseline"].startswith("uniform") for t in trials[:2])
    # a screened candidate is scored in a fraction of a fine-tuned trial's time
    screened = [t for t in rung(trials, "zero-cost") if t.user_attrs.get("feasible")]
    assert all(t.user_attrs["timings"].get("finetune", 0) == 0 for t in screened)

    # the front holds the fine-tuned trials only; the best is the finalist best on the mean
    # of its validation and selection scores (search.finalist_score)
    assert main(["pareto", str(run_dir), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["fidelities"] == {"zero-cost": 12, "short": 4, "long": 2}
    front = shown["front"]
    short = {t.number for t in rung(trials, "short")}
    assert front and {r["trial"] for r in front} <= short
    final = rung(trials, "long")
    chosen = min(  # ties: the cheaper, then the earlier
        final,
        key=lambda t: (
            -(t.user_attrs["val_accuracy"] + t.user_attrs["selection_accuracy"]) / 2,
            t.user_attrs["costs"]["macs"],
            t.number,
        ),
    )
    out_dir = tmp_path / "export"
    assert main(["export", str(run_dir), "--best", "--out", str(out_dir)]) == 0
    report = json.loads((out_dir / "report.json").read_text())
    assert report["trial"] == chosen.number
    # pareto --json lists the finals with the score the choice was made on
    assert shown["best"] == chosen.number and shown["finalist_score"] == "mean"
    assert [f["trial"] for f in shown["finalists"]] == [t.number for t in final]
    for f in shown["finalists"]:
        assert f["score"] == pytest.approx((f["val_accuracy"] + f["selection_accuracy"]) / 2)
        assert (
            f["promoted_from"] == {t.number: t for t in final}[f["trial"]].user_attrs["finalist_of"]
        )

    # a rerun finds every rung full: nothing more runs
    assert main(["search", str(config)]) == 0
    assert len(trials_of(run_dir)) == len(trials)


def test_an_interrupted_multi_fidelity_search_resumes_its_rung(
    write_config, tmp_path, monkeypatch
) -> None:
    """Ctrl-C in the second rung: the rerun finishes it without screening or promoting
    anything twice."""
    loop = importlib.import_module("autocompress.search.loop")  # `autocompress.search` is the API

    config = write_config(MULTI)
    run_dir = tmp_path / "runs" / "digits-test"
    real = loop.evaluate_params
    calls = {"short": 0}

    def stop_in_second_trial(ctx, params, report=None, fidelity="short"):
        if fidelity == "short":
            calls["short"] += 1
            if calls["short"] == 2:
                raise KeyboardInterrupt
        return real(ctx, params, report, fidelity)

    monkeypatch.setattr(loop, "evaluate_params", stop_in_second_trial)
    assert main(["search", str(config)]) == 130  # as after Ctrl-C
    monkeypatch.setattr(loop, "evaluate_params", real)
    stopped = trials_of(run_dir)
    assert len([t for t in rung(stopped, "short") if t.state == TrialState.COMPLETE]) == 1
    assert main(["search", str(config)]) == 0
    trials = trials_of(run_dir)
    interrupted = [t for t in trials if t.user_attrs.get("interrupted")]
    assert len(interrupted) == 1
    check_schedule([t for t in trials if t not in interrupted], n=4, screen=3, finalists=2)


def test_raising_trials_extends_every_rung(write_config, tmp_path) -> None:
    config = write_config({**MULTI, "search": {**MULTI["search"], "trials": 3}})
    run_dir = tmp_path / "runs" / "digits-test"
    assert main(["search", str(config)]) == 0
    assert len(rung(trials_of(run_dir), "zero-cost")) == 9
    assert main(["search", str(config), "--trials", "5"]) == 0
    trials = trials_of(run_dir)
    # the finalists include the best two of all five trials (some were finalists already)
    check_schedule(trials, n=5, screen=3, finalists=2, one_promotion=False)
    assert len(rung(trials, "long")) <= 4


def test_short_fidelity_fine_tunes_every_trial(write_config, tmp_path, capsys) -> None:
    config = write_config({**MULTI, "search": {**MULTI["search"], "fidelity": "short"}})
    assert main(["search", str(config)]) == 0
    trials = trials_of(tmp_path / "runs" / "digits-test")
    assert len(trials) == 4 and {t.user_attrs["fidelity"] for t in trials} == {"short"}


def test_rl_runs_every_trial_fine_tuned_and_says_why(write_config, tmp_path, capsys) -> None:
    search = {**MULTI["search"], "sampler": "rl", "rl_warmup": 2, "trials": 3}
    config = write_config({**MULTI, "search": search})
    assert main(["search", str(config)]) == 0
    assert "search.fidelity=multi: the RL agent learns from fine-tuned rewards" in (
        capsys.readouterr().out
    )
    trials = trials_of(tmp_path / "runs" / "digits-test")
    assert len(trials) == 3 and {t.user_attrs["fidelity"] for t in trials} == {"short"}


@pytest.mark.parametrize(
    "key, value",
    [("screen", 0), ("finalists", -1), ("finalist_length", 0.5), ("finalist_length", "exports")],
)
def test_schedule_settings_are_checked(write_config, key, value, capsys) -> None:
    config = write_config({**MULTI, "search": {**MULTI["search"], key: value}})
    assert main(["search", str(config)]) != 0
    err = capsys.readouterr().err
    assert f"search.{key}" in err
    if key == "finalist_length":
        assert "or export" in err


def test_finalists_fine_tuned_as_long_as_the_export_with_every_kind_of_baseline(
    write_config, tmp_path, capsys
) -> None:
    """finalist_length: export ranks the finalists after the fine-tune the export gives them;
    in a space of two methods the uniform policy of each method alone is a baseline too, and
    every kind of baseline reaches the finals."""
    search = {**MULTI["search"], "finalist_length": "export", "trials": 5, "finalists": 1}
    space = {"rules": [{"prune": [0.0, 0.8]}, {"rank": [0.2, 1.0]}]}
    finetune = {**MULTI["finetune"], "export_epochs": 2}  # about 38 steps of 64 digits
    config = write_config({**MULTI, "space": space, "search": search, "finetune": finetune})
    run_dir = tmp_path / "runs" / "digits-test"
    assert main(["search", str(config)]) == 0
    out = capsys.readouterr().out
    assert "and the baselines fine-tuned as long as the export (2 epochs)" in out
    trials = trials_of(run_dir)
    kinds = {t.user_attrs["baseline_kind"] for t in trials if "baseline" in t.user_attrs}
    assert kinds == {"uniform", "uniform prune", "uniform rank"}
    final = rung(trials, "long")  # promoted baselines keep their kind
    assert {t.user_attrs["baseline_kind"] for t in final if "baseline" in t.user_attrs} == kinds
    tuned = {t.number: t for t in rung(trials, "short")}
    assert len(tuned) == 5  # the three baselines count among the trials
    export_steps = {t.user_attrs["history"][-1][0] for t in final}
    trial_steps = {
        t.user_attrs["history"][-1][0] for t in tuned.values() if t.user_attrs.get("history")
    }
    assert trial_steps == {12}
    assert len(export_steps) == 1 and export_steps.pop() > 12
    # the summary says how the finalists were fine-tuned
    assert "finalists · fine-tuned as long as the export (2 epochs)" in out


def test_the_baseline_promoted_is_the_least_compressing_of_its_kind_not_the_best_screened(
    write_config,
) -> None:
    """Each kind of baseline reaches the trials and the finals through its policy at the
    budget (queued first), even where the zero-cost score puts a more compressed position of
    the same kind ahead of it (it does so by noise under heavy compression)."""
    search = {**MULTI["search"], "trials": 3, "screen": 2, "finalists": 1, "objectives": []}
    cfg = load_config(write_config({**MULTI, "search": search}))
    study = optuna.create_study(direction="maximize")
    prune = {"prune": optuna.distributions.FloatDistribution(0.0, 0.8)}

    def screened(score: float, ratio: float, **label: str) -> None:
        attrs = {"fidelity": "zero-cost", "feasible": True, "val_accuracy": score, **label}
        study.add_trial(
            optuna.trial.create_trial(
                params={"prune": ratio}, distributions=prune, value=score, user_attrs=attrs
            )
        )

    # as the search queues them: the uniform policy at the budget, then a more compressed one
    screened(0.40, 0.50, baseline="uniform 0.625", baseline_kind="uniform")
    screened(0.75, 0.60, baseline="uniform 0.750", baseline_kind="uniform")
    for number, score in enumerate([0.70, 0.60, 0.50, 0.45], start=2):
        screened(score, 0.30 + number / 100)
    assert next_step(study, cfg) == QUEUED
    # the at-budget baseline (0) promoted whatever its rank, then the best screened (1, 2)
    tuned_from = {}
    for _ in range(3):
        trial = study.ask(prune)  # the queued params, as the objective suggests them
        origin = trial.user_attrs["promoted_from"]
        tuned_from[origin] = trial.number
        score = {0: 0.80, 1: 0.84, 2: 0.85}[origin]
        trial.set_user_attr("feasible", True)
        trial.set_user_attr("val_accuracy", score)
        study.tell(trial, score)
    assert sorted(tuned_from) == [0, 1, 2]
    # finals: the best fine-tuned trial (from 2) and, of the two uniform ones fine-tuned,
    # the one at the budget (from 0) though the other (from 1) scored higher
    assert next_step(study, cfg) == QUEUED
    final = [t for t in study.get_trials() if t.state == TrialState.WAITING]
    assert sorted(t.user_attrs["finalist_of"] for t in final) == sorted(
        [tuned_from[2], tuned_from[0]]
    )
    assert {t.user_attrs.get("baseline") for t in final} == {None, "uniform 0.625"}


def test_a_baseline_kind_is_stored_or_read_from_a_label_of_an_older_study() -> None:
    assert baseline_kind({"baseline": "uniform 0.5", "baseline_kind": "uniform"}) == "uniform"
    assert baseline_kind({"baseline": "uniform prune 0.521"}) == "uniform prune"
    assert baseline_kind({"baseline": "sensitivity (equal loss)"}) == "sensitivity (equal loss)"
    assert baseline_kind({"fidelity": "short"}) is None


def test_the_selection_split_is_carved_from_the_held_out_images() -> None:
    split = load_data(DataConfig(name="digits", val_size=300, selection=0.4), seed=0)
    whole = load_data(DataConfig(name="digits", val_size=300, selection=0.0), seed=0)
    assert split.x_select is not None and len(split.x_select) == 120 and len(split.x_val) == 180
    assert torch.equal(split.x_train, whole.x_train)  # the base trains on the same images
    held_out = {tuple(r.flatten().tolist()) for r in whole.x_val}
    val = {tuple(r.flatten().tolist()) for r in split.x_val}
    select = {tuple(r.flatten().tolist()) for r in split.x_select}
    assert val | select <= held_out and not val & select


def test_api_search_is_multi_fidelity_with_training_batches(tmp_path) -> None:
    from autocompress.data import digits

    x_train, y_train, x_test, y_test = digits.load("")
    mean, std = x_train.mean(), x_train.std()
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    batches = [(x_train[i : i + 64], y_train[i : i + 64]) for i in range(0, 1200, 64)]
    val = [(x_train[1200:1500], y_train[1200:1500])]
    select = [(x_test, y_test)]
    torch.manual_seed(0)
    net = tiny_resnet()
    found = autocompress.search(
        net,
        torch.zeros(1, 1, 8, 8),
        budget={"macs": "60%"},
        train_data=batches,
        val_data=val,
        select_data=select,
        trials=3,
        steps=10,
        runs_root=tmp_path,
        settings={"search": {"screen": 2, "finalists": 1, "uniform": 1}},
    )
    fidelities = [t.fidelity for t in found.trials()]
    assert fidelities.count("zero-cost") == 6 and fidelities.count("short") == 3
    # the best trial, and the uniform baseline if it is not that one
    assert 1 <= fidelities.count("long") <= 2
    assert any(t.fidelity == "long" and t.baseline for t in found.trials())
    best = found.best()
    assert best.fidelity == "long" and best.selection_accuracy is not None
    # without training batches there is nothing to re-estimate statistics on: all fine-tuned
    again = autocompress.search(
        net,
        torch.zeros(1, 1, 8, 8),
        budget={"macs": "60%"},
        val_data=val,
        trials=2,
        runs_root=tmp_path,
        name="no-train-data",
        settings={"search": {"uniform": 1}},
    )
    assert {t.fidelity for t in again.trials()} == {"short"}
