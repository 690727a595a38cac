"""Integer ONNX: what a policy's bits promise, in the file a user deploys.

The float export (:func:`autocompress.export.write_onnx`) is rewritten in ONNX's QDQ form, the
form ONNX Runtime fuses into integer kernels (QLinearConv, QGemm, MatMulInteger):

- every weight of a layer with ``w_bits`` ≤ 8 (and no weight sharing) is stored as an int8
  initializer with a float32 scale per output channel, behind a ``DequantizeLinear``. Codes of
  2–7 bits keep their own grid (scale = max|w| / (2^(b-1) − 1)) inside the int8 container, so
  the values are exactly the simulated ones. A BatchNorm the exporter folded into a convolution
  scales each output channel, which per-channel symmetric codes absorb exactly.
- a linear layer (Gemm, MatMul) with codes of 2–4 bits is stored packed instead, 2 bits a
  weight (2-bit codes) or 4 (3- and 4-bit codes), in ONNX Runtime's ``MatMulNBits`` op: the
  same codes and per-channel scales (repeated over the op's blocks), dequantized inside the
  kernel, which computes in float — the simulated layer's values, at a half or a quarter of the
  int8 file's bytes. Codes of 5–7 bits stay in int8 (the op takes 2, 4 and 8 bits only, in
  ONNX Runtime 1.32: "additional bits support is planned"), and convolutions have no such op:
  theirs stay in the int8 container. The report says per layer which form its weights took.
- every activation quantizer of the simulation (each layer input with ``a_bits`` ≤ 8, and the
  operands of residual adds between integer layers, :mod:`autocompress.compress.residual`) is
  exported as ``QuantizeLinear`` → ``DequantizeLinear`` (uint8) with the scale and zero point
  of the range calibrated and tracked by the fine-tune — the simulation's own arithmetic
  (``round(x / s) + z``, clamped, half to even). An 8-bit input is quantized by that pair
  alone; a narrower one keeps the simulation's clamp to its own levels before it, so the
  integer model computes what the simulated one did.
- an activation quantizer reached from a layer through ops that only move or select values
  (max pooling, reshapes, flattening, transposes) is also written right after the layer (or its
  ReLU), with the same scale and zero point: quantization commutes exactly with those ops, so
  the values do not change, but ONNX Runtime can then run the layer as QLinearConv / QGemm and
  the pooling on uint8 — as its own static quantizer does (LeNet-5's convolutions feed max
  pooling; without this they ran in float, weights dequantized on every call).
- where such ops follow a layer that stays float, its reader's quantizer stays after them,
  behind a ``Max`` with the quantizer's lowest level (a no-op: the quantizer saturates there
  anyway). Without it ONNX Runtime moves the quantizer in front of the max pooling itself, which
  then runs on uint8 in NCHW layout, a slow generic kernel: LeNet-5 with its first convolution
  float and the rest W8A8 ran at 0.92x its float file, 0.46x with the ``Max``.
- a convolution reading 2 or 3 channels (an RGB image) behind 8-bit inputs reads them padded
  to 4 with the zero point (``Pad`` on the uint8 tensor), its int8 weights padded with zeros:
  every output is the same, and ONNX Runtime's QLinearConv runs it faster (ResNet-20's first
  layer in 0.59x the time). One channel is left as it is (1 → 13 ran slower padded).
- weight sharing is stored as its dequantized values (a codebook op is not in ONNX), float16
  weights as float: the report gives each layer's stored form and the file's real size.

The file computes the simulated model in ONNX Runtime opened with ``session_config`` of the
report (:func:`autocompress.cost.latency.ort_session_config`): on x86 CPUs without VNNI the
default uint8 × int8 kernels saturate, and ``session.x64quantprecision=1`` selects exact ones;
with VNNI the defaults are exact and the option only slows the file down. Weights stay int8
(ONNX Runtime's recommended form, its fastest kernels on VNNI, AMX and ARM) rather than uint8,
which would be exact there by default but lose the symmetric-weight convolution kernels
everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper
from torch import nn

from autocompress.compress.layers import weight_layers
from autocompress.compress.quantize import ActQuant
from autocompress.cost.latency import SESSION_CONFIG_RULE, ort_session_config
from autocompress.files import write_atomic
from autocompress.policy import Policy

WEIGHT_OPS = ("Conv", "Gemm", "MatMul")
# ops through which a uint8 quantizer moves upstream without changing any value: they move or
# select elements (Q(max(a, b)) = max(Q(a), Q(b)) for a monotone Q)
MOVE_OPS = ("MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze")
# linear layers with codes of this many bits or fewer are stored packed, 2 or 4 bits a weight,
# in ONNX Runtime's MatMulNBits (a contrib op of the com.microsoft domain)
NBITS_MAX = 4
MS_DOMAIN = "com.microsoft"
NBITS_BLOCKS = (16, 32, 64, 128)  # the block sizes MatMulNBits takes (powers of two, ≥ 16)
# integer convolutions reading this few channels are written padded to PAD_TO, with zero weights
# on the added ones: alone, ONNX Runtime's QLinearConv ran 3 → 16 (ResNet-20's first layer) in
# 0.59x the time padded, 3 → 64 in 0.68x, 2 → 16 in 0.63x, and 1 → 13 in 1.25x, so one channel
# is left as it is (`python benchmarks/pad_channels.py`, AVX-512 VNNI EPYC)
PAD_CHANNELS, PAD_TO = (2, 3), 4


@dataclass(frozen=True)
class QuantSpec:
    """The integer form one weight layer (a layer, or one factor of a low-rank layer) takes."""

    module: str  # its module path in the exported model
    w_bits: int
    a_bits: int
    clusters: int | None
    act_range: tuple[float, float] | None  # calibrated input range (lo, hi)


def quant_specs(model: nn.Module, policy: Policy, prefix: str = "") -> list[QuantSpec]:
    """The weight layers of ``model`` (compressed with ``policy``) that take integer forms."""
    paths = {id(m): n for n, m in model.named_modules()}
    specs = []
    for name, choice in policy.layers.items():
        if choice.w_bits > 8 and choice.a_bits > 8:
            continue
        for layer in weight_layers(model, name):
            quantizer = layer._modules.get("input_quant")
            act = None
            if isinstance(quantizer, ActQuant) and quantizer.bits <= 8:
                act = (float(quantizer.lo), float(quantizer.hi))
            path = prefix + paths[id(layer)]
            specs.append(QuantSpec(path, choice.w_bits, choice.a_bits, choice.clusters, act))
    return specs


def has_integer_layers(policy: Policy) -> bool:
    return any(c.w_bits <= 8 or c.a_bits <= 8 for c in policy.layers.values())


def integer_onnx(float_path: Path, path: Path, specs: list[QuantSpec]) -> dict[str, Any]:
    """Rewrite the float ONNX file at ``float_path`` into its QDQ integer form at ``path``.

    Returns, per weight layer, how its weights and inputs are stored, and the file's size.
    """
    proto = onnx.load(str(float_path))
    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    consumer: dict[str, onnx.NodeProto] = {}
    readers: dict[str, int] = {}
    for node in graph.node:
        if node.op_type in WEIGHT_OPS and len(node.input) > 1 and node.input[1] in inits:
            consumer.setdefault(node.input[1], node)
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    producer = {out: node for node in graph.node for out in node.output}
    dropped: set[int] = set()  # nodes replaced by padded copies
    before: dict[int, list[onnx.NodeProto]] = {}  # new nodes, keyed by the node they feed
    replaced: dict[int, onnx.NodeProto] = {}  # MatMulNBits nodes, keyed by the node they replace
    float_inputs: set[str] = set()  # outputs of float-weight layers whose inputs are quantized
    layers: dict[str, dict[str, str]] = {}
    for spec in specs:
        weight = f"{spec.module}.weight"
        node = consumer.get(weight)
        if node is None:
            why = "not found as a Conv/Gemm/MatMul weight in the exported graph"
            layers[spec.module] = {"weights": "float", "inputs": "float", "why": why}
            continue
        form = {"weights": "float", "inputs": "float"}
        added: list[onnx.NodeProto] = []
        packed = None
        if spec.w_bits <= NBITS_MAX and spec.clusters is None and readers[weight] == 1:
            packed = _matmul_nbits(node, numpy_helper.to_array(inits[weight]), spec.w_bits, inits)
        if packed is not None:
            replacement, tensors, container, block = packed
            graph.initializer.remove(inits[weight])
            graph.initializer.extend(tensors)
            replaced[id(node)] = replacement
            form["weights"] = (
                f"{container}-bit packed (MatMulNBits, blocks of {block}), {spec.w_bits}-bit "
                "codes, scale per output channel"
            )
        elif spec.w_bits <= 8 and spec.clusters is None:
            axis = _channel_axis(node)
            stored = numpy_helper.to_array(inits[weight])
            codes, scale = _weight_codes(stored, spec.w_bits, axis)
            quantized = spec.act_range is not None and spec.a_bits <= 8
            padded = _pad_thin_input(node, codes, producer, readers, dropped) if quantized else None
            if padded is not None:
                codes, pad_nodes = padded
                added += pad_nodes
                _forget_shapes(graph, {weight})
                form["padded"] = f"inputs {stored.shape[1]} → {PAD_TO} channels, zero weights"
            graph.initializer.remove(inits[weight])
            graph.initializer.extend(
                [
                    numpy_helper.from_array(codes, f"{weight}_int8"),
                    numpy_helper.from_array(scale, f"{weight}_scale"),
                    numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), f"{weight}_zero"),
                ]
            )
            added.append(
                helper.make_node(
                    "DequantizeLinear",
                    [f"{weight}_int8", f"{weight}_scale", f"{weight}_zero"],
                    [weight],
                    name=f"{weight}_dequantize",
                    axis=axis,
                )
            )
            form["weights"] = f"int8, {spec.w_bits}-bit codes, scale per output channel"
        elif spec.clusters is not None:
            form["weights"] = f"float: the {spec.clusters} shared values, dequantized"
        if spec.act_range is not None and spec.a_bits <= 8:
            form["inputs"] = f"uint8, {spec.a_bits}-bit levels, calibrated range"
            if packed is None and form["weights"].startswith("float"):
                float_inputs.add(node.output[0])
        before.setdefault(id(node), []).extend(added)
        layers[spec.module] = form
    nodes = []
    for node in graph.node:
        nodes.extend(before.get(id(node), []))
        if id(node) not in dropped:
            nodes.append(replaced.get(id(node), node))
    del graph.node[:]
    graph.node.extend(nodes)
    if replaced and not any(o.domain == MS_DOMAIN for o in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    _quantize_layer_outputs(graph)
    _hold_after_float_pooling(graph)
    _dequantize_apart(graph, float_inputs)
    onnx.checker.check_model(proto)
    write_atomic(path, proto.SerializeToString())
    # what this host's sessions set for the file to compute what the report says, and the
    # rule for the machine it deploys to (:func:`autocompress.cost.latency.ort_session_config`)
    return {
        "layers": layers,
        "bytes": path.stat().st_size,
        "session_config": ort_session_config(),
        "session_config_rule": SESSION_CONFIG_RULE,
    }


def _quantize_layer_outputs(graph: onnx.GraphProto) -> None:
    """Copy each activation ``QuantizeLinear → DequantizeLinear`` pair upstream, across
    :data:`MOVE_OPS`, to the output of the layer (or ReLU) that feeds them, where each tensor on
    the way has no other reader: ``layer → Q → DQ → MaxPool → Q → DQ`` computes exactly what
    ``layer → MaxPool → Q → DQ`` did, and ONNX Runtime fuses the first into QLinearConv and a
    uint8 MaxPool."""
    producer = {out: node for node in graph.node for out in node.output}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    outputs = {o.name for o in graph.output}
    inserted: dict[int, list[onnx.NodeProto]] = {}  # new nodes, keyed by the node they follow
    for node in list(graph.node):
        if node.op_type != "QuantizeLinear" or len(node.input) < 2:
            continue
        tensor, crossed = node.input[0], None
        while (
            (source := producer.get(tensor)) is not None
            and source.op_type in MOVE_OPS
            and readers.get(tensor) == 1
            and tensor not in outputs
        ):
            crossed, tensor = source, source.input[0]
        start = producer.get(tensor)
        if (
            crossed is None
            or start is None
            or start.op_type not in (*WEIGHT_OPS, "Relu")
            or readers.get(tensor) != 1
            or tensor in outputs
            or not _integer_kernel(start, producer)
        ):
            continue
        found = [_as_initializer(graph, producer, name) for name in node.input[1:]]
        params = [name for name in found if name is not None]
        if len(params) != len(found):
            continue
        quantized, moved = f"{tensor}_q", f"{tensor}_qdq"
        inserted[id(start)] = [
            helper.make_node("QuantizeLinear", [tensor, *params], [quantized]),
            helper.make_node("DequantizeLinear", [quantized, *params], [moved]),
        ]
        crossed.input[0] = moved
    if not inserted:
        return
    nodes = []
    for node in graph.node:
        nodes.append(node)
        nodes.extend(inserted.get(id(node), []))
    del graph.node[:]
    graph.node.extend(nodes)


def _hold_after_float_pooling(graph: onnx.GraphProto) -> None:
    """Put ``Max(x, lowest level)`` in front of each activation ``QuantizeLinear`` reached
    across a max pooling (and other :data:`MOVE_OPS`) from a float layer's output (not from a
    ``DequantizeLinear``: those chains run in integers already, :func:`_quantize_layer_outputs`).

    ``Q(max(x, (q_min − z)·s)) = Q(x)``: the quantizer saturates at its lowest level anyway, so
    the values do not change. But ONNX Runtime's QDQ propagation moves a quantizer that directly
    follows max pooling or a reshape upstream across them, and a max pooling on a float layer's
    output then runs on uint8 in NCHW layout, a slow generic kernel; the ``Max`` is not an op
    it moves across, so the pooling stays in float (its blocked-layout kernel)."""
    producer = {out: node for node in graph.node for out in node.output}
    inserted: dict[int, onnx.NodeProto] = {}  # the new Max, keyed by the quantizer it precedes
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or len(node.input) < 3:
            continue
        tensor, pooled = node.input[0], False
        while (source := producer.get(tensor)) is not None and source.op_type in MOVE_OPS:
            pooled, tensor = pooled or source.op_type == "MaxPool", source.input[0]
        source = producer.get(tensor)
        if not pooled or source is None or source.op_type == "DequantizeLinear":
            continue
        found = [_as_initializer(graph, producer, name) for name in node.input[1:3]]
        if None in found:
            continue
        scale, zero = (
            numpy_helper.to_array(next(t for t in graph.initializer if t.name == name))
            for name in found
        )
        if scale.size != 1 or zero.size != 1:
            continue
        low = np.iinfo(zero.dtype).min
        floor = f"{node.input[0]}_floor{len(inserted)}"  # one tensor may feed two quantizers
        graph.initializer.append(
            numpy_helper.from_array(
                np.array((low - int(zero)) * float(scale), np.float32), f"{floor}_value"
            )
        )
        inserted[id(node)] = helper.make_node("Max", [node.input[0], f"{floor}_value"], [floor])
        node.input[0] = floor
    if not inserted:
        return
    nodes = []
    for node in graph.node:
        if id(node) in inserted:
            nodes.append(inserted[id(node)])
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)


def _dequantize_apart(graph: onnx.GraphProto, layers: set[str]) -> None:
    """Dequantize the quantized input of each layer of ``layers`` (by its output's name: float
    weights, quantized inputs)
    with ``Cast → Sub → Mul`` instead of ``DequantizeLinear``: the same values, but not the
    pattern ONNX Runtime fuses — given ``DequantizeLinear → Conv/Gemm`` with float weights it
    quantizes the weights to int8 itself and runs an integer kernel (measured on LeNet-5: outputs
    off by 2% of their range, 0.8% of predictions changed), which is not the policy's layer."""
    producer = {out: node for node in graph.node for out in node.output}
    inserted: dict[int, list[onnx.NodeProto]] = {}  # new nodes, keyed by the node they precede
    for layer in (node for node in graph.node if node.output and node.output[0] in layers):
        dq = producer.get(layer.input[0])
        if dq is None or dq.op_type != "DequantizeLinear" or len(dq.input) < 3:
            continue
        found = [_as_initializer(graph, producer, name) for name in dq.input[1:3]]
        if None in found:
            continue
        scale, zero = (next(i for i in graph.initializer if i.name == n) for n in found)
        if len(scale.dims) or len(zero.dims):  # per-tensor only, as activations are
            continue
        base = f"{layer.input[0]}_apart_{len(inserted)}"
        offset = numpy_helper.to_array(zero).astype(np.float32)
        graph.initializer.append(numpy_helper.from_array(offset, f"{base}_zero"))
        inserted[id(layer)] = [
            helper.make_node("Cast", [dq.input[0]], [f"{base}_cast"], to=onnx.TensorProto.FLOAT),
            helper.make_node("Sub", [f"{base}_cast", f"{base}_zero"], [f"{base}_centred"]),
            helper.make_node("Mul", [f"{base}_centred", scale.name], [base]),
        ]
        layer.input[0] = base
    if not inserted:
        return
    nodes = []
    for node in graph.node:
        nodes.extend(inserted.get(id(node), []))
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)


