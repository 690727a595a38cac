"""Compression methods, one module each; :func:`apply_policy` runs them in canonical order."""

from autocompress.compress.apply import KNOB_METHODS, METHODS, apply_late_methods, apply_policy

__all__ = ["KNOB_METHODS", "METHODS", "apply_late_methods", "apply_policy"]
