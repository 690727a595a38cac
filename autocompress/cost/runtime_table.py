"""A latency lookup table (HAQ, APQ): a policy's runtime latency predicted without building it.

Every compressible layer is timed once, alone, as the runtime will run it — a one-node ONNX model
in ONNX Runtime at the search's threads and batch — for the channel counts a policy can give it
(kept inputs and outputs; the two factors of a low-rank layer) and for its two deployed forms:
``float``, and ``int8`` (uint8 input → QLinearConv / QGemm → uint8 output, the integer export's
form where ``w_bits`` and ``a_bits`` are ≤ 8). Channel counts are measured on a grid of
:data:`GRID` fractions of the full width and interpolated (bilinearly) between, so a table costs
a few dozen measurements per layer shape, not one per policy.

A layer timed alone is not the layer in its graph. Two things decide what it costs there:

- **Which form it really runs in.** ONNX Runtime fuses a layer into an integer kernel only when
  its input *and* its output are quantized: an 8-bit layer whose output goes to a float layer
  (or to a residual add that stays float, or to average pooling) runs as a float convolution
  with its weights dequantized on every call. The table reads the model's graph once
  (:func:`layer_graph`: which layers, residual adds and other ops each layer's output reaches)
  and applies the export's rules to each policy (:meth:`LatencyTable.forms`).
- **The boundaries between forms.** Every float → integer crossing quantizes the activation and
  converts its layout (NCHW to NHWC), every integer → float crossing converts it back.

So the prediction is a small linear model over what the table and the graph give — the table's
sum over the layers running in float and over those running as integer kernels, the
activations each kind writes, the activations crossing into and out of integer chains, the
inputs and weights of 8-bit layers left unfused, a constant — whose weights are fitted once per
model to end-to-end measurements of calibration policies (uniform pruning in both forms,
alternating forms, low rank, and random mixed policies): :meth:`LatencyTable.calibrate`.

Entries are keyed by layer shape, form, runtime version, machine, threads and batch, and kept
in a JSON file (:meth:`LatencyTable.save`), so a table is reused across runs on one machine.

How well it predicts: ``benchmarks/latency_table.py`` (50 random mixed policies per model,
built and timed end to end), figures in RESULTS.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
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

from autocompress.cost.latency import CPUINFO, cpu_flags, ort_session_config
from autocompress.cost.metrics import Costs, kept_rank
from autocompress.cost.profile import Profile
from autocompress.deploy import MS_DOMAIN, NBITS_MAX, PAD_CHANNELS, PAD_TO
from autocompress.files import write_atomic
from autocompress.policy import Policy

GRID = (1 / 8, 2 / 8, 3 / 8, 4 / 8, 5 / 8, 6 / 8, 7 / 8, 1.0)
# a packed low-bit linear layer (MatMulNBits) computes in float, between float activations
MS_FEATURE = {"float": "float_ms", "int8": "int_ms", "unfused": "unfused_ms", "nbits": "float_ms"}
FEATURES = (
    "float_ms",
    "int_ms",
    "unfused_ms",
    "float_values",
    "int_values",
    "into_int",
    "out_of_int",
    "unfused_in",
    "constant",
)
FORMS = ("float", "int8", "unfused")
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
    pool: tuple[int, ...] = ()  # a max pooling on its output: kernel (2), strides (2), pads (4)

    def key(self) -> str:
        return json.dumps(dataclasses.astuple(self))


# the instruction sets that choose ONNX Runtime's integer kernels (and PyTorch's float ones)
KERNEL_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's model name and the instruction sets that choose the kernels
    (``/proc/cpuinfo`` on Linux: two hosts of one name may hold different CPUs, and one
    model name may cover CPUs with and without AVX-512), else what :mod:`platform` knows.

    >>> cpu_model()  # doctest: +SKIP
    'AMD EPYC [avx2 avx512f avx512_vnni]'
    """
    flags = cpu_flags(cpuinfo)
    if flags is None:
        return platform.processor() or platform.machine()
    lines = cpuinfo.read_text().splitlines()
    name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    isa = " ".join(f for f in KERNEL_FLAGS if f in flags)
    return f"{name or platform.machine()} [{isa}]"


