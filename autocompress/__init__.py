"""autocompress: automated model-compression search for PyTorch.

The public API works on any ``nn.Module``: :func:`profile`, :func:`price`, :func:`compress`,
:func:`search` (a :class:`Search` handle: ``pareto``, ``best``, ``export``, ``plot``),
:func:`save` and :func:`load`. Policies are plain data (:class:`Policy`, :class:`LayerChoice`).
See ``examples/`` and the README's "Compress your own model".
"""

from collections.abc import Iterable
from pathlib import Path

from torch import nn

from autocompress.api import Search, compress, price, profile, save, search, sensitivity
from autocompress.checkpoint import load_checkpoint
from autocompress.cost.metrics import Costs
from autocompress.cost.profile import Profile
from autocompress.inputs import Inputs
from autocompress.models.normalize import Normalized
from autocompress.policy import LayerChoice, Policy

__version__ = "0.1.0"


def load(
    path: str | Path, model: nn.Module | None = None, allow_factories: Iterable[str] = ()
) -> nn.Module:
    """Rebuild the model saved in an autocompress checkpoint, ready for inference.

    A model trained by the YAML path takes images scaled to [0, 1] in NCHW: the dataset's
    normalisation is inside it. Zoo models are rebuilt from the file alone. Your own module
    (saved by :func:`save` or ``Search.export``), or a model made by a user factory, is rebuilt
    only from what you give — loading never imports code the file names on its own:

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


__all__ = [
    "Costs",
    "Inputs",
    "LayerChoice",
    "Policy",
    "Profile",
    "Search",
    "__version__",
    "compress",
    "load",
    "load_checkpoint",
    "price",
    "profile",
    "save",
    "search",
    "sensitivity",
]
