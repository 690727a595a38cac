"""The cost model must equal counts on the really pruned model, exactly, for every zoo model."""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from autocompress.compress import apply_policy
from autocompress.compress.layers import folded
from autocompress.compress.pack import pack_model
from autocompress.config import CompressConfig
from autocompress.cost.metrics import compute_costs, kept_channels
from autocompress.cost.profile import Profile, profile_model
from autocompress.models import ZOO
from autocompress.policy import LayerChoice, Policy
from tests.tiny_models import tiny_resnet

# the rest are CIFAR models
SHAPES = {"lenet300_100": (1, 28, 28), "lenet5": (1, 28, 28), "vgg_small": (1, 28, 28)}
MODELS = [*ZOO, "tiny_resnet"]


@functools.cache
def model_and_profile(name: str) -> tuple[torch.nn.Module, Profile]:
    torch.manual_seed(0)
    model = tiny_resnet() if name == "tiny_resnet" else ZOO[name]()
    shape = (1, 8, 8) if name == "tiny_resnet" else SHAPES.get(name, (3, 32, 32))
    return model, profile_model(model, shape, name)


def count(model: torch.nn.Module, profile: Profile, policy: Policy) -> dict[str, int]:
    """MACs by FlopCounterMode (FLOPs / 2, conv and linear), params by tensors of the folded
    model, bytes as packed for export."""
    with FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, *profile.input_shape))
    blobs = pack_model(model, policy, list(profile.layers))
    return {
        "macs": counter.get_total_flops() // 2,
        "params": sum(p.numel() for p in folded(model).parameters()),
        "size_bytes": sum(len(b) for b in blobs.values()),
    }


@st.composite
def prune_policies(draw: st.DrawFn, profile: Profile) -> tuple[Policy, int]:
    layers = {}
    for group in profile.groups.values():
        if group.prunable and draw(st.booleans()):
            layer = draw(st.sampled_from(group.layers))
            layers[layer] = LayerChoice(prune=draw(st.floats(0.0, 0.95)))
    return Policy(profile.model, layers), draw(st.sampled_from([1, 1, 2, 8]))


@pytest.mark.parametrize("name", MODELS)
def test_base_costs_equal_counts(name: str) -> None:
    model, profile = model_and_profile(name)
    costs = compute_costs(profile, Policy(name))
    assert costs.as_dict() | {"bitops": 0} == count(model, profile, Policy(name)) | {"bitops": 0}
    assert costs.bitops == costs.macs * 32 * 32
    state = model.state_dict().values()  # float32 everywhere: the bytes of the state dict
    assert costs.size_bytes == sum(t.numel() * 4 for t in state if t.is_floating_point())


def test_lenet5_matches_the_paper() -> None:
    costs = compute_costs(model_and_profile("lenet5")[1], Policy("lenet5"))
    assert (costs.macs, costs.params) == (2_293_000, 431_080)


@pytest.mark.parametrize("name", MODELS)
def test_pruned_costs_equal_counts_on_the_built_model(name: str) -> None:
    model, profile = model_and_profile(name)
    examples = 3 if name in ("vgg16_bn", "resnet56", "mobilenetv2_cifar") else 20

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(prune_policies(profile))
    def check(drawn: tuple[Policy, int]) -> None:
        policy, round_to = drawn
        pruned = apply_policy(model, policy, profile, CompressConfig(round_to=round_to))
        costs = compute_costs(profile, policy, round_to)
        assert costs.as_dict() | {"bitops": 0} == count(pruned, profile, policy) | {"bitops": 0}
        out = pruned.eval()(torch.zeros(2, *profile.input_shape))
        assert out.shape == model.eval()(torch.zeros(2, *profile.input_shape)).shape
        # per-layer shapes are what the cost model says
        for layer, c in costs.layers.items():
            module = pruned.get_submodule(layer)
            shape = (
                (module.in_channels, module.out_channels)
                if isinstance(module, torch.nn.Conv2d)
                else (module.in_features, module.out_features)
            )
            assert shape == (c.in_features, c.out_features), layer

    check()


@pytest.mark.parametrize("name", ["lenet5", "resnet20", "tiny_resnet", "mobilenetv2_cifar"])
def test_more_pruning_never_increases_any_cost(name: str) -> None:
    _, profile = model_and_profile(name)
    prunable = [g.root for g in profile.groups.values() if g.prunable]

    @settings(max_examples=60, deadline=None, derandomize=True)
    @given(
        st.lists(st.floats(0, 0.95), min_size=len(prunable), max_size=len(prunable)),
        st.lists(st.floats(0, 0.3), min_size=len(prunable), max_size=len(prunable)),
        st.sampled_from([1, 4]),
    )
    def check(ratios: list[float], extra: list[float], round_to: int) -> None:
        less = Policy(
            name, {n: LayerChoice(prune=r) for n, r in zip(prunable, ratios, strict=True)}
        )
        more = Policy(
            name,
            {
                n: LayerChoice(prune=min(0.99, r + e))
                for n, r, e in zip(prunable, ratios, extra, strict=True)
            },
        )
        a, b = compute_costs(profile, less, round_to), compute_costs(profile, more, round_to)
        assert all(b.as_dict()[m] <= a.as_dict()[m] for m in a.as_dict())

    check()


@given(st.integers(1, 2048), st.floats(0, 0.999), st.floats(0, 0.999), st.integers(1, 16))
def test_kept_channels_is_monotone_and_bounded(channels, p, q, round_to) -> None:
    lo, hi = sorted((p, q))
    kept_lo, kept_hi = kept_channels(channels, lo, round_to), kept_channels(channels, hi, round_to)
    assert 1 <= kept_hi <= kept_lo <= channels
    assert kept_channels(channels, 0.0, round_to) == channels


def test_residual_stage_is_one_group() -> None:
    _, profile = model_and_profile("resnet20")
    stage1 = profile.groups[profile.layers["layer1.0.conv2"].out_group]
    assert {"conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"} <= set(stage1.layers)
    depthwise = model_and_profile("mobilenetv2_cifar")[1].layers["features.2.conv.3"]
    assert depthwise.depthwise and depthwise.in_groups == ((depthwise.out_group, 1),)
