"""Issue 14, the driver side: signals, model cards, resume identity, lists, terminal output.

Every input is generated here. Interrupts wait on observable events (report parts appearing),
never on sleeps; a tail of large JPEGs decoded exactly keeps the scan busy long enough.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aiiscan.report import read_report

from .conftest import write_photos


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aiiscan", *args], capture_output=True, text=True,
                          timeout=600, **kwargs)


def _popen_scan(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "aiiscan", "scan", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def _wait_for_parts(out: Path, n: int, proc: subprocess.Popen) -> None:
    parts = Path(f"{out}.parts")
    deadline = time.time() + 300
    while len(list(parts.glob("part-*.parquet"))) < n:
        assert proc.poll() is None, f"scan ended before {n} parts: {proc.communicate()}"
        assert time.time() < deadline, "no report parts appeared"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def slow_tail(tmp_path_factory) -> list[Path]:
    """Large noise JPEGs named to sort last: with --exact-decode and one worker they keep the
    main process waiting on decodes for seconds, so a signal lands while it waits."""
    root = tmp_path_factory.mktemp("slow")
    rng = np.random.default_rng(14)
    first = root / "zz_slow_00.jpg"
    Image.fromarray(rng.integers(0, 255, (3000, 4000, 3), dtype=np.uint8)).save(first, quality=95)
    tail = [first]
    for i in range(1, 10):
        tail.append(root / f"zz_slow_{i:02d}.jpg")
        shutil.copy(first, tail[-1])
    return tail


def _with_tail(folder: Path, tail: list[Path]) -> None:
    for p in tail:
        os.link(p, folder / p.name)


def _base(head_prefix) -> list[str]:
    return ["--weights", str(head_prefix), "--workers", "1", "--batch-size", "4", "--part-rows", "4",
            "--exact-decode", "--quiet"]


# -- item 2: SIGTERM to the main PID only ----------------------------------------------------------

def test_sigterm_to_main_pid_stops_with_130_and_resume_completes(tmp_path, head_prefix, slow_tail):
    src = tmp_path / "in"
    write_photos(src, 8, seed=21, size=(96, 72))
    _with_tail(src, slow_tail)
    out = tmp_path / "r.parquet"
    proc = _popen_scan(str(src), "-o", str(out), *_base(head_prefix))
    _wait_for_parts(out, 2, proc)  # the small files are done: the main process now waits on a decode
    os.kill(proc.pid, signal.SIGTERM)  # the main PID only, as docker stop and Kubernetes do
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    assert not out.exists()
    done = _cli("scan", str(src), "-o", str(out), *_base(head_prefix), "--resume")
    assert done.returncode == 0, done.stderr
    rows = read_report(out).to_pylist()
    assert len(rows) == 18 and len({r["path"] for r in rows}) == 18
    assert all(r["status"] == "ok" and r["error"] is None for r in rows), \
        [r["error"] for r in rows if r["error"]]