def _pad_thin_input(
    node: onnx.NodeProto,
    codes: np.ndarray,
    producer: dict[str, onnx.NodeProto],
    readers: dict[str, int],
    dropped: set[int],
) -> tuple[np.ndarray, list[onnx.NodeProto]] | None:
    """For a convolution of :data:`PAD_CHANNELS` input channels behind an 8-bit input
    quantizer (``DequantizeLinear`` of a uint8 tensor): its int8 ``codes`` padded to
    :data:`PAD_TO` input channels with zeros, and the nodes that pad its quantized input with
    the zero point (``Pad``) and dequantize it for the convolution. The added channels meet
    zero weights, so every output is unchanged; the old ``DequantizeLinear`` is dropped when
    the convolution was its only reader. None where it does not apply."""
    attrs = {a.name: a for a in node.attribute}
    group = attrs["group"].i if "group" in attrs else 1
    source = producer.get(node.input[0])
    if (
        node.op_type != "Conv"
        or group != 1
        or codes.ndim != 4
        or codes.shape[1] not in PAD_CHANNELS
        or source is None
        or source.op_type != "DequantizeLinear"
        or len(source.input) < 3
    ):
        return None
    quantized, scale, zero = source.input[:3]
    missing = PAD_TO - codes.shape[1]
    padded = np.pad(codes, ((0, 0), (0, missing), (0, 0), (0, 0)))
    read, name = node.input[0], f"{node.input[1]}_input"  # per layer: two may read one tensor
    pads = numpy_helper.from_array(np.array([0, 0, 0, 0, 0, missing, 0, 0], np.int64))
    pads.name = f"{name}_pads"
    nodes = [
        helper.make_node("Constant", [], [pads.name], name=f"{name}_pads_constant", value=pads),
        helper.make_node(
            "Pad", [quantized, pads.name, zero], [f"{name}_padded_q"], name=f"{name}_pad"
        ),
        helper.make_node(
            "DequantizeLinear",
            [f"{name}_padded_q", scale, zero],
            [f"{name}_padded"],
            name=f"{name}_padded_dequantize",
        ),
    ]
    if readers.get(read, 0) == 1:
        dropped.add(id(source))
    node.input[0] = f"{name}_padded"
    return padded, nodes


