"""SIGTERM handled like Ctrl-C.

Schedulers, ``timeout``, ``kill`` and container stops send SIGTERM, whose default action ends
the process on the spot: a search's running trial would stay RUNNING and an export's
temporary folder would stay behind. Inside :func:`sigterm_as_interrupt` a SIGTERM does what
Ctrl-C does at that moment: it calls the SIGINT handler in place (Ray Tune's, which stops
the run gracefully, while a Ray search runs), or raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
from collections.abc import Iterator
from types import FrameType


class Terminated(KeyboardInterrupt):
    """A ``KeyboardInterrupt`` raised for a SIGTERM (``except KeyboardInterrupt`` sees it)."""


@dataclasses.dataclass
class Received:
    """Whether a SIGTERM arrived inside the block (also when a SIGINT handler took it)."""

    sigterm: bool = False


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[Received]:
    """Within the block, SIGTERM is Ctrl-C. A no-op outside the main thread (where Python
    cannot set signal handlers).

    Example::

        with sigterm_as_interrupt():
            run_search(ctx, study, 40)  # `kill PID` marks the running trial interrupted
    """
    received = Received()
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        received.sigterm = True
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler) and handler is not signal.default_int_handler:
            handler(signal.SIGINT, frame)  # e.g. Ray Tune ending its run in order
            return
        raise Terminated("terminated (SIGTERM)")

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)
