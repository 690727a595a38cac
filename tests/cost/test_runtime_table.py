"""The latency table: one-layer models in both deployed forms, the grid and its interpolation,
the cache reused across builds, calibrated predictions on a small residual model."""

from __future__ import annotations

import dataclasses
import json
import random

import onnx
import onnxruntime as ort
import pytest
import torch

import autocompress as ac
from autocompress.cost.latency import onnx_session_options
from autocompress.cost.metrics import compute_costs
from autocompress.cost.runtime_table import (
    FEATURES,
    FORMS,
    LatencyTable,
    Shape,
    _grid,
    _interp2,
    cpu_model,
    layer_graph,
    layer_model,
    layer_shapes,
)
from autocompress.export import calibration_policies, latency_table, random_policies
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
    options = onnx_session_options()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    session = ort.InferenceSession(model.SerializeToString(), options)
    (out,) = session.run(None, feeds)
    assert out.dtype.name == "uint8" and out.shape[:2] == (4, 16)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node}
    assert fused in ops and "Conv" not in ops and "Gemm" not in ops


def test_a_packed_low_bit_linear_layer_is_timed_in_its_runtime_op() -> None:
    model, feeds = layer_model(Shape("linear", size=(1,)), "nbits", 40, 16, batch=4)
    assert [n.op_type for n in model.graph.node] == ["MatMulNBits"]
    (out,) = ort.InferenceSession(model.SerializeToString(), onnx_session_options()).run(
        None, feeds
    )
    assert out.dtype.name == "float32" and out.shape == (4, 16)


def test_the_grid_interpolates_between_measured_points() -> None:
    assert _grid(64, 1) == [8, 16, 24, 32, 40, 48, 56, 64]
    assert _grid(20, 4) == [4, 8, 12, 16, 20]  # grouped: multiples of the groups
    f = lambda i, o: float(i * 100 + o)  # noqa: E731 - bilinear in both: exact between points
    assert _interp2([8, 16], [8, 16], 12, 10, f) == pytest.approx(12 * 100 + 10)
    assert _interp2([8, 16], [8, 16], 4, 16, f) == f(8, 16)  # below the grid: its first point


def test_with_channels_rounded_the_grid_is_the_counts_a_search_can_give(tmp_path) -> None:
    """compress.round_to 8: every grid point a multiple of 8 or the full count (never above
    it), and the calibration kept apart from an unrounded table's."""
    assert _grid(50, 8) == [8, 16, 24, 32, 40, 48, 50]
    assert _grid(20, 8) == [8, 16, 20] and _grid(1, 8) == [1] and _grid(3, 16) == [3]
    model = tiny_resnet(width=12).eval()
    profile = ac.profile(model, (1, 8, 8), name="tiny_resnet")
    shapes = layer_shapes(model, profile)
    rounded = LatencyTable("k", 1, 4, shapes, grid=HALVES, round_to=8)
    rounded.fill("float")
    counts = {(int(k.split("|")[-2]), int(k.split("|")[-1])) for k in rounded.entries}
    fulls = {s.full_in for s in shapes.values()} | {s.full_out for s in shapes.values()}
    assert counts and all(c % 8 == 0 or c in fulls for pair in counts for c in pair)
    assert {8, 12} <= {c for pair in counts for c in pair}  # 12 channels: 8, and all of them
    plain = LatencyTable("k", 1, 4, shapes, grid=HALVES)
    assert rounded.model_key() != plain.model_key()


def test_one_model_name_with_and_without_avx512_keys_two_tables(tmp_path) -> None:
    # 2026-12-02 and 03: two hosts both named "AMD EPYC", one AVX2 only, one with AVX-512
    # VNNI; their integer kernels differ, so their timings must not share a table
    def cpuinfo(flags: str):
        path = tmp_path / f"cpuinfo-{len(flags)}"
        path.write_text(f"processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu {flags}\n")
        return path

    avx2 = cpu_model(cpuinfo("sse2 avx2 fma"))
    avx512 = cpu_model(cpuinfo("sse2 avx2 avx512f avx512_vnni fma"))
    assert avx2 == "AMD EPYC [avx2]" and avx512 == "AMD EPYC [avx2 avx512f avx512_vnni]"
    assert cpu_model(tmp_path / "missing")  # no /proc/cpuinfo: what platform knows


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    model = tiny_resnet().eval()
    profile = ac.profile(model, (1, 8, 8), name="tiny_resnet")
    cache = tmp_path_factory.mktemp("table") / "table.json"
    policies = calibration_policies(profile)[: len(FEATURES) + 1]
    table = latency_table(model, profile, batch=8, cache=cache, grid=HALVES, policies=policies)
    return model, profile, cache, table


def test_the_table_is_cached_and_reused(built) -> None:
    model, profile, cache, table = built
    assert table.measured > 0 and len(table.coef) == len(FEATURES)
    stored = json.loads(cache.read_text())
    assert stored["key"] == table.key and len(stored["entries"]) == table.measured
    again = LatencyTable(table.key, 1, 8, layer_shapes(model, profile), grid=HALVES)
    assert again.load_entries(cache) == table.measured
    for form in FORMS:
        again.fill(form)
    assert again.measured == 0  # every layer measurement came from the cache
    assert again.entries == table.entries
    other = LatencyTable("another machine", 1, 8, again.layers, grid=HALVES)
    assert other.load_entries(cache) == 0  # measured elsewhere: not reused


