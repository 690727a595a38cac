"""Integer ONNX: what a policy's bits promise, in the file a user deploys.

The float export (:func:`autocompress.export.write_onnx`) is rewritten in ONNX's QDQ form, the
form ONNX Runtime fuses into integer kernels (QLinearConv, QGemm, MatMulInteger):

- every weight of a layer with ``w_bits`` ≤ 8 (and no weight sharing) is stored as an int8
  initializer with a float32 scale per output channel, behind a ``DequantizeLinear``. Codes of
  2–7 bits keep their own grid (scale = max|w| / (2^(b-1) − 1)) inside the int8 container, so
  the values are exactly the simulated ones; the file holds them at 8 bits (which the report
  says per layer). A BatchNorm the exporter folded into a convolution scales each output
  channel, which per-channel symmetric codes absorb exactly.
- every activation quantizer of the simulation (each layer input with ``a_bits`` ≤ 8, and the
  operands of residual adds between integer layers, :mod:`autocompress.compress.residual`) is
  exported as ``QuantizeLinear`` → ``DequantizeLinear`` (uint8) with the scale and zero point
  of the range calibrated and tracked by the fine-tune — the simulation's own arithmetic
  (``round(x / s) + z``, clamped, half to even). An 8-bit input is quantized by that pair
  alone; a narrower one keeps the simulation's clamp to its own levels before it, so the
  integer model computes what the simulated one did.
- weight sharing is stored as its dequantized values (a codebook op is not in ONNX), float16
  weights as float: the report gives each layer's stored form and the file's real size.
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
from autocompress.files import write_atomic
from autocompress.policy import Policy

WEIGHT_OPS = ("Conv", "Gemm", "MatMul")


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
    for node in graph.node:
        if node.op_type in WEIGHT_OPS and len(node.input) > 1 and node.input[1] in inits:
            consumer.setdefault(node.input[1], node)
    before: dict[int, list[onnx.NodeProto]] = {}  # new nodes, keyed by the node they feed
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
        if spec.w_bits <= 8 and spec.clusters is None:
            axis = _channel_axis(node)
            stored = numpy_helper.to_array(inits[weight])
            codes, scale = _weight_codes(stored, spec.w_bits, axis)
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
        before.setdefault(id(node), []).extend(added)
        layers[spec.module] = form
    nodes = []
    for node in graph.node:
        nodes.extend(before.get(id(node), []))
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(proto)
    write_atomic(path, proto.SerializeToString())
    return {"layers": layers, "bytes": path.stat().st_size}


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
