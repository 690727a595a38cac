"""A latency lookup table (HAQ, APQ): a policy's runtime latency predicted without building it.

Every compressible layer is timed once, alone, as the runtime will run it — a one-node ONNX model
in ONNX Runtime at the search's threads and batch — for the channel counts a policy can give it
(kept inputs and outputs; the two factors of a low-rank layer) and for its two deployed forms:
``float``, and ``int8`` (uint8 input → QLinearConv / QGemm → uint8 output, the integer export's
form where ``w_bits`` and ``a_bits`` are ≤ 8). Channel counts are measured on a grid of
:data:`GRID` fractions of the full width and interpolated (bilinearly) between, so a table costs
a few dozen measurements per layer shape, not one per policy.

A layer timed alone is not the layer in its graph (fused activations, layout conversions,
pooling, residual adds, quantize/dequantize between float and integer layers). So the prediction
is a small linear model over what the table gives — the sum over float layers, the sum over
integer layers, the activations each kind writes, a constant — whose weights are fitted once per
model to end-to-end measurements of a fixed set of calibration policies (uniform pruning in both
forms, alternating float and integer layers, low rank): :meth:`LatencyTable.calibrate`.

Entries are keyed by layer shape, form, runtime version, machine, threads and batch, and kept
in a JSON file (:meth:`LatencyTable.save`), so a table is reused across runs on one machine.

Status: a building block, not yet a budget metric of the search. Measured against the runtime
over 50 random mixed policies of LeNet-5 (``benchmarks/latency_table.py``, RESULTS.md) its
median error is 25%: far from the 10% a budget needs, so the search still measures latency.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from autocompress.cost.metrics import Costs, kept_rank
from autocompress.cost.profile import Profile
from autocompress.files import write_atomic
from autocompress.policy import Policy

GRID = (1 / 8, 2 / 8, 3 / 8, 4 / 8, 5 / 8, 6 / 8, 7 / 8, 1.0)
FORMS = ("float", "int8")
REPEATS, WARMUP = 10, 2


@dataclass(frozen=True)
class Shape:
    """What a layer's latency depends on besides its channel counts."""

    kind: str  # "conv" or "linear"
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1  # fixed groups (grouped convs); depthwise is groups == channels
    depthwise: bool = False
    size: tuple[int, ...] = ()  # input spatial size (H, W), or (rows,) per sample for a linear

    def key(self) -> str:
        return json.dumps(dataclasses.astuple(self))


def runtime_key(threads: int, batch: int) -> str:
    """Which measurements a table holds: machine, runtime version, threads and batch."""
    import onnxruntime

    machine = platform.processor() or platform.machine()
    return f"{platform.node()}|{machine}|onnxruntime {onnxruntime.__version__}|t{threads}|b{batch}"


@dataclass(frozen=True)
class LayerShapes:
    """A layer as the table times it: its shape, the shape of its second low-rank factor
    (a 1×1 convolution on its output, or the same linear), and its full channel counts."""

    main: Shape
    second: Shape
    full_in: int
    full_out: int


