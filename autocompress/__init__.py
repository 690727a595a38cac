"""autocompress: automated model-compression search for PyTorch.

Core types are plain data (:class:`Policy`, :class:`LayerChoice`); behaviour lives in
functions that take them (:func:`apply_policy`, :func:`compute_costs`).
"""

from autocompress.checkpoint import load_checkpoint
from autocompress.policy import LayerChoice, Policy

__version__ = "0.1.0"


def load(path: str):  # type: ignore[no-untyped-def]
    """Rebuild the model saved in an autocompress checkpoint (eval mode)."""
    return load_checkpoint(path)[0]


__all__ = ["LayerChoice", "Policy", "__version__", "load", "load_checkpoint"]
