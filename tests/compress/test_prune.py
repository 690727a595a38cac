from __future__ import annotations

import pytest
import torch

from autocompress.compress import apply_policy
from autocompress.config import CompressConfig
from autocompress.cost.profile import profile_model
from autocompress.models import ZOO
from autocompress.policy import LayerChoice, Policy
from tests.tiny_models import tiny_resnet


def lenet5_with_dead_filters(dead: list[int]) -> torch.nn.Module:
    torch.manual_seed(0)
    model = ZOO["lenet5"]().eval()
    with torch.no_grad():
        model.conv1.weight[dead] = 0
        model.conv1.bias[dead] = 0
    return model


@pytest.mark.parametrize("importance", ["l1", "l2"])
def test_pruning_removes_the_weakest_channels_and_keeps_outputs(importance: str) -> None:
    dead = [1, 4, 7, 9, 13]  # 5 of conv1's 20 filters are zero: pruning 25% removes exactly them
    model = lenet5_with_dead_filters(dead)
    profile = profile_model(model, (1, 28, 28), "lenet5")
    policy = Policy("lenet5", {"conv1": LayerChoice(prune=0.25)})
    pruned = apply_policy(model, policy, profile, CompressConfig(importance=importance)).eval()
    assert pruned.conv1.out_channels == 15 and pruned.conv2.in_channels == 15
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(pruned(x), model(x), atol=1e-5)
    # the base model is untouched
    assert model.conv1.out_channels == 20


def test_flatten_coupling_shrinks_the_next_linear() -> None:
    model = ZOO["lenet5"]()
    profile = profile_model(model, (1, 28, 28), "lenet5")
    pruned = apply_policy(model, Policy("lenet5", {"conv2": LayerChoice(prune=0.5)}), profile)
    assert pruned.conv2.out_channels == 25 and pruned.fc1.in_features == 25 * 16


def test_round_to_rounds_kept_channels() -> None:
    model = tiny_resnet(width=16)
    profile = profile_model(model, (1, 8, 8), "tiny")
    policy = Policy("tiny", {"conv_a": LayerChoice(prune=0.3)})
    pruned = apply_policy(model, policy, profile, CompressConfig(round_to=8))
    assert pruned.conv_a.out_channels == 24 and pruned.bn_a.num_features == 24


def test_coupled_residual_channels_are_pruned_everywhere() -> None:
    model = tiny_resnet(width=8)
    profile = profile_model(model, (1, 8, 8), "tiny")
    pruned = apply_policy(model, Policy("tiny", {"conv_b": LayerChoice(prune=0.5)}), profile)
    # stem, conv_b, the residual add and the depthwise conv share one group of 8 channels
    assert (
        pruned.stem.out_channels,
        pruned.conv_b.out_channels,
        pruned.dw.out_channels,
        pruned.dw.groups,
        pruned.pw.in_channels,
        pruned.conv_a.in_channels,
    ) == (4,) * 6
    assert pruned(torch.zeros(1, 1, 8, 8)).shape == (1, 10)
