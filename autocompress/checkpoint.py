"""Checkpoints: ``{format_version, model, policy, compress, state_dict, sha256, meta}``.

Plain data and tensors only, so ``torch.load(path, weights_only=True)`` reads them; the package
rebuilds the module from the model spec (and the policy, for a compressed model). No code is
ever pickled, and loading runs none that the caller did not allow:

- a zoo model (``{"name": "lenet5"}``) is always rebuilt;
- a user factory (``{"factory": "pkg.mod:fn"}``) is imported and called only if the caller
  allowed it: by passing the module to fill (``model=``), by naming it (``allow_factories=``,
  which the CLI fills from the config the user pointed it at), or by listing it in the
  ``AUTOCOMPRESS_ALLOW_FACTORIES`` environment variable (comma-separated ``module:function``).
  Any other factory is an error that says how to allow it.

The state dict's SHA-256 is stored beside it and checked on load: a file whose weights were
altered (a flipped byte, an edited tensor) is refused instead of giving other outputs.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autocompress.errors import CheckpointError
from autocompress.files import replace_atomic
from autocompress.inputs import Inputs

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1 (no content hash) is still read, unverified
ALLOW_ENV = "AUTOCOMPRESS_ALLOW_FACTORIES"


def state_dict_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of a state dict's tensors."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    spec: dict[str, Any],
    policy: dict[str, Any] | None = None,
    compress: dict[str, Any] | None = None,
    input_shape: tuple[int, ...] | None = None,
    meta: dict[str, Any] | None = None,
    example: Inputs | None = None,
) -> str:
    """Write atomically (a temporary file, then rename): a crash never leaves half a file.

    Returns the state dict's SHA-256, which the file also stores and :func:`read_checkpoint`
    verifies.
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    sha = state_dict_sha256(state)
    payload = {
        "format_version": FORMAT_VERSION,
        "model": spec,
        "policy": policy,
        "compress": compress,
        "input_shape": list(input_shape) if input_shape else None,
        # what the model takes, as tensors: rebuilding a policy on it needs no guess of shapes
        "example_inputs": None
        if example is None
        else {
            "args": list(example.map(lambda t: t.detach().cpu()).args),
            "kwargs": dict(example.map(lambda t: t.detach().cpu()).kwargs),
        },
        "state_dict": state,
        "sha256": sha,
        "meta": meta or {},
    }
    replace_atomic(path, lambda tmp: torch.save(payload, tmp))
    return sha


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint mapping, read with ``weights_only=True``, its content hash checked."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign files raise many kinds of errors
        raise CheckpointError(f"{path} is not a readable autocompress checkpoint: {exc}") from None
    found = payload.get("format_version") if isinstance(payload, dict) else None
    if found not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{path} has format version {found!r}; this autocompress reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    if found >= 2:
        stored = payload.get("sha256")
        state = payload.get("state_dict")
        if not isinstance(state, dict) or not isinstance(stored, str):
            raise CheckpointError(f"{path} lacks its weights or their content hash")
        if state_dict_sha256(state) != stored:
            raise CheckpointError(
                f"{path}: the weights do not match the content hash stored with them "
                "(the file was altered or damaged); export it again"
            )
    return payload


def stored_inputs(payload: Mapping[str, Any]) -> Inputs:
    """The example inputs a checkpoint was saved with, else zero images of its input shape."""
    stored = payload.get("example_inputs")
    if isinstance(stored, Mapping):
        return Inputs(tuple(stored.get("args") or ()), dict(stored.get("kwargs") or {}))
    if payload.get("input_shape"):
        return Inputs.images(tuple(payload["input_shape"]))
    raise CheckpointError("the checkpoint records neither example inputs nor an input shape")


def allowed_factories(extra: Iterable[str] = ()) -> set[str]:
    """Factories the caller allowed, plus those in ``$AUTOCOMPRESS_ALLOW_FACTORIES``."""
    from_env = os.environ.get(ALLOW_ENV, "")
    return {f.strip() for f in [*extra, *from_env.split(",")] if f and f.strip()}


