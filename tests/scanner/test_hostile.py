"""Every hostile file becomes exactly one row with a reason; valid oddities are scored."""

import os
import subprocess
import sys
from collections import Counter

import pytest

from aiiscan.api import scan_options
from aiiscan.reports.read import read_report
from aiiscan.scanner.driver import run_scan
from aiiscan.textsafe import display_path

from ..hostile import make_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile") / "in"
    return root, make_corpus(root)


def test_hostile_corpus_scan_loses_nothing(corpus, head_prefix, tmp_path):
    root, expect = corpus
    out = tmp_path / "r.parquet"
    proc = subprocess.run([sys.executable, "-m", "aiiscan", "scan", str(root), "-o", str(out),
                           "--weights", str(head_prefix), "--workers", "2", "--timeout", "60", "--quiet"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 3, proc.stderr  # report written, some files errored
    assert "Traceback" not in proc.stderr
    rows = read_report(out).to_pylist()
    paths = [r["path"] for r in rows]
    assert len(paths) == len(set(paths)), "a file was reported twice"
    wanted = {display_path(p): s for p, s in expect.items()}
    assert set(paths) == set(wanted), (set(wanted) - set(paths), set(paths) - set(wanted))
    by_path = {r["path"]: r for r in rows}
    wrong = {p: (by_path[p]["status"], by_path[p]["error"]) for p, s in wanted.items()
             if s is not None and by_path[p]["status"] != s}
    assert not wrong, wrong
    for r in rows:
        if r["status"] != "ok":
            assert r["error"] and "\n" not in r["error"]
        else:
            assert r["score"] is not None
    reasons = {os.path.basename(p): by_path[p]["error"] for p in wanted}
    assert "pixel cap" in reasons["claims_100k.png"] and "pixel cap" in reasons["bomb_png_40k.png"]
    assert "FIFO" in reasons["fifo.png"]
    assert "scans" in reasons["scan_bomb.jpg"] and "0x" not in reasons["junk.heic"]
    assert by_path[str(root / "comfy_lone_surrogate.png")]["gen_prompt"] == "x\\ud800\\x00\\u202ey"
    turned = by_path[str(root / "orientation6.jpg")]
    assert (turned["width"], turned["height"]) == (96, 64)  # upright: the stored pixels are 64x96
    assert "loop" in reasons["up"] or "link" in reasons["up"]
    counts = Counter(r["status"] for r in rows)
    assert counts["ok"] >= 25 and counts["error"] >= 20


def test_vanished_and_replaced_files_between_crawl_and_decode(tmp_path, head_prefix, monkeypatch):
    """The crawl lists the files; before a worker reads them, one is deleted, one becomes a
    directory and one a FIFO. Each gets an error row; nothing else changes."""
    import aiiscan.scanner.plan as plan

    from ..conftest import write_photos
    files = write_photos(tmp_path / "in", 6, seed=2)
    real = plan.iter_inputs

    def crawl_then_sabotage(*args, **kwargs):
        entries = list(real(*args, **kwargs))
        os.remove(files[0])
        os.remove(files[1])
        os.mkdir(files[1])
        os.remove(files[2])
        os.mkfifo(files[2])
        return iter(entries)

    monkeypatch.setattr(plan, "iter_inputs", crawl_then_sabotage)
    summary = run_scan([str(tmp_path / "in")], tmp_path / "r.parquet", *scan_options(weights=str(head_prefix),
                       device="cpu", workers=2, quiet=True))
    assert summary.exit_code == 3
    rows = {r["path"]: r for r in read_report(summary.report).to_pylist()}
    assert set(rows) == set(files)
    assert rows[files[0]]["error"] == "no such file (missing, or vanished before it could be read)"
    assert rows[files[1]]["error"] == "is a directory"
    assert "FIFO" in rows[files[2]]["error"]
    assert all(rows[f]["status"] == "ok" for f in files[3:])


def test_links_are_reported_as_given_and_never_followed_unasked(tmp_path, head_prefix):
    from ..conftest import write_photos
    outside = write_photos(tmp_path / "outside", 1, seed=4)[0]
    root = tmp_path / "root"
    write_photos(root, 1, seed=5)
    os.symlink(outside, root / "link.png")
    s = run_scan([str(root)], tmp_path / "a.parquet",
                 *scan_options(weights=str(head_prefix), device="cpu", workers=0,
                 quiet=True))
    rows = {r["path"]: r for r in read_report(s.report).to_pylist()}
    assert rows[str(root / "link.png")]["status"] == "skipped" and outside not in rows
    s = run_scan([str(root)], tmp_path / "b.parquet",
                 *scan_options(weights=str(head_prefix), device="cpu", workers=0,
                 follow_symlinks=True, quiet=True))
    rows = {r["path"]: r for r in read_report(s.report).to_pylist()}
    assert rows[str(root / "link.png")]["status"] == "ok" and outside not in rows  # the path given
