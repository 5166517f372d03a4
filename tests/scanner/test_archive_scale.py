"""Issue 16: a scan's memory set by its in-flight window, not by the archive.

What is tested here is the shape that makes the memory flat (streaming, an on-disk ledger,
bounded batches, a streamed sorted finish) and the content reuse; the peak-RSS figures at
10,000 to 10,000,000 come from ``benchmarks/memory.py``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aiiscan.api import scan_options
from aiiscan.decode.job import DecodeJob
from aiiscan.models.batcher import feature_batches
from aiiscan.models.headfile import load_head
from aiiscan.models.scorer import Detector
from aiiscan.reports.ledger import Ledger
from aiiscan.reports.parts import ReportWriter
from aiiscan.reports.read import iter_report, read_report
from aiiscan.reports.schema import COLUMNS, SCHEMA
from aiiscan.scanner import plan, reuse
from aiiscan.scanner.driver import run_scan

from ..conftest import write_empty, write_photos

TODAY = [c for c in COLUMNS if c not in ("reused", "reused_from")]


@pytest.fixture(scope="module")
def det(backbone, head_prefix):
    return Detector(backbone, *load_head(head_prefix))


class Passes:
    """Counts the crops the backbone encodes (one per backbone pass over a file)."""

    def __init__(self, detector: Detector, monkeypatch):
        self.n = 0
        encode = detector.backbone.encode

        def counted(batch):
            self.n += len(batch)
            return encode(batch)

        monkeypatch.setattr(detector.backbone, "encode", counted)


def _scan(paths, out, det, **kw):
    return run_scan([str(p) for p in paths], out, *scan_options(detector=det, workers=0, quiet=True, **kw))


def _rows(report) -> dict[str, dict]:
    return {r["path"]: r for r in read_report(report).to_pylist()}


# -- 1. rows leave at a steady pace -------------------------------------------------------------
def test_a_good_file_ahead_of_many_bad_ones_does_not_hold_them(backbone, tmp_path):
    good = write_photos(tmp_path / "g", 1, seed=3)
    bad = write_empty(tmp_path / "b", 300, "jpg")
    jobs = [DecodeJob(p, backbone.image_size) for p in [*good, *bad]]
    sizes = [len(b.results) for b in feature_batches(backbone.features, jobs, batch_size=16, workers=0)]
    assert sum(sizes) == 301 and max(sizes) <= 4 * 16  # flushed at 4x the batch, not at the end


def test_parts_are_written_while_the_crawl_goes_on(det, tmp_path, monkeypatch):
    """The crawl streams into the pipeline: the first part exists long before the crawl ends."""
    root = tmp_path / "many"
    root.mkdir()
    for i in range(600):
        (root / f"x_{i:04d}.jpg").write_bytes(b"")
    crawled, at_first_part = [0], []
    crawl = plan.iter_inputs

    def counting(*a, **kw):
        for entry in crawl(*a, **kw):
            crawled[0] += 1
            yield entry

    flush = ReportWriter.flush

    def noting(self):
        if self.buffer and not at_first_part:
            at_first_part.append(crawled[0])
        flush(self)

    monkeypatch.setattr(plan, "iter_inputs", counting)
    monkeypatch.setattr(ReportWriter, "flush", noting)
    s = _scan([root], tmp_path / "r.csv", det, part_rows=50)
    assert s.status["error"] == 600 and crawled[0] == 600
    assert at_first_part and at_first_part[0] <= 50 + 4 * 64  # part rows + one flush window


# -- 2. the ledger --------------------------------------------------------------------------------
def test_ledger_lookups(tmp_path):
    led = Ledger(tmp_path / "i.sqlite", SCHEMA)
    assert led.add_new("a") and not led.add_new("a") and led.add_new("b")
    old = pa.table({f.name: pa.nulls(2, f.type) for f in SCHEMA}, schema=SCHEMA)
    old = old.set_column(0, "path", pa.array(["/x/1.jpg", "/x/2.jpg"]))
    old = old.set_column(SCHEMA.get_field_index("sha256"), "sha256", pa.array(["aa", "bb"]))
    old = old.set_column(SCHEMA.get_field_index("has_exif"), "has_exif", pa.array([True, None]))
    old = old.set_column(SCHEMA.get_field_index("score"), "score", pa.array([0.5, 1.5]))
    mt = SCHEMA.get_field_index("mtime")
    assert led.load_old([old.set_column(mt, "mtime", old.column(mt).cast(pa.int64()))]) == 2
    row = led.old_row("/x/1.jpg")
    assert row["has_exif"] is True and row["score"] == 0.5 and set(row) == set(COLUMNS)
    assert led.old_row("/x/3.jpg") is None
    assert led.old_content("bb") == ("/x/2.jpg", (1.5,)) and led.old_content("cc") is None
    led.add_scored("aa", "/y/1.jpg", (0.5,))
    led.add_scored("aa", "/y/2.jpg", (0.5,))  # the first file with a content stays its source
    assert led.scored("aa") == ("/y/1.jpg", (0.5,))
    led.close()
    assert not (tmp_path / "i.sqlite").exists()


# -- 3. the streamed, sorted finish ---------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_finish_streams_parts_into_one_sorted_report(tmp_path, fmt):
    out = tmp_path / f"r.{fmt}"
    writer = ReportWriter(out, rows_per_part=7)
    names = [f"/d/{c}{i}.jpg" for i in range(30) for c in "zay"]  # written in no particular order
    for i, p in enumerate(names):
        writer.write(dict.fromkeys(COLUMNS) | {"path": p, "status": "ok", "score": float(i), "size": i,
                                                "mtime": 1_700_000_000_000_000 + i, "gen_prompt": "=1+1"})
    assert len(list(writer.parts.glob("part-*.parquet"))) == 12
    writer.finish({"k": 1})
    got = read_report(out)
    assert got.column("path").to_pylist() == sorted(names)
    assert got.column("gen_prompt").to_pylist() == ["=1+1"] * 90  # the CSV guard is undone on reading
    by_path = {r["path"]: r["score"] for r in got.to_pylist()}
    assert all(by_path[p] == float(i) for i, p in enumerate(names))
    assert not writer.parts.exists()


def test_old_reports_without_the_new_columns_are_read(tmp_path):
    old = SCHEMA.empty_table().drop_columns(["reused", "reused_from"])
    row = pa.table({f.name: pa.nulls(1, f.type) for f in old.schema}, schema=old.schema)
    old = pa.concat_tables([old, row])
    pq.write_table(old, tmp_path / "old.parquet")
    back = read_report(tmp_path / "old.parquet")
    assert back.schema == SCHEMA and back.column("reused").null_count == 1


def test_iter_report_streams_in_bounded_batches(tmp_path):
    n = 20_000
    t = pa.table({f.name: pa.nulls(n, f.type) for f in SCHEMA}, schema=SCHEMA)
    t = t.set_column(0, "path", pa.array([f"/p/{i:06d}" for i in range(n)]))
    pq.write_table(t, tmp_path / "r.parquet", row_group_size=n)  # one big row group
    sizes = [len(b) for b in iter_report(tmp_path / "r.parquet", batch_rows=1000)]
    assert sum(sizes) == n and max(sizes) <= 1000


# -- 4. content reuse -----------------------------------------------------------------------------
def test_moved_folder_is_not_rescored(det, tmp_path, monkeypatch):
    """Rename a folder of an old scan's tree: the incremental rescan makes no backbone pass for
    the moved files and gives them the same scores, marked as reused with their old path."""
    tree = tmp_path / "tree"
    write_photos(tree / "2024" / "trip", 5, seed=21)
    write_photos(tree / "2024" / "home", 3, seed=22)
    first = tmp_path / "old.parquet"
    _scan([tree], first, det)
    before = _rows(first)
    os.rename(tree / "2024" / "trip", tree / "2024" / "holiday")  # re-organised since
    passes = Passes(det, monkeypatch)
    s = _scan([tree], tmp_path / "new.parquet", det, incremental=str(first))
    after = _rows(tmp_path / "new.parquet")
    assert passes.n == 0 and s.scored == 0
    assert s.reused == 3 and s.same_content == 5
    for path, row in after.items():
        if "/holiday/" in path:
            old = before[path.replace("/holiday/", "/trip/")]
            assert row["reused"] == "same_content" and row["reused_from"] == old["path"]
            assert row["score"] == old["score"] and row["sha256"] == old["sha256"]
            assert row["mtime"] == old["mtime"] and row["size"] == old["size"]
        else:
            assert row["reused"] == "unchanged" and row["reused_from"] == path
            assert row["score"] == before[path]["score"]


def test_identical_files_in_one_scan_are_scored_once(det, tmp_path, monkeypatch):
    src = write_photos(tmp_path / "a", 4, seed=31)
    copies = tmp_path / "b"
    shutil.copytree(tmp_path / "a", copies)
    (tmp_path / "c").mkdir()
    shutil.copy(src[0], tmp_path / "c" / "again.png")
    passes = Passes(det, monkeypatch)
    s = _scan([tmp_path], tmp_path / "r.parquet", det, batch_size=2)  # copies in and across batches
    rows = _rows(tmp_path / "r.parquet")
    assert passes.n == 4 and s.scored == 4 and s.duplicates == 5
    for p in src:
        copy = str(copies / Path(p).name)
        assert rows[copy]["reused"] == "duplicate" and rows[copy]["reused_from"] == p
        assert rows[copy]["score"] == rows[p]["score"] and rows[p]["reused"] is None
    assert rows[str(tmp_path / "c" / "again.png")]["reused_from"] == src[0]


def test_same_tree_same_rows_clean_resumed_incremental(det, tmp_path):
    """Today's columns agree across a clean scan, an incremental one, and a resumed one."""
    tree = tmp_path / "t"
    write_photos(tree / "x", 6, seed=41)
    write_photos(tree / "y", 4, seed=42)
    (tree / "y" / "bad.jpg").write_bytes(b"not an image")
    clean = tmp_path / "clean.parquet"
    _scan([tree], clean, det)
    inc = tmp_path / "inc.parquet"
    _scan([tree], inc, det, incremental=str(clean))
    # an interrupted run: its parts hold the first four rows and a stale row of a deleted file
    res = tmp_path / "res.parquet"
    writer = ReportWriter(res, rows_per_part=2)
    done = reuse._mtime_int(read_report(clean).slice(0, 4)).to_pylist()
    for r in done + [done[0] | {"path": str(tree / "gone.png")}]:
        writer.write(r)
    writer.close()
    s = _scan([tree], res, det, resume=True)
    assert s.resumed == 4
    want = read_report(clean).select(TODAY)
    for other in (inc, res):
        got = read_report(other).select(TODAY)
        assert got.column("path").to_pylist() == want.column("path").to_pylist()
        for name in TODAY:
            if name in ("score",):
                assert got.column(name).to_pylist() == pytest.approx(want.column(name).to_pylist(), abs=1e-6)
            else:
                assert got.column(name).to_pylist() == want.column(name).to_pylist(), name


