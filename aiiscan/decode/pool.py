"""Decode workers: a bounded, ordered, crash-tolerant stream of decode results.

pebble's ProcessPool gives per-task time-outs and replaces a worker that dies or hangs
without breaking the pool (concurrent.futures would raise BrokenProcessPool for every
pending file). At most ``window`` files are in flight, so memory stays flat however many
files a scan lists, and results come back in input order, so reports are reproducible.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from multiprocessing import resource_tracker

from pebble import ProcessExpired, ProcessPool

from .. import signals
from ..options import DEFAULT_TIMEOUT
from .job import DecodeJob, DecodeResult, decode_job

POLL = 0.2  # seconds between checks for an interrupt while a result is awaited
STOP_WAIT = 5.0  # seconds a stopping worker is given before it is killed


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _failed(job: DecodeJob, reason: str) -> DecodeResult:
    return DecodeResult(location=job.location, status="error", error=reason)


def decode_stream(jobs: Iterable[DecodeJob], workers: int | None = None,
                  timeout: float = DEFAULT_TIMEOUT, window: int | None = None
                  ) -> Iterator[DecodeResult]:
    """Decode ``jobs`` in ``workers`` processes (0 = in this process), yielding in order."""
    workers = default_workers() if workers is None else workers
    if workers <= 0:
        for job in jobs:
            yield decode_job(job)
        return
    window = window or workers * 16
    # spawn: workers never inherit the parent's torch threads or model memory.
    ctx = multiprocessing.get_context("spawn")
    pending: deque = deque()
    # Every call into the pool is deferred() (see signals): an interrupt waits for it to return
    # (at most POLL seconds), so no pool lock is ever left held and the pool always stops.
    before = {p.pid for p in multiprocessing.active_children()}
    with signals.deferred(), signals.blocked_for_children():
        resource_tracker.ensure_running()  # started here, if not yet, with the group's signals blocked
        pool = ProcessPool(max_workers=workers, context=ctx, initializer=signals.ignore_in_worker)
    try:
        for job in jobs:
            with signals.deferred():
                pending.append((job, pool.schedule(decode_job, args=(job,), timeout=timeout)))
            while len(pending) >= window:
                yield _collect(*pending.popleft(), timeout)
        while pending:
            yield _collect(*pending.popleft(), timeout)
    finally:
        with signals.deferred():
            for _, fut in pending:
                fut.cancel()
            _stop(pool, before)


def _stop(pool: ProcessPool, before: set[int]) -> None:
    """Stop the pool and reap every worker it started, however far it got: one still starting up
    when the command ends would unpickle the pool's semaphores after the main process removed
    them and print a traceback under the next shell prompt (seen: ``FileNotFoundError`` in
    ``SemLock._rebuild``). No worker outlives the stream."""
    pool.stop()
    try:
        pool.join(timeout=STOP_WAIT)
    except TimeoutError:  # a worker that ignores SIGTERM: killed below
        pass
    for child in multiprocessing.active_children():
        if child.pid not in before:
            child.join(timeout=1.0)
            if child.is_alive():
                child.kill()
                child.join(timeout=STOP_WAIT)


def _collect(job: DecodeJob, future, timeout: float) -> DecodeResult:
    try:
        while True:  # short waits: an interrupt is raised between them, never inside the pool
            with signals.deferred():
                try:
                    return future.result(timeout=POLL)
                except FutureTimeout:
                    if future.done():  # the task's own time-out, set by the pool
                        raise
    except FutureTimeout:
        return _failed(job, f"decode timed out after {timeout:g}s (worker restarted)")
    except ProcessExpired as exc:
        return _failed(job, f"decode worker died (exit code {exc.exitcode}); worker restarted")
    except Exception as exc:  # e.g. a result that cannot be sent back
        return _failed(job, f"decode worker error: {type(exc).__name__}: {exc}")
