"""One-time layer profile: shapes, per-layer MACs and the coupled channel groups.

The profile is pure data, computed once per model with one forward pass (hooks) and one
Torch-Pruning dependency graph. The cost model prices any policy from it without building the
compressed model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from autocompress.errors import ConfigError

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
    name: str
    channels: int
    group: int | None
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
    model: str
    input_shape: tuple[int, ...]  # one sample, e.g. (1, 28, 28)
    layers: dict[str, LayerProfile]
    norms: dict[str, NormProfile]
    groups: dict[int, ChannelGroup]
    fixed_params: int  # parameters outside layers and norms (never compressed)
    fixed_state: int  # float buffers outside norms, stored with the model


def profile_model(model: nn.Module, input_shape: tuple[int, ...], model_name: str) -> Profile:
    """Profile ``model`` for inputs of one sample shape ``input_shape`` (C, H, W)."""
    model = copy.deepcopy(model).eval()
    example = torch.zeros(1, *input_shape)
    positions, order = _trace_positions(model, example)
    names = {m: n for n, m in model.named_modules()}
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)

    out_group: dict[str, int] = {}
    in_groups: dict[str, list[tuple[int, int]]] = {}
    norm_group: dict[str, int] = {}
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
                        why = f"layer '{name}' takes a non-integer share of its channels"
                    in_groups.setdefault(name, []).append((gid, len(idxs) // channels))
                if (
                    isinstance(target, nn.Conv2d)
                    and target.groups > 1
                    and not (target.groups == target.in_channels == target.out_channels)
                ):
                    why = f"grouped convolution '{name}' is coupled to it"
            elif isinstance(target, SUPPORTED_NORMS):
                norm_group[name] = gid
            elif isinstance(target, nn.Module) and any(True for _ in target.parameters(False)):
                why = f"module '{name}' ({type(target).__name__}) is coupled to it"
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
    norms = {
        n: NormProfile(n, m.num_features, norm_group.get(n), m.affine, m.track_running_stats)
        for n, m in model.named_modules()
        if isinstance(m, SUPPORTED_NORMS)
    }
    counted = {id(p) for n in [*layers, *norms] for p in model.get_submodule(n).parameters()}
    fixed_params = sum(p.numel() for p in model.parameters() if id(p) not in counted)
    norm_buffers = {id(b) for n in norms for b in model.get_submodule(n).buffers()}
    fixed_state = sum(
        b.numel() for b in model.buffers() if id(b) not in norm_buffers and b.is_floating_point()
    )
    return Profile(model_name, tuple(input_shape), layers, norms, groups, fixed_params, fixed_state)


def _dims(m: nn.Module) -> tuple[str, int, int, int, int]:
    """(kind, in features, out features, kernel area, groups) of a Conv2d or Linear."""
    if isinstance(m, nn.Conv2d):
        kh, kw = m.kernel_size
        return "conv", m.in_channels, m.out_channels, kh * kw, m.groups
    assert isinstance(m, nn.Linear)
    return "linear", m.in_features, m.out_features, 1, 1


def _trace_positions(model: nn.Module, example: torch.Tensor) -> tuple[dict[str, int], list[str]]:
    """Output positions per sample of every Conv2d/Linear, and their execution order."""
    positions: dict[str, int] = {}
    order: list[str] = []
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear):

            def hook(mod: nn.Module, _inp: object, out: torch.Tensor, name: str = name) -> None:
                width = _dims(mod)[2]
                if name in positions:
                    raise ConfigError(
                        "model",
                        name,
                        f"layer '{name}' runs twice in one forward pass; shared "
                        "layers cannot be compressed per layer",
                    )
                positions[name] = out.numel() // (out.shape[0] * width)
                order.append(name)

            hooks.append(module.register_forward_hook(hook))
    with torch.no_grad():
        model(example)
    for h in hooks:
        h.remove()
    return positions, order
