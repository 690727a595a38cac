"""autocompress: automated model-compression search for PyTorch.

Core types are plain data (:class:`Policy`, :class:`LayerChoice`); behaviour lives in
functions that take them (:func:`apply_policy`, :func:`compute_costs`).
"""

from collections.abc import Iterable
from pathlib import Path

from torch import nn

from autocompress.checkpoint import load_checkpoint
from autocompress.models.normalize import Normalized
from autocompress.policy import LayerChoice, Policy

__version__ = "0.1.0"


def load(
    path: str | Path, model: nn.Module | None = None, allow_factories: Iterable[str] = ()
) -> nn.Module:
    """Rebuild the model saved in an autocompress checkpoint, ready for inference.

    It takes images scaled to [0, 1] in NCHW: the dataset's normalisation is inside it.
    Zoo models are rebuilt from the file alone. A model made by a user factory is rebuilt
    only if you allow it — loading never imports code the file names on its own:

    - ``model=``: a fresh instance of the uncompressed model; the stored policy is applied
      to (a copy of) it and the weights are loaded;
    - ``allow_factories=["pkg.mod:fn"]``, or the same names in ``$AUTOCOMPRESS_ALLOW_FACTORIES``.

    The weights' content hash is checked: a damaged or altered file is an error.

    Example::

        model = autocompress.load("runs/best/model.pt")                  # a zoo model
        model = autocompress.load("runs/mine/model.pt", model=MyNet())   # your own module
    """
    model, payload = load_checkpoint(path, model, allow_factories)
    meta = payload.get("meta", {})
    if meta.get("mean") and meta.get("std"):
        model = Normalized(model, meta["mean"], meta["std"]).eval()
    return model


__all__ = ["LayerChoice", "Policy", "__version__", "load", "load_checkpoint"]
