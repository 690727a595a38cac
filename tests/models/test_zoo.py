from __future__ import annotations

import pytest
import torch

from autocompress.models import ZOO, build_model, model_spec

SHAPES = {"lenet300_100": (1, 28, 28), "lenet5": (1, 28, 28), "vgg_small": (1, 28, 28)}
# published parameter counts; ResNets: option A plus 2,752 for the two option-B projections
PARAMS = {
    "lenet300_100": 266_610,
    "lenet5": 431_080,
    "resnet20": 272_474,
    "resnet56": 855_770,
    "vgg_small": 584_618,  # 32-32-64-64-128-128 convs with BN, 1152 -> 256 -> 10
}


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_models_build_from_spec_and_run(name: str) -> None:
    shape = SHAPES.get(name, (3, 32, 32))
    spec = model_spec(name, None, {}, shape, 10)
    model = build_model(spec)
    assert model(torch.zeros(2, *shape)).shape == (2, 10)
    if name in PARAMS:
        assert sum(p.numel() for p in model.parameters()) == PARAMS[name]


def test_width_multipliers_shrink_models() -> None:
    full = sum(
        p.numel() for p in build_model(model_spec("lenet5", None, {}, (1, 28, 28), 10)).parameters()
    )
    half = build_model(model_spec("lenet5", None, {"width": 0.5}, (1, 28, 28), 10))
    assert [half.conv1.out_channels, half.conv2.out_channels, half.fc1.out_features] == [
        10,
        25,
        250,
    ]
    assert sum(p.numel() for p in half.parameters()) < full / 3
    mb = build_model(model_spec("mobilenetv2_cifar", None, {"width": 0.5}, (3, 32, 32), 10))
    assert mb(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_factory_models() -> None:
    model = build_model({"factory": "tests.tiny_models:tiny_resnet", "args": {"width": 4}})
    assert model(torch.zeros(1, 1, 8, 8)).shape == (1, 10)
