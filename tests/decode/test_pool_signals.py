"""Interrupts never land inside the worker pool: an interrupt that arrives while the main process
is in a pool call is held until the call returns (signals.deferred), so no pool lock is left
held and the clean-up that follows cannot deadlock (it did: Ctrl-C inside pebble's
``schedule`` once hung a scan for good)."""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pytest

from aiiscan import signals
from aiiscan.decode.job import DecodeJob
from aiiscan.decode.pool import decode_stream

from ..conftest import write_photos

# Loaded by each spawned worker (PYTHONPATH): decoding a file named slow_* takes 60 s.
_SLOW_HOOK = """
import os, time
import aiiscan.decode.job as decode

_real = decode._decode

def _decode(job):
    if os.path.basename(job.path).startswith("slow_"):
        time.sleep(60)
    return _real(job)

decode._decode = _decode
"""


@pytest.fixture()
def handlers():
    restore = signals.install()
    yield
    restore()


def _workers() -> set[int]:
    """Live decode workers of this process (spawned children; not multiprocessing's tracker)."""
    out = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "--multiprocessing-fork" in child.cmdline():
                out.add(child.pid)
        except psutil.NoSuchProcess:
            continue
    return out


def _interrupt_after(seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    return timer


def test_an_interrupt_inside_a_deferred_block_is_raised_at_its_end(handlers):
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with signals.deferred():
            with signals.deferred():  # nested: held until the outermost block ends
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
                reached.append("inner")
            reached.append("outer")
    assert reached == ["inner", "outer"] and signals.received()
    with signals.deferred():  # raised once: a later block runs as usual
        reached.append("after")
    assert reached[-1] == "after"


def test_without_deferral_the_interrupt_is_raised_at_once(handlers):
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)


def test_an_interrupt_while_a_worker_is_stuck_stops_the_pool_promptly(tmp_path, monkeypatch, handlers):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_SLOW_HOOK)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]))
    good = write_photos(tmp_path / "in", 2, seed=4)
    slow = tmp_path / "in" / "slow_0.png"
    os.replace(good[1], slow)
    jobs = [DecodeJob(good[0], 224), DecodeJob(str(slow), 224)]
    stream = decode_stream(jobs, workers=1, timeout=120)
    assert next(stream).status == "ok"  # the pool is up and its worker has decoded a file
    workers = _workers()
    assert len(workers) == 1
    timer = _interrupt_after(1.0)
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        next(stream)  # waits on the stuck worker
    timer.join()
    assert time.monotonic() - t0 < 20  # raised within a poll, not after the 60 s decode
    stream.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _workers() & workers:
        time.sleep(0.1)
    assert not _workers() & workers  # the pool stopped its worker
