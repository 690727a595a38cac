"""Reading YAML that may come from someone else: plain data, no aliases, bounded size.

``yaml.safe_load`` builds no objects, but it does expand aliases: a few hundred bytes of
nested ``&a [*b, *b, ...]`` anchors (a "billion laughs") expand to gigabytes and minutes of
work. Configs and policies never need aliases, so they are refused outright.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_YAML_BYTES = 1_000_000  # a config or a policy is a few kB; a model with 10k layers ~1 MB


class AliasError(yaml.YAMLError):
    """The document uses an anchor/alias (``&name`` / ``*name``)."""


class _NoAliasLoader(yaml.SafeLoader):
    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise AliasError(
                f"aliases (*{event.anchor}) are not allowed, at {event.start_mark}".replace(
                    "\n", " "
                )
            )
        return super().compose_node(parent, index)


def load_yaml(text: str) -> Any:
    """Parse a YAML document as plain data; aliases and oversized documents are errors.

    Raises ``yaml.YAMLError`` (callers turn it into their own one-line error).

    Example::

        load_yaml("train: {epochs: 3}")  # {'train': {'epochs': 3}}
    """
    if len(text) > MAX_YAML_BYTES:
        raise yaml.YAMLError(
            f"the document is {len(text):,} characters; at most {MAX_YAML_BYTES:,}"
        )
    return yaml.load(text, Loader=_NoAliasLoader)  # a SafeLoader without aliases