def check_spec_allowed(spec: Mapping[str, Any], allow: Iterable[str], where: str) -> None:
    """Refuse a model spec whose factory the user has not allowed (zoo names always pass)."""
    factory = spec.get("factory") if isinstance(spec, Mapping) else None
    if factory is None or factory in allowed_factories(allow):
        return
    raise CheckpointError(
        f"{where} names the model factory {str(factory)[:200]!r}, which loading would import "
        f"and run; load it only if you trust it: pass model=<your module> to autocompress.load, "
        f"or allow_factories=[{str(factory)[:200]!r}], or add it to ${ALLOW_ENV}"
    )


def load_checkpoint(
    path: str | Path,
    model: nn.Module | None = None,
    allow_factories: Iterable[str] = (),
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a checkpoint holds (compressed if it has a policy), in eval mode.

    ``model``: a fresh instance of the uncompressed architecture to rebuild on (a deep copy is
    made; the instance is left as it was) instead of building it from the stored spec.
    ``allow_factories``: ``module:function`` names that may be imported to build the model.
    """
    from autocompress.compress import apply_policy
    from autocompress.config import CompressConfig
    from autocompress.cost.profile import profile_model
    from autocompress.models import build_model
    from autocompress.policy import Policy

    payload = read_checkpoint(path)
    spec = payload["model"]
    if model is not None:
        built = copy.deepcopy(model).train()
    elif isinstance(spec, Mapping) and "class" in spec:
        raise CheckpointError(
            f"{path} holds your own module {str(spec['class'])[:200]}: rebuild it with "
            "autocompress.load(path, model=<a fresh uncompressed instance>), or deploy the "
            "model.onnx exported beside it, which needs no code"
        )
    else:
        check_spec_allowed(spec, allow_factories, str(path))
        built = build_model(spec)
    if payload.get("policy"):
        policy = Policy.from_dict(payload["policy"])
        profile = profile_model(built, stored_inputs(payload), policy.model)
        built = apply_policy(built, policy, profile, CompressConfig(**(payload["compress"] or {})))
    try:
        built.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the rebuilt model: {exc}") from None
    return built.eval(), payload


# Keys under which training scripts commonly nest a model's weights.
NESTED_STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")


def read_pretrained(path: str | Path, spec: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The weights of a pretrained model file for the model ``spec`` describes.

    Reads, with ``torch.load(weights_only=True)`` (no code runs): a plain state dict as
    ``torch.save(model.state_dict(), path)`` writes it, or nested under one of
    :data:`NESTED_STATE_KEYS` as training scripts often save it (keys prefixed ``module.`` by
    ``DataParallel`` are accepted); or an autocompress base checkpoint, whose content hash is
    checked and whose model must be the one ``spec`` names. A compressed checkpoint is refused:
    it is not a starting point for a search. Whether the tensors fit the model is checked when
    they are loaded into it.
    """
    path = Path(path)
    where = f"model.checkpoint {path}"
    if not path.is_file():
        raise CheckpointError(f"{where} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickles with code, safetensors, corrupt files: many errors
        raise CheckpointError(
            f"{where} is not a PyTorch weights file readable without running code "
            f"(torch.load(weights_only=True) said: {str(exc).splitlines()[0][:300]}); "
            "save the weights with torch.save(model.state_dict(), path)"
        ) from None
    if isinstance(payload, dict) and "format_version" in payload:
        payload = read_checkpoint(path)
        if payload.get("policy"):
            raise CheckpointError(
                f"{where} holds a compressed model; start from the base model it came from"
            )
        if dict(payload["model"]) != dict(spec):
            raise CheckpointError(
                f"{where} holds the model {payload['model']}, the config builds {dict(spec)}"
            )
        return dict(payload["state_dict"])
    state = payload
    for key in NESTED_STATE_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{where} holds no state dict (a mapping of names to tensors)")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise CheckpointError(
            f"{where}: not a state dict, {len(bad)} entries are not named tensors "
            f"(first: {str(bad[0])[:100]!r})"
        )
    if all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state
