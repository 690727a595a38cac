"""`benchmarks/zero_cost_rank.py` on digits: candidates at the budget, ranked, and resumed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CONFIG = {
    "finetune": {"steps": 3, "lr": 0.01},
    "space": {"rules": [{"prune": [0.0, 0.8]}]},
    "budget": {"macs": "60%"},
}


def test_ranking_goes_on_from_the_candidates_an_interrupted_run_measured(
    write_config, tmp_path, monkeypatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import zero_cost_rank

    config = str(write_config(CONFIG))
    out = tmp_path / "rank.json"
    summary = zero_cost_rank.rank(config, [], candidates=4, subset=100, out=out)

    whole = json.loads(out.read_text())
    assert whole["complete"] and len(whole["candidates"]) == 4
    assert whole["summary"] == summary
    for key in ("macs_ratio", "as_compressed", "zero_cost"):
        assert summary[key]["spearman"] is None or -1 <= summary[key]["spearman"] <= 1, key
    assert "median_seconds" in summary["zero_cost"]
    for row in whole["candidates"]:
        assert row["macs_ratio"] <= 0.6 + 1e-6
        assert 0 <= row["zero_cost"] <= 1 and 0 <= row["fine_tuned"] <= 1

    # stopped after two candidates: the same command keeps those two and measures the same
    # next two an uninterrupted run measured
    kept = whole["candidates"][:2]
    out.write_text(json.dumps({**whole, "complete": False, "candidates": kept}))
    zero_cost_rank.rank(config, [], candidates=4, subset=100, out=out)
    resumed = json.loads(out.read_text())
    assert resumed["complete"] and resumed["candidates"][:2] == kept  # not measured again
    assert [r["policy"] for r in resumed["candidates"]] == [
        r["policy"] for r in whole["candidates"]
    ]

    # other draws would be mixed with these: refused, the file untouched
    before = out.read_text()
    with pytest.raises(SystemExit, match="move it away"):
        zero_cost_rank.rank(config, [], candidates=6, subset=100, seed=1, out=out)
    assert out.read_text() == before
