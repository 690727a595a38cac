"""The latency table: one-layer models in both deployed forms, the grid and its interpolation,
the cache reused across builds, calibrated predictions on a small residual model."""

from __future__ import annotations

import json

import onnx
import onnxruntime as ort
import pytest

import autocompress as ac
from autocompress.cost.metrics import compute_costs
from autocompress.cost.runtime_table import (
    LatencyTable,
    Shape,
    _grid,
    _interp2,
    layer_model,
    layer_shapes,
)
from autocompress.export import calibration_policies, latency_table
from tests.tiny_models import tiny_resnet

HALVES = (0.5, 1.0)  # a coarse grid: the test is about the mechanics, not the figures


@pytest.mark.parametrize(
    ("shape", "fused"),
    [
        (Shape("conv", (3, 3), (1, 1), (1, 1), size=(8, 8)), "QLinearConv"),
        (Shape("linear", size=(1,)), "QGemm"),
    ],
)
def test_a_layer_is_timed_in_the_form_it_deploys(tmp_path, shape, fused) -> None:
    model, feeds = layer_model(shape, "int8", 8, 16, batch=4)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    session = ort.InferenceSession(model.SerializeToString(), options)
    (out,) = session.run(None, feeds)
    assert out.dtype.name == "uint8" and out.shape[:2] == (4, 16)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node}
    assert fused in ops and "Conv" not in ops and "Gemm" not in ops


def test_the_grid_interpolates_between_measured_points() -> None:
    assert _grid(64, 1) == [8, 16, 24, 32, 40, 48, 56, 64]
    assert _grid(20, 4) == [4, 8, 12, 16, 20]  # grouped: multiples of the groups
    f = lambda i, o: float(i * 100 + o)  # noqa: E731 - bilinear in both: exact between points
    assert _interp2([8, 16], [8, 16], 12, 10, f) == pytest.approx(12 * 100 + 10)
    assert _interp2([8, 16], [8, 16], 4, 16, f) == f(8, 16)  # below the grid: its first point


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    model = tiny_resnet().eval()
    profile = ac.profile(model, (1, 8, 8), name="tiny_resnet")
    cache = tmp_path_factory.mktemp("table") / "table.json"
    policies = calibration_policies(profile)[:6]
    table = latency_table(model, profile, batch=8, cache=cache, grid=HALVES, policies=policies)
    return model, profile, cache, table


def test_the_table_is_cached_and_reused(built) -> None:
    model, profile, cache, table = built
    assert table.measured > 0 and len(table.coef) == 5
    stored = json.loads(cache.read_text())
    assert stored["key"] == table.key and len(stored["entries"]) == table.measured
    again = LatencyTable(table.key, 1, 8, layer_shapes(model, profile), grid=HALVES)
    assert again.load_entries(cache) == table.measured
    again.fill("float")
    again.fill("int8")
    assert again.measured == 0  # every layer measurement came from the cache
    assert again.entries == table.entries
    other = LatencyTable("another machine", 1, 8, again.layers, grid=HALVES)
    assert other.load_entries(cache) == 0  # measured elsewhere: not reused


def test_predictions_come_from_the_policy_alone(built) -> None:
    _, profile, _, table = built
    policies = calibration_policies(profile)
    assert len(policies) == 14
    predicted = [table.predict(profile, p, compute_costs(profile, p)) for p in policies]
    assert all(ms > 0 for ms in predicted)
    # the features it weighs: float and integer layer sums move with the policy's forms
    float_only, integer_only = policies[0], policies[1]
    f = table.features(profile, float_only, compute_costs(profile, float_only))
    i = table.features(profile, integer_only, compute_costs(profile, integer_only))
    assert f[1] == 0 and f[0] > 0 and i[0] == 0 and i[1] > 0


def test_an_uncalibrated_table_says_so(built) -> None:
    _, profile, _, table = built
    from dataclasses import replace

    policy = calibration_policies(profile)[0]
    with pytest.raises(ValueError, match="not calibrated"):
        replace(table, coef=[]).predict(profile, policy, compute_costs(profile, policy))
