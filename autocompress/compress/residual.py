"""Integer residual adds: the tensors a residual connection sums, quantized where a runtime needs.

An integer runtime keeps a ResNet in integers only if both operands of each residual add are
quantized: ONNX Runtime fuses ``DequantizeLinear → Conv → QuantizeLinear`` into QLinearConv and
``DequantizeLinear ×2 → Add → QuantizeLinear`` into QLinearAdd, but a convolution whose output
goes to a float add stays a float convolution (its weights dequantized on every run), with
layout conversions around it. Measured on ResNet-20 W8A8, batch 64, one thread: 1.7× *slower*
than the float model when only layer inputs were quantized.

So the simulation quantizes, at 8 bits with a calibrated range, what the deployed graph must:

- an operand that is the output of an integer layer (through the BatchNorm after it, which the
  export folds into the layer) gets an output quantizer on that module;
- an operand that is the input of the block computing the add (an identity shortcut) is
  quantized by the 8-bit input quantizer of the integer layer that reads the same tensor, once,
  at the block's entry: the layer and the add then see the same quantized values, as they do
  in the deployed graph.

An add is made integer only when every operand can be; otherwise it stays float, as before.
The adds are found by running the model once on its example inputs (eager mode, any model);
the sum itself is quantized by whatever reads it next (the next layer's input quantizer).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from autocompress.compress.layers import WeightLayer, transforms
from autocompress.inputs import Inputs

ADDS = {"add", "add_", "__add__", "__radd__", "__iadd__"}
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass(frozen=True)
class Operand:
    """Where one operand of a residual add comes from."""

    producer: str | None  # innermost module whose output it is
    before_producer: str | None  # the module whose output that producer read
    block_input: bool  # it is the first input of the module that computes the add
    readers: tuple[str, ...]  # weight layers whose input is this very tensor


@dataclass(frozen=True)
class ResidualAdd:
    block: str  # the innermost module running when the add happens ("" for the model)
    operands: tuple[Operand, ...]


class _Record(TorchFunctionMode):
    def __init__(self, seen: list[tuple[str, tuple[torch.Tensor, ...]]], stack: list[str]):
        super().__init__()
        self.seen, self.stack = seen, stack

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = getattr(func, "__name__", "")
        if name in ADDS and len(args) >= 2:
            a, b = args[0], args[1]
            if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape:
                self.seen.append((self.stack[-1] if self.stack else "", (a, b)))
        return func(*args, **(kwargs or {}))


@torch.no_grad()
def find_residual_adds(model: nn.Module, inputs: Inputs) -> list[ResidualAdd]:
    """The adds of two same-shaped activations in one eager call of ``model`` on ``inputs``.

    >>> class Block(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.conv, self.bn = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
    ...     def forward(self, x):
    ...         return torch.relu(self.bn(self.conv(x)) + x)
    >>> [add] = find_residual_adds(Block(), Inputs.images((4, 8, 8)))
    >>> [(o.producer, o.before_producer, o.block_input, o.readers) for o in add.operands]
    [('bn', 'conv', False, ()), (None, None, True, ('conv',))]
    """
    names = {id(m): n for n, m in model.named_modules()}
    constants = {id(t) for t in (*model.parameters(), *model.buffers())}
    stack: list[str] = []
    alive: list[torch.Tensor] = []  # keeps ids unique for the whole call
    output_of: dict[int, str] = {}
    read_by: dict[int, list[str]] = {}
    block_input: dict[str, int] = {}
    producer_input: dict[str, str | None] = {}

    def enter(module: nn.Module, args: tuple[Any, ...]) -> None:
        name = names[id(module)]
        stack.append(name)
        if args and isinstance(args[0], torch.Tensor):
            alive.append(args[0])
            block_input[name] = id(args[0])
            producer_input[name] = output_of.get(id(args[0]))
            if isinstance(module, WeightLayer):
                read_by.setdefault(id(args[0]), []).append(name)

    def leave(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        stack.pop()
        if isinstance(output, torch.Tensor):
            alive.append(output)
            output_of.setdefault(id(output), names[id(module)])  # the innermost module first

    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(enter, prepend=True))  # raw inputs
        handles.append(module.register_forward_hook(leave, always_call=True))
    seen: list[tuple[str, tuple[torch.Tensor, ...]]] = []
    was_training = model.training
    model.eval()
    try:
        with _Record(seen, stack):
            inputs(model)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    adds = []
    for block, operands in seen:
        if any(id(t) in constants for t in operands):
            continue  # a parameter added to an activation (a position embedding): no residual
        found = []
        for t in operands:
            producer = output_of.get(id(t))
            found.append(
                Operand(
                    producer,
                    producer_input.get(producer) if producer is not None else None,
                    block_input.get(block) == id(t),
                    tuple(read_by.get(id(t), ())),
                )
            )
        adds.append(ResidualAdd(block, tuple(found)))
    return adds


def integer_layer(module: nn.Module) -> bool:
    """Whether a weight layer runs as an integer kernel: integer weights (not shared values,
    which the export stores dequantized) and integer inputs."""
    if not isinstance(module, WeightLayer):
        return False
    chain = transforms(module)
    if not chain or any(hasattr(t, "centroids") for t in chain):
        return False
    return _bits(chain[-1]) <= 8 and _bits(module._modules.get("input_quant")) <= 8


def _bits(quantizer: nn.Module | None) -> int:
    return cast(int, getattr(quantizer, "bits", 32))


def install(
    model: nn.Module, adds: list[ResidualAdd], quantizer: Callable[[], nn.Module]
) -> list[str]:
    """Quantize the operands of every add in ``adds`` that can be integer (see the module doc),
    with new 8-bit ``quantizer()`` modules on layer outputs.

    Returns the modules whose output or input is now quantized for a residual add.
    """
    modules = dict(model.named_modules())
    outputs: set[str] = set()
    entries: dict[str, str] = {}  # block -> the layer whose input quantizer it applies
    for add in adds:
        plan_outputs, plan_entries = set(), {}
        for operand in add.operands:
            if _integer_output(operand, modules):
                plan_outputs.add(cast(str, operand.producer))
                continue
            inside = f"{add.block}." if add.block else ""
            reader = next(
                (
                    r
                    for r in operand.readers
                    if r.startswith(inside)  # the block's hook finds it by its relative path
                    and integer_layer(modules[r])
                    and _bits(modules[r]._modules["input_quant"]) == 8
                ),
                None,
            )
            if operand.block_input and reader is not None and add.block in modules:
                plan_entries[add.block] = reader
                continue
            break
        else:
            outputs |= plan_outputs
            entries.update(plan_entries)
    for name in sorted(outputs):
        module = modules[name]
        if "output_quant" not in module._modules:
            module.add_module("output_quant", quantizer())
            module.register_forward_hook(_quantize_output)
    for block, reader in sorted(entries.items()):
        prefix = f"{block}." if block else ""
        relative = reader[len(prefix) :]
        layer = modules[reader]
        for key, hook in list(layer._forward_pre_hooks.items()):
            if getattr(hook, "__name__", "") == "_quantize_input":
                del layer._forward_pre_hooks[key]  # its input arrives quantized
        modules[block].register_forward_pre_hook(
            functools.partial(_quantize_block_input, reader=relative)
        )
    return sorted(outputs | {f"{b} (input)" for b in entries})


def _integer_output(operand: Operand, modules: dict[str, nn.Module]) -> bool:
    if operand.producer is None:
        return False
    producer = modules[operand.producer]
    if integer_layer(producer):
        return True
    before = operand.before_producer
    return isinstance(producer, NORMS) and before is not None and integer_layer(modules[before])


def _quantize_output(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
    return cast(nn.Module, module.output_quant)(output)


def _quantize_block_input(module: nn.Module, args: tuple[Any, ...], reader: str) -> Any:
    quantizer = cast(nn.Module, module.get_submodule(reader).input_quant)
    return (quantizer(args[0]), *args[1:])
