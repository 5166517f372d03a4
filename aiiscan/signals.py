"""SIGINT and SIGTERM stop a command the same way, whenever they arrive.

`docker stop` and Kubernetes send SIGTERM to the main process only; a terminal's Ctrl-C sends
SIGINT to the whole group. Both become ``KeyboardInterrupt`` in the main process, and a flag
records that one arrived, so that an error a library raises while being interrupted (pebble's
pool, caught mid-``schedule``) is still treated as the interruption it is, not as a bug.
Decode workers ignore SIGINT: the main process stops them itself.

An exception raised by a signal handler can land between a lock's acquire and the ``try`` that
releases it, and a lock left held by it deadlocks the clean-up that follows (seen: pebble's task
queue, on Ctrl-C during ``schedule``, hung the scan for good). Calls into the worker pool
therefore run ``deferred()``: the interrupt is noted and raised when the call has returned.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_received: list[int] = []
_deferring = [0]  # depth of deferred() blocks in the main thread
_pending = [False]  # a signal arrived inside one: raise at its end


def _stop(signum: int, frame) -> None:  # noqa: ARG001
    _received.append(signum)
    if _deferring[0]:
        _pending[0] = True
        return
    raise KeyboardInterrupt


@contextmanager
def deferred() -> Iterator[None]:
    """Run the block whole: SIGINT/SIGTERM inside it become ``KeyboardInterrupt`` at its end."""
    _deferring[0] += 1
    try:
        yield
    finally:
        _deferring[0] -= 1
    if _pending[0] and not _deferring[0]:
        _pending[0] = False
        raise KeyboardInterrupt


def install() -> Callable[[], None]:
    """Route SIGINT and SIGTERM to ``KeyboardInterrupt``; returns a function that restores them."""
    _received.clear()
    _pending[0] = False
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