def test_a_failed_merge_keeps_every_row_and_says_what_to_do(tmp_path, monkeypatch):
    """A finish that fails half-way through its merge (a full disk under the intermediate runs)
    keeps every part for --resume, leaves no report and no merge files behind."""
    import errno

    from aiiscan.errors import ReportError
    from aiiscan.reports import merge

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(merge, "FAN_IN", 3)
    monkeypatch.setattr(merge, "_write_run", full)
    writer = ReportWriter(tmp_path / "r.csv", rows_per_part=10)
    for i in range(100):
        writer.write(dict.fromkeys(COLUMNS) | {"path": f"/x/{99 - i:03d}", "status": "error"})
    with pytest.raises(ReportError, match="No space left on device.*--resume"):
        writer.finish({})
    writer.close()
    assert not (tmp_path / "r.csv").exists() and len(list(writer.parts.glob("part-*"))) == 10
    monkeypatch.undo()
    monkeypatch.setattr(merge, "FAN_IN", 3)  # three levels of intermediate runs
    again = ReportWriter(tmp_path / "r.csv", resume=True)
    again.finish({})
    assert read_report(tmp_path / "r.csv").column("path").to_pylist() == [f"/x/{i:03d}" for i in range(100)]
    assert not again.parts.exists()


def test_a_touched_file_with_the_same_content_is_unchanged_not_moved(det, tmp_path):
    tree = tmp_path / "t"
    files = write_photos(tree, 3, seed=51)
    first = tmp_path / "old.parquet"
    _scan([tree], first, det)
    st = os.stat(files[1])
    os.utime(files[1], ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # touched, not changed
    s = _scan([tree], tmp_path / "new.parquet", det, incremental=str(first))
    row = _rows(tmp_path / "new.parquet")[files[1]]
    assert row["reused"] == "unchanged" and row["reused_from"] == files[1]
    assert s.reused == 3 and s.same_content == 0 and s.scored == 0


def test_archives_left_closed_are_named_in_the_summary(det, tmp_path):
    import tarfile

    src = write_photos(tmp_path / "p", 1, seed=52)
    (tmp_path / "in").mkdir()
    with tarfile.open(tmp_path / "in" / "shard.tar", "w") as tar:
        tar.add(src[0], arcname="a.png")
    s = _scan([tmp_path / "in"], tmp_path / "r.parquet", det)
    assert s.archives == 1 and any("--archives" in line for line in s.lines())
    s = _scan([tmp_path / "in"], tmp_path / "r2.parquet", det, archives=True)
    assert s.archives == 0 and s.status["ok"] == 1
