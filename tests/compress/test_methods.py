"""Every method, mixed at random on every zoo model: cost model = counts on the built model."""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from autocompress.compress import KNOB_METHODS, apply_policy, lowrank
from autocompress.compress.layers import folded, weight_layers
from autocompress.compress.pack import encode_model, pack_model, unpack_layer
from autocompress.compress.quantize import ActQuant, calibrate
from autocompress.cost.check import check_policy
from autocompress.cost.metrics import compute_costs
from autocompress.cost.profile import Profile, profile_model
from autocompress.errors import PolicyError
from autocompress.models import ZOO
from autocompress.policy import LayerChoice, Policy
from tests.tiny_models import tiny_resnet

SHAPES = {
    "lenet300_100": (1, 28, 28),
    "lenet5": (1, 28, 28),
    "vgg_small": (1, 28, 28),
    "tiny_resnet": (1, 8, 8),
}
MODELS = [*ZOO, "tiny_resnet"]
BIG = ("vgg16_bn", "resnet56", "mobilenetv2_cifar", "resnet32")


@functools.cache
def model_and_profile(name: str) -> tuple[torch.nn.Module, Profile]:
    torch.manual_seed(0)
    model = tiny_resnet() if name == "tiny_resnet" else ZOO[name]()
    return model.eval(), profile_model(model, SHAPES.get(name, (3, 32, 32)), name)


def examples(n: int) -> settings:
    """Deterministic property runs: ``n`` examples, no deadline (models take a while)."""
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


def valid(policy: Policy, profile: Profile) -> bool:
    try:
        check_policy(policy, profile, KNOB_METHODS)
    except PolicyError:
        return False
    return True


@st.composite
def layer_choices(draw: st.DrawFn, prunable: bool) -> LayerChoice:
    clusters = draw(st.one_of(st.none(), st.sampled_from([2, 5, 16, 64])))
    w_bits = draw(st.sampled_from([16, 32] if clusters else [2, 3, 4, 6, 8, 16, 32]))
    return LayerChoice(
        prune=draw(st.sampled_from([0.0, 0.3, 0.6])) if prunable else 0.0,
        sparsity=draw(st.sampled_from([0.0, 0.2, 0.5, 0.9, 0.97])),
        w_bits=w_bits,
        a_bits=draw(st.sampled_from([4, 8, 16, 32])),
        rank=draw(st.sampled_from([1.0, 1.0, 0.4, 0.15])),
        clusters=clusters,
    )


@st.composite
def mixed_policies(draw: st.DrawFn, profile: Profile) -> Policy:
    layers = {}
    roots = {g.root for g in profile.groups.values() if g.prunable}
    for name in profile.layers:
        if draw(st.booleans()):
            layers[name] = draw(layer_choices(prunable=name in roots))
    policy = Policy(profile.model, layers)
    assume(valid(policy, profile))
    return policy


def counted(model: torch.nn.Module, profile: Profile, policy: Policy) -> dict[str, int]:
    with FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, *profile.input_shape))
    return {
        "macs": counter.get_total_flops() // 2,
        "params": sum(p.numel() for p in folded(model).parameters()),
        "size_bytes": sum(len(b) for b in pack_model(model, policy, list(profile.layers)).values()),
    }


@pytest.mark.parametrize("name", MODELS)
def test_mixed_policies_cost_exactly_what_is_built(name: str) -> None:
    model, profile = model_and_profile(name)
    x = torch.randn(2, *profile.input_shape)

    @examples(2 if name in BIG else 8)
    @given(mixed_policies(profile))
    def check(policy: Policy) -> None:
        built = apply_policy(model, policy, profile)
        costs = compute_costs(profile, policy)
        assert {k: v for k, v in costs.as_dict().items() if k != "bitops"} == counted(
            built, profile, policy
        )
        assert built.eval()(x).shape == model(x).shape

    check()


@pytest.mark.parametrize("name", ["lenet5", "tiny_resnet", "lenet300_100"])
def test_packed_weights_decode_to_the_model_weights(name: str) -> None:
    model, profile = model_and_profile(name)

    @examples(6)
    @given(mixed_policies(profile))
    def check(policy: Policy) -> None:
        built = apply_policy(model, policy, profile)
        blobs = pack_model(built, policy, list(profile.layers))
        for layer, (encoded, bias) in encode_model(built, policy, list(profile.layers)).items():
            choice = policy.choice(layer)
            specs = [(e.shape, int(e.keep.sum()), choice.w_bits, choice.clusters) for e in encoded]
            weights, b = unpack_layer(blobs[layer], specs, 0 if bias is None else bias.size)
            for w, factor in zip(weights, weight_layers(built, layer), strict=True):
                assert torch.equal(w, factor.weight.detach()), layer
            if bias is not None:
                assert b is not None and torch.equal(b, torch.from_numpy(bias))

    check()


@pytest.mark.parametrize("name", MODELS)
def test_identity_policy_reproduces_the_base_model(name: str) -> None:
    model, profile = model_and_profile(name)
    identity = Policy(name, {n: LayerChoice(0.0, 0.0, 32, 32, 1.0, None) for n in profile.layers})
    x = torch.randn(3, *profile.input_shape)
    built = apply_policy(model, identity, profile).eval()
    with torch.no_grad():
        assert torch.allclose(built(x), model(x), atol=1e-5)


