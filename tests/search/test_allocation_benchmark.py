"""`benchmarks/allocation.py` on digits: the five policies RESULTS.md compares, and resuming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autocompress.config import load_config
from autocompress.cost.metrics import compute_costs
from autocompress.policy import Policy
from autocompress.runs import untrained_profile
from tests.search.test_search_cli import SEARCH

ROOT = Path(__file__).resolve().parents[2]


def test_allocation_compares_five_policies_within_budget_and_resumes(
    write_config, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import allocation

    config = str(
        write_config({**SEARCH, "search": {"trials": 3, "uniform": 1, "fidelity": "multi"}})
    )
    # the peer's policy: any policy file within the budget stands in for FastNAS's here
    peer = tmp_path / "peer.yaml"
    allocation.uniform_prune(config, ["budget.macs=60%"], 0.5).save(peer)
    out = tmp_path / "allocation.json"
    state = allocation.compare(
        config, 0.6, out, trials=3, fastnas=peer, seeds=(0, 1), bases=[(None, 0)]
    )

    assert set(state["policies"]) == {
        "searched",
        "uniform (space)",
        "uniform (prune)",
        "sensitivity",
        "fastnas",
    }
    profile = untrained_profile(load_config(config))
    full = compute_costs(profile, Policy(profile.model)).macs
    for label, raw in state["policies"].items():
        assert compute_costs(profile, Policy.from_dict(raw)).macs <= 0.6 * full + 1e-6, label
    # the uniform side was chosen on held-out data (the mean of validation and selection, the
    # search's default rule), never on test; both uniform policies ran everywhere
    uniform = ("uniform (space)", "uniform (prune)")
    first = {u: state["results"][f"{u} | None | seed 0"] for u in uniform}
    assert state["uniform"] == max(
        first, key=lambda u: first[u]["val_accuracy"] + first[u]["selection_accuracy"]
    )
    assert state["uniform_chosen_by"] == "mean"
    compared = ["searched", *uniform, "sensitivity", "fastnas"]
    for label in compared:
        for seed in (0, 1):
            result = state["results"][f"{label} | None | seed {seed}"]
            assert result["seed"] == seed and result["macs_ratio"] <= 0.6 + 1e-6
            folder = tmp_path / "runs" / "digits-test" / "allocation" / "exports"  # the JSON stem
            # a policy held under two labels (the search may hand back a uniform baseline) is
            # exported once, under the first label, and its result reused for the other
            source = result.get("same_policy_as", label)
            if source != label:
                assert result == {
                    **state["results"][f"{source} | None | seed {seed}"],
                    "policy": label,
                    "same_policy_as": source,
                }
                assert allocation.same_model(
                    profile,
                    Policy.from_dict(state["policies"][label]),
                    Policy.from_dict(state["policies"][source]),
                )
            stem = allocation.label_file(folder, source).stem
            report = json.loads((folder / f"{stem}-b0-s{seed}" / "report.json").read_text())
            assert report["accuracy"] == result["test_accuracy"]
            assert report["finetune"]["length"] == result["finetune"] == "0.5 epochs"  # export's
    assert len(state["results"]) == 2 * 5
    assert json.loads(out.read_text()) == state
    assert set(state["gains"]) == set(compared[1:])
    printed = capsys.readouterr().out
    assert "searched − sensitivity:" in printed and "MACs budget 60%" in printed

    # a rerun redoes nothing: every result is read back from the JSON
    real_export = allocation.export

    def refuse(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(allocation, "export", refuse)
    monkeypatch.setattr(allocation, "search", refuse)
    again = allocation.compare(
        config, 0.6, out, trials=3, fastnas=peer, seeds=(0, 1), bases=[(None, 0)]
    )
    assert again["results"] == state["results"]
    with pytest.raises(AssertionError, match="exported again"):  # a new seed is new work
        allocation.compare(config, 0.6, out, trials=3, seeds=(0, 1, 2), bases=[(None, 0)])

    # the peer added to a comparison that ran without it: exported on the same runs, nothing
    # else redone
    out.write_text(
        json.dumps(
            {
                **state,
                "policies": {k: v for k, v in state["policies"].items() if k != "fastnas"},
                "results": {
                    k: v for k, v in state["results"].items() if not k.startswith("fastnas |")
                },
            }
        )
    )
    exported = []

    def record(cfg_path, overrides, policy_file, out, base, train_seed, seed):
        exported.append((policy_file.stem, seed))
        return real_export(cfg_path, overrides, policy_file, out, base, train_seed, seed)

    monkeypatch.setattr(allocation, "export", record)
    added = allocation.compare(
        config, 0.6, out, trials=3, fastnas=peer, seeds=(0, 1), bases=[(None, 0)]
    )
    assert exported == [("fastnas", 0), ("fastnas", 1)]
    assert added["policies"] == state["policies"]
    assert {k: v for k, v in added["results"].items() if not k.startswith("fastnas |")} == {
        k: v for k, v in state["results"].items() if not k.startswith("fastnas |")
    }
    for seed in (0, 1):
        result = added["results"][f"fastnas | None | seed {seed}"]
        assert result["policy"] == "fastnas" and result["macs_ratio"] <= 0.6 + 1e-6
