"""Policies: per-layer compression decisions, plain data with a YAML round-trip.

A policy file is part of the user interface and stays this plain::

    model: lenet5
    layers:
      conv2: {prune: 0.5}
      fc1: {prune: 0.8, sparsity: 0.9, w_bits: 4, a_bits: 8, rank: 0.5, clusters: 16}

Layers not listed are untouched; knobs not given keep their defaults.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from autocompress.errors import PolicyError, shown
from autocompress.files import write_atomic
from autocompress.yamlio import load_yaml

BITS = (2, 3, 4, 5, 6, 7, 8, 16, 32)  # 16 and 32 mean float


@dataclass(frozen=True)
class LayerChoice:
    """Decisions for one layer; the defaults leave it untouched."""

    prune: float = 0.0  # fraction of output channels removed (structural)
    sparsity: float = 0.0  # fraction of weights zeroed (unstructured)
    w_bits: int = 32
    a_bits: int = 32
    rank: float = 1.0  # fraction of full rank kept
    clusters: int | None = None  # shared weight values; None = no sharing

    def changed(self) -> dict[str, Any]:
        """The knobs that differ from their defaults."""
        default = LayerChoice()
        return {k: v for k, v in dataclasses.asdict(self).items() if v != getattr(default, k)}


KNOBS = tuple(f.name for f in dataclasses.fields(LayerChoice))


@dataclass(frozen=True)
class Policy:
    """Layer name → LayerChoice, plus the model the policy was made for."""

    model: str
    layers: Mapping[str, LayerChoice] = field(default_factory=dict)

    def choice(self, layer: str) -> LayerChoice:
        return self.layers.get(layer, LayerChoice())

    def with_bits(self, bits: int, layers: Iterable[str]) -> Policy:
        """The policy with ``bits``-bit weights and inputs on each of ``layers`` wherever it
        keeps them wider (a searched pruning / low-rank policy deployed as integer kernels:
        ``with_bits(8, profile.layers)`` is W8A8 everywhere). Layers with shared weights keep
        their codebook; narrower bit-widths are kept."""
        out = dict(self.layers)
        for name in layers:
            c = self.choice(name)
            w_bits = c.w_bits if c.clusters is not None else min(c.w_bits, bits)
            out[name] = dataclasses.replace(c, w_bits=w_bits, a_bits=min(c.a_bits, bits))
        return Policy(self.model, out)

    def to_dict(self) -> dict[str, Any]:
        layers = {name: c.changed() for name, c in self.layers.items() if c.changed()}
        return {"model": self.model, "layers": layers}

    @classmethod
    def from_dict(cls, raw: Any) -> Policy:
        if not isinstance(raw, Mapping):
            raise PolicyError(
                "<file>", None, "a policy is a mapping with keys 'model' and 'layers'"
            )
        unknown = set(raw) - {"model", "layers"}
        if unknown:
            raise PolicyError(
                "<file>", None, f"unknown top-level keys {sorted(unknown)}; allowed: model, layers"
            )
        model = raw.get("model")
        if not isinstance(model, str) or not model:
            raise PolicyError("<file>", None, "'model' must name the model (e.g. lenet5)")
        layers_raw = raw.get("layers") or {}
        if not isinstance(layers_raw, Mapping):
            raise PolicyError("<file>", None, "'layers' must map layer names to their knobs")
        layers = {str(name): _choice(str(name), knobs) for name, knobs in layers_raw.items()}
        return cls(model=model, layers=layers)

    def save(self, path: str | Path) -> None:
        write_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None))

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        path = Path(path)
        if not path.is_file():
            raise PolicyError("<file>", None, f"policy file {path} does not exist")
        try:
            return cls.from_dict(load_yaml(path.read_text()))
        except yaml.YAMLError as exc:
            raise PolicyError("<file>", None, f"{path} is not valid YAML: {exc}") from None


def _choice(layer: str, knobs: Any) -> LayerChoice:
    if knobs is None:
        return LayerChoice()
    if not isinstance(knobs, Mapping):
        raise PolicyError(layer, None, f"expected a mapping of knobs ({', '.join(KNOBS)})")
    for knob, value in knobs.items():
        if knob not in KNOBS:
            raise PolicyError(layer, str(knob), f"unknown knob; allowed: {', '.join(KNOBS)}")
        _check_value(layer, knob, value)
    values: dict[str, Any] = {
        k: (float(v) if k in ("prune", "sparsity", "rank") else v) for k, v in knobs.items()
    }
    return LayerChoice(**values)


def _check_value(layer: str, knob: str, value: Any) -> None:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if knob in ("prune", "sparsity"):
        if not (is_number and 0.0 <= value < 1.0):
            raise PolicyError(layer, knob, f"got {shown(value)}; allowed: a fraction in [0, 1)")
    elif knob in ("w_bits", "a_bits"):
        if value not in BITS or isinstance(value, bool | float):
            raise PolicyError(
                layer, knob, f"got {shown(value)}; allowed: one of {BITS} (16 and 32 keep floats)"
            )
    elif knob == "rank":
        if not (is_number and 0.0 < value <= 1.0):
            raise PolicyError(layer, knob, f"got {shown(value)}; allowed: a fraction in (0, 1]")
    elif (
        knob == "clusters"
        and value is not None
        and not (isinstance(value, int) and not isinstance(value, bool) and 2 <= value <= 65536)
    ):
        raise PolicyError(
            layer, knob, f"got {shown(value)}; allowed: an integer in [2, 65536] or null"
        )
