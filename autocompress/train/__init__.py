"""Training: base models (:func:`fit`), evaluation, and the cached base checkpoint."""

from autocompress.train.fit import EpochLog, evaluate, fit

__all__ = ["EpochLog", "evaluate", "fit"]
