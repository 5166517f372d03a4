"""Every stopping signal ends a scan the same way, and no worker outlives its command.

SIGHUP (a closed terminal, a dropped SSH session) is a stop like SIGTERM: exit 130, resumable.
After SIGHUP or SIGKILL mid-scan, ``--resume`` writes every file exactly once. Decode workers
ignore the group's SIGINT/SIGHUP (the main process stops them) and leave when it dies; the pool
reaps every worker before the command returns."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from aiiscan import signals
from aiiscan.decode.job import DecodeJob
from aiiscan.decode.pool import decode_stream
from aiiscan.reports.read import read_report

from ..conftest import write_photos

# Loaded by every process of the scan (PYTHONPATH): with AIISCAN_TEST_SLOW set, decoding a file
# named slow_* takes 60 s, so a signal lands while the main process waits on a worker.
_SLOW_HOOK = """
import os, time
import aiiscan.decode.job as decode

_real = decode._decode

def _decode(job):
    if os.environ.get("AIISCAN_TEST_SLOW") and os.path.basename(job.path).startswith("slow_"):
        time.sleep(60)
    return _real(job)

decode._decode = _decode
"""


def _hooked_env(tmp_path: Path, marker: str, slow: bool) -> dict:
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(_SLOW_HOOK)
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]),
                        "AIISCAN_TEST_MARK": marker}
    env.pop("AIISCAN_TEST_SLOW", None)
    return env | ({"AIISCAN_TEST_SLOW": "1"} if slow else {})


def _marked(marker: str) -> list[str]:
    """Live processes started by the command under test (its environment carries ``marker``)."""
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            mine = proc.environ().get("AIISCAN_TEST_MARK") == marker
            if mine and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _none_left(marker: str, within: float) -> None:
    deadline = time.monotonic() + within
    while _marked(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _marked(marker), _marked(marker)


def _scan_args(src: Path, out: Path, head_prefix: Path) -> list[str]:
    return [sys.executable, "-m", "aiiscan", "scan", str(src), "-o", str(out), "--weights", str(head_prefix),
            "--workers", "2", "--batch-size", "2", "--part-rows", "2", "--quiet"]


@pytest.mark.parametrize("how", ["SIGHUP to the group", "SIGKILL"])
def test_stop_mid_scan_then_resume_writes_every_file_once(tmp_path, head_prefix, how):
    src = tmp_path / "in"
    files = write_photos(src, 8, seed=31, size=(96, 72))
    for i in range(2):
        slow = src / f"slow_{i}.png"
        slow.write_bytes(Path(files[i]).read_bytes())
        files.append(str(slow))
    out, marker = tmp_path / "r.parquet", uuid.uuid4().hex
    proc = subprocess.Popen(_scan_args(src, out, head_prefix), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env=_hooked_env(tmp_path, marker, slow=True))
    parts = Path(f"{out}.parts")
    deadline = time.monotonic() + 120
    while len(list(parts.glob("part-*.parquet"))) < 3:  # the photos are done; slow_* are decoding
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    if how == "SIGKILL":
        proc.kill()  # the main process only, as the OOM killer does
    elif how == "SIGHUP to the group":
        os.killpg(proc.pid, signal.SIGHUP)  # a closed terminal hangs up its whole session
    else:
        os.kill(proc.pid, signal.SIGHUP)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == (-signal.SIGKILL if how == "SIGKILL" else 130), err
    if how != "SIGKILL":
        assert "--resume" in err and "Traceback" not in err, err
    _none_left(marker, within=5)  # no decode worker outlives its command, even after SIGKILL
    assert not out.exists()

    done = subprocess.run([*_scan_args(src, out, head_prefix), "--resume"], capture_output=True, text=True,
                          timeout=300, env=_hooked_env(tmp_path, marker, slow=False))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    rows = read_report(out).to_pylist()
    assert sorted(r["path"] for r in rows) == sorted(files)  # every file, exactly once
    assert all(r["status"] == "ok" and r["error"] is None for r in rows), [r["error"] for r in rows]
    _none_left(marker, within=2)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_every_stopping_signal_stops_the_pool_and_reaps_its_workers(tmp_path, monkeypatch, sig):
    """SIGINT, SIGTERM, SIGHUP, delivered as to a process group (the workers get it too): the
    workers ignore it but SIGTERM, the stream raises KeyboardInterrupt, no worker is left."""
    monkeypatch.setenv("AIISCAN_TEST_SLOW", "1")
    env = _hooked_env(tmp_path, "pool", slow=True)
    monkeypatch.setenv("PYTHONPATH", env["PYTHONPATH"])
    good = write_photos(tmp_path / "in", 2, seed=4)
    slow = tmp_path / "in" / "slow_0.png"
    os.replace(good[1], slow)
    restore = signals.install()
    try:
        stream = decode_stream([DecodeJob(good[0], 224), DecodeJob(str(slow), 224)], workers=1, timeout=120)
        assert next(stream).status == "ok"
        workers = [c for c in psutil.Process().children() if "--multiprocessing-fork" in c.cmdline()]
        assert workers
        if sig != signal.SIGTERM:  # systemd and docker send SIGTERM to the main process first
            for w in workers:
                os.kill(w.pid, sig)
        timer = threading.Timer(0.5, os.kill, (os.getpid(), sig))
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            next(stream)  # waits on the slow file
        timer.join()
    finally:
        restore()
    stream.close()
    left = [c.pid for c in psutil.Process().children() if "--multiprocessing-fork" in c.cmdline()
            and c.status() != psutil.STATUS_ZOMBIE]
    assert left == []
