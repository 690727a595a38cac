from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autocompress.compress import KNOB_METHODS as METHODS
from autocompress.cost.check import check_policy
from autocompress.cost.profile import profile_model
from autocompress.errors import PolicyError
from autocompress.models import ZOO
from autocompress.policy import BITS, LayerChoice, Policy

ISSUE_EXAMPLE = """\
model: lenet5
layers:
  conv2: {prune: 0.5}
  fc1: {prune: 0.8, sparsity: 0.9, w_bits: 4, a_bits: 8, rank: 0.5, clusters: 16}
"""

choices = st.builds(
    LayerChoice,
    prune=st.floats(0, 0.99),
    sparsity=st.floats(0, 0.99),
    w_bits=st.sampled_from(BITS),
    a_bits=st.sampled_from(BITS),
    rank=st.floats(0.01, 1.0),
    clusters=st.one_of(st.none(), st.integers(2, 256)),
)


@given(st.dictionaries(st.text("abcdefgh.123_", min_size=1, max_size=12), choices, max_size=6))
def test_policy_yaml_round_trip_is_identity(tmp_path_factory, layers) -> None:
    policy = Policy("lenet5", layers)
    path = tmp_path_factory.mktemp("p") / "policy.yaml"
    policy.save(path)
    loaded = Policy.load(path)
    # untouched layers are dropped from the file, and mean the same thing
    assert {n: loaded.choice(n) for n in layers} == dict(layers)
    assert set(loaded.layers) == {n for n, c in layers.items() if c.changed()}


def test_issue_example_parses(tmp_path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(ISSUE_EXAMPLE)
    policy = Policy.load(path)
    assert policy.choice("fc1") == LayerChoice(0.8, 0.9, 4, 8, 0.5, 16)
    assert policy.choice("conv1") == LayerChoice()
    policy.save(path)
    assert Policy.load(path) == policy


@pytest.mark.parametrize(
    ("knobs", "knob", "fragment"),
    [
        ({"prune": 1.0}, "prune", "[0, 1)"),
        ({"prune": "half"}, "prune", "[0, 1)"),
        ({"w_bits": 9}, "w_bits", "one of"),
        ({"a_bits": 4.0}, "a_bits", "one of"),
        ({"rank": 0}, "rank", "(0, 1]"),
        ({"clusters": 1}, "clusters", "[2, 65536]"),
        ({"prunе": 0.5}, "prunе", "unknown knob"),
    ],
)
def test_bad_knob_values_name_layer_and_knob(knobs, knob, fragment) -> None:
    with pytest.raises(PolicyError) as err:
        Policy.from_dict({"model": "lenet5", "layers": {"conv2": knobs}})
    assert err.value.layer == "conv2" and err.value.knob == knob
    assert fragment in str(err.value)


@pytest.fixture(scope="module")
def lenet5_profile():
    return profile_model(ZOO["lenet5"](), (1, 28, 28), "lenet5")


def test_unknown_layer_is_an_error(lenet5_profile) -> None:
    policy = Policy("lenet5", {"conv3": LayerChoice(prune=0.5)})
    with pytest.raises(PolicyError, match="layer 'conv3'.*no such compressible layer.*conv1"):
        check_policy(policy, lenet5_profile, METHODS)


def test_output_layer_cannot_be_pruned(lenet5_profile) -> None:
    with pytest.raises(PolicyError, match="layer 'fc2', knob 'prune'.*model's outputs"):
        check_policy(Policy("lenet5", {"fc2": LayerChoice(prune=0.5)}), lenet5_profile, METHODS)


def test_policy_for_another_model_is_an_error(lenet5_profile) -> None:
    with pytest.raises(PolicyError, match="for model 'vgg16_bn'"):
        check_policy(Policy("vgg16_bn"), lenet5_profile, METHODS)


def test_knob_without_a_method_is_an_error_not_a_no_op(lenet5_profile) -> None:
    only_prune = {"prune": METHODS["prune"]}
    with pytest.raises(PolicyError, match="knob 'sparsity'.*no method"):
        check_policy(
            Policy("lenet5", {"fc1": LayerChoice(sparsity=0.5)}), lenet5_profile, only_prune
        )


def test_rank_that_does_not_reduce_macs_is_refused(lenet5_profile) -> None:
    # conv1 is 20×25: rank 13 of 20 costs 13 × (25 + 20) = 585 > 500 MACs per position
    with pytest.raises(PolicyError, match=r"layer 'conv1', knob 'rank'.*does not reduce MACs"):
        check_policy(Policy("lenet5", {"conv1": LayerChoice(rank=0.65)}), lenet5_profile, METHODS)
    check_policy(Policy("lenet5", {"conv1": LayerChoice(rank=0.5)}), lenet5_profile, METHODS)


def test_clusters_with_integer_bits_is_refused(lenet5_profile) -> None:
    with pytest.raises(PolicyError, match="knob 'w_bits'.*clusters"):
        check_policy(
            Policy("lenet5", {"fc1": LayerChoice(clusters=16, w_bits=4)}), lenet5_profile, METHODS
        )


def test_depthwise_conv_cannot_be_factorized() -> None:
    profile = profile_model(ZOO["mobilenetv2_cifar"](), (3, 32, 32), "mobilenetv2_cifar")
    with pytest.raises(PolicyError, match="knob 'rank'.*depthwise"):
        check_policy(
            Policy("mobilenetv2_cifar", {"features.2.conv.3": LayerChoice(rank=0.1)}),
            profile,
            METHODS,
        )


def test_coupled_layers_need_one_ratio() -> None:
    profile = profile_model(ZOO["resnet20"](), (3, 32, 32), "resnet20")
    coupled = next(g for g in profile.groups.values() if len(g.layers) > 1)
    a, b = coupled.layers[:2]
    check_policy(
        Policy("resnet20", {a: LayerChoice(prune=0.5), b: LayerChoice(prune=0.5)}), profile, METHODS
    )
    with pytest.raises(PolicyError, match=f"coupled with layer '{a}'"):
        check_policy(
            Policy("resnet20", {a: LayerChoice(prune=0.5), b: LayerChoice(prune=0.25)}),
            profile,
            METHODS,
        )
