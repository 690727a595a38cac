"""Where a policy's layer lives in a (partly) compressed model, and its weight parametrizations."""

from __future__ import annotations

import copy
from typing import cast

import torch
from torch import nn
from torch.nn.utils import parametrize

WeightLayer = nn.Conv2d | nn.Linear


def weight_layers(model: nn.Module, name: str) -> list[WeightLayer]:
    """The Conv2d/Linear modules that carry layer ``name``'s weights.

    One module, or the two factors after a low-rank factorization.
    """
    module = model.get_submodule(name)
    if isinstance(module, WeightLayer):
        return [module]
    return [m for m in module.children() if isinstance(m, WeightLayer)]


def add_weight_transform(layer: WeightLayer, transform: nn.Module) -> None:
    """Append ``transform`` to the chain that computes ``layer.weight`` from its stored tensor."""
    parametrize.register_parametrization(layer, "weight", transform, unsafe=True)


def transforms(layer: WeightLayer) -> list[nn.Module]:
    if not parametrize.is_parametrized(layer, "weight"):
        return []
    return list(_chain(layer))


def stored_weight(layer: WeightLayer) -> torch.Tensor:
    """The trainable tensor behind ``layer.weight`` (the weight itself when not parametrized)."""
    if parametrize.is_parametrized(layer, "weight"):
        original: torch.Tensor = _chain(layer).original
        return original
    return layer.weight


def _chain(layer: WeightLayer) -> parametrize.ParametrizationList:
    chains = cast(nn.ModuleDict, layer.parametrizations)
    return cast(parametrize.ParametrizationList, chains["weight"])


def folded(
    model: nn.Module, float_inputs: bool = False, drop_8bit_inputs: bool = False
) -> nn.Module:
    """A copy whose weights are plain tensors: every weight transform evaluated and removed.

    Its parameter count is the compressed model's: shared centroids and pre-transform weights
    are gone. Activation quantizers stay unless ``float_inputs``, which gives the float
    execution of the compressed structure (what CPU latency is measured on); with
    ``drop_8bit_inputs`` only the 8-bit ones go (the integer ONNX export quantizes those with
    a QuantizeLinear of the same grid instead).
    """
    model = copy.deepcopy(model)
    if float_inputs or drop_8bit_inputs:
        for module in model.modules():
            quantizer = module._modules.get("input_quant")
            if quantizer is not None and (float_inputs or getattr(quantizer, "bits", 0) == 8):
                del module._modules["input_quant"]
                for key, hook in list(module._forward_pre_hooks.items()):
                    if getattr(hook, "__name__", "") == "_quantize_input":
                        del module._forward_pre_hooks[key]
    for module in model.modules():
        if isinstance(module, WeightLayer) and parametrize.is_parametrized(module, "weight"):
            weight = module.weight.detach().clone()
            # remove_parametrizations would edit the parametrized class, which a deep copy
            # shares with the original model: restore the plain class on this copy instead
            module.__class__ = module.__class__.__bases__[0]
            del module._modules["parametrizations"]
            module.weight = nn.Parameter(weight)
    return model