def runtime_key(threads: int, batch: int) -> str:
    """Which measurements a table holds: machine, runtime version and session settings (they
    choose the integer kernels), threads and batch."""
    import onnxruntime

    machine = cpu_model()
    config = ",".join(f"{k}={v}" for k, v in sorted(ort_session_config().items()))
    runtime = f"onnxruntime {onnxruntime.__version__} {config}"
    return f"{platform.node()}|{machine}|{runtime}|t{threads}|b{batch}"


@dataclass(frozen=True)
class LayerShapes:
    """A layer as the table times it: its shape, the shape of its second low-rank factor
    (a 1×1 convolution on its output, or the same linear), and its full channel counts."""

    main: Shape
    second: Shape  # with the pooling after the layer, if any
    full_in: int
    full_out: int

    @property
    def pooled(self) -> Shape:
        """The layer's own shape with the pooling after it (a layer without low rank)."""
        return dataclasses.replace(self.main, pool=self.second.pool)


@dataclass(frozen=True)
class Operand:
    """One operand of a residual add: a layer's output, or a tensor that layers also read
    (an identity shortcut: quantized only through an 8-bit integer layer reading it)."""

    layer: str | None
    readers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Add:
    """A residual add: its operands, and the layers reading its sum."""

    operands: tuple[Operand, ...]
    readers: tuple[str, ...]


@dataclass(frozen=True)
class Flow:
    """Where a layer's output goes (through ReLU and ops that only move values), and where its
    input comes from, in the model's graph."""

    readers: tuple[str, ...] = ()  # layers reading the output
    add: int | None = None  # or the residual add it is an operand of
    identity_of: tuple[int, ...] = ()  # residual adds reading it as their identity operand
    elsewhere: bool = False  # or anything else too (average pooling, the model's output)
    pool: tuple[int, ...] = ()  # a max pooling on the way: kernel (2), strides (2), pads (4)
    source: tuple[str, ...] = ()  # the layer whose output is its input
    source_add: int | None = None  # or the residual add whose sum is its input


@dataclass(frozen=True)
class LayerGraph:
    """The data flow between a model's compressible layers (:func:`layer_graph`)."""

    flows: dict[str, Flow]
    adds: tuple[Add, ...]