# One step of more compression per knob. Bits step within floats (32 → 16) and within integer
# codes (8 → 2); from float16 to codes, the per-channel float32 scales can outweigh the saving on
# a tensor with only a few kept weights per channel (tested on real layers below).
MORE = {
    "prune": lambda c: {"prune": min(0.9, c.prune + 0.2)},
    "sparsity": lambda c: {"sparsity": min(0.99, c.sparsity + 0.3)},
    "w_bits": lambda c: {"w_bits": {32: 16, 16: 16, 8: 6, 6: 4, 4: 3, 3: 2, 2: 2}[c.w_bits]},
    "a_bits": lambda c: {"a_bits": {32: 16, 16: 8, 8: 4, 4: 2}[c.a_bits]},
    "rank": lambda c: {"rank": c.rank * 0.5},
    "clusters": lambda c: {"clusters": max(2, c.clusters // 2)} if c.clusters else {},
}


@pytest.mark.parametrize("name", ["lenet5", "resnet20", "tiny_resnet"])
@pytest.mark.parametrize("knob", list(MORE))
def test_more_compression_never_increases_any_cost(name: str, knob: str) -> None:
    _, profile = model_and_profile(name)

    @examples(30)
    @given(mixed_policies(profile), st.data())
    def check(policy: Policy, data: st.DataObject) -> None:
        roots = {g.root for g in profile.groups.values() if g.prunable}
        candidates = [n for n in policy.layers if knob != "prune" or n in roots]
        assume(candidates)
        layer = data.draw(st.sampled_from(candidates))
        choice = policy.layers[layer]
        stronger = Policy(
            name, {**policy.layers, layer: LayerChoice(**{**choice.__dict__, **MORE[knob](choice)})}
        )
        assume(valid(stronger, profile))
        before, after = compute_costs(profile, policy), compute_costs(profile, stronger)
        for metric, value in after.as_dict().items():
            assert value <= before.as_dict()[metric], metric

    check()


@pytest.mark.parametrize("name", MODELS)
def test_integer_codes_are_smaller_than_float16_on_every_zoo_layer(name: str) -> None:
    _, profile = model_and_profile(name)
    for layer in profile.layers:
        half = compute_costs(profile, Policy(name, {layer: LayerChoice(w_bits=16)}))
        for bits in (8, 2):
            codes = compute_costs(profile, Policy(name, {layer: LayerChoice(w_bits=bits)}))
            assert codes.layers[layer].size_bytes <= half.layers[layer].size_bytes, layer


def fine_tune_steps(model: torch.nn.Module, shape: tuple[int, ...], steps: int = 5) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for _ in range(steps):
        loss = model(torch.randn(8, *shape)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_masks_and_shared_values_hold_through_fine_tuning() -> None:
    model, profile = model_and_profile("lenet5")
    policy = Policy(
        "lenet5",
        {
            "fc1": LayerChoice(sparsity=0.9, clusters=16),
            "conv2": LayerChoice(sparsity=0.5, w_bits=4),
        },
    )
    built = apply_policy(model, policy, profile)
    zeros_before = built.fc1.weight == 0
    fine_tune_steps(built, profile.input_shape)
    fc1 = built.fc1.weight.detach()
    assert torch.equal(fc1 == 0, zeros_before) and (fc1 == 0).float().mean() >= 0.9
    assert len(torch.unique(fc1[fc1 != 0])) <= 16
    conv2 = built.conv2.weight.detach()
    assert (conv2 == 0).float().mean() >= 0.5
    for row in conv2.flatten(1):  # per output channel: at most 15 levels of a 4-bit code
        assert len(torch.unique(row)) <= 15


def test_centroid_gradients_are_pooled_per_cluster() -> None:
    model, profile = model_and_profile("lenet300_100")
    built = apply_policy(model, Policy("lenet300_100", {"fc3": LayerChoice(clusters=4)}), profile)
    shared = built.fc3.parametrizations.weight[0]
    built(torch.randn(4, 1, 28, 28)).sum().backward()
    weight_grad = torch.autograd.grad(
        built(torch.randn(4, 1, 28, 28)).sum(), built.fc3.parametrizations.weight[0].centroids
    )[0]
    assert shared.centroids.grad is not None and weight_grad.shape == (4,)


def test_activation_ranges_are_calibrated_then_tracked() -> None:
    model, profile = model_and_profile("lenet5")
    built = apply_policy(model, Policy("lenet5", {"fc1": LayerChoice(a_bits=8)}), profile)
    quantizer = built.fc1.input_quant
    assert isinstance(quantizer, ActQuant)
    batches = [torch.randn(16, 1, 28, 28) for _ in range(3)]
    assert calibrate(built, batches) == 1
    lo, hi = float(quantizer.lo), float(quantizer.hi)
    assert lo <= 0 <= hi and hi > 0
    fine_tune_steps(built, profile.input_shape, steps=2)
    assert (float(quantizer.lo), float(quantizer.hi)) != (lo, hi)  # tracked while training


def test_low_rank_svd_is_cached_and_exact_at_full_rank() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(20, 12)
    lowrank._CACHE.clear()
    approx = lowrank.factorize(layer, 1.0)
    x = torch.randn(5, 20)
    assert torch.allclose(approx(x), layer(x), atol=1e-5)
    lowrank.factorize(layer, 0.5)
    assert len(lowrank._CACHE) == 1  # the second rank reused the decomposition
    conv = torch.nn.Conv2d(6, 8, 3, stride=2, padding=1)
    factored = lowrank.factorize(conv, 1.0)
    y = torch.randn(2, 6, 9, 9)
    assert torch.allclose(factored(y), conv(y), atol=1e-5)
