"""What a user reads around a scan (issue 29, items 1-3 and 8): an empty scan fails (exit 5),
the scan's bar has a total once the crawl ends, the summary is aligned lines, reports say where
they were made, `aiiscan report` reads only under --base and says in words what it could not
read, and output names that meant something else get a hint.

The real CLI in tmp folders; scans without a head (evidence only) where no score is needed.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from aiiscan import api
from aiiscan.cli import main
from aiiscan.errors import EXIT_NOTHING, NothingToScan
from aiiscan.reports.read import report_metadata
from aiiscan.scanner.summary import ScanSummary
from aiiscan.version import __version__

from ..conftest import write_photos


@pytest.fixture()
def here(tmp_path, monkeypatch) -> Path:
    """A fresh working folder, with no default head (``./weights/default`` or an installed one)."""
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("AIISCAN_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    return tmp_path


def _scan(*args: str):
    return CliRunner().invoke(main, ["scan", "--workers", "0", *args])


# ---- 1. nothing to scan: exit 5 ------------------------------------------------------------------

def test_an_empty_scan_exits_5_unless_allowed(here):
    empty = here / "share"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a photo")
    res = _scan("share", "-o", "r.parquet")
    assert res.exit_code == EXIT_NOTHING == 5, res.output
    assert "nothing to scan: share held no image file" in res.stderr and "--allow-empty" in res.stderr
    assert re.search(r"^empty roots: +share ", res.stdout, re.M) and "Traceback" not in res.output
    res = _scan("share", "-o", "r2.parquet", "--allow-empty")
    assert res.exit_code == 0, res.output
    with pytest.raises(NothingToScan, match="nothing to scan"):  # the Python API: raised, not silent
        api.scan(["share"], "r3.parquet", workers=0)
    assert str(api.scan(["share"], "r4.parquet", workers=0, allow_empty=True)) == "r4.parquet"
    listing = here / "list.txt"
    listing.write_text("# nothing today\n")
    res = _scan("--from-list", str(listing), "-o", "r5.csv")
    assert res.exit_code == 5 and f"the list {listing} held no image file" in res.stderr, res.output


def test_one_empty_root_among_full_ones_is_named_and_passes(here):
    write_photos(here / "full", 2, seed=1)
    (here / "unmounted").mkdir()
    res = _scan("full", "unmounted", "-o", "r.csv")
    assert res.exit_code == 0, res.output
    assert "warning: no image file under unmounted" in res.stderr
    assert re.search(r"^empty roots: +unmounted \(no image file found there\)$", res.stdout, re.M)
    (here / "named.png").write_bytes(b"not an image")  # a named file that fails is found: exit 3
    res = _scan("named.png", "unmounted", "-o", "r2.csv")
    assert res.exit_code == 3 and "nothing to scan" not in res.stderr, res.output
    exit_codes = CliRunner().invoke(main, ["--help"]).output
    assert re.search(r"^ +5 +scan: nothing to scan", exit_codes, re.M)


# ---- 2. progress with a total, the summary as aligned lines ----------------------------------------

def test_the_scan_bar_shows_a_total_once_the_crawl_ends(here):
    write_photos(here / "photos", 5, seed=2)
    (here / "photos" / "readme.txt").write_text("x")
    res = _scan("photos", "-o", "r.parquet", "--progress")  # as on a terminal
    assert res.exit_code == 0, res.output
    assert re.search(r"\d/6 \[\d\d:\d\d<\d\d:\d\d", res.stderr), res.stderr  # a total and the time left
    lines = res.stdout.splitlines()
    assert max(len(line) for line in lines) < 160, lines
    assert len({line.index(line.split(":", 1)[1].strip()) for line in lines}) == 1, lines  # aligned
    assert re.search(r"^read: +5 files in [\d.]+s", res.stdout, re.M), res.stdout


def test_the_rate_leaves_out_the_start_up_and_is_not_given_for_a_blink():
    """The rate counts from the first decoded file (a model load is no scanning time); when the
    files came back within a second of it (one batch), no rate is given: it would say nothing."""
    summary = ScanSummary(report=None)
    summary.scored, summary.seconds, summary.begun = 10, 5.0, 100.0
    summary.first_file = 101.0
    assert summary._timing() == ("10 files in 5.0s; 2.5 files/s from the first decoded file (start-up "
                                 "before it, model load included: 1.0s)")
    summary.first_file = 104.5
    assert summary._timing() == "10 files in 5.0s (too short after start-up to give a rate)"


# ---- 3. reports that stand on their own; `aiiscan report` reads only under --base ----------------

def test_the_report_says_where_and_on_which_machine_it_was_made(here):
    write_photos(here / "photos", 1, seed=3)
    (here / "work").mkdir()
    os.chdir(here / "work")
    res = _scan("../photos", "-o", "r.parquet")
    assert res.exit_code == 0, res.output
    meta = report_metadata("r.parquet")
    assert meta["cwd"] == os.getcwd() and meta["host"] == socket.gethostname()
    assert meta["roots"] == [os.path.abspath("../photos")] and meta["aiiscan_version"] == __version__


def test_report_from_another_folder_says_why_thumbnails_are_missing(here, head_prefix):
    """Relative names resolve under --base DIR (default: the current folder), never under the
    folder the report says the scan ran in; nothing outside DIR is read, through '..' or a link."""
    scanned = here / "scan"
    write_photos(scanned / "photos", 3, seed=4)
    write_photos(here / "outside", 1, seed=5)
    secret = write_photos(here / "secret", 1, seed=7)[0]  # not scanned: a link leads there
    (scanned / "photos" / "link.png").symlink_to(secret)
    os.chdir(scanned)
    res = _scan("photos", "../outside", "-o", "r.parquet", "--follow-symlinks", "--weights", str(head_prefix))
    assert res.exit_code == 0, res.output
    scanned, elsewhere = Path.cwd(), here / "elsewhere"
    elsewhere.mkdir()
    os.chdir(elsewhere)
    res = CliRunner().invoke(main, ["report", "../scan/r.parquet", "-o", "p.html"])
    assert res.exit_code == 0, res.output
    elsewhere = Path.cwd()
    assert (f"warning: no thumbnail for 4 files not found under {elsewhere}: run from the scan's "
            f"folder {scanned}, or pass --base {scanned}") in res.stderr, res.stderr
    assert (f"warning: no thumbnail for 1 file outside the --base folders ({elsewhere}): pass --base DIR "
            f"for the folder that holds them (the scan ran in {scanned})") in res.stderr, res.stderr
    page = Path("p.html").read_text()
    reasons = re.findall(r'class="noimg">([^<]*)<', page)
    assert len(reasons) == 5 and not [r for r in reasons if "Error" in r], reasons  # words, no class names
    res = CliRunner().invoke(main, ["report", "../scan/r.parquet", "-o", "q.html", "--base", str(scanned)])
    assert res.exit_code == 0, res.output
    # photos/*.png resolved under the base; the link and ../outside lead outside it: not opened
    assert Path("q.html").read_text().count('<img alt="thumbnail"') == 3
    assert "warning: no thumbnail for 2 files outside the --base folders" in res.stderr, res.stderr
    os.chdir(scanned)  # the scan's own folder: the default base, and every name under it holds
    res = CliRunner().invoke(main, ["report", "r.parquet", "-o", "c.html", "--base", ".",
                                    "--base", str(here)])
    assert res.exit_code == 0 and "warning" not in res.stderr, res.output
    assert Path("c.html").read_text().count('<img alt="thumbnail"') == 5


# ---- 8. output names that meant something else -----------------------------------------------------

@pytest.mark.parametrize("args, says", [
    (["scan", "photos", "-o", "report.json"], "did you mean report.jsonl?"),
    (["scan", "photos", "-o", "report.html"], "the HTML page is --html report.html"),
    (["scan", "photos", "-o", "r.parquet", "--html", "r.pdf"], "the page is HTML only"),
    (["scan", "photos", "-o", "-"], "-o - (standard output) is not supported"),
    (["report", "old.parquet", "-o", "report.pdf"], "the page is HTML only"),
    (["report", "old.parquet", "-o", "-"], "-o - (standard output) is not supported"),
])
def test_output_names_get_a_hint_and_nothing_is_written(here, args, says):
    write_photos(here / "photos", 1, seed=6)
    Path("old.parquet").write_bytes(b"PAR1")
    before = sorted(p.name for p in here.iterdir())
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and says in res.stderr, res.output
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output
    assert sorted(p.name for p in here.iterdir()) == before
