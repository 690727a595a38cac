"""The zero-cost fidelity: adaptive BatchNorm, bias correction, a score on a validation subset."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from autocompress.compress.layers import stored_weight
from autocompress.compress.lowrank import factorize
from autocompress.config import load_config
from autocompress.export import build
from autocompress.fidelity import adapt_batchnorm, correct_outputs, zero_cost
from autocompress.policy import LayerChoice, Policy
from autocompress.recipe import UserRecipe
from autocompress.runs import prepare, splits_recipe
from autocompress.train.fit import evaluate


def batches(n: int = 4, features: int = 6) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(64, features, generator=g) for _ in range(n)]


def output_stats(model: nn.Module, xs: list[torch.Tensor]) -> torch.Tensor:
    """Each output's mean and standard deviation over the batches, stacked."""
    with torch.no_grad():
        out = torch.cat([model(x) for x in xs])
    return torch.stack([out.mean(0), out.std(0, correction=0)])


@pytest.fixture(scope="module")
def digits(write_config_module):
    """The digits base model, trained once for the module (on one thread, as every test
    runs: the function-scoped fixture that sets it has not run yet here)."""
    cfg = load_config(write_config_module())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = prepare(cfg)
    finally:
        torch.set_num_threads(threads)
    return run, splits_recipe(cfg, run.splits)


@pytest.fixture(scope="module")
def write_config_module(tmp_path_factory):
    import yaml

    from tests.conftest import DIGITS_CONFIG

    root = tmp_path_factory.mktemp("fidelity")

    def write() -> str:
        raw = copy.deepcopy(DIGITS_CONFIG)
        raw["runs_root"] = str(root / "runs")
        path = root / "config.yaml"
        path.write_text(yaml.safe_dump(raw))
        return str(path)

    return write


def test_zero_cost_repairs_a_pruned_model_without_training(digits) -> None:
    run, recipe = digits
    layers = {n: LayerChoice(prune=0.5) for n in ("stem", "conv_a", "pw")}
    model = build(run.base.model, run.profile, Policy(run.profile.model, layers), recipe)
    stats = ("running_mean", "running_var", "num_batches_tracked")
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.endswith(stats)}
    as_compressed = recipe.validate(model)
    result = zero_cost(model, run.base.model, recipe, val_subset=None)
    assert result.batchnorms == 3 and result.corrected == 1  # the head keeps its 10 outputs
    # re-estimated statistics and the head's output statistics, nothing else was changed
    after = model.state_dict()
    changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
    assert changed == ["head.weight", "head.bias"]
    # the repair is worth several points here (0.817 -> 0.877 when written)
    assert result.score > as_compressed + 0.02


def test_the_score_is_taken_on_a_fixed_validation_subset(digits) -> None:
    run, recipe = digits
    model = run.base.model
    x, y = run.splits.x_val[:100], run.splits.y_val[:100]
    assert recipe.validate(model, limit=100) == evaluate(model, x, y)
    loader = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 100, 32)]
    user = UserRecipe(val_data=loader)
    # whole batches until the limit is reached: 64 of the 100 samples
    assert user.validate(model, limit=50) == evaluate(model, x[:64], y[:64])
    assert user.validate(model) == evaluate(model, x, y)


def test_output_correction_moves_means_and_spreads_back_to_the_base() -> None:
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    model = copy.deepcopy(base)
    with torch.no_grad():  # a compression that shrinks and shifts every layer's output
        model[0].weight.mul_(0.6)
        model[2].weight.add_(0.1)
    xs = batches()
    assert not torch.allclose(output_stats(model, xs), output_stats(base, xs), atol=1e-2)
    assert correct_outputs(model, base, xs) == 2
    assert torch.allclose(output_stats(model, xs), output_stats(base, xs), atol=1e-4)


def test_the_base_statistics_follow_the_base_and_the_batches() -> None:
    """They are measured once per base and batches: a changed base or other batches are
    measured again (never a stale reference)."""
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    xs, others = batches(), [x * 2 + 1 for x in batches()]
    for data in (xs, xs, others):
        model = copy.deepcopy(base)
        with torch.no_grad():
            model[0].weight.mul_(0.6)
        correct_outputs(model, base, data)
        assert torch.allclose(output_stats(model, data), output_stats(base, data), atol=1e-4)
    with torch.no_grad():
        base[2].bias.add_(1.0)  # the same module, changed in place
    model = copy.deepcopy(base)
    with torch.no_grad():
        model[0].weight.mul_(0.6)
    correct_outputs(model, base, xs)
    assert torch.allclose(output_stats(model, xs), output_stats(base, xs), atol=1e-4)


def test_shared_weights_get_their_mean_corrected_only(digits) -> None:
    run, recipe = digits
    policy = Policy(run.profile.model, {"head": LayerChoice(clusters=4)})
    model = build(run.base.model, run.profile, policy, recipe)
    xs = recipe.calibration()
    centroids = stored_weight(model.head).clone()
    # every biased layer keeps its outputs here: the head, and conv_a, conv_b, dw, pw as they were
    assert correct_outputs(model, run.base.model, xs) == 5
    assert torch.equal(stored_weight(model.head), centroids)  # still 4 shared values
    mean = output_stats(model, [x.args[0] for x in xs])[0]
    assert torch.allclose(mean, output_stats(run.base.model, [x.args[0] for x in xs])[0], atol=1e-4)


def test_layers_pruned_at_their_output_are_left_alone() -> None:
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).eval()
    first = [p.detach().clone() for p in model[0].parameters()]
    assert correct_outputs(model, base, batches()) == 1
    assert all(torch.equal(a, b) for a, b in zip(model[0].parameters(), first, strict=True))


def test_a_low_rank_pair_is_corrected_through_its_second_factor() -> None:
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    model = copy.deepcopy(base)
    model[2] = factorize(model[2], 0.25)
    xs = batches()
    assert correct_outputs(model, base, xs) == 2
    assert torch.allclose(output_stats(model, xs), output_stats(base, xs), atol=1e-4)


def test_adaptive_batchnorm_keeps_the_modes_and_momenta() -> None:
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8, momentum=0.3), nn.Dropout(0.5))
    model.eval()
    xs = batches()
    assert adapt_batchnorm(model, xs) == 1
    norm = model[1]
    assert not model.training and not norm.training and norm.momentum == 0.3
    with torch.no_grad():
        hidden = torch.cat([model[0](x) for x in xs])
    assert torch.allclose(norm.running_mean, hidden.mean(0), atol=1e-5)
    assert adapt_batchnorm(nn.Linear(2, 2), xs) == 0
