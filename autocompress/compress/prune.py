"""Structural channel pruning through Torch-Pruning's dependency graph.

A ``prune`` ratio on a layer removes that fraction of its output channels and, with them, the
coupled channels everywhere else (BatchNorm, residual adds, depthwise convs, the next layer's
inputs), so tensors really shrink. Channels with the smallest group L1/L2 magnitude go first.
"""

from __future__ import annotations

import warnings

import torch
import torch_pruning as tp
from torch import nn

from autocompress.config import CompressConfig
from autocompress.cost.metrics import group_channels
from autocompress.cost.profile import Profile, dependency_graph
from autocompress.policy import Policy

KNOBS = ("prune",)


def apply(
    model: nn.Module, policy: Policy, profile: Profile, settings: CompressConfig
) -> nn.Module:
    """Prune ``model`` in place to the kept channel counts the cost model predicts."""
    kept = group_channels(profile, policy, settings.round_to)
    targets = {gid: n for gid, n in kept.items() if n < profile.groups[gid].channels}
    if not targets:
        return model
    with warnings.catch_warnings():  # Torch-Pruning's shape inference warns on recurrent layers
        warnings.simplefilter("ignore")
        return _prune(model, profile, targets, settings)


def _prune(
    model: nn.Module, profile: Profile, targets: dict[int, int], settings: CompressConfig
) -> nn.Module:
    was_training = model.training
    model.eval()
    graph = dependency_graph(model, profile.inputs)
    importance = tp.importance.GroupMagnitudeImportance(p=1 if settings.importance == "l1" else 2)
    for gid, keep in targets.items():
        root = model.get_submodule(profile.groups[gid].root)
        pruner = graph.get_pruner_of_module(root)
        channels = pruner.get_out_channels(root)
        group = graph.get_pruning_group(root, pruner.prune_out_channels, list(range(channels)))
        scores = importance(group)
        drop = torch.argsort(scores)[: channels - keep].tolist()
        group.prune(sorted(drop))
    model.train(was_training)
    return model