def _forget_shapes(graph: onnx.GraphProto, tensors: set[str]) -> None:
    """Drop the exporter's recorded shapes of ``tensors`` (weights whose shape padding changed:
    ONNX Runtime would warn that they disagree and fall back to its own inference)."""
    kept = [v for v in graph.value_info if v.name not in tensors]
    del graph.value_info[:]
    graph.value_info.extend(kept)


def _integer_kernel(node: onnx.NodeProto, producer: dict[str, onnx.NodeProto]) -> bool:
    """Whether ``node`` (a layer, or the ReLU after one) is a layer ONNX Runtime can fuse into
    an integer kernel: its input and its weights both dequantized from integers. Quantizing
    the output of any other layer gains nothing and costs a quantize / dequantize round trip
    there."""
    if node.op_type == "Relu":
        node = producer.get(node.input[0], node)
    if node.op_type not in WEIGHT_OPS or len(node.input) < 2:
        return False
    return all(
        (p := producer.get(name)) is not None and p.op_type == "DequantizeLinear"
        for name in node.input[:2]
    )


def _as_initializer(
    graph: onnx.GraphProto, producer: dict[str, onnx.NodeProto], name: str
) -> str | None:
    """``name`` as an initializer (readable anywhere in the graph): itself, or a copy of the
    ``Constant`` node that computes it; None for a computed tensor."""
    if any(i.name == name for i in graph.initializer):
        return name
    node = producer.get(name)
    if node is None or node.op_type != "Constant":
        return None
    value = next((a.t for a in node.attribute if a.name == "value"), None)
    if value is None:
        return None
    copy = onnx.TensorProto()
    copy.CopyFrom(value)
    copy.name = f"{name}_const"
    if not any(i.name == copy.name for i in graph.initializer):
        graph.initializer.append(copy)
    return copy.name


