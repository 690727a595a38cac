"""Exceptions for user input. Each message says what is wrong and what is allowed.

The CLI turns any :class:`AutocompressError` into one line on stderr and exit status 2;
everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

MAX_SHOWN = 120  # characters of a value an error message shows


def shown(value: object) -> str:
    """``repr(value)``, cut to :data:`MAX_SHOWN` characters: a huge value stays one line."""
    text = repr(value)
    if len(text) <= MAX_SHOWN:
        return text
    return f"{text[: MAX_SHOWN - 20]}... ({len(text):,} characters)"


class AutocompressError(Exception):
    """Base class for errors caused by user input (configs, policies, data, files)."""


class ConfigError(AutocompressError):
    """A config key is unknown, has the wrong type, or is out of range."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"config key '{key}': got {shown(value)}; {allowed}")


class PolicyError(AutocompressError):
    """A policy names a layer the model lacks, or a knob or value a layer cannot take."""

    def __init__(self, layer: str, knob: str | None, message: str) -> None:
        self.layer, self.knob = layer, knob
        where = f"layer '{layer}'" + (f", knob '{knob}'" if knob else "")
        super().__init__(f"policy {where}: {message}")


class DataError(AutocompressError):
    """A dataset is missing or malformed; the message says where files are expected."""


class CheckpointError(AutocompressError):
    """A checkpoint file is missing, of another format version, or does not match its spec."""
