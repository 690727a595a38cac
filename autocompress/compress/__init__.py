"""Compression methods, one module each; :func:`apply_policy` runs them in canonical order."""

from autocompress.compress.apply import METHODS, apply_policy

__all__ = ["METHODS", "apply_policy"]
