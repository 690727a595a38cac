"""Checkpoints: ``{format_version, model, policy, compress, state_dict, meta}``.

Plain data and tensors only, so ``torch.load(path, weights_only=True)`` reads them; the package
rebuilds the module from the model spec (and the policy, for a compressed model). No code is
ever pickled.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autocompress.errors import CheckpointError

FORMAT_VERSION = 1


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    spec: dict[str, Any],
    policy: dict[str, Any] | None = None,
    compress: dict[str, Any] | None = None,
    input_shape: tuple[int, ...] | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write atomically (a temporary file, then rename): a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format_version": FORMAT_VERSION,
        "model": spec,
        "policy": policy,
        "compress": compress,
        "input_shape": list(input_shape) if input_shape else None,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta or {},
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint mapping, read with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign files raise many kinds of errors
        raise CheckpointError(f"{path} is not a readable autocompress checkpoint: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        found = payload.get("format_version") if isinstance(payload, dict) else None
        raise CheckpointError(
            f"{path} has format version {found!r}; this autocompress reads version {FORMAT_VERSION}"
        )
    return payload


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a checkpoint holds (compressed if it has a policy), in eval mode."""
    from autocompress.compress import apply_policy
    from autocompress.config import CompressConfig
    from autocompress.cost.profile import profile_model
    from autocompress.models import build_model
    from autocompress.policy import Policy

    payload = read_checkpoint(path)
    model = build_model(payload["model"])
    if payload.get("policy"):
        if not payload.get("input_shape"):
            raise CheckpointError(f"{path} holds a policy but no input shape to rebuild it")
        shape = tuple(payload["input_shape"])
        policy = Policy.from_dict(payload["policy"])
        profile = profile_model(model, shape, policy.model)
        model = apply_policy(model, policy, profile, CompressConfig(**(payload["compress"] or {})))
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the rebuilt model: {exc}") from None
    return model.eval(), payload
