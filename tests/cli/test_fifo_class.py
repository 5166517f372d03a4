"""A FIFO where a file is expected never makes a command wait (the class: every path a user or a
report names, read through ``files.open_regular``). A plain ``open()`` of a FIFO blocks until a
writer comes, i.e. for ever: each command here runs in its own process under a timeout, with a
FIFO in a folder it lists or in the place of a file it is told to read."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aiiscan.models.backbone import TINY_CONFIG

from ..conftest import write_photos

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIISCAN_")}
    env |= {"XDG_DATA_HOME": str(tmp_path / "xdg"), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "aiiscan", *args], capture_output=True, text=True,
                          timeout=180, env=env, cwd=tmp_path)


@pytest.fixture()
def fifo_photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    write_photos(folder, 8, seed=71, size=(96, 72))
    os.mkfifo(folder / "pipe.png")  # a folder's FIFO: left out of the set, never opened blocking
    return folder


def test_train_calibrate_evaluate_list_a_folder_holding_a_fifo(tmp_path, fifo_photos, head_prefix):
    res = _run(tmp_path, "train", "--natural", str(fifo_photos), "-o", str(tmp_path / "h"), "--backbone",
               str(TINY_CONFIG), "--pretrained", "none", "--epochs", "1", "--device", "cpu", "-q")
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    res = _run(tmp_path, "calibrate", "--natural", str(fifo_photos), "--weights", str(tmp_path / "h"),
               "--device", "cpu", "--policy", "fpr:0.5", "-q")
    assert res.returncode in (0, 2) and "Traceback" not in res.stderr, res.stderr
    res = _run(tmp_path, "evaluate", "--real", str(fifo_photos), "--fake", str(fifo_photos), "--weights",
               str(head_prefix), "--device", "cpu", "-o", str(tmp_path / "t.md"), "-q")
    assert res.returncode in (0, 2) and "Traceback" not in res.stderr, res.stderr


def test_a_fifo_named_as_a_report_rules_or_trust_file_is_refused(tmp_path, fifo_photos):
    fifo = tmp_path / "named.parquet"
    os.mkfifo(fifo)
    for args in (["report", str(fifo), "-o", str(tmp_path / "p.html")],
                 ["scan", str(fifo_photos), "-o", str(tmp_path / "r.csv"), "--rules", str(fifo)],
                 ["scan", str(fifo_photos), "-o", str(tmp_path / "r2.csv"), "--c2pa-trust", str(fifo)]):
        res = _run(tmp_path, *args)
        assert res.returncode == 2, (args, res.stderr)
        assert "not a regular file" in res.stderr and "Traceback" not in res.stderr, res.stderr