@dataclass
class LatencyTable:
    """Layer latencies (milliseconds) of one model on one runtime setting, calibrated."""

    key: str
    threads: int
    batch: int
    layers: dict[str, LayerShapes]
    entries: dict[str, float] = field(default_factory=dict)  # "<shape>|<form>|<cin>|<cout>"
    coef: list[float] = field(default_factory=list)  # weights of :meth:`features`
    grid: tuple[float, ...] = GRID  # fractions of the full channel counts measured
    measured: int = 0  # entries this process measured (the others came from the cache)

    def predict(self, profile: Profile, policy: Policy, costs: Costs) -> float:
        """Predicted milliseconds of ``policy``'s deployed model (``costs``: its priced costs)."""
        if not self.coef:
            raise ValueError("the table is not calibrated: build it with export.latency_table")
        values = self.features(profile, policy, costs)
        return max(sum(c * v for c, v in zip(self.coef, values, strict=True)), 1e-6)

    def features(self, profile: Profile, policy: Policy, costs: Costs) -> list[float]:
        """What the calibration weighs: the table's sum over float layers and over integer
        layers (ms), the activations those layers write (millions of values per batch: the
        elementwise ops, pooling, quantize/dequantize and layout conversions around them),
        and a constant."""
        sums = {"float": 0.0, "int8": 0.0}
        acts = {"float": 0.0, "int8": 0.0}
        for name, layer in profile.layers.items():
            form = "int8" if _integer(policy, name) else "float"
            sums[form] += self.layer_ms(name, layer, policy, costs, form)
            acts[form] += costs.layers[name].out_features * layer.positions * self.batch / 1e6
        return [sums["float"], sums["int8"], acts["float"], acts["int8"], 1.0]

    def layer_ms(self, name: str, layer: Any, policy: Policy, costs: Costs, form: str) -> float:
        """The table's milliseconds of one layer: itself, or its two low-rank factors."""
        cost, rank, shapes = costs.layers[name], policy.choice(name).rank, self.layers[name]
        cin, cout = cost.in_features, cost.out_features
        if rank >= 1.0:
            return self.lookup(shapes.main, shapes.full_in, shapes.full_out, form, cin, cout)
        groups = cout if layer.depthwise else layer.groups
        r = kept_rank(rank, cout, (cin // groups) * layer.kernel)
        return self.lookup(
            shapes.main, shapes.full_in, shapes.full_out, form, cin, r
        ) + self.lookup(shapes.second, shapes.full_out, shapes.full_out, form, r, cout)

    def calibrate(self, observed: list[tuple[list[float], float]]) -> None:
        """Fit the weights of :meth:`features` (non-negative least squares, relative errors)
        to end-to-end measurements: (features, measured ms) per calibration policy."""
        from scipy.optimize import nnls

        a = np.array([f for f, _ in observed]) / np.array([[m] for _, m in observed])
        coef, _ = nnls(a, np.ones(len(observed)))
        self.coef = [float(c) for c in coef]

    def lookup(
        self, shape: Shape, full_in: int, full_out: int, form: str, cin: int, cout: int
    ) -> float:
        """Latency of ``shape`` with ``cin`` inputs and ``cout`` outputs, interpolated on the
        grid of fractions of its full counts."""
        if shape.depthwise:
            return _interp1(
                _grid(max(full_out, cout), 1, self.grid),
                cout,
                lambda c: self.entry(shape, form, c, c),
            )
        ins = _grid(max(full_in, cin), shape.groups, self.grid)
        outs = _grid(max(full_out, cout), shape.groups, self.grid)
        return _interp2(ins, outs, cin, cout, lambda i, o: self.entry(shape, form, i, o))

    def fill(self, form: str) -> None:
        """Measure every grid point of every layer's own shape in ``form`` (low-rank factors'
        second shapes are measured when a policy first asks for them)."""
        for shapes in self.layers.values():
            shape = shapes.main
            outs = _grid(shapes.full_out, 1 if shape.depthwise else shape.groups, self.grid)
            if shape.depthwise:
                for c in outs:
                    self.entry(shape, form, c, c)
                continue
            for cin in _grid(shapes.full_in, shape.groups, self.grid):
                for cout in outs:
                    self.entry(shape, form, cin, cout)

    def entry(self, shape: Shape, form: str, cin: int, cout: int) -> float:
        key = f"{shape.key()}|{form}|{cin}|{cout}"
        if key not in self.entries:
            self.entries[key] = measure(shape, form, cin, cout, self.batch, self.threads)
            self.measured += 1
        return self.entries[key]

    def save(self, path: Path) -> None:
        """Write the entries to ``path``, merged with other models' entries already there."""
        stored = _read(path)
        if stored.get("key") != self.key:
            stored = {"key": self.key, "entries": {}}
        stored["entries"] = {**stored["entries"], **self.entries}
        write_atomic(path, json.dumps(stored, indent=0, sort_keys=True) + "\n")

    def load_entries(self, path: Path) -> int:
        """Take the entries measured earlier on this machine and setting; returns how many."""
        stored = _read(path)
        if stored.get("key") != self.key:
            return 0
        self.entries.update({k: float(v) for k, v in stored["entries"].items()})
        return len(stored["entries"])


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and isinstance(data.get("entries"), dict) else {}


@torch.no_grad()
def layer_shapes(model: nn.Module, profile: Profile) -> dict[str, LayerShapes]:
    """Each profiled layer's shapes, from one call of ``model`` on the profile's inputs."""
    sizes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    modules = dict(model.named_modules())

    def record(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> None:
            sizes[name] = (tuple(args[0].shape), tuple(output.shape))

        return hook

    handles = [modules[n].register_forward_hook(record(n)) for n in profile.layers]
    was_training = model.training
    try:
        profile.inputs(model.eval())
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    out: dict[str, LayerShapes] = {}
    for name, layer in profile.layers.items():
        module = modules[name]
        (x, y) = sizes[name]
        if isinstance(module, nn.Conv2d):
            main = Shape(
                "conv",
                _pair(module.kernel_size),
                _pair(module.stride),
                _pair(module.padding),
                _pair(module.dilation),
                1 if layer.depthwise else module.groups,
                layer.depthwise,
                tuple(x[2:]),
            )
            second = Shape("conv", size=tuple(y[2:]))
        else:
            rows = math.prod(x[1:-1]) if len(x) > 2 else 1
            main = second = Shape("linear", size=(rows,))
        out[name] = LayerShapes(main, second, layer.in_features, layer.out_features)
    return out


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _integer(policy: Policy, name: str) -> bool:
    """Whether a layer deploys as an integer kernel (the integer export's rule)."""
    c = policy.choice(name)
    return c.w_bits <= 8 and c.a_bits <= 8 and c.clusters is None


def _grid(full: int, multiple: int, fractions: tuple[float, ...] = GRID) -> list[int]:
    step = max(1, multiple)
    points = {max(step, round(full * f / step) * step) for f in fractions} | {full}
    return sorted(points)


def _interp1(xs: list[int], x: int, f: Callable[[int], float]) -> float:
    lo, hi, t = _bracket(xs, x)
    return (1 - t) * f(lo) + t * f(hi) if hi != lo else f(lo)


def _interp2(xs: list[int], ys: list[int], x: int, y: int, f: Callable[[int, int], float]) -> float:
    x0, x1, tx = _bracket(xs, x)
    y0, y1, ty = _bracket(ys, y)
    return (
        (1 - tx) * (1 - ty) * f(x0, y0)
        + tx * (1 - ty) * f(x1, y0)
        + (1 - tx) * ty * f(x0, y1)
        + tx * ty * f(x1, y1)
    )


def _bracket(xs: list[int], x: int) -> tuple[int, int, float]:
    """The grid points around ``x`` and its position between them (extrapolating below)."""
    if x <= xs[0]:
        return xs[0], xs[0], 0.0
    for lo, hi in itertools.pairwise(xs):
        if x <= hi:
            return lo, hi, (x - lo) / (hi - lo)
    return xs[-1], xs[-1], 0.0


# -- measuring one layer ------------------------------------------------------------------------
def measure(shape: Shape, form: str, cin: int, cout: int, batch: int, threads: int) -> float:
    """Median milliseconds of one layer, alone, in ONNX Runtime."""
    from autocompress.cost.latency import onnx_latency

    model, feeds = layer_model(shape, form, cin, cout, batch)
    return onnx_latency(model.SerializeToString(), feeds, threads, REPEATS, WARMUP)


def layer_model(
    shape: Shape, form: str, cin: int, cout: int, batch: int
) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A one-layer ONNX model of ``shape`` in ``form`` and inputs to run it on."""
    rng = np.random.default_rng(0)
    integer = form == "int8"
    if shape.kind == "conv":
        groups = cout if shape.depthwise else shape.groups
        x_shape = [batch, cin, *shape.size]
        w_shape = [cout, cin // groups, *shape.kernel]
        attrs: dict[str, Any] = {
            "kernel_shape": list(shape.kernel),
            "strides": list(shape.stride),
            "pads": [*shape.padding, *shape.padding],
            "dilations": list(shape.dilation),
            "group": groups,
        }
        op, axis = "Conv", 0
    else:
        rows = batch * (shape.size[0] if shape.size else 1)
        x_shape, w_shape = [rows, cin], [cout, cin]
        attrs, op, axis = {"transB": 1}, "Gemm", 0
    weight = rng.standard_normal(w_shape).astype(np.float32) * 0.1
    bias = numpy_helper.from_array(np.zeros(cout, np.float32), "b")
    nodes, inits = [], [bias]
    elem = TensorProto.UINT8 if integer else TensorProto.FLOAT
    if integer:
        scale = np.full(cout, 0.01, np.float32)
        inits += [
            numpy_helper.from_array(np.clip(weight * 100, -127, 127).astype(np.int8), "wq"),
            numpy_helper.from_array(scale, "ws"),
            numpy_helper.from_array(np.zeros(cout, np.int8), "wz"),
            numpy_helper.from_array(np.array(0.02, np.float32), "s"),
            numpy_helper.from_array(np.array(128, np.uint8), "z"),
        ]
        nodes += [
            helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=axis),
            helper.make_node("DequantizeLinear", ["x", "s", "z"], ["xf"]),
            helper.make_node(op, ["xf", "w", "b"], ["yf"], **attrs),
            helper.make_node("QuantizeLinear", ["yf", "s", "z"], ["y"]),
        ]
        feeds = {"x": rng.integers(0, 255, x_shape, dtype=np.uint8)}
    else:
        inits.append(numpy_helper.from_array(weight, "w"))
        nodes.append(helper.make_node(op, ["x", "w", "b"], ["y"], **attrs))
        feeds = {"x": rng.standard_normal(x_shape).astype(np.float32)}
    graph = helper.make_graph(
        nodes,
        "layer",
        [helper.make_tensor_value_info("x", elem, x_shape)],
        [helper.make_tensor_value_info("y", elem, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model, feeds
