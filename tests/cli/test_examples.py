"""The examples are run, not just shipped: nightly job (twice, incremental), units, queries."""

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from ..conftest import write_photos

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _aiiscan_bin() -> str:
    found = Path(sys.executable).with_name("aiiscan")
    return str(found) if found.is_file() else shutil.which("aiiscan")


def test_nightly_job_runs_incrementally(tmp_path, head_prefix):
    uploads = tmp_path / "uploads"
    write_photos(uploads, 4, seed=21)
    out = tmp_path / "var"
    env = dict(os.environ, AIISCAN_ROOTS=str(uploads), AIISCAN_WEIGHTS=str(head_prefix),
               AIISCAN_OUT=str(out), AIISCAN_BIN=_aiiscan_bin())
    script = EXAMPLES / "nightly" / "aiiscan-nightly.sh"
    first = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    latest = out / "latest.parquet"
    assert latest.is_symlink() and latest.resolve().is_file()
    assert latest.resolve().with_suffix(".html").is_file()
    write_photos(uploads / "new", 1, seed=22)
    second = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    meta = json.loads(pq.read_schema(latest).metadata[b"aiiscan"])
    assert meta["reused_rows"] == 4 and meta["counts"] == {"ok": 5}
    assert re.search(r"^scored: +1 file in", second.stdout, re.M)  # the summary is the job's result: stdout


def test_cron_and_systemd_units_point_at_the_script():
    cron = (EXAMPLES / "nightly" / "crontab.txt").read_text()
    assert "examples/nightly/aiiscan-nightly.sh" in cron and "flock -n" in cron
    service = configparser.ConfigParser(strict=False)
    service.optionxform = str
    service.read(EXAMPLES / "nightly" / "aiiscan-nightly.service")
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["ExecStart"].endswith("examples/nightly/aiiscan-nightly.sh")
    assert service["Service"]["SuccessExitStatus"] == "3"
    timer = configparser.ConfigParser()
    timer.read(EXAMPLES / "nightly" / "aiiscan-nightly.timer")
    assert timer["Timer"]["OnCalendar"] and timer["Install"]["WantedBy"] == "timers.target"
    if shutil.which("systemd-analyze"):
        proc = subprocess.run(["systemd-analyze", "calendar", timer["Timer"]["OnCalendar"]],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def test_query_example_runs_on_a_report(tmp_path, head_prefix):
    folder = tmp_path / "q"
    write_photos(folder, 3, seed=5)
    (folder / "bad.png").write_bytes(b"nope")
    report = tmp_path / "r.parquet"
    subprocess.run([_aiiscan_bin(), "scan", str(folder), "-o", str(report), "--weights", str(head_prefix),
                    "--threshold", "0", "--quiet"], check=False, timeout=300)
    # As on the base install: no pandas (an import of it fails here).
    code = ("import runpy, sys; sys.modules['pandas'] = None; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code, str(EXAMPLES / "query_report.py"), str(report)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "flagged per folder:" in proc.stdout and "most suspicious:" in proc.stdout
    assert "1 files could not be scored" in proc.stdout
