"""The README's real path, run as written: every `aiiscan` line of its "real path" block.

The photos and data sets the block names are made here; `train` gets a tiny random-init backbone
appended (the default ViT-L-14 cannot be downloaded here), which changes nothing else about the
commands. The set-up commands themselves are run by `.ci/run`, each in a fresh venv.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aiiscan.models.backbone import TINY_CONFIG
from aiiscan.reports.read import read_report

from ..conftest import write_photos

README = Path(__file__).resolve().parents[2] / "README.md"
TINY = f" --backbone {TINY_CONFIG} --pretrained none --epochs 1 --views 1 --batch-size 8 --workers 0"


def real_path_commands() -> list[str]:
    text = README.read_text()
    section = text.split("## The real path", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.startswith("aiiscan ")]


def test_the_real_path_block_names_the_whole_workflow():
    verbs = [c.split()[1] for c in real_path_commands()]
    assert verbs[:1] == ["train"] and {"calibrate", "scan", "report", "evaluate"} <= set(verbs)
    assert "aiiscan scan ./photos -o report.parquet" in real_path_commands()  # the design brief's


def test_readme_real_path_runs_as_written(tmp_path):
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "aiiscan").is_file() and not shutil.which("aiiscan"):
        pytest.skip("the aiiscan command is not installed")
    home = tmp_path / "home"
    write_photos(home / "photos" / "authentic", 12, seed=31)
    write_photos(home / "photos" / "held-out", 4, seed=32)
    write_photos(home / "photos" / "calibration", 6, seed=33)
    desk = tmp_path / "desk"  # where the user runs the commands: ./photos is the folder to scan
    write_photos(desk / "photos", 3, seed=34)
    (desk / "files.txt").write_text("".join(f"{p}\n" for p in sorted((desk / "photos").glob("*.png"))))
    for label, seed in (("0_real", 35), ("1_fake", 36)):
        write_photos(home / "benchmarks" / "univfd" / "gen" / label, 3, seed=seed)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIISCAN_")}
    env |= {"HOME": str(home), "XDG_DATA_HOME": str(home / ".local" / "share"),
            "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}
    for command in real_path_commands():
        line = command.split("  #", 1)[0].rstrip()
        if line.startswith("aiiscan train "):
            line += TINY
        elif line.split()[1] in ("scan", "calibrate", "evaluate"):
            line += " --workers 0"
        proc = subprocess.run(["bash", "-c", line], cwd=desk, env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode in (0, 3), f"{line}\n{proc.stdout}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr, line
    assert (home / ".local" / "share" / "aiiscan" / "weights" / "default.link").is_file()
    rows = read_report(desk / "report.parquet")
    assert len(rows) == 3 and set(rows.column("label").to_pylist()) <= {"ai", "natural"}
    assert None not in rows.column("label").to_pylist()  # calibrated: every row is labelled
    assert (desk / "report.html").is_file() and (desk / "table.md").is_file()
    assert len(read_report(desk / "report.csv")) == 3
