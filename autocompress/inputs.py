"""Example inputs of a model: any pytree of tensors, positional and keyword.

Users hand the engine what their model takes — a batch of float images, integer token ids,
several tensors, keyword arguments — and everything that runs the model without data
(profiling, the pruning graph, latency, ONNX export) calls it through :class:`Inputs`, never
with a float tensor of a guessed shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map

from autocompress.errors import AutocompressError


@dataclass(frozen=True, eq=False)
class Inputs:
    """What one call of the model takes: ``model(*args, **kwargs)``.

    Example::

        Inputs.of(torch.zeros(1, 3, 32, 32))              # one image batch
        Inputs.of(torch.randint(0, 1000, (1, 64)))        # token ids
        Inputs.of((ids, mask))                             # several positional inputs
        Inputs.of({"input_ids": ids, "attention_mask": mask})  # keyword inputs
    """

    args: tuple[Any, ...]
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, example: Any) -> Inputs:
        """Normalise what a user passes: a tensor, a tuple/list of positional inputs, a dict
        of keyword inputs, or an :class:`Inputs`."""
        if isinstance(example, Inputs):
            return example
        if isinstance(example, torch.Tensor):
            return cls((example,))
        if isinstance(example, tuple | list):
            return cls(tuple(example))
        if isinstance(example, Mapping):
            return cls((), dict(example))
        raise AutocompressError(
            f"example_inputs must be a tensor, a tuple of inputs or a dict of keyword inputs, "
            f"not {type(example).__name__}"
        )

    @classmethod
    def images(cls, shape: tuple[int, ...], batch: int = 1) -> Inputs:
        """A batch of zero images of one sample shape (C, H, W): the zoo's inputs."""
        return cls((torch.zeros(batch, *shape),))

    def __call__(self, model: nn.Module) -> Any:
        return model(*self.args, **self.kwargs)

    def tensors(self) -> list[torch.Tensor]:
        leaves, _ = tree_flatten((self.args, dict(self.kwargs)))
        return [t for t in leaves if isinstance(t, torch.Tensor)]

    def map(self, fn: Any) -> Inputs:
        """Apply ``fn`` to every tensor (other leaves are kept)."""

        def leaf(x: Any) -> Any:
            return fn(x) if isinstance(x, torch.Tensor) else x

        return Inputs(tree_map(leaf, self.args), tree_map(leaf, dict(self.kwargs)))

    def to(self, device: torch.device | str) -> Inputs:
        return self.map(lambda t: t.to(device))

    def repeated(self, times: int) -> Inputs:
        """Every tensor repeated ``times`` along its first dimension (a larger batch)."""
        return self.map(lambda t: torch.cat([t] * times) if t.ndim else t)

    @property
    def sample_shape(self) -> tuple[int, ...] | None:
        """(C, H, W) of a single float tensor input, else None (tokens, several inputs)."""
        tensors = self.tensors()
        if len(tensors) == 1 and not self.kwargs and tensors[0].is_floating_point():
            return tuple(tensors[0].shape[1:])
        return None

    def describe(self) -> str:
        parts = [f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}" for t in self.tensors()]
        return ", ".join(parts)
