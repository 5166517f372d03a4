"""Faults from outside: kills, interrupts, a full disk, an unwritable folder, a rival scan, a
worker that dies. Nothing lost, nothing duplicated, a clear message every time."""

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from aiiscan.reports.read import read_report

from ..conftest import write_photos


def _scan(*args):
    return [sys.executable, "-m", "aiiscan", "scan", *args]


def _rows(path) -> dict:
    return {r["path"]: (r["status"], r["score"]) for r in read_report(path).to_pylist()}


def _same(a: dict, b: dict) -> bool:
    """Same files, same statuses, same scores up to float32 batch-composition noise (a resumed
    scan batches the remaining files differently; BLAS sums then differ in the last bits)."""
    return a.keys() == b.keys() and all(
        a[k][0] == b[k][0] and (a[k][1] is None) == (b[k][1] is None)
        and (a[k][1] is None or abs(a[k][1] - b[k][1]) <= 1e-6) for k in a)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, head_prefix):
    root = tmp_path_factory.mktemp("faults")
    files = write_photos(root / "in", 200, seed=8, size=(96, 72))
    (root / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    base = ["--weights", str(head_prefix), "--workers", "1", "--batch-size", "8", "--part-rows", "8",
            "--quiet"]
    clean = root / "clean.parquet"
    subprocess.run(_scan(str(root / "in"), "-o", str(clean), *base), check=False, timeout=600)
    return root / "in", [*files, str(root / "in" / "broken.png")], base, _rows(clean)


def test_repeated_sigkill_and_resume_match_a_clean_run(folder, tmp_path):
    src, files, base, clean = folder
    out = tmp_path / "r.parquet"
    rng = np.random.default_rng(1234)
    kills, killed_after_publishing = 0, False
    for cycle in range(5):
        proc = subprocess.Popen(_scan(str(src), "-o", str(out), *base, *(["--resume"] if cycle else [])))
        time.sleep(float(rng.uniform(1.0, 4.0)))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        if out.exists():  # a report is whole or absent: it finished, or a kill came after the rename
            killed_after_publishing = proc.returncode not in (0, 3)
            break
    else:
        done = subprocess.run(_scan(str(src), "-o", str(out), *base, "--resume"), timeout=600)
        assert done.returncode == 3  # broken.png
    got = read_report(out).to_pylist()
    assert len(got) == len({r["path"] for r in got}) == len(files)  # none lost, none twice
    assert _same(_rows(out), clean)
    assert kills >= 2
    assert killed_after_publishing or not Path(f"{out}.parts").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_stops_cleanly_and_resumes(folder, tmp_path, sig):
    src, files, base, clean = folder
    out = tmp_path / "r.parquet"
    proc = subprocess.Popen(_scan(str(src), "-o", str(out), *base), stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    parts = Path(f"{out}.parts")
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("part-*.parquet"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, sig)  # the whole group, as a terminal's Ctrl-C or systemd's stop does
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    assert not out.exists() and parts.is_dir()
    done = subprocess.run(_scan(str(src), "-o", str(out), *base, "--resume"), timeout=600)
    assert done.returncode == 3 and _same(_rows(out), clean)


def _limit_file_size(limit: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes then fail with EFBIG, like ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_disk_full_gives_a_clear_error_and_no_corrupt_report(folder, tmp_path):
    src, files, base, clean = folder
    out = tmp_path / "r.parquet"
    proc = subprocess.run(_scan(str(src), "-o", str(out), *base), capture_output=True, text=True,
                          timeout=600, preexec_fn=_limit_file_size(6_000))
    assert proc.returncode == 2, proc.stderr
    assert "cannot write" in proc.stderr and "--resume" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()
    parts = sorted(Path(f"{out}.parts").glob("part-*.parquet"))
    for p in parts:  # whatever was written is whole
        assert pq.read_table(p).num_rows == 8
    assert not list(Path(f"{out}.parts").glob(".tmp-*"))
    # with room again, --resume finishes the job with nothing lost
    done = subprocess.run(_scan(str(src), "-o", str(out), *base, "--resume"), timeout=600)
    assert done.returncode == 3 and _same(_rows(out), clean)


def test_unwritable_output_location_is_refused_up_front(folder, tmp_path):
    src, _, base, _ = folder
    for target in ("/proc/aiiscan-test/r.parquet", "/proc/r.parquet"):
        proc = subprocess.run(_scan(str(src), "-o", target, *base), capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 2, (target, proc.stderr)
        assert "aiiscan: error:" in proc.stderr and "Traceback" not in proc.stderr
    # A missing folder is created (one policy for every output), before the scan starts.
    target = tmp_path / "missing" / "r.parquet"
    proc = subprocess.run(_scan(str(src), "-o", str(target), *base), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode in (0, 3) and target.is_file(), proc.stderr


def test_a_second_scan_on_the_same_output_refuses(folder, tmp_path):
    src, files, base, clean = folder
    out = tmp_path / "r.parquet"
    # The first scan reads its list from a pipe we hold open: it runs, lock taken, until we close it.
    first = subprocess.Popen(_scan("--from-list", "-", "-o", str(out), *base), stdin=subprocess.PIPE,
                             text=True)
    parts = Path(f"{out}.parts")
    deadline = time.time() + 120
    while time.time() < deadline and not (parts / "LOCK").exists():
        time.sleep(0.05)
    for extra in ([], ["--resume"]):
        second = subprocess.run(_scan(str(src), "-o", str(out), *base, *extra), capture_output=True,
                                text=True, timeout=120)
        assert second.returncode == 2 and "another scan is writing" in second.stderr, second.stderr
    first.communicate("\n".join(files) + "\n", timeout=600)
    assert first.returncode == 3
    assert _same(_rows(out), clean)  # the first scan's report, not interleaved


# Loaded by every interpreter the scan starts (PYTHONPATH): the decode worker that picks up a file
# named die_here.* kills itself with SIGKILL, as the kernel's OOM killer would. Deterministic: the
# death happens while that very file is being decoded, whatever the machine's load.
_SUICIDE = """
import os, signal
import aiiscan.decode.job as decode

_real = decode._decode

def _decode(job):
    if os.path.basename(job.path).startswith("die_here"):
        os.kill(os.getpid(), signal.SIGKILL)
    return _real(job)

decode._decode = _decode
"""


def test_a_killed_worker_costs_one_row_not_the_scan(tmp_path, head_prefix):
    src = tmp_path / "in"
    write_photos(src, 8, seed=5)
    shutil.copy(src / "img_003.png", src / "die_here.png")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_SUICIDE)
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(hook), str(Path(__file__).resolve().parents[2])])}
    proc = subprocess.run(_scan(str(src), "-o", str(tmp_path / "r.parquet"), "--weights", str(head_prefix),
                                "--workers", "1", "--batch-size", "2", "--quiet"), env=env, timeout=600,
                          capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    rows = {Path(r["path"]).name: r for r in read_report(tmp_path / "r.parquet").to_pylist()}
    assert len(rows) == 9
    died = [r for r in rows.values() if r["status"] == "error"]
    assert [Path(r["path"]).name for r in died] == ["die_here.png"]
    assert "worker died" in died[0]["error"]
    assert all(r["score"] is not None for r in rows.values() if r["status"] == "ok")
