"""SIGINT, SIGTERM and SIGHUP stop a command the same way, whenever they arrive: exit 130, and a
scan is resumable.

`docker stop` and Kubernetes send SIGTERM to the main process only; a terminal's Ctrl-C sends
SIGINT to the whole group, and a closed terminal or a dropped SSH session SIGHUP (129 by default,
an exit status the table does not list). Both become ``KeyboardInterrupt`` in the main process, and a flag
records that one arrived, so that an error a library raises while being interrupted (pebble's
pool, caught mid-``schedule``) is still treated as the interruption it is, not as a bug.
Decode workers ignore SIGINT and SIGHUP (the main process stops them itself: a worker killed by
the group's signal would turn the file it held into a false "worker died" row), and exit on their
own if the main process is gone (SIGKILL): no worker outlives its command.

An exception raised by a signal handler can land between a lock's acquire and the ``try`` that
releases it, and a lock left held by it deadlocks the clean-up that follows (seen: pebble's task
queue, on Ctrl-C during ``schedule``, hung the scan for good). Calls into the worker pool
therefore run ``deferred()``: the interrupt is noted and raised when the call has returned.
"""

from __future__ import annotations

import os
import signal
import threading
import time
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


# The signals that stop a command (SIGHUP where the platform has it).
STOPPING = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def install() -> Callable[[], None]:
    """Route SIGINT, SIGTERM and SIGHUP to ``KeyboardInterrupt``; returns a function that
    restores them."""
    _received.clear()
    _pending[0] = False
    previous = {s: signal.signal(s, _stop) for s in STOPPING}

    def restore() -> None:
        for s, handler in previous.items():
            signal.signal(s, handler)

    return restore


def received() -> bool:
    """Whether SIGINT, SIGTERM or SIGHUP arrived since ``install``."""
    return bool(_received)


@contextmanager
def blocked_for_children() -> Iterator[None]:
    """Start child processes (the decode pool, its threads, multiprocessing's resource tracker)
    inside this block: they are born with SIGINT and SIGHUP blocked, so a terminal's Ctrl-C or
    hang-up, sent to the whole group, reaches only the main process, which stops them itself. (A
    SIGHUP that killed the resource tracker made its successor print a ``KeyError`` traceback
    after the command had returned; one that killed a starting worker failed its file.) The
    main thread's own mask is restored at the end: a signal that came meanwhile is delivered
    then."""
    wanted = {s for s in STOPPING if s != signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def ignore_in_worker() -> None:
    """Pool initializer: a worker leaves Ctrl-C and hang-ups to the main process (no tracebacks
    from workers), and goes when the main process does."""
    for s in STOPPING:
        if s != signal.SIGTERM:  # the pool stops its workers with SIGTERM
            signal.signal(s, signal.SIG_IGN)
    parent = os.getppid()
    threading.Thread(target=_orphan_watch, args=(parent,), daemon=True, name="aiiscan-orphan").start()


def _orphan_watch(parent: int, every: float = 0.5) -> None:
    """Exit at once, silently, when the process that started this worker is gone (SIGKILL, the
    OOM killer): its pool can no longer stop it."""
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(0)
