"""One-time layer profile: shapes, per-layer MACs and the coupled channel groups.

The profile is pure data, computed once per model with one forward pass (hooks) and one
Torch-Pruning dependency graph. The cost model prices any policy from it without building the
compressed model.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from autocompress.errors import ConfigError
from autocompress.inputs import Inputs

SUPPORTED_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass(frozen=True)
class LayerProfile:
    """A compressible layer (Conv2d or Linear) as seen in the profiling forward pass."""

    name: str
    kind: str  # "conv" or "linear"
    in_features: int  # in_channels for a conv
    out_features: int  # out_channels for a conv
    kernel: int  # kh * kw (1 for linear)
    groups: int  # conv groups (1 for linear)
    positions: int  # output positions per sample: H_out * W_out, or tokens for a linear
    bias: bool
    out_group: int
    # (group id, input features per channel of that group); ``in_fixed`` features are not
    # in any group (the image, say) and never change
    in_groups: tuple[tuple[int, int], ...]
    in_fixed: int
    stride: int = 1  # a conv's (first) stride; 1 for a linear

    @property
    def depthwise(self) -> bool:
        return self.kind == "conv" and self.groups == self.in_features == self.out_features > 1


@dataclass(frozen=True)
class NormProfile:
    """A BatchNorm layer. Its channels are ``fixed`` plus the channel groups it normalises
    (several after a concatenation, as in DenseNet)."""

    name: str
    channels: int
    groups: tuple[int, ...]
    fixed: int
    affine: bool
    running_stats: bool


@dataclass(frozen=True)
class ChannelGroup:
    """Channels that must be pruned together (residual adds, depthwise convs, BatchNorm, ...)."""

    id: int
    channels: int
    root: str  # layer whose output channels Torch-Pruning prunes to remove the group
    layers: tuple[str, ...]  # compressible layers whose output channels are this group
    prunable: bool = True
    why: str = ""  # reason when not prunable


@dataclass(frozen=True)
class Profile:
    """What the cost model knows of a model: one traced call on its example inputs.

    Costs are per call of ``example`` (give a batch of one for per-sample figures).
    ``other_macs`` are multiply-accumulates outside the compressible layers (attention's
    q·k and a·v products, recurrent layers, 1-d convolutions, ...): no policy changes them,
    because a channel group that would change them is not prunable. ``untouched`` names the
    modules with weights that no knob compresses, and why.
    """

    model: str
    input_shape: tuple[int, ...]  # one sample of a single float input, e.g. (1, 28, 28); else ()
    layers: dict[str, LayerProfile]
    norms: dict[str, NormProfile]
    groups: dict[int, ChannelGroup]
    fixed_params: int  # parameters outside layers and norms (never compressed)
    fixed_state: int  # float buffers outside norms, stored with the model
    other_macs: int = 0
    untouched: dict[str, str] = field(default_factory=dict)
    example: Inputs | None = field(default=None, compare=False, repr=False)

    @property
    def inputs(self) -> Inputs:
        """The example inputs the model was profiled with."""
        if self.example is not None:
            return self.example
        return Inputs.images(self.input_shape)


Example = tuple[int, ...] | Inputs | torch.Tensor | tuple[Any, ...] | list[Any] | dict[str, Any]


def as_inputs(example: Example) -> Inputs:
    """A sample shape (C, H, W) of ints means a zero image batch of one; anything else is
    example inputs (see :meth:`Inputs.of`)."""
    if isinstance(example, tuple) and example and all(isinstance(d, int) for d in example):
        return Inputs.images(example)
    return Inputs.of(example)


def profile_model(model: nn.Module, example: Example, model_name: str) -> Profile:
    """Profile ``model`` on ``example``: a sample shape (C, H, W) for image models, or the
    model's example inputs (see :class:`autocompress.inputs.Inputs`)."""
    with warnings.catch_warnings():  # Torch-Pruning's shape inference warns on recurrent layers
        warnings.simplefilter("ignore")
        return _profile(model, as_inputs(example), model_name)


