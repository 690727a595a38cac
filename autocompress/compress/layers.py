"""Where a policy's layer lives in a (partly) compressed model, and its weight parametrizations."""

from __future__ import annotations

import copy
from typing import cast

import torch
from torch import nn
from torch.nn.utils import parametrize

WeightLayer = nn.Conv2d | nn.Linear
# the forward hooks that run activation quantizers (quantize.py and residual.py)
QUANTIZER_HOOKS = {"_quantize_input", "_quantize_output", "_quantize_block_input"}


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


def folded(model: nn.Module, float_inputs: bool = False) -> nn.Module:
    """A copy whose weights are plain tensors: every weight transform evaluated and removed.

    Its parameter count is the compressed model's: shared centroids and pre-transform weights
    are gone. Activation quantizers stay (the ONNX export writes them as QuantizeLinear /
    DequantizeLinear pairs) unless ``float_inputs``, which gives the float
    execution of the compressed structure (what CPU latency in PyTorch is measured on).
    """
    model = copy.deepcopy(model)
    if float_inputs:
        for module in model.modules():
            module._modules.pop("input_quant", None)
            module._modules.pop("output_quant", None)  # residual adds' operands
            for hooks in (module._forward_pre_hooks, module._forward_hooks):
                for key, hook in list(hooks.items()):
                    if getattr(getattr(hook, "func", hook), "__name__", "") in QUANTIZER_HOOKS:
                        del hooks[key]
    for module in model.modules():
        if isinstance(module, WeightLayer) and parametrize.is_parametrized(module, "weight"):
            weight = module.weight.detach().clone()
            # remove_parametrizations would edit the parametrized class, which a deep copy
            # shares with the original model: restore the plain class on this copy instead
            module.__class__ = module.__class__.__bases__[0]
            del module._modules["parametrizations"]
            module.weight = nn.Parameter(weight)
    return model