def test_predictions_come_from_the_policy_alone(built) -> None:
    _, profile, _, table = built
    policies = calibration_policies(profile)
    assert len(policies) == 14 + 40
    predicted = [table.predict(profile, p, compute_costs(profile, p)) for p in policies]
    assert all(ms > 0 for ms in predicted)
    # the features it weighs: float and integer layer sums move with the policy's forms
    float_only, integer_only = policies[0], policies[1]

    def named(policy: ac.Policy) -> dict[str, float]:
        values = table.features(profile, policy, compute_costs(profile, policy))
        return dict(zip(FEATURES, values, strict=True))

    f, i = named(float_only), named(integer_only)
    assert f["int_ms"] == 0 and f["float_ms"] > 0 and f["into_int"] == 0
    assert i["int_ms"] > 0 and i["float_ms"] == 0
    assert i["into_int"] > 0 and i["unfused_ms"] > 0


def test_an_uncalibrated_table_says_so(built) -> None:
    _, profile, _, table = built
    from dataclasses import replace

    policy = calibration_policies(profile)[0]
    with pytest.raises(ValueError, match="not calibrated"):
        replace(table, coef=[]).predict(profile, policy, compute_costs(profile, policy))


def test_the_forms_a_policy_runs_in_are_the_runtimes(tmp_path) -> None:
    """The table's reading of the graph agrees with ONNX Runtime's fused kernels: an 8-bit
    layer runs as QLinearConv only where its output is quantized too (its readers quantize
    their inputs, or the residual add it feeds is integer), a 4-bit classifier as MatMulNBits,
    on random mixed policies of a ResNet-8 (weights and inputs quantized together, then
    apart)."""
    from autocompress.compress.layers import folded
    from autocompress.export import write_deployed_onnx, write_onnx
    from autocompress.models.resnet_cifar import ResNetCifar

    torch.manual_seed(0)
    model = ResNetCifar(depth=8, width=0.5, input_size=16).eval()
    example = torch.zeros(1, 3, 16, 16)
    profile = ac.profile(model, example, name="resnet8")
    write_onnx(folded(model).eval(), tmp_path / "float.onnx", profile.inputs)
    graph = layer_graph(onnx.load(str(tmp_path / "float.onnx")), profile)
    assert graph.flows["layer1.0.conv2"].add is not None  # it feeds a residual add
    assert graph.flows["fc"].elsewhere  # the model's output
    table = LatencyTable("k", 1, 8, layer_shapes(model, profile), graph)
    fused_counts, packed_counts = [], []
    rng = random.Random(0)
    for i, policy in enumerate(random_policies(profile, 4, seed=3)):
        if i >= 2:  # weights and inputs quantized apart: 8-bit weights behind float inputs,
            # float weights behind 8-bit inputs (they still let the layer before them fuse)
            layers = {
                n: dataclasses.replace(c, w_bits=rng.choice([8, 32]), a_bits=rng.choice([8, 32]))
                for n, c in policy.layers.items()
            }
            policy = ac.Policy(policy.model, layers)
        if i % 2:  # a 4-bit classifier: packed in MatMulNBits, whatever its inputs
            fc = dataclasses.replace(policy.choice("fc"), w_bits=4)
            policy = ac.Policy(policy.model, {**policy.layers, "fc": fc})
        forms = table.forms(policy)
        predicted = sum(
            (f[0] == "int8") + (f[1] == "int8") if policy.choice(n).rank < 1 else f[1] == "int8"
            for n, f in forms.items()
        )
        small = ac.compress(model, policy, example, calibration=[torch.randn(8, 3, 16, 16)])
        write_deployed_onnx(small.eval(), policy, tmp_path / "model.onnx", ac.Inputs((example,)))
        options = onnx_session_options()
        options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
        ort.InferenceSession(str(tmp_path / "model.onnx"), options)
        ops = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
        fused_counts.append((predicted, ops.count("QLinearConv") + ops.count("QGemm")))
        packed = sum(
            len(f) if policy.choice(n).rank < 1 else 1 for n, f in forms.items() if f[1] == "nbits"
        )
        packed_counts.append((packed, ops.count("MatMulNBits")))
    assert all(p == a for p, a in fused_counts), fused_counts
    assert any(p > 0 for p, _ in fused_counts)
    assert all(p == a for p, a in packed_counts), packed_counts
    assert [p > 0 for p, _ in packed_counts] == [False, True] * 2


def test_entries_measured_while_predicting_are_kept_for_the_next_search(built, tmp_path) -> None:
    """Low-rank factors are timed when a policy first asks for them; the search's predictor
    writes them back, so the next table read from the cache prices every policy the same way
    without timing anything."""
    model, profile, cache, _ = built
    copy = tmp_path / "table.json"
    copy.write_text(cache.read_text())
    first = latency_table(model, profile, batch=8, cache=copy, grid=HALVES)
    assert first.coef and first.measured == 0  # calibrated before: read back
    policies = calibration_policies(profile)
    predict = first.predictor(profile, copy)
    priced = [predict(p, compute_costs(profile, p)) for p in policies]
    assert first.measured > 0  # factors the calibration policies never asked for
    stored = json.loads(copy.read_text())["entries"]
    assert len(stored) == len(first.entries)
    again = latency_table(model, profile, batch=8, cache=copy, grid=HALVES)
    repriced = [again.predictor(profile, copy)(p, compute_costs(profile, p)) for p in policies]
    assert again.measured == 0 and repriced == priced