def _profile(model: nn.Module, inputs: Inputs, model_name: str) -> Profile:
    model = copy.deepcopy(model).eval()
    traced = _trace(model, inputs)
    positions, order = traced.positions, traced.order
    names = {m: n for n, m in model.named_modules()}
    untouched = _untouched(model, positions)
    graph = dependency_graph(model, inputs)

    out_group: dict[str, int] = {}
    in_groups: dict[str, list[tuple[int, int]]] = {}
    norm_groups: dict[str, list[int]] = {}
    groups: dict[int, ChannelGroup] = {}
    for root_name in order:
        if root_name in out_group:
            continue
        root = model.get_submodule(root_name)
        pruner = graph.get_pruner_of_module(root)
        channels = pruner.get_out_channels(root)
        gid = len(groups)
        group = graph.get_pruning_group(root, pruner.prune_out_channels, list(range(channels)))
        members, why = [], ""
        for dep, idxs in group:
            target = dep.target.module
            name = names.get(target, "")
            is_out = graph.is_out_channel_pruning_fn(dep.handler)
            if isinstance(target, nn.Conv2d | nn.Linear) and name in positions:
                if is_out:
                    out_group[name] = gid
                    members.append(name)
                    if isinstance(target, nn.Conv2d) and target.groups == target.in_channels > 1:
                        in_groups.setdefault(name, []).append((gid, 1))
                else:
                    if len(idxs) % channels:
                        why = (
                            f"layer '{name}' takes a non-integer share of its channels (a "
                            "reshape between them, such as a split into attention heads)"
                        )
                    in_groups.setdefault(name, []).append((gid, len(idxs) // channels))
                if (
                    isinstance(target, nn.Conv2d)
                    and target.groups > 1
                    and not (target.groups == target.in_channels == target.out_channels)
                ):
                    why = f"grouped convolution '{name}' is coupled to it"
            elif isinstance(target, SUPPORTED_NORMS):
                if gid not in norm_groups.setdefault(name, []):
                    norm_groups[name].append(gid)
            elif isinstance(target, nn.Module) and any(True for _ in target.parameters(False)):
                why = f"module '{name}' ({type(target).__name__}) is coupled to it"
            elif isinstance(target, nn.Module) and name in untouched:
                why = f"module '{name}' is coupled to it ({untouched[name]})"
            elif isinstance(target, nn.Parameter):
                why = "a bare nn.Parameter is coupled to it"
        if order and order[-1] in members:
            why = "its output channels are the model's outputs"
        groups[gid] = ChannelGroup(gid, channels, root_name, tuple(members), not why, why)

    layers = {}
    for name in order:
        m = model.get_submodule(name)
        kind, fan_in, fan_out, kernel, conv_groups = _dims(m)
        ins = tuple(in_groups.get(name, ()))
        layers[name] = LayerProfile(
            name=name,
            kind=kind,
            in_features=fan_in,
            out_features=fan_out,
            kernel=kernel,
            groups=conv_groups,
            positions=positions[name],
            bias=m.bias is not None,
            out_group=out_group[name],
            in_groups=ins,
            in_fixed=fan_in - sum(groups[g].channels * mult for g, mult in ins),
            stride=int(m.stride[0]) if isinstance(m, nn.Conv2d) else 1,
        )
    norms = {}
    for n, m in model.named_modules():
        if isinstance(m, SUPPORTED_NORMS):
            gids = tuple(norm_groups.get(n, ()))
            fixed = m.num_features - sum(groups[g].channels for g in gids)
            if fixed < 0:  # coupled to a group in a way it does not concatenate: keep it whole
                for g in gids:
                    groups[g] = _not_prunable(groups[g], f"norm '{n}' is coupled to it")
                gids, fixed = (), m.num_features
            norms[n] = NormProfile(n, m.num_features, gids, fixed, m.affine, m.track_running_stats)
    counted = {id(p) for n in [*layers, *norms] for p in model.get_submodule(n).parameters()}
    fixed_params = sum(p.numel() for p in model.parameters() if id(p) not in counted)
    norm_buffers = {id(b) for n in norms for b in model.get_submodule(n).buffers()}
    fixed_state = sum(
        b.numel() for b in model.buffers() if id(b) not in norm_buffers and b.is_floating_point()
    )
    other = traced.total_macs - traced.layer_macs
    if other:  # a group whose channels reach an uncounted product must stay whole
        groups = _guard_other_macs(model, inputs, groups, other)
    return Profile(
        model_name,
        inputs.sample_shape or (),
        layers,
        norms,
        groups,
        fixed_params,
        fixed_state,
        other,
        untouched,
        inputs,
    )


def dependency_graph(model: nn.Module, inputs: Inputs) -> tp.DependencyGraph:
    """Torch-Pruning's dependency graph of ``model`` traced on ``inputs``."""
    return tp.DependencyGraph().build_dependency(
        model, example_inputs=inputs, forward_fn=lambda m, x: x(m), verbose=False
    )


def _not_prunable(group: ChannelGroup, why: str) -> ChannelGroup:
    return ChannelGroup(group.id, group.channels, group.root, group.layers, False, group.why or why)


def _guard_other_macs(
    model: nn.Module, inputs: Inputs, groups: dict[int, ChannelGroup], other: int
) -> dict[int, ChannelGroup]:
    """Remove one channel of each prunable group in turn (on a copy): a group whose removal
    changes the MACs outside the compressible layers, or breaks the forward pass, is not
    prunable. Attention heads written by hand (a Linear's output reshaped into heads) are the
    usual case: their channels feed q·k products the cost model does not price per channel."""
    result = dict(groups)
    work, graph = None, None
    for gid, group in groups.items():
        if not group.prunable:
            continue
        if work is None:
            work = copy.deepcopy(model)
            graph = dependency_graph(work, inputs)
        assert graph is not None
        root = work.get_submodule(group.root)
        pruner = graph.get_pruner_of_module(root)
        channels = pruner.get_out_channels(root)
        if channels < 2:
            continue
        try:
            graph.get_pruning_group(root, pruner.prune_out_channels, [channels - 1]).prune()
            traced = _trace(work, inputs)
            changed = traced.total_macs - traced.layer_macs != other
            why = "its channels reach products outside the compressible layers (attention)"
        except Exception as exc:  # the model cannot run with this group pruned
            changed, work = True, None
            why = f"the model fails when its channels are pruned ({type(exc).__name__})"
        if changed:
            result[gid] = _not_prunable(group, why)
            work = None  # start again from the unpruned model
    return result


def _untouched(model: nn.Module, positions: dict[str, int]) -> dict[str, str]:
    """Modules (and bare parameters) holding weights that no knob compresses, with the reason.

    A PyTorch layer with weights (Embedding, LSTM, MultiheadAttention, LayerNorm, Conv1d, ...)
    is named as a whole; a parameter of your own module (a class token, a position
    embedding) is named by itself.
    """
    found: dict[str, str] = {}
    for name, module in model.named_modules():
        if not name or any(name.startswith(f"{other}.") for other in found):
            continue
        if isinstance(module, nn.Conv2d | nn.Linear):
            if name not in positions:
                found[name] = (
                    "never called through its forward (its parent reads the weights directly) "
                    "or unused: left as it is"
                )
            continue
        if isinstance(module, SUPPORTED_NORMS):
            continue
        own = [p for p, _ in module.named_parameters(recurse=False)]
        if not own:
            continue
        if type(module).__module__.startswith("torch.nn"):
            found[name] = f"{type(module).__name__}: no compression method for it; priced as it is"
        else:
            for param in own:
                found[f"{name}.{param}"] = "a parameter of its own: stored as it is"
    for param, _ in model.named_parameters(recurse=False):
        found[param] = "a parameter of its own: stored as it is"
    return found


def _dims(m: nn.Module) -> tuple[str, int, int, int, int]:
    """(kind, in features, out features, kernel area, groups) of a Conv2d or Linear."""
    if isinstance(m, nn.Conv2d):
        kh, kw = m.kernel_size
        return "conv", m.in_channels, m.out_channels, kh * kw, m.groups
    assert isinstance(m, nn.Linear)
    return "linear", m.in_features, m.out_features, 1, 1


@dataclass
class _Traced:
    positions: dict[str, int]  # output positions of every Conv2d/Linear per call
    order: list[str]  # their execution order
    total_macs: int  # every multiply-accumulate of the call
    layer_macs: int  # those of the Conv2d/Linear layers


def _trace(model: nn.Module, inputs: Inputs) -> _Traced:
    """One call of ``model``: its layers' positions and order, and its MACs, counted by
    ``FlopCounterMode`` with the math attention kernel and without inference fast paths (which
    hide attention from it), plus recurrent layers (which it does not see) by formula."""
    positions: dict[str, int] = {}
    order: list[str] = []
    macs = {"layers": 0, "recurrent": 0}
    counter = FlopCounterMode(display=False)
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear):

            def hook(mod: nn.Module, _inp: object, out: torch.Tensor, name: str = name) -> None:
                _, fan_in, width, kernel, groups = _dims(mod)
                if name in positions:
                    raise ConfigError(
                        "model",
                        name,
                        f"layer '{name}' runs twice in one forward pass; shared "
                        "layers cannot be compressed per layer",
                    )
                positions[name] = out.numel() // width
                order.append(name)
                macs["layers"] += out.numel() * (fan_in // groups) * kernel

            hooks.append(module.register_forward_hook(hook))
        elif isinstance(module, nn.RNNBase):
            seen: dict[str, int] = {}

            def rnn_pre(_mod: nn.Module, _inp: object, seen: dict[str, int] = seen) -> None:
                seen["before"] = counter.get_total_flops()

            def rnn_hook(
                mod: nn.Module, inp: tuple[Any, ...], _out: object, seen: dict[str, int] = seen
            ) -> None:
                # LSTM runs as one kernel FlopCounterMode does not see; GRU is decomposed
                if counter.get_total_flops() == seen["before"]:
                    macs["recurrent"] += recurrent_macs(mod, inp[0])

            hooks.append(module.register_forward_pre_hook(rnn_pre))
            hooks.append(module.register_forward_hook(rnn_hook))
    was_training = model.training
    model.eval()
    try:
        with counter, sdpa_kernel(SDPBackend.MATH), _no_fast_path():
            inputs(model)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    total = counter.get_total_flops() // 2 + macs["recurrent"]
    return _Traced(positions, order, total, macs["layers"])


def count_macs(model: nn.Module, example: Example) -> int:
    """Every multiply-accumulate of one call of ``model`` on ``example``, counted on the model
    as it is (``FlopCounterMode`` with the math attention kernel, plus recurrent layers)."""
    return _trace(model, as_inputs(example)).total_macs


@contextmanager
def _no_fast_path() -> Iterator[None]:
    """Turn off the inference fast path of nn.MultiheadAttention / TransformerEncoderLayer."""
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


def recurrent_macs(module: nn.Module, x: Any) -> int:
    """Multiply-accumulates of an RNN/LSTM/GRU call on input ``x`` (FlopCounterMode sees none
    of an LSTM's).

    Per time step, layer and direction: gates × hidden × (input + recurrent width), plus the
    projection of an LSTM with ``proj_size``.
    """
    assert isinstance(module, nn.RNNBase)
    if isinstance(x, nn.utils.rnn.PackedSequence):
        steps = int(x.batch_sizes.sum())  # one step per sample and position
    else:
        steps = x.shape[0] * x.shape[1] if x.ndim == 3 else x.shape[0]
    gates = {"LSTM": 4, "GRU": 3}.get(module.mode, 1)
    dirs = 2 if module.bidirectional else 1
    out = module.proj_size or module.hidden_size
    total = 0
    for layer in range(module.num_layers):
        width = module.input_size if layer == 0 else out * dirs
        per_step = gates * module.hidden_size * (width + out)
        if module.proj_size:
            per_step += module.proj_size * module.hidden_size
        total += dirs * per_step
    return steps * total
