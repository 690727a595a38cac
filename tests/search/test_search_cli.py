"""`autocompress search`, `pareto` and `export` end to end, in-process, on digits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState

import autocompress
from autocompress.cli import main
from autocompress.data import digits
from autocompress.runs import load_run_config
from tests.tiny_models import tiny_resnet

SEARCH = {
    "finetune": {"steps": 12, "lr": 0.01, "export_epochs": 0.5},
    "space": {"rules": [{"prune": [0.0, 0.8]}, {"types": ["conv"], "w_bits": [4, 8, 32]}]},
    "budget": {"macs": "60%"},
    "search": {"trials": 7, "uniform": 2},
}


def study_of(run_dir: Path, name: str = "digits-test") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{run_dir / 'study.db'}")


def test_search_pareto_export_end_to_end(write_config, tmp_path, capsys) -> None:
    config = write_config(SEARCH)
    run_dir = tmp_path / "runs" / "digits-test"
    assert main(["search", str(config)]) == 0
    out = capsys.readouterr().out
    assert "7/7" in out and "best trials" in out

    study = study_of(run_dir)
    trials = study.get_trials()
    assert len(trials) == 7
    assert [t.user_attrs.get("baseline", "").split()[0] for t in trials[:2]] == ["uniform"] * 2
    base_macs = study.user_attrs["base_costs"]["macs"]
    for t in trials:
        assert t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        assert {"policy", "costs", "val_accuracy", "feasible", "timings"} <= set(t.user_attrs)
        # projection is on by default: every candidate is within budget, fine-tuned
        assert t.user_attrs["feasible"] and t.user_attrs["costs"]["macs"] <= 0.6 * base_macs
        assert t.user_attrs["timings"]["finetune"] > 0
        assert t.constraints["macs"] <= 0
    assert all(t.state == TrialState.COMPLETE for t in trials[:2])  # pruner needs 5 first

    assert main(["pareto", str(run_dir), "--json"]) == 0
    front = json.loads(capsys.readouterr().out)
    assert front["metrics"] == ["macs"] and front["trials"] == 7 and front["front"]
    points = [(r["val_accuracy"], r["ratios"]["macs"]) for r in front["front"]]
    for acc, macs in points:  # no point of the front beats another on both axes
        assert not any(a >= acc and m <= macs and (a, m) != (acc, macs) for a, m in points)
    assert (run_dir / "pareto.png").stat().st_size > 1000
    assert "plotly" in (run_dir / "pareto.html").read_text()[:200000].lower()

    out_dir = tmp_path / "export"
    assert main(["export", str(run_dir), "--best", "--out", str(out_dir)]) == 0
    for name in ("model.pt", "model.onnx", "weights.bin", "policy.yaml", "report.json"):
        assert (out_dir / name).is_file(), name
    report = json.loads((out_dir / "report.json").read_text())
    best = max(
        (t for t in trials if t.state == TrialState.COMPLETE),
        key=lambda t: (t.user_attrs["val_accuracy"], -t.user_attrs["costs"]["macs"], -t.number),
    )
    assert report["trial"] == best.number
    assert report["macs"] == best.user_attrs["costs"]["macs"]
    assert (out_dir / "weights.bin").stat().st_size == report["size_bytes"]
    # the deployed file tested in ONNX Runtime too: the same answers
    assert abs(report["onnx_accuracy"] - report["accuracy"]) <= 2 / 360 + 1e-9

    # --bits 8: the same trial deployed as integer kernels, every layer at 8 bits or fewer
    int8 = tmp_path / "int8"
    assert main(["export", str(run_dir), "--best", "--bits", "8", "--out", str(int8)]) == 0
    assert "model.onnx, ONNX Runtime" in capsys.readouterr().out
    quantized = json.loads((int8 / "report.json").read_text())
    assert quantized["bits"] == 8 and quantized["trial"] == best.number
    layers = quantized["policy"]["layers"]
    assert set(layers) == {"stem", "conv_a", "conv_b", "dw", "pw", "head"}
    assert all(c.get("w_bits", 32) <= 8 and c.get("a_bits", 32) <= 8 for c in layers.values())
    assert quantized["onnx_bytes"] < report["onnx_bytes"]
    assert abs(quantized["onnx_accuracy"] - quantized["accuracy"]) <= 2 / 360 + 1e-9
    assert (
        main(["export", str(run_dir), "--best", "--bits", "16", "--out", str(tmp_path / "y")]) == 2
    )
    assert "--bits" in capsys.readouterr().err and not (tmp_path / "y").exists()

    # the ONNX model and autocompress.load agree on raw [0, 1] images
    import onnxruntime

    _, _, x_test, _ = digits.load("")
    x = x_test[:16]
    model = autocompress.load(out_dir / "model.pt", model=tiny_resnet())
    with torch.no_grad():
        expected = model(x).numpy()
    session = onnxruntime.InferenceSession(str(out_dir / "model.onnx"))
    got = session.run(None, {"images": x.numpy()})[0]
    assert got.shape == (16, 10)
    np.testing.assert_allclose(got, expected, atol=1e-4)

    # --top 2: both best trials get the long fine-tune; the better one on held-out data (by
    # default the mean of validation and of the selection split, which the search never saw)
    # is kept
    top = tmp_path / "top"
    assert main(["export", str(run_dir), "--best", "--top", "2", "--out", str(top)]) == 0
    report = json.loads((top / "report.json").read_text())
    candidates = report["candidates"]
    assert len(candidates) == 2 and report["trial"] in {c["trial"] for c in candidates}
    assert report["chosen_by"] == (
        "the mean of validation and selection-split accuracy after the export fine-tune"
    )
    for c in candidates:
        assert c["score"] == pytest.approx((c["val_accuracy"] + c["selection_accuracy"]) / 2)
    assert report["trial"] == max(candidates, key=lambda c: c["score"])["trial"]
    chosen = top / "candidates" / f"trial-{report['trial']}"
    assert (top / "weights.bin").read_bytes() == (chosen / "weights.bin").read_bytes()


def test_rerun_resumes_up_to_the_requested_trials(write_config, tmp_path) -> None:
    config = write_config(SEARCH)
    run_dir = tmp_path / "runs" / "digits-test"
    assert main(["search", str(config), "--trials", "3"]) == 0
    first = [(t.number, t.params) for t in study_of(run_dir).get_trials()]
    assert main(["search", str(config), "--trials", "5"]) == 0
    trials = study_of(run_dir).get_trials()
    assert len(trials) == 5
    assert [(t.number, t.params) for t in trials[:3]] == first  # nothing redone, nothing lost
    assert main(["search", str(config), "--trials", "5"]) == 0  # already done: no new trial
    assert len(study_of(run_dir).get_trials()) == 5


def test_a_second_study_in_the_run_leaves_the_first_one_in_place(write_config, tmp_path, capsys):
    # one method: one baseline (two would leave the second queued in the one-trial study)
    prune = {"rules": [{"prune": [0.0, 0.8]}]}
    config = write_config({**SEARCH, "space": prune, "search": {"trials": 2, "uniform": 1}})
    run_dir = tmp_path / "runs" / "digits-test"
    assert main(["search", str(config)]) == 0
    assert main(["search", str(config), "--trials", "1", "--set", "search.study=other"]) == 0
    capsys.readouterr()
    assert main(["pareto", str(run_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["trials"] == 2
    assert main(["pareto", str(run_dir), "--study", "other", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["trials"] == 1
    assert (run_dir / "pareto-other.png").is_file() and (run_dir / "config-other.yaml").is_file()


def test_multi_objective_front_over_two_costs(write_config, tmp_path, capsys) -> None:
    config = write_config(
        {
            **SEARCH,
            "budget": {},
            "search": {"trials": 6, "sampler": "nsga2", "objectives": ["macs", "size_bytes"]},
        }
    )
    run_dir = tmp_path / "runs" / "digits-test"
    assert main(["search", str(config)]) == 0
    study = study_of(run_dir)
    assert len(study.directions) == 3
    completed = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert completed and all(len(t.values) == 3 for t in completed)
    capsys.readouterr()
    assert main(["pareto", str(run_dir), "--json"]) == 0
    front = json.loads(capsys.readouterr().out)
    assert front["metrics"] == ["macs", "size_bytes"] and front["front"]


def test_latency_budget_is_measured_per_trial(write_config, tmp_path) -> None:
    config = write_config(
        {**SEARCH, "budget": {"latency_ms": "100%"}, "search": {"trials": 3, "uniform": 1}}
    )
    run_dir = tmp_path / "runs" / "digits-test"
    assert main(["search", str(config)]) == 0
    study = study_of(run_dir)
    assert study.user_attrs["base_costs"]["latency_ms"] > 0
    assert study.user_attrs["latency"]["batch"] == 64  # how it was measured, stated
    assert study.user_attrs["latency"]["threads"] == 1
    for t in study.get_trials():
        assert t.user_attrs["costs"]["latency_ms"] > 0
        assert "latency" in t.user_attrs["timings"]


def test_latency_in_onnx_runtime_credits_bits(write_config, tmp_path) -> None:
    """With search.latency_runtime onnxruntime each candidate's deployed, integer ONNX is timed:
    a policy at 8 bits is measured as the integer file it exports to."""
    rule = {"prune": [0.0, 0.5], "w_bits": [8, 32], "a_bits": [8, 32]}
    space = {"skip_first": False, "rules": [rule]}
    search = {"trials": 3, "uniform": 1, "latency_runtime": "onnxruntime", "latency_batch": 16}
    config = write_config(
        {**SEARCH, "space": space, "search": search, "budget": {"latency_ms": "100%"}}
    )
    run_dir = tmp_path / "runs" / "digits-test"
    assert main(["search", str(config)]) == 0
    study = study_of(run_dir)
    assert study.user_attrs["latency"]["runtime"] == "onnxruntime"
    assert "ONNX Runtime" in study.user_attrs["latency"]["execution"]
    assert study.user_attrs["base_costs"]["latency_ms"] > 0
    for t in study.get_trials():
        assert t.user_attrs["costs"]["latency_ms"] > 0


def test_a_space_with_8_bits_gets_the_int8_hand_policies_as_baselines(
    write_config, tmp_path, capsys
) -> None:
    """Beside the uniform and one-method baselines, a space offering 8 bits queues int8
    everywhere and int8 with the first layer float, structure moved to the budget (accuracy
    alone: at the budget; see the next test for a search that keeps a front)."""
    rule = {"prune": [0.0, 0.8], "w_bits": [8, 32], "a_bits": [8, 32]}
    space = {"skip_first": False, "rules": [rule]}
    search = {"trials": 1, "objectives": []}
    config = write_config({**SEARCH, "space": space, "search": search, "budget": {"bitops": "10%"}})
    assert main(["search", str(config)]) == 0
    note = "search.trials=1 is not more than the 6 baselines queued first"
    assert note in capsys.readouterr().out  # 3 uniform, uniform prune and these two
    assert main(["search", str(config), "--trials", "6"]) == 0  # resumed: run them all
    trials = study_of(tmp_path / "runs" / "digits-test").get_trials()
    queued = {t.user_attrs["baseline_kind"]: t for t in trials if "baseline" in t.user_attrs}
    assert {"uniform int8", "uniform int8, first layer float"} <= set(queued)
    first = next(k.split("/")[0] for k in trials[0].params if k.endswith("/w_bits"))
    for kind in ("uniform int8", "uniform int8, first layer float"):
        t = queued[kind]
        bits = {k: v for k, v in t.params.items() if k.endswith("_bits")}
        floated = {k for k, v in bits.items() if v == 32}
        assert floated == (
            {f"{first}/w_bits", f"{first}/a_bits"} if kind.endswith("float") else set()
        )
        assert set(bits.values()) - {32} == {8}
        assert t.user_attrs["baseline"].startswith(f"{kind} ")  # and the structure's position


def test_a_search_that_keeps_a_front_gets_the_int8_policies_along_it(
    write_config, tmp_path, capsys
) -> None:
    """Multi-objective (the default: the budget's metric is minimised too), each int8 form is
    queued at the uniform baselines' count of positions, from the budget toward more
    compression, as the uniform policies are."""
    rule = {"prune": [0.0, 0.8], "w_bits": [8, 32], "a_bits": [8, 32]}
    space = {"skip_first": False, "rules": [rule]}
    search = {"trials": 1, "uniform": 3}
    config = write_config({**SEARCH, "space": space, "search": search, "budget": {"bitops": "10%"}})
    assert main(["search", str(config)]) == 0
    note = "search.trials=1 is not more than the 10 baselines queued first"
    assert note in capsys.readouterr().out  # 3 uniform, uniform prune, 3 of each int8 form
    trials = study_of(tmp_path / "runs" / "digits-test").get_trials()
    for kind in ("uniform int8", "uniform int8, first layer float"):
        queued = [t for t in trials if t.user_attrs.get("baseline_kind") == kind]
        # labelled with the structure's position: from the budget toward more compression
        moved = [float(t.user_attrs["baseline"].rsplit(" ", 1)[1]) for t in queued]
        assert len(moved) == 3 and moved == sorted(moved) and moved[0] < moved[-1]


@pytest.mark.slow  # 100 s idle: the table times every layer and 54 calibration policies
def test_a_predicted_latency_budget_is_priced_before_any_build(
    write_config, tmp_path, capsys
) -> None:
    """latency_ms_predicted is priced by the ONNX Runtime latency table without building the
    candidate: over-budget candidates are projected inside it like MACs, `cost --latency`
    prints it, and the table is built once and read back from the runs' root."""
    rule = {"prune": [0.0, 0.8], "w_bits": [8, 32], "a_bits": [8, 32]}
    space = {"skip_first": False, "rules": [rule]}
    search = {"trials": 4, "uniform": 1, "latency_batch": 256}  # kernels long enough to time
    config = write_config(
        {**SEARCH, "space": space, "search": search, "budget": {"latency_ms_predicted": "90%"}}
    )
    run_dir = tmp_path / "runs" / "digits-test"
    assert main(["search", str(config)]) == 0
    assert "latency table:" in capsys.readouterr().out  # the first build is announced
    table = json.loads((tmp_path / "runs" / "latency-table.json").read_text())
    assert table["entries"] and len(table["fits"]) == 1
    study = study_of(run_dir)
    base = study.user_attrs["base_costs"]["latency_ms_predicted"]
    assert base > 0
    done = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert done
    for t in done:  # every candidate is inside the budget, projected there if it was not
        assert t.user_attrs["feasible"] and t.user_attrs["timings"]["finetune"] > 0
        assert t.user_attrs["costs"]["latency_ms_predicted"] <= 0.9 * base * (1 + 1e-9)

    assert main(["cost", str(config), "--latency", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["base"]["latency_ms_predicted"] == pytest.approx(base)
    assert report["ratios"]["latency_ms_predicted"] == pytest.approx(1.0)
    assert not report["budget"]["latency_ms_predicted"]["ok"]  # the base model breaks it
    after = json.loads((tmp_path / "runs" / "latency-table.json").read_text())
    assert after == table  # read back, nothing measured again


@pytest.mark.parametrize(
    ("argv_tail", "changes", "message"),
    [
        (["--sampler", "anneal"], {}, "search.sampler"),
        (["--sampler", "cmaes"], {}, "CMA-ES searches continuous knobs only"),
        (
            [],
            {"space": {"rules": [{"layers": "nope*", "prune": [0, 0.5]}]}},
            "space.rules[0].layers",
        ),
        ([], {"space": {"rules": [{"layers": "head", "prune": [0, 0.5]}]}}, "skip_first/skip_last"),
        (["--workers", "2"], {}, "config key 'search.workers': got 2; 1 with search.backend local"),
        (["--backend", "ray", "--sampler", "rl"], {}, "one episode at a time"),
        (["--storage", "mysql-ish"], {}, "search.storage is 'journal', 'journal:PATH' or a"),
        (["--storage", "sqlite:////no/such/dir/study.db"], {}, "cannot open the study at"),
    ],
)
def test_bad_search_input_is_one_clear_line(
    write_config, capsys, argv_tail, changes, message
) -> None:
    config = write_config({**SEARCH, **changes})
    assert main(["search", str(config), *argv_tail]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_export_and_pareto_errors(write_config, tmp_path, capsys) -> None:
    run_dir = tmp_path / "runs" / "digits-test"
    assert main(["pareto", str(run_dir)]) == 2
    assert "config.yaml" in capsys.readouterr().err
    config = write_config({**SEARCH, "search": {"trials": 2, "uniform": 1}})
    assert main(["search", str(config)]) == 0
    capsys.readouterr()
    assert main(["export", str(run_dir), "--trial", "9", "--out", str(tmp_path / "x")]) == 2
    assert "no trial 9" in capsys.readouterr().err
    assert main(["export", str(run_dir), "--best", "--max-macs", "0.01", "--out", "x"]) == 2
    assert "macs ≤ 0.01× base" in capsys.readouterr().err
    assert main(["export", str(run_dir), "--trial", "0", "--max-macs", "0.5", "--out", "x"]) == 2
    assert "use them with --best" in capsys.readouterr().err
    assert main(["export", str(run_dir), "--trial", "0", "--top", "2", "--out", "x"]) == 2
    assert "use them with --best" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_changing_the_objectives_of_a_study_is_refused(write_config, capsys) -> None:
    config = write_config({**SEARCH, "search": {"trials": 1, "uniform": 1}})
    assert main(["search", str(config)]) == 0
    capsys.readouterr()
    assert main(["search", str(config), "--set", "search.objectives=[]"]) == 2
    assert "optimises ['accuracy', 'macs']" in capsys.readouterr().err


def test_the_default_search_keeps_a_front_below_the_budget(write_config, tmp_path, capsys):
    """By default the study minimises the budget's costs next to accuracy (multi-objective),
    records it, and says so; ``search.objectives: []`` is accuracy alone."""
    config = write_config({**SEARCH, "search": {"trials": 2, "uniform": 1, "screen": 2}})
    assert main(["search", str(config)]) == 0
    assert "objectives: validation accuracy ↑, macs ↓" in capsys.readouterr().out
    study = study_of(tmp_path / "runs" / "digits-test")
    assert len(study.directions) == 2 and study.user_attrs["objectives"] == ["accuracy", "macs"]
    told = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    base_macs = study.user_attrs["base_costs"]["macs"]
    for t in told:  # the second value is the trial's MACs as a fraction of the base model's
        assert t.values[1] == pytest.approx(t.user_attrs["costs"]["macs"] / base_macs)
    recorded = load_run_config(tmp_path / "runs" / "digits-test")
    assert recorded.search.objectives == ["macs"]

    single = write_config({**SEARCH, "name": "single", "search": {"objectives": []}}, "one.yaml")
    assert main(["search", str(single), "--set", "search.trials=1"]) == 0
    assert "objective: validation accuracy within the budget" in capsys.readouterr().out
    assert len(study_of(tmp_path / "runs" / "single", "single").directions) == 1


def test_a_study_made_for_accuracy_alone_resumes_as_made(write_config, tmp_path, capsys):
    """A study made when the default was accuracy alone is resumed under the new default
    without a refusal: left to its default, ``search.objectives`` takes the study's."""
    config = write_config({**SEARCH, "search": {"trials": 1, "uniform": 1}})
    assert main(["search", str(config), "--set", "search.objectives=[]"]) == 0
    capsys.readouterr()
    assert main(["search", str(config), "--set", "search.trials=2"]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "objective: validation accuracy within" in out
    run_dir = tmp_path / "runs" / "digits-test"
    assert len(study_of(run_dir).directions) == 1 and len(study_of(run_dir).trials) >= 2
    assert load_run_config(run_dir).search.objectives == []
