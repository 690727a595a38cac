"""autocompress: automated model-compression search for PyTorch.

Core types are plain data (:class:`Policy`, :class:`LayerChoice`); behaviour lives in
functions that take them (:func:`apply_policy`, :func:`compute_costs`).
"""

from pathlib import Path

from torch import nn

from autocompress.checkpoint import load_checkpoint
from autocompress.models.normalize import Normalized
from autocompress.policy import LayerChoice, Policy

__version__ = "0.1.0"


def load(path: str | Path) -> nn.Module:
    """Rebuild the model saved in an autocompress checkpoint, ready for inference.

    It takes images scaled to [0, 1] in NCHW: the dataset's normalisation is inside it.
    """
    model, payload = load_checkpoint(path)
    meta = payload.get("meta", {})
    if meta.get("mean") and meta.get("std"):
        model = Normalized(model, meta["mean"], meta["std"]).eval()
    return model


__all__ = ["LayerChoice", "Policy", "__version__", "load", "load_checkpoint"]
