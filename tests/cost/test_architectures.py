"""Every architecture family users bring: profile, price and compress exactly, at random.

The cost model's figures for random mixed policies (pruning, low-rank, sparsity, bits, weight
sharing) must equal what is counted on the really compressed model: MACs by FlopCounterMode
(math attention kernel, no fused fast path; recurrent layers by formula, checked below against
an unrolled cell), parameters by the folded model's tensors, bytes as packed for export.
"""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from autocompress.compress import KNOB_METHODS, apply_policy
from autocompress.compress.layers import folded
from autocompress.compress.pack import pack_model
from autocompress.compress.quantize import calibrate
from autocompress.cost.check import check_policy
from autocompress.cost.metrics import compute_costs
from autocompress.cost.profile import Profile, count_macs, profile_model, recurrent_macs
from autocompress.errors import PolicyError
from autocompress.policy import LayerChoice, Policy
from tests.architectures import FAMILIES

NAMES = list(FAMILIES)


@functools.cache
def built(name: str) -> tuple[nn.Module, Profile]:
    torch.manual_seed(0)
    model = FAMILIES[name].build().eval()
    return model, profile_model(model, FAMILIES[name].inputs(1), name)


@st.composite
def mixed_policies(draw: st.DrawFn, profile: Profile) -> Policy:
    roots = {g.root for g in profile.groups.values() if g.prunable}
    layers = {}
    for name in profile.layers:
        if not draw(st.booleans()):
            continue
        clusters = draw(st.one_of(st.none(), st.sampled_from([2, 16])))
        layers[name] = LayerChoice(
            prune=draw(st.sampled_from([0.0, 0.25, 0.5])) if name in roots else 0.0,
            sparsity=draw(st.sampled_from([0.0, 0.5, 0.9])),
            w_bits=draw(st.sampled_from([16, 32] if clusters else [2, 4, 8, 16, 32])),
            a_bits=draw(st.sampled_from([4, 8, 32])),
            rank=draw(st.sampled_from([1.0, 1.0, 0.3])),
            clusters=clusters,
        )
    policy = Policy(profile.model, layers)
    try:
        check_policy(policy, profile, KNOB_METHODS)
    except PolicyError:
        assume(False)
    return policy


def counted(model: nn.Module, profile: Profile, policy: Policy) -> dict[str, int]:
    return {
        "macs": count_macs(model, profile.inputs),
        "params": sum(p.numel() for p in folded(model).parameters()),
        "size_bytes": sum(len(b) for b in pack_model(model, policy, list(profile.layers)).values()),
    }


@pytest.mark.parametrize("name", NAMES)
def test_base_costs_equal_counts(name: str) -> None:
    model, profile = built(name)
    costs = compute_costs(profile, Policy(name))
    assert costs.macs == count_macs(model, profile.inputs)
    assert costs.params == sum(p.numel() for p in model.parameters())
    floats = sum(t.numel() * 4 for t in model.state_dict().values() if t.is_floating_point())
    assert costs.size_bytes == floats
    assert sum(g.prunable for g in profile.groups.values()) >= 1  # something to prune


@pytest.mark.parametrize("name", NAMES)
def test_random_mixed_policies_cost_exactly_what_is_built(name: str) -> None:
    model, profile = built(name)
    x = FAMILIES[name].inputs(3)
    expected_shape = model(x).shape

    @settings(
        max_examples=6,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(mixed_policies(profile))
    def check(policy: Policy) -> None:
        compressed = apply_policy(model, policy, profile)
        calibrate(compressed, [FAMILIES[name].inputs(4)])
        costs = compute_costs(profile, policy)
        assert {k: v for k, v in costs.as_dict().items() if k != "bitops"} == counted(
            compressed, profile, policy
        )
        for mode in (True, False):  # training, and eval (where fused fast paths live)
            compressed.train(mode)
            with torch.no_grad():
                out = compressed(x)
            assert out.shape == expected_shape and torch.isfinite(out).all()

    check()


def test_every_family_prunes_where_it_can_and_says_why_not_elsewhere() -> None:
    """The couplings each family brings end as prunable groups or as reasons, never errors."""
    reasons = {
        name: {g.why for g in built(name)[1].groups.values() if not g.prunable} for name in NAMES
    }
    assert any("grouped convolution" in r for r in reasons["regnet"])
    assert any("attention heads" in r for r in reasons["vit"])
    untouched = built("text_transformer")[1].untouched
    assert "MultiheadAttention" in untouched["encoder.layers.0.self_attn"]
    assert "LSTM" in built("lstm")[1].untouched["rnn"]
    densenet = built("densenet")[1]
    concatenated = densenet.norms["block2.1.norm1"]  # BN over [transition, block2.0's growth]
    assert len(concatenated.groups) == 2


def test_transformer_mlp_and_densenet_prune_shrink_the_model() -> None:
    for name, layer in (("text_transformer", "encoder.layers.0.linear1"), ("densenet", "conv0")):
        model, profile = built(name)
        policy = Policy(name, {layer: LayerChoice(prune=0.5)})
        assert compute_costs(profile, policy).params < compute_costs(profile, Policy(name)).params
        compressed = apply_policy(model, policy, profile)
        assert (
            counted(compressed, profile, policy)["params"] == compute_costs(profile, policy).params
        )


class UnrolledLSTM(nn.Module):
    """One LSTM layer step by step with Linears: what FlopCounterMode can count."""

    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        self.ih = nn.Linear(lstm.input_size, 4 * lstm.hidden_size)
        self.hh = nn.Linear(lstm.hidden_size, 4 * lstm.hidden_size)
        self.hidden = lstm.hidden_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = c = torch.zeros(x.shape[0], self.hidden)
        for t in range(x.shape[1]):
            i, f, g, o = (self.ih(x[:, t]) + self.hh(h)).chunk(4, 1)
            c = f.sigmoid() * c + i.sigmoid() * g.tanh()
            h = o.sigmoid() * c.tanh()
        return h


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU])
def test_recurrent_macs_equal_an_unrolled_count(cell: type[nn.RNNBase]) -> None:
    rnn = cell(6, 10, batch_first=True)
    x = torch.zeros(2, 7, 6)
    assert count_macs(rnn, x) == recurrent_macs(rnn, x)  # by formula or by FlopCounterMode
    gates = 4 if cell is nn.LSTM else 3
    unrolled = UnrolledLSTM(nn.LSTM(6, 10))
    with FlopCounterMode(display=False) as counter:
        unrolled(x)
    assert recurrent_macs(rnn, x) == counter.get_total_flops() // 2 * gates // 4
