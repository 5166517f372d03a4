"""A newcomer's path: the base install, the default head, one output policy, CLI conventions.

Each test stands for a defect a new user met (issue "A newcomer's path works on a fresh
machine"); together with `.ci/run`, which runs README set-up command 1 in a fresh venv with no
extras, they keep that path true.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import click
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from aiiscan import progress
from aiiscan.cli import main
from aiiscan.errors import ReportError
from aiiscan.reports.html import card_evidence, nice_ticks
from aiiscan.reports.parts import ReportWriter
from aiiscan.reports.read import read_report
from aiiscan.reports.schema import COLUMNS
from aiiscan.scanner.summary import ScanSummary

from ..conftest import write_photos

ROOT = Path(__file__).resolve().parents[2]
WRITERS = ("train", "scan", "evaluate", "report")  # calibrate writes into the head's own card

# Run the CLI in a fresh interpreter in which pandas cannot be imported, as on the base install
# (pyarrow silently needs pandas for some conversions, nanosecond timestamps among them). A
# package named pandas whose import fails shadows the real one; `.ci/run` also runs the README's
# set-up command in a venv that truly lacks it.
def _cli(*args: str, env: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aiiscan", *args], capture_output=True, text=True,
                          timeout=600, env=env, cwd=cwd)


def _env(tmp_path: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIISCAN_")}
    shadow = tmp_path / "no-pandas" / "pandas"
    shadow.mkdir(parents=True, exist_ok=True)
    (shadow / "__init__.py").write_text("raise ImportError('pandas is not installed (test shadow)')\n")
    env |= {"XDG_DATA_HOME": str(tmp_path / "xdg"), "PYTHONPATH": f"{shadow.parent}{os.pathsep}{ROOT}"}
    return env | extra


@pytest.fixture()
def folder(tmp_path) -> Path:
    root = tmp_path / "photos"
    write_photos(root, 3, seed=3)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    return root


# ---- the base install: every format and the HTML page without pandas -----------------------

def test_every_format_and_the_page_without_pandas(tmp_path, folder, head_prefix):
    env = _env(tmp_path)
    for name in ("r.parquet", "r.csv", "r.jsonl"):
        res = _cli("scan", str(folder), "-o", str(tmp_path / name), "--weights", str(head_prefix),
                   "--workers", "0", env=env)
        assert res.returncode == 3, res.stderr  # broken.jpg is an error row
        assert "Traceback" not in res.stderr and not (tmp_path / f"{name}.parts").exists()
        assert re.search(r"^status: +error 1, ok 3$", res.stdout, re.M)  # the summary is a result: stdout
    for name in ("r.parquet", "r.csv", "r.jsonl"):
        res = _cli("report", str(tmp_path / name), "-o", str(tmp_path / "pages" / f"{name}.html"), env=env)
        assert res.returncode == 0, res.stderr
    res = _cli("scan", str(folder), "-o", str(tmp_path / "h.parquet"), "--weights", str(head_prefix),
               "--workers", "0", "--html", str(tmp_path / "h.html"), env=env)
    assert res.returncode == 3 and (tmp_path / "h.html").is_file(), res.stderr
    assert read_report(tmp_path / "r.csv").column("mtime").to_pylist() \
        == read_report(tmp_path / "r.parquet").column("mtime").to_pylist()


def test_reports_read_the_same_in_duckdb_pandas_csv_and_jsonl(tmp_path, folder, head_prefix):
    duckdb = pytest.importorskip("duckdb")
    import pandas as pd

    for name in ("r.parquet", "r.csv", "r.jsonl"):
        res = CliRunner().invoke(main, ["scan", str(folder), "-o", str(tmp_path / name), "--weights",
                                        str(head_prefix), "--workers", "0", "-q"])
        assert res.exit_code == 3, res.output
    rows = duckdb.sql(f"select path, mtime from '{tmp_path / 'r.parquet'}' order by path").fetchall()
    assert len(rows) == 4 and all(r[1].tzinfo is None for r in rows)  # fetchall() needs no pytz
    iso = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")
    with open(tmp_path / "r.csv", newline="") as f:
        csv_times = [row["mtime"] for row in csv.DictReader(f)]
    json_times = [json.loads(line)["mtime"] for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert csv_times == json_times and all(iso.match(t) for t in csv_times)
    frame = pd.read_parquet(tmp_path / "r.parquet")
    for (path, when), text in zip(rows, csv_times, strict=True):
        assert pd.Timestamp(when) == pd.Timestamp(text).tz_localize(None)
        assert frame.loc[frame.path == path, "mtime"].iloc[0] == pd.Timestamp(when)


# ---- the default head -------------------------------------------------------------------------

def test_scan_without_a_head_says_what_to_run(tmp_path, folder):
    """With no head the scan is evidence-only: one row per file, no score, a note naming the command
    that makes a head (exit 3 here: the folder holds an undecodable file)."""
    res = _cli("scan", str(folder), "-o", "report.parquet", "--workers", "0", env=_env(tmp_path),
               cwd=tmp_path)
    assert res.returncode == 3, res.stderr
    assert "no pixel detector ran" in res.stderr and "aiiscan train" in res.stderr
    assert "Traceback" not in res.stderr
    rows = read_report(tmp_path / "report.parquet").to_pylist()
    assert len(rows) == 4 and all(r["score"] is None for r in rows)


def test_train_into_new_folders_installs_the_default_head(tmp_path, folder, tiny_config):
    env = _env(tmp_path)
    out = tmp_path / "new" / "folder" / "x"
    res = _cli("train", "--natural", str(folder), "-o", str(out), "--backbone", tiny_config,
               "--pretrained", "none", "--epochs", "1", "--views", "1", "--batch-size", "4",
               "--workers", "0", "--install-default", env=env)
    assert res.returncode == 0, res.stderr
    assert out.with_name("x.safetensors").is_file() and "installed as the default head" in res.stdout
    installed = json.loads((tmp_path / "xdg" / "aiiscan" / "weights" / "default.link").read_text())
    assert installed["head"] == str(out)  # the default names the head; no second copy to diverge
    mask = os.umask(0o022)
    os.umask(mask)
    for f in (out.with_name("x.safetensors"), out.with_name("x.json")):  # both follow the umask
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~mask, f
    # The design brief's command, verbatim, now finds the head.
    res = _cli("scan", str(folder), "-o", "report.parquet", "--workers", "0", env=env, cwd=tmp_path)
    assert res.returncode == 3, res.stderr
    assert len(read_report(tmp_path / "report.parquet")) == 4
    # $AIISCAN_WEIGHTS names a head too, and wins over the installed one.
    res = _cli("scan", str(folder), "-o", "r2.parquet", "--workers", "0",
               env=env | {"AIISCAN_WEIGHTS": "/nowhere/head"}, cwd=tmp_path)
    assert res.returncode == 2 and "/nowhere/head" in res.stderr


# ---- one output policy -------------------------------------------------------------------------

def test_missing_root_is_a_usage_error_and_writes_nothing(tmp_path, folder, head_prefix):
    res = CliRunner().invoke(main, ["scan", str(folder), str(tmp_path / "nope"), "-o",
                                    str(tmp_path / "r.parquet"), "--weights", str(head_prefix)])
    assert res.exit_code == 2 and "no such file or folder" in res.stderr and "nope" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


@pytest.mark.parametrize("name, why", [
    ("x.txt", "cannot tell the report format"),
    ("a" * 239 + ".parquet", "too long"),  # 247 bytes: fits, but its temporary file would not
])
def test_bad_report_names_are_refused_before_the_scan(tmp_path, folder, head_prefix, name, why):
    res = CliRunner().invoke(main, ["scan", str(folder), "-o", str(tmp_path / name), "--weights",
                                    str(head_prefix)])
    assert res.exit_code == 2 and why in res.stderr, res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


def test_outputs_that_are_not_regular_files_are_never_replaced(tmp_path, folder, head_prefix):
    (tmp_path / "adir.parquet").mkdir()
    os.symlink("/proc/self/fd/1", tmp_path / "link.parquet")
    for target in (tmp_path / "adir.parquet", tmp_path / "link.parquet", Path("/dev/null")):
        res = CliRunner().invoke(main, ["scan", str(folder), "-o", str(target), "--weights",
                                        str(head_prefix), "--overwrite", "--format", "parquet"])
        assert res.exit_code == 2 and "only replaces regular files" in res.stderr, (target, res.stderr)
    assert os.readlink(tmp_path / "link.parquet") == "/proc/self/fd/1"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    res = CliRunner().invoke(main, ["scan", "--from-list", str(tmp_path), "-o", str(tmp_path / "r.parquet"),
                                    "--weights", str(head_prefix)])
    assert res.exit_code == 2 and "is a directory" in res.stderr


def test_unwritable_output_folder_is_refused_up_front(tmp_path, folder, head_prefix):
    # /proc/sys refuses new files even to root; a chmod-0555 folder would not stop root.
    res = CliRunner().invoke(main, ["scan", str(folder), "-o", "/proc/sys/r.parquet", "--weights",
                                    str(head_prefix)])
    assert res.exit_code == 2 and "cannot" in res.stderr and "/proc/sys" in res.stderr


def test_a_folder_that_turns_unwritable_at_finish_keeps_the_parts(tmp_path):
    writer = ReportWriter(tmp_path / "r.parquet")
    writer.write(dict.fromkeys(COLUMNS) | {"path": "a.png", "status": "error", "error": "x"})
    writer.out = Path("/proc/sys/r.parquet")  # as if the folder became read-only mid-scan
    with pytest.raises(ReportError, match="--resume"):
        writer.finish({})
    assert len(list((tmp_path / "r.parquet.parts").glob("part-*.parquet"))) == 1


def test_existing_outputs_need_overwrite(tmp_path, folder, head_prefix):
    out = tmp_path / "r.parquet"
    args = ["scan", str(folder), "-o", str(out), "--weights", str(head_prefix), "--workers", "0"]
    assert CliRunner().invoke(main, args).exit_code == 3
    before = out.read_bytes()
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and "already exists" in res.stderr and "--overwrite" in res.stderr
    assert out.read_bytes() == before and not Path(f"{out}.parts").exists()
    assert CliRunner().invoke(main, [*args, "--overwrite"]).exit_code == 3
    page = tmp_path / "new" / "dir" / "r.html"  # missing folders are created, for every output
    assert CliRunner().invoke(main, ["report", str(out), "-o", str(page)]).exit_code == 0
    res = CliRunner().invoke(main, ["report", str(out), "-o", str(page)])
    assert res.exit_code == 2 and "already exists" in res.stderr


# ---- CLI conventions ------------------------------------------------------------------------------

def test_every_command_follows_the_conventions():
    runner = CliRunner()
    group_help = runner.invoke(main, ["--help"]).output
    for code in ("0", "1", "2", "3", "4", "130"):
        assert re.search(rf"^\s+{code}\s+\S", group_help, re.M), code
    for name, cmd in main.commands.items():
        assert cmd.short_help and cmd.short_help in " ".join(group_help.split()), name
        text = runner.invoke(main, [name, "--help"]).output
        assert "Examples:" in text and f"aiiscan {name}" in text.split("Examples:")[1], name
        opts = {o for p in cmd.params if isinstance(p, click.Option) for o in p.opts}
        assert {"-q", "--quiet", "--progress"} <= opts, name
        if name in WRITERS:
            assert {"-o", "--output"} <= opts, name
        for p in cmd.params:
            if isinstance(p, click.Option) and p.name != "help":
                assert p.help, f"{name} {p.opts} has no help text"
    assert "--out" in {o for p in main.commands["train"].params for o in p.opts}
    assert "[balanced|fpr:X]" not in runner.invoke(main, ["calibrate", "--help"]).output
    assert "balanced|fpr:X" in runner.invoke(main, ["calibrate", "--help"]).output


def test_progress_bars_only_on_a_terminal(monkeypatch):
    class Tty:
        def isatty(self):
            return True

    class Pipe:
        def isatty(self):
            return False

    monkeypatch.setattr(sys, "stderr", Pipe())
    assert not progress.wanted() and progress.wanted(progress=True) and not progress.wanted(quiet=True)
    monkeypatch.setattr(sys, "stderr", Tty())
    assert progress.wanted() and not progress.wanted(progress=False)


def test_a_log_file_gets_no_bar_frames(tmp_path, folder, tiny_config):
    args = ["train", "--natural", str(folder), "--backbone", tiny_config, "--pretrained", "none",
            "--epochs", "2", "--views", "1", "--batch-size", "2", "--workers", "0"]
    quiet_log = _cli(*args, "-o", str(tmp_path / "a"), env=_env(tmp_path))
    assert quiet_log.returncode == 0, quiet_log.stderr
    assert "step/s" not in quiet_log.stderr and "photo/s" not in quiet_log.stderr
    assert "epoch 2/2" in quiet_log.stderr and "wrote" in quiet_log.stdout  # logs vs results
    forced = _cli(*args, "-o", str(tmp_path / "b"), "--progress", env=_env(tmp_path))
    assert forced.returncode == 0 and "step/s" in forced.stderr


def test_internal_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, folder, head_prefix,
                                                                      monkeypatch):
    out = tmp_path / "r.parquet"
    assert CliRunner().invoke(main, ["scan", str(folder), "-o", str(out), "--weights", str(head_prefix),
                                     "--workers", "0"]).exit_code == 3

    def bug(*args, **kwargs):
        raise KeyError("a bug stands in here")

    monkeypatch.setattr("aiiscan.reports.html.write_html", bug)
    res = CliRunner().invoke(main, ["report", str(out), "-o", str(tmp_path / "p.html")])
    assert res.exit_code == 4 and "internal error" in res.stderr and "--debug" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 2
    res = CliRunner().invoke(main, ["--debug", "report", str(out), "-o", str(tmp_path / "p.html")])
    assert res.exit_code == 4 and "Traceback" in res.stderr and "KeyError" in res.stderr
    res = CliRunner().invoke(main, ["--debug", "report", str(out), "-o", str(tmp_path / "x.txt.html"),
                                    "--top", "-1"])  # a usage error keeps exit 2 under --debug
    assert res.exit_code == 2


def test_non_finite_threshold_is_refused(tmp_path, folder, head_prefix):
    res = CliRunner().invoke(main, ["scan", str(folder), "-o", str(tmp_path / "r.parquet"),
                                    "--weights", str(head_prefix), "--threshold", "nan"])
    assert res.exit_code == 2 and "finite" in res.stderr


# ---- summary and page glitches -----------------------------------------------------------------

def test_summary_reads_well():
    s = ScanSummary(report=None, threshold=0.5, threshold_source="--threshold", scored=1)
    s.count({"status": "error"})
    text = "\n".join(s.lines())
    assert re.search(r"^scored: +1 file in", text, re.M)
    assert re.search(r"^labels: +none \(no file was scored\)", text, re.M)
    assert not re.search(r"^labels: *$", text, re.M)
    pairs = s.pairs()  # aligned: every value starts in one column, not one 240-character line
    assert len({len(line) - len(value) for line, (_, value) in zip(s.lines(), pairs, strict=False)}) == 1


def test_page_axis_heading_and_camera_line(tmp_path, folder, head_prefix):
    assert nice_ticks(0.4312, 0.5123) == [0.44, 0.46, 0.48, 0.5]
    assert len(nice_ticks(-3, 250)) >= 4
    assert card_evidence({"exif_make": "Canon", "exif_model": "Canon EOS 5D Mark II"}) \
        == ["camera: Canon EOS 5D Mark II"]
    assert card_evidence({"exif_make": "NIKON", "exif_model": "D850"}) == ["camera: NIKON D850"]
    jpg = folder / "cam.jpg"
    Image.open(next(folder.glob("*.png"))).convert("RGB").save(jpg)
    out = tmp_path / "r.parquet"
    assert CliRunner().invoke(main, ["scan", str(folder), "-o", str(out), "--weights", str(head_prefix),
                                     "--workers", "0", "--threshold", "0", "--html",
                                     str(tmp_path / "p.html")]).exit_code == 3
    page = (tmp_path / "p.html").read_text()
    assert "most suspicious" not in page and "highest scores" in page
    assert page.count('class="tick"') >= 6  # tick marks and labels between the two ends
    assert pq.read_schema(out).field("mtime").type.tz is None


def _catches_sigterm(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = int(re.search(r"^SigCgt:\s*([0-9a-f]+)", status, re.M).group(1), 16)
    return bool(mask & (1 << (signal.SIGTERM - 1)))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_starting_up_is_an_interruption_not_a_bug(tmp_path, folder, head_prefix, sig):
    """docker stop during the model load or the crawl: exit 130, one line, nothing half-written."""
    proc = subprocess.Popen([sys.executable, "-m", "aiiscan", "scan", str(folder), "-o",
                             str(tmp_path / "r.parquet"), "--weights", str(head_prefix)],
                            stderr=subprocess.PIPE, text=True, env=_env(tmp_path))
    deadline = time.time() + 120
    while not _catches_sigterm(proc.pid) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(sig)  # the main process only, as container platforms do
    _, err = proc.communicate(timeout=300)
    if proc.returncode in (0, 3):
        pytest.skip("the scan finished before the signal arrived")
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "internal error" not in err
    assert not (tmp_path / "r.parquet").exists()


def test_install_default_never_replaces_an_installed_head(tmp_path, folder, tiny_config):
    env = _env(tmp_path)
    args = ["train", "--natural", str(folder), "--backbone", tiny_config, "--pretrained", "none",
            "--epochs", "1", "--views", "1", "--batch-size", "4", "--workers", "0", "--install-default"]
    assert _cli(*args, "-o", str(tmp_path / "a"), env=env).returncode == 0
    installed = tmp_path / "xdg" / "aiiscan" / "weights" / "default.link"
    before = installed.read_bytes()
    res = _cli(*args, "-o", str(tmp_path / "b"), env=env)
    assert res.returncode == 2 and "already exists" in res.stderr and "--overwrite" in res.stderr
    assert installed.read_bytes() == before and not (tmp_path / "b.json").exists()  # refused before training
    # a checkpoint left by an interrupted run is continued or refused, never silently restarted
    (tmp_path / "c.ckpt.json").write_text("{}")
    res = _cli(*args[:-1], "-o", str(tmp_path / "c"), env=env)
    assert res.returncode == 2 and "--resume" in res.stderr


def test_counts_name_rows_without_a_label_or_hint(tmp_path, folder, head_prefix):
    out = tmp_path / "r.parquet"
    assert CliRunner().invoke(main, ["scan", str(folder), "-o", str(out), "--weights", str(head_prefix),
                                     "--workers", "0", "--html", str(tmp_path / "p.html")]).exit_code == 3
    page = (tmp_path / "p.html").read_text()
    hints = page.split('id="count-provenance-hint"')[1].split("</table>")[0]
    assert "<td>none</td><td class=num>4</td>" in hints


def test_a_folder_of_symlinks_says_why_it_holds_no_photos(tmp_path, folder, tiny_config):
    links = tmp_path / "links"
    links.mkdir()
    for p in folder.glob("*.png"):
        os.symlink(p, links / p.name)
    res = CliRunner().invoke(main, ["train", "--natural", str(links), "-o", str(tmp_path / "h"),
                                    "--backbone", tiny_config, "--pretrained", "none"])
    assert res.exit_code == 2 and "got 0" in res.stderr and "symbolic links are not followed" in res.stderr


def test_a_refused_output_leaves_no_folder_and_a_folder_output_is_named(tmp_path, folder, head_prefix):
    """From a newcomer's trial: a refused name left its new folder behind; `-o FOLDER` was
    answered with "cannot tell the report format"."""
    long_name = tmp_path / "new" / "deep" / ("a" * 300 + ".csv")
    res = CliRunner().invoke(main, ["scan", str(folder), "-o", str(long_name), "--weights", str(head_prefix)])
    assert res.exit_code == 2 and not (tmp_path / "new").exists(), res.stderr
    res = CliRunner().invoke(main, ["scan", str(folder), "-o", str(tmp_path), "--weights", str(head_prefix)])
    assert res.exit_code == 2 and "is a folder: name a file in it" in res.stderr, res.stderr
