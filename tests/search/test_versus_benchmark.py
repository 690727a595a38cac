"""`benchmarks/search_vs_uniform.py --part versus` on digits: the figures RESULTS.md cites."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.search.test_search_cli import SEARCH

ROOT = Path(__file__).resolve().parents[2]


def test_versus_exports_both_sides_and_reports_every_candidate(
    write_config, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from search_vs_uniform import versus

    config = write_config({**SEARCH, "search": {"trials": 5, "uniform": 2}})
    out = versus(str(config), [], top=2, export_seeds=2)
    run_dir = tmp_path / "runs" / "digits-test"
    for label in ("searched", "uniform"):
        side = out[label]
        assert (side["baseline"] is None) == (label == "searched")
        assert len(side["candidates"]) == 2
        for c in side["candidates"]:  # every candidate's test accuracy, as its export wrote it
            written = run_dir / f"bench-{label}" / "candidates" / f"trial-{c['trial']}"
            assert (
                c["test_accuracy"] == json.loads((written / "report.json").read_text())["accuracy"]
            )
        # chosen on held-out data: the mean of validation and selection after the export
        chosen = max(side["candidates"], key=lambda c: c["val_accuracy"] + c["selection_accuracy"])
        assert side["trial"] == chosen["trial"] and side["test_accuracy"] == chosen["test_accuracy"]
        seeds = side["test_accuracy_seeds"]
        assert list(seeds) == [0, 1] and seeds[0] == side["test_accuracy"]
        assert (run_dir / f"bench-{label}" / "seeds" / "seed-1" / "model.pt").is_file()
    assert out["gain_points"] == pytest.approx(
        100 * (out["searched"]["test_accuracy"] - out["uniform"]["test_accuracy"])
    )
    printed = capsys.readouterr().out
    assert "gain over the seeds:" in printed
    assert "candidates (val after export / test)" in printed