@dataclass
class LatencyTable:
    """Layer latencies (milliseconds) of one model on one runtime setting, calibrated."""

    key: str
    threads: int
    batch: int
    layers: dict[str, LayerShapes]
    graph: LayerGraph | None = None  # without it every 8-bit layer counts as fused
    entries: dict[str, float] = field(default_factory=dict)  # "<shape>|<form>|<cin>|<cout>"
    coef: list[float] = field(default_factory=list)  # weights of :meth:`features`
    grid: tuple[float, ...] = GRID  # fractions of the full channel counts measured
    # kept channels are multiples of it (compress.round_to): so are the grid's points
    round_to: int = 1
    measured: int = 0  # entries this process measured (the others came from the cache)
    fresh: dict[str, tuple[Shape, str, int, int]] = field(default_factory=dict, repr=False)

    def predict(self, profile: Profile, policy: Policy, costs: Costs) -> float:
        """Predicted milliseconds of ``policy``'s deployed model (``costs``: its priced costs)."""
        if not self.coef:
            raise ValueError("the table is not calibrated: build it with export.latency_table")
        values = self.features(profile, policy, costs)
        return max(sum(c * v for c, v in zip(self.coef, values, strict=True)), 1e-6)

    def predictor(
        self, profile: Profile, cache: Path | None = None
    ) -> Callable[[Policy, Costs], float]:
        """:meth:`predict` for ``profile``, writing the entries it measures on the way back to
        ``cache``. Low-rank factors are timed when a policy first asks for them (:meth:`fill`);
        kept, every later search on this machine prices a policy as this one did, where each
        would otherwise time them again and, on a shared machine, get another figure (the
        same budget then gave the same policy other predictions, and its baselines other
        positions, from one study to the next)."""

        def predict(policy: Policy, costs: Costs) -> float:
            before = self.measured
            ms = self.predict(profile, policy, costs)
            if cache is not None and self.measured > before:
                self.save(cache)
            return ms

        return predict

    def forms(self, policy: Policy) -> dict[str, tuple[str, str]]:
        """The form each layer runs in under ``policy``: (first factor, second factor) of a
        low-rank layer, (form, form) otherwise. ``int8`` is an integer kernel; ``float`` a layer
        the policy keeps float; ``unfused`` an 8-bit layer whose output is not quantized, which
        ONNX Runtime runs as a float kernel with its weights dequantized on every call (the
        first factor of a low-rank 8-bit layer is always fused: the second quantizes its
        output)."""
        return self._layout(policy)[0]

    def _layout(self, policy: Policy) -> tuple[dict[str, tuple[str, str]], list[bool]]:
        """:meth:`forms`, and whether each residual add of the graph has both operands
        quantized."""
        integer = {name: _integer(policy, name) for name in self.layers}
        packed = {n for n, shapes in self.layers.items() if _packed(policy, n, shapes)}
        if self.graph is None:
            forms = {n: ("int8", "int8") if i else ("float", "float") for n, i in integer.items()}
            return {**forms, **dict.fromkeys(packed, ("nbits", "nbits"))}, []
        adds = [_add_quantized(add, integer, policy) for add in self.graph.adds]
        out = {}
        for name, flow in self.graph.flows.items():
            if name in packed:
                out[name] = ("nbits", "nbits")
                continue
            if not integer[name]:  # 8-bit weights behind float inputs are dequantized per call
                out[name] = ("unfused", "unfused") if _int_weights(policy, name) else ("float",) * 2
                continue
            if flow.add is not None:
                quantized = adds[flow.add]
            else:  # a shortcut read raw by a float add keeps the layer's output float too
                quantized = (
                    bool(flow.readers)
                    and all(policy.choice(r).a_bits <= 8 for r in flow.readers)
                    and all(adds[k] for k in flow.identity_of)
                )
            out[name] = ("int8", "int8" if quantized and not flow.elsewhere else "unfused")
        return out, adds

    def features(self, profile: Profile, policy: Policy, costs: Costs) -> list[float]:
        """What the calibration weighs (:data:`FEATURES`): the table's sums over the layers
        running in float, as integer kernels and as unfused 8-bit layers (ms); the activations
        float and integer layers write, those crossing from float into an integer chain and
        back out, and the inputs unfused 8-bit layers quantize and dequantize in float
        (millions of values per batch); a constant."""
        forms, quantized = self._layout(policy)
        fused = {n: f[1] == "int8" for n, f in forms.items()}
        adds = [  # residual adds running as integer adds: operands and readers integer
            q and bool(a.readers) and all(fused[r] for r in a.readers)
            for q, a in zip(quantized, self.graph.adds if self.graph else (), strict=True)
        ]
        f = dict.fromkeys(FEATURES, 0.0)
        f["constant"] = 1.0
        for name, layer in profile.layers.items():
            first, second = forms[name]
            cost = costs.layers[name]
            out_values = cost.out_features * layer.positions * self.batch / 1e6
            in_values = cost.in_features * self._in_positions(name) * self.batch / 1e6
            parts = self.parts(name, layer, policy, costs, forms)
            for ms, form in zip(parts, (first, second)[-len(parts) :], strict=True):
                f[MS_FEATURE[form]] += ms
            f["int_values" if second == "int8" else "float_values"] += out_values
            if second != "int8" and policy.choice(name).a_bits <= 8:
                f["unfused_in"] += in_values  # quantized and dequantized in float
            if second != "int8" or self.graph is None:
                continue
            flow = self.graph.flows[name]
            fed = (bool(flow.source) and all(fused[s] for s in flow.source)) or (
                flow.source_add is not None and adds[flow.source_add]
            )
            if not fed:
                f["into_int"] += in_values
            if flow.add is not None:
                stays = adds[flow.add]
            else:
                stays = bool(flow.readers) and all(fused[r] for r in flow.readers)
            if not stays:
                f["out_of_int"] += out_values
        return [f[k] for k in FEATURES]

    def _in_positions(self, name: str) -> int:
        """Input positions per sample of a layer (H × W of a conv, rows of a linear)."""
        shape = self.layers[name].main
        return math.prod(shape.size) if shape.size else 1

    def parts(
        self,
        name: str,
        layer: Any,
        policy: Policy,
        costs: Costs,
        forms: dict[str, tuple[str, str]] | None = None,
    ) -> list[float]:
        """The table's milliseconds of one layer: [itself] or [its two low-rank factors], each
        in its form (the max pooling after it, if any, with the last)."""
        first, second = (forms or self.forms(policy))[name]
        cost, rank, shapes = costs.layers[name], policy.choice(name).rank, self.layers[name]
        cin, cout = cost.in_features, cost.out_features
        if rank >= 1.0:
            return [self.lookup(shapes.pooled, shapes.full_in, shapes.full_out, second, cin, cout)]
        groups = cout if layer.depthwise else layer.groups
        r = kept_rank(rank, cout, (cin // groups) * layer.kernel)
        return [
            self.lookup(shapes.main, shapes.full_in, shapes.full_out, first, cin, r),
            self.lookup(shapes.second, shapes.full_out, shapes.full_out, second, r, cout),
        ]

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
                self._points(max(full_out, cout), 1), cout, lambda c: self.entry(shape, form, c, c)
            )
        ins = self._points(max(full_in, cin), shape.groups)
        outs = self._points(max(full_out, cout), shape.groups)
        return _interp2(ins, outs, cin, cout, lambda i, o: self.entry(shape, form, i, o))

    def fill(self, form: str) -> None:
        """Measure every grid point of every layer's own shape in ``form`` (low-rank factors
        are measured when a policy first asks for them)."""
        for shapes in self.layers.values():
            shape = shapes.pooled
            outs = self._points(shapes.full_out, 1 if shape.depthwise else shape.groups)
            if shape.depthwise:
                for c in outs:
                    self.entry(shape, form, c, c)
                continue
            for cin in self._points(shapes.full_in, shape.groups):
                for cout in outs:
                    self.entry(shape, form, cin, cout)

    def _points(self, full: int, groups: int) -> list[int]:
        """The grid's channel counts of a layer side of ``full`` channels: multiples of its
        groups and of :attr:`round_to`, and the full count.

        Measured at counts a search can give, a table rounded to 8 or 16 sees what integer
        kernels do there: on an AVX-512 VNNI EPYC a 3×3 ResNet-20 convolution ran 16 → 16
        channels in 1.9 ms and 15 → 15 in 3.3 ms (``benchmarks/channel_alignment.py``), which
        interpolating between unaligned points cannot predict."""
        return _grid(full, math.lcm(max(1, groups), self.round_to), self.grid)

    def entry(self, shape: Shape, form: str, cin: int, cout: int) -> float:
        key = f"{shape.key()}|{form}|{cin}|{cout}"
        if _padded(shape, form, cin):  # measured as the export writes it (entries before: not)
            key += f"|padded{PAD_TO}"
        if key not in self.entries:
            self.entries[key] = measure(shape, form, cin, cout, self.batch, self.threads)
            self.fresh[key] = (shape, form, cin, cout)
            self.measured += 1
        return self.entries[key]

    def remeasure(self) -> None:
        """Measure again every entry this process measured and keep the lower figure: a busy
        moment of a shared machine slows every run of a measurement down, a second round a
        while later is rarely caught in one too."""
        for key, (shape, form, cin, cout) in self.fresh.items():
            again = measure(shape, form, cin, cout, self.batch, self.threads)
            self.entries[key] = min(self.entries[key], again)

    def model_key(self) -> str:
        """What a calibration depends on besides the machine: the layers' shapes and graph
        and the grid (a digest, for the cache)."""
        described = json.dumps(
            [
                {n: dataclasses.asdict(s) for n, s in sorted(self.layers.items())},
                dataclasses.asdict(self.graph) if self.graph is not None else None,
                list(self.grid),
                *([self.round_to] if self.round_to > 1 else []),  # same digests as before
                *([f"padded{PAD_TO}"] if any(_thin(s) for s in self.layers.values()) else []),
            ],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(described.encode()).hexdigest()[:20]

    def save(self, path: Path) -> None:
        """Write the entries and this model's calibration to ``path``, merged with other
        models' already there."""
        stored = _read(path)
        if stored.get("key") != self.key:
            stored = {"key": self.key, "entries": {}, "fits": {}}
        stored["entries"] = {**stored["entries"], **self.entries}
        fits: dict[str, Any] = stored["fits"] if isinstance(stored.get("fits"), dict) else {}
        if self.coef:
            fits = {**fits, self.model_key(): {"features": list(FEATURES), "coef": self.coef}}
        stored["fits"] = fits
        write_atomic(path, json.dumps(stored, indent=0, sort_keys=True) + "\n")

    def load_entries(self, path: Path) -> int:
        """Take the entries measured earlier on this machine and setting, and this model's
        calibration if it was fitted there; returns how many entries."""
        stored = _read(path)
        if stored.get("key") != self.key:
            return 0
        self.entries.update({k: float(v) for k, v in stored["entries"].items()})
        fit = (stored.get("fits") or {}).get(self.model_key())
        if isinstance(fit, dict) and fit.get("features") == list(FEATURES):
            self.coef = [float(c) for c in fit["coef"]]
        return len(stored["entries"])


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and isinstance(data.get("entries"), dict) else {}


@torch.no_grad()
def layer_shapes(
    model: nn.Module, profile: Profile, graph: LayerGraph | None = None
) -> dict[str, LayerShapes]:
    """Each profiled layer's shapes, from one call of ``model`` on the profile's inputs (and
    the max pooling after it, from ``graph``)."""
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
            pool = graph.flows[name].pool if graph is not None else ()
            second = Shape("conv", size=tuple(y[2:]), pool=pool)
        else:
            rows = math.prod(x[1:-1]) if len(x) > 2 else 1
            main = second = Shape("linear", size=(rows,))
        out[name] = LayerShapes(main, second, layer.in_features, layer.out_features)
    return out


PASS_OPS = ("Relu", "MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze")


def layer_graph(proto: onnx.ModelProto, profile: Profile, prefix: str = "") -> LayerGraph:
    """The data flow between ``profile``'s layers in ``proto``, the model's float ONNX export:
    where each layer's output goes and where its input comes from, through ReLU and the ops
    that only move values (:data:`PASS_OPS`), and the residual adds between them. A layer is
    found by its weight initializer (``<prefix><layer>.weight``)."""
    graph = proto.graph
    nodes = list(graph.node)  # nodes are referred to by their index in it
    inits = {i.name for i in graph.initializer}
    layer_of: dict[int, str] = {}
    for i, node in enumerate(nodes):
        if len(node.input) > 1 and node.input[1] in inits and node.input[1].startswith(prefix):
            name = node.input[1].removeprefix(prefix).removesuffix(".weight")
            if name in profile.layers:
                layer_of[i] = name
    producer = {out: i for i, node in enumerate(nodes) for out in node.output}
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for name in node.input:
            consumers.setdefault(name, []).append(i)
    outputs = {o.name for o in graph.output}

    def forward(tensor: str) -> str:
        while (
            len(after := consumers.get(tensor, [])) == 1
            and nodes[after[0]].op_type in PASS_OPS
            and tensor not in outputs
        ):
            tensor = nodes[after[0]].output[0]
        return tensor

    def pooling(tensor: str) -> tuple[int, ...]:
        """The first max pooling on the way :func:`forward` goes from ``tensor``."""
        while len(after := consumers.get(tensor, [])) == 1 and nodes[after[0]].op_type in PASS_OPS:
            node = nodes[after[0]]
            if node.op_type == "MaxPool":
                attrs = {a.name: list(a.ints) for a in node.attribute}
                kernel = attrs.get("kernel_shape", [1, 1])
                strides = attrs.get("strides", [1] * len(kernel))
                pads = attrs.get("pads", [0] * 2 * len(kernel))
                return (*kernel, *strides, *pads) if len(kernel) == 2 else ()
            tensor = node.output[0]
        return ()

    def backward(tensor: str) -> int | None:
        while (i := producer.get(tensor)) is not None and nodes[i].op_type in PASS_OPS:
            tensor = nodes[i].input[0]
        return producer.get(tensor)

    def readers(tensor: str) -> tuple[str, ...]:
        return tuple(layer_of[i] for i in consumers.get(tensor, []) if i in layer_of)

    add_nodes = [i for i, n in enumerate(nodes) if n.op_type == "Add" and not set(n.input) & inits]
    add_index = {i: k for k, i in enumerate(add_nodes)}

    def identity(j: int, tensor: str) -> bool:
        """Whether node ``j`` is a residual add reading ``tensor`` as its identity operand (a
        tensor layers also read: the add's rule quantizes it through them)."""
        return j in add_index and producer.get(tensor) not in layer_of and bool(readers(tensor))

    adds = []
    for i in add_nodes:
        operands = []
        for tensor in nodes[i].input:
            source = producer.get(tensor)
            if source in layer_of:
                operands.append(Operand(layer_of[source]))
            else:
                operands.append(Operand(None, readers(tensor)))
        out = forward(nodes[i].output[0])
        after = [j for j in consumers.get(out, []) if not identity(j, out)]
        only_layers = out not in outputs and bool(after) and all(j in layer_of for j in after)
        adds.append(Add(tuple(operands), readers(out) if only_layers else ()))
    flows = {}
    for i, name in layer_of.items():
        out = forward(nodes[i].output[0])
        after = [j for j in consumers.get(out, []) if not identity(j, out)]
        add = next((add_index[j] for j in after if j in add_index), None)
        elsewhere = (
            out in outputs
            or not after
            or any(j not in layer_of and j not in add_index for j in after)
            or (add is not None and len(after) > 1)  # read by the add and by something else
        )
        source = backward(nodes[i].input[0])
        flows[name] = Flow(
            readers=() if add is not None else readers(out),
            add=add,
            identity_of=tuple(
                add_index[j] for j in consumers.get(out, []) if identity(j, out) and add is None
            ),
            elsewhere=elsewhere,
            pool=pooling(nodes[i].output[0]),
            source=(layer_of[source],) if source in layer_of else (),
            source_add=add_index.get(source) if source is not None else None,
        )
    for name in profile.layers:
        flows.setdefault(name, Flow(elsewhere=True))  # not found in the graph: priced as float
    return LayerGraph(flows, tuple(adds))


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _add_quantized(add: Add, integer: dict[str, bool], policy: Policy) -> bool:
    """Whether the export quantizes both operands of a residual add (the rule of
    :mod:`autocompress.compress.residual`): a layer's output if the layer is integer, an
    identity shortcut if an 8-bit integer layer reads the same tensor."""
    for operand in add.operands:
        if operand.layer is not None:
            if not integer[operand.layer]:
                return False
        elif not any(integer[r] and policy.choice(r).a_bits == 8 for r in operand.readers):
            return False
    return True


def _packed(policy: Policy, name: str, shapes: LayerShapes) -> bool:
    """Whether a layer deploys as a packed low-bit linear layer (MatMulNBits: the integer
    export's rule, :mod:`autocompress.deploy`)."""
    c = policy.choice(name)
    return shapes.main.kind == "linear" and c.w_bits <= NBITS_MAX and c.clusters is None


def _int_weights(policy: Policy, name: str) -> bool:
    """Whether a layer's weights are stored as int8 codes (dequantized where not fused)."""
    c = policy.choice(name)
    return c.w_bits <= 8 and c.clusters is None


def _padded(shape: Shape, form: str, cin: int) -> bool:
    """Whether the integer export pads this layer's quantized input (:mod:`autocompress.
    deploy`: a convolution of :data:`PAD_CHANNELS` input channels behind 8-bit inputs)."""
    return (
        shape.kind == "conv"
        and form in ("int8", "unfused")
        and not shape.depthwise
        and shape.groups == 1
        and cin in PAD_CHANNELS
    )


def _thin(shapes: LayerShapes) -> bool:
    """Whether a layer can read few enough channels to be padded (its calibration changes)."""
    return shapes.main.kind == "conv" and shapes.main.groups == 1 and shapes.full_in in PAD_CHANNELS


def _integer(policy: Policy, name: str) -> bool:
    """Whether a layer deploys as an integer kernel (the integer export's rule)."""
    c = policy.choice(name)
    return c.w_bits <= 8 and c.a_bits <= 8 and c.clusters is None


def _grid(full: int, multiple: int, fractions: tuple[float, ...] = GRID) -> list[int]:
    step = max(1, multiple)
    points = {min(full, max(step, round(full * f / step) * step)) for f in fractions} | {full}
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
    padded = _padded(shape, form, cin)
    if padded:  # as the export writes it: zero weights on PAD_TO - cin added input channels
        w_shape = [cout, PAD_TO, *shape.kernel]
    weight = rng.standard_normal(w_shape).astype(np.float32) * 0.1
    bias = numpy_helper.from_array(np.zeros(cout, np.float32), "b")
    nodes, inits = [], [bias]
    elem = TensorProto.UINT8 if integer else TensorProto.FLOAT
    pool = []
    if shape.kind == "conv" and shape.pool:
        k, st, pads = shape.pool[:2], shape.pool[2:4], shape.pool[4:]
        pool = [("MaxPool", {"kernel_shape": list(k), "strides": list(st), "pads": list(pads)})]
    feeds: dict[str, np.ndarray]
    if form == "nbits":  # 4-bit codes packed in ONNX Runtime's MatMulNBits, float in and out
        block = 32
        blocks = -(-cin // block)
        codes = rng.integers(0, 256, (cout, blocks, block // 2), dtype=np.uint8)
        scales = np.full(cout * blocks, 0.01, np.float32)
        inits += [numpy_helper.from_array(codes, "wq"), numpy_helper.from_array(scales, "ws")]
        nodes.append(
            helper.make_node(
                "MatMulNBits",
                ["x", "wq", "ws", "", "", "b"],
                ["y"],
                domain=MS_DOMAIN,
                K=cin,
                N=cout,
                bits=4,
                block_size=block,
            )
        )
        feeds = {"x": rng.standard_normal(x_shape).astype(np.float32)}
    elif form == "float":
        inits.append(numpy_helper.from_array(weight, "w"))
        nodes.append(helper.make_node(op, ["x", "w", "b"], ["yc"], **attrs))
        nodes += _then(pool, "yc", "y")
        feeds = {"x": rng.standard_normal(x_shape).astype(np.float32)}
    else:  # 8-bit weights: fused (uint8 in, uint8 out) or unfused (float in, float out)
        scale = np.full(cout, 0.01, np.float32)
        inits += [
            numpy_helper.from_array(np.clip(weight * 100, -127, 127).astype(np.int8), "wq"),
            numpy_helper.from_array(scale, "ws"),
            numpy_helper.from_array(np.zeros(cout, np.int8), "wz"),
            numpy_helper.from_array(np.array(0.02, np.float32), "s"),
            numpy_helper.from_array(np.array(128, np.uint8), "z"),
        ]
        nodes.append(helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=axis))
        if padded:
            widths = [0, 0, 0, 0, 0, PAD_TO - cin, 0, 0]
            inits.append(numpy_helper.from_array(np.array(widths, np.int64), "pads"))
        if integer:
            if padded:
                nodes.append(helper.make_node("Pad", ["x", "pads", "z"], ["xp"]))
            nodes += [
                helper.make_node("DequantizeLinear", ["xp" if padded else "x", "s", "z"], ["xf"]),
                helper.make_node(op, ["xf", "w", "b"], ["yf"], **attrs),
                helper.make_node("QuantizeLinear", ["yf", "s", "z"], ["yq" if pool else "y"]),
            ]
            if pool:
                nodes.append(helper.make_node("DequantizeLinear", ["yq", "s", "z"], ["yd"]))
                nodes += _then(pool, "yd", "yp")
                nodes.append(helper.make_node("QuantizeLinear", ["yp", "s", "z"], ["y"]))
            feeds = {"x": rng.integers(0, 255, x_shape, dtype=np.uint8)}
        else:
            nodes.append(helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]))
            if padded:
                nodes.append(helper.make_node("Pad", ["xq", "pads", "z"], ["xp"]))
            nodes += [
                helper.make_node("DequantizeLinear", ["xp" if padded else "xq", "s", "z"], ["xf"]),
                helper.make_node(op, ["xf", "w", "b"], ["yc"], **attrs),
            ]
            nodes += _then(pool, "yc", "y")
            feeds = {"x": rng.standard_normal(x_shape).astype(np.float32)}
    graph = helper.make_graph(
        nodes,
        "layer",
        [helper.make_tensor_value_info("x", elem, x_shape)],
        [helper.make_tensor_value_info("y", elem, None)],
        inits,
    )
    opsets = [helper.make_opsetid("", 18)]
    if form == "nbits":
        opsets.append(helper.make_opsetid(MS_DOMAIN, 1))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 9
    return model, feeds


def _then(ops: list[tuple[str, dict[str, Any]]], x: str, y: str) -> list[onnx.NodeProto]:
    """Nodes applying ``ops`` one after another from tensor ``x`` to tensor ``y``."""
    if not ops:
        return [helper.make_node("Identity", [x], [y])]
    names = [x] + [f"{y}_{i}" for i in range(len(ops) - 1)] + [y]
    return [
        helper.make_node(op, [names[i]], [names[i + 1]], **attrs)
        for i, (op, attrs) in enumerate(ops)
    ]
