"""SIGINT and SIGTERM stop a command the same way, whenever they arrive.

`docker stop` and Kubernetes send SIGTERM to the main process only; a terminal's Ctrl-C sends
SIGINT to the whole group. Both become ``KeyboardInterrupt`` in the main process, and a flag
records that one arrived, so that an error a library raises while being interrupted (pebble's
pool, caught mid-``schedule``) is still treated as the interruption it is, not as a bug.
Decode workers ignore SIGINT: the main process stops them itself.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

_received: list[int] = []


def _stop(signum: int, frame) -> None:  # noqa: ARG001
    _received.append(signum)
    raise KeyboardInterrupt


def install() -> Callable[[], None]:
    """Route SIGINT and SIGTERM to ``KeyboardInterrupt``; returns a function that restores them."""
    _received.clear()
    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for s, handler in previous.items():
            signal.signal(s, handler)

    return restore


def received() -> bool:
    """Whether SIGINT or SIGTERM arrived since ``install``."""
    return bool(_received)


def ignore_in_worker() -> None:
    """Pool initializer: a worker leaves Ctrl-C to the main process (no tracebacks from workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