def _channel_axis(node: onnx.NodeProto) -> int:
    """The output-channel axis of a node's weight: 0 for Conv and Gemm with transB, else 1."""
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return 0 if node.op_type == "Conv" else 1


def _weight_codes(weight: np.ndarray, bits: int, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-channel codes of ``bits`` in int8, and their float32 scales: the
    simulation's grid (``quantize.quantize_weight``), recovered from its dequantized values."""
    qmax = 2 ** (bits - 1) - 1
    moved = np.moveaxis(weight.astype(np.float64), axis, 0)
    amax = np.abs(moved.reshape(moved.shape[0], -1)).max(axis=1)
    scale = np.maximum(amax, 1e-12) / qmax
    shape = (-1,) + (1,) * (moved.ndim - 1)
    codes = np.clip(np.rint(moved / scale.reshape(shape)), -qmax, qmax)
    return np.moveaxis(codes, 0, axis).astype(np.int8), scale.astype(np.float32)


def _matmul_nbits(
    node: onnx.NodeProto, weight: np.ndarray, bits: int, inits: dict[str, onnx.TensorProto]
) -> tuple[onnx.NodeProto, list[onnx.TensorProto], int, int] | None:
    """``node`` (a Gemm or MatMul of a constant weight) as ONNX Runtime's ``MatMulNBits``: its
    ``bits``-bit symmetric codes (the simulation's grid, recovered from ``weight``) packed two
    or four to a byte (container 4 or 2 bits, offset by the op's default zero point
    2^(container−1)), each output channel's scale repeated over its blocks; bias as the op's
    own input. The node, its initializers, the container's bits and the block size; None where
    the node has another form (a transposed input, scaled Gemm, a bias that is not a vector).

    The op computes ``A @ dequantized(B)ᵀ + bias`` in float from the stored codes, exactly the
    simulated layer's values (its input stays whatever the export gives it: float, or the
    dequantized 8-bit levels of the simulation)."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    bias = None
    if node.op_type == "Gemm":
        if (
            attrs.get("transA", 0)
            or attrs.get("alpha", 1.0) != 1.0
            or attrs.get("beta", 1.0) != 1.0
        ):
            return None
        if len(node.input) > 2 and node.input[2]:
            stored = inits.get(node.input[2])
            if stored is None or len(stored.dims) != 1:
                return None
            bias = node.input[2]
        rows = weight if attrs.get("transB", 0) else weight.T  # [N, K]
    elif node.op_type == "MatMul" and weight.ndim == 2:
        rows = weight.T
    else:
        return None
    n, k = rows.shape
    codes, scale = _weight_codes(rows, bits, 0)
    container = 2 if bits <= 2 else 4
    block = min(NBITS_BLOCKS, key=lambda b: (-(-k // b)) * (b * container // 8 + 4))
    blocks = -(-k // block)
    offset = 2 ** (container - 1)
    values = np.full((n, blocks * block), offset, np.uint8)
    values[:, :k] = (codes.astype(np.int16) + offset).astype(np.uint8)
    per_byte = 8 // container
    grouped = values.reshape(n, blocks, block // per_byte, per_byte)
    packed = np.zeros(grouped.shape[:-1], np.uint8)
    for i in range(per_byte):  # the first value in the lowest bits
        packed |= grouped[..., i] << (container * i)
    name = node.input[1]
    tensors = [
        numpy_helper.from_array(packed, f"{name}_packed"),
        numpy_helper.from_array(np.repeat(scale, blocks).astype(np.float32), f"{name}_scales"),
    ]
    inputs = [node.input[0], f"{name}_packed", f"{name}_scales"]
    if bias is not None:
        inputs += ["", "", bias]  # no zero points (the default), no group index
    replacement = helper.make_node(
        "MatMulNBits",
        inputs,
        list(node.output),
        name=f"{node.name or name}_nbits",
        domain=MS_DOMAIN,
        K=k,
        N=n,
        bits=container,
        block_size=block,
    )
    return replacement, tensors, container, block
