"""Sensitivity analysis: each knob alone, zero-cost scores, an equal-loss allocation."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

import autocompress
from autocompress.cli import main
from autocompress.config import load_config
from autocompress.cost.metrics import compute_costs
from autocompress.policy import Policy
from autocompress.runs import prepare
from autocompress.sensitivity_analysis import Point, Sensitivity, read
from autocompress.spaces import build_space
from autocompress.spaces.budget import feasible, resolve_budget
from tests.tiny_models import tiny_resnet


def test_cli_writes_the_table_files_and_an_allocation_within_budget(write_config, capsys):
    config = write_config({"budget": {"macs": "50%"}})
    assert main(["sensitivity", str(config), "--points", "2", "--subset", "200"]) == 0
    out = capsys.readouterr().out
    assert "conv_a/prune" in out and "equal-loss allocation" in out
    cfg = load_config(config)
    found = read(cfg.run_dir / "sensitivity.json")
    assert found.val_subset == 200
    assert {p.knob for p in found.points} == {"conv_a/prune", "pw/prune"}
    assert len(found.points) == 4 and all(0 <= p.score <= 1 for p in found.points)
    assert (cfg.run_dir / "sensitivity.png").stat().st_size > 0
    policy = Policy.load(cfg.run_dir / "sensitivity-policy.yaml")
    run = prepare(cfg)
    base = compute_costs(run.profile, Policy(run.profile.model)).macs
    assert compute_costs(run.profile, policy).macs <= 0.5 * base

    assert main(["sensitivity", str(config), "--points", "2", "--subset", "200", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert (
        payload["allocation"]["layers"]
        == yaml.safe_load((cfg.run_dir / "sensitivity-policy.yaml").read_text())["layers"]
    )


def test_bad_points_are_refused_before_any_work(write_config, tmp_path, capsys) -> None:
    assert main(["sensitivity", str(write_config()), "--points", "0"]) == 2
    assert "--points" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_the_equal_loss_allocation_compresses_the_robust_knob_more(write_config) -> None:
    cfg = load_config(write_config({"budget": {"macs": "60%"}}))
    run = prepare(cfg)
    space = build_space(cfg.space, run.profile)
    budget = resolve_budget(cfg.budget, compute_costs(run.profile, Policy("m")).as_dict())
    # pw loses nothing until its far end, conv_a loses at once
    points = [
        Point("conv_a/prune", ("conv_a",), x, None, 0.9 - 0.4 * x, 0.0) for x in (0.5, 1.0)
    ] + [Point("pw/prune", ("pw",), x, None, 0.9 - (0.3 if x == 1 else 0), 0.0) for x in (0.5, 1.0)]
    found = Sensitivity("m", 0.9, 100, points)
    assert found.within("pw/prune", 0.0) == 0.5
    assert found.within("conv_a/prune", 0.1) == pytest.approx(0.25)
    params = found.allocation(space, budget)
    assert params is not None and feasible(space, budget, params)
    positions = space.positions(params)
    assert positions["pw/prune"] > positions["conv_a/prune"]


def test_the_api_returns_the_analysis_and_a_policy() -> None:
    torch.manual_seed(0)
    model = tiny_resnet().eval()
    x = torch.randn(64, 1, 8, 8)
    data = [(x[i : i + 16], torch.randint(0, 10, (16,))) for i in range(0, 64, 16)]
    found, policy = autocompress.sensitivity(
        model, x[:1], train_data=data, val_data=data, budget={"macs": "60%"}, points=2
    )
    assert {p.knob for p in found.points} == {"conv_a/prune", "pw/prune"}
    assert policy is not None and policy.layers
    prof = autocompress.profile(model, x[:1])
    assert autocompress.price(prof, policy).macs <= 0.6 * autocompress.price(prof).macs


def test_a_search_enqueues_the_allocation_beside_the_uniform_baselines(write_config) -> None:
    from autocompress.search.loop import SENSITIVITY_BASELINE
    from autocompress.search.study import load_study, records

    config = write_config(
        {"budget": {"macs": "50%"}, "search": {"trials": 4, "uniform": 2, "sensitivity": True}}
    )
    assert main(["search", str(config), "--set", "finetune.steps=5"]) == 0
    cfg = load_config(config)
    recs = records(load_study(cfg))
    kinds = [r.baseline for r in recs[:3]]
    assert kinds[2] == SENSITIVITY_BASELINE and all(k.startswith("uniform") for k in kinds[:2])
    assert recs[2].feasible and recs[2].scored
    # the analysis that chose it lies beside the study, and gives the same policy again
    run = prepare(cfg)
    space = build_space(cfg.space, run.profile)
    budget = resolve_budget(cfg.budget, compute_costs(run.profile, Policy("m")).as_dict())
    params = read(cfg.run_dir / "sensitivity.json").allocation(space, budget)
    assert params is not None
    assert recs[2].policy["layers"] == space.policy(params).to_dict()["layers"]


def test_the_api_refuses_zero_points() -> None:
    model = tiny_resnet().eval()
    x = torch.randn(16, 1, 8, 8)
    with pytest.raises(autocompress.errors.AutocompressError, match="points"):
        autocompress.sensitivity(model, x[:1], val_data=[(x, torch.zeros(16).long())], points=0)
