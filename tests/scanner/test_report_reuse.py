"""`scan --incremental` and `scan --html` against the reports they read back (issue #24): a big
CSV reads, a refused report leaves nothing behind, a tampered row is never reused, a file dated
after 2262 does not break the page."""

from __future__ import annotations

import datetime as dt
import math
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from aiiscan.cli import main
from aiiscan.reports.formats import module
from aiiscan.reports.read import read_report, report_metadata
from aiiscan.reports.schema import SCHEMA

from ..conftest import write_photos

QUICK = ["-q", "--workers", "0"]


def _scan(*args: str):
    return CliRunner().invoke(main, ["scan", *args, *QUICK])


def _one_line_error(res) -> None:
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aiiscan: error: "), res.stderr


def _big_csv(base: Path, out: Path, rows: int = 2000) -> None:
    """``base``'s rows and ``rows`` error rows whose prompts span many lines: past 19 MB."""
    table = read_report(base)
    prompt = "a castle,\nat dusk; \"cinematic\"\r\n" * 300
    cols = {f.name: pa.nulls(rows, f.type) for f in SCHEMA}
    cols |= {"path": pa.array([f"/gone/img_{i:06d}.png" for i in range(rows)]),
             "status": pa.array(["error"] * rows), "error": pa.array(["corrupt:\nsee above"] * rows),
             "gen_prompt": pa.array([prompt] * rows)}
    table = pa.concat_tables([table, pa.table(cols, schema=SCHEMA)])
    module("csv").write(out, iter(table.to_batches(max_chunksize=500)), SCHEMA, b"")
    shutil.copy(f"{base}.meta.json", f"{out}.meta.json")
    assert out.stat().st_size > 19 * 2 ** 20


def test_incremental_reads_a_csv_past_16_mb_and_a_refusal_leaves_nothing(tmp_path):
    """Regression: a 19 MB CSV with multi-line prompts was refused ("Expected 36 columns, got
    28") and the refusal left a .parts folder that blocked the next plain run."""
    photos = tmp_path / "photos"
    write_photos(photos, 2, seed=3)
    base = tmp_path / "base.csv"
    assert _scan(str(photos), "-o", str(base)).exit_code == 0
    big = tmp_path / "big.csv"
    _big_csv(base, big)
    out = tmp_path / "new.parquet"
    res = _scan(str(photos), "-o", str(out), "--incremental", str(big))
    assert res.exit_code == 0, res.output
    assert report_metadata(out)["reused_rows"] == 2

    # a bad cell far past the first block: found mid-load, after the parts folder exists
    with open(big, "a", encoding="utf-8") as f:
        f.write(",".join(['"/zzz.png"', '"error"', '""', "abc"] + [""] * (len(SCHEMA) - 4)) + "\n")
    out2 = tmp_path / "new2.parquet"
    res = _scan(str(photos), "-o", str(out2), "--incremental", str(big))
    _one_line_error(res)
    assert "size" in res.stderr
    assert not out2.exists() and not Path(f"{out2}.parts").exists()
    assert _scan(str(photos), "-o", str(out2)).exit_code == 0  # the next plain run is not blocked


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_scan_html_with_files_dated_after_2262_and_before_1970(tmp_path, fmt):
    """Regression: a local file dated in 2300 made `scan -o x.csv --html` write the report, then
    exit 2 without the page (the report did not read back: timestamp[ns] overflow)."""
    photos = write_photos(tmp_path / "photos", 2, seed=4)
    late = dt.datetime(2300, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    os.utime(photos[0], (late, late))
    os.utime(photos[1], ns=(0, -(2 ** 31) * 10 ** 9))  # ext4's earliest: 1901
    out, page = tmp_path / f"r.{fmt}", tmp_path / "r.html"
    res = _scan(str(tmp_path / "photos"), "-o", str(out), "--html", str(page))
    assert res.exit_code == 0, res.output
    assert page.is_file()
    years = sorted(t.year for t in read_report(out).column("mtime").to_pylist())
    assert years[0] <= 1901 and years[1] == 2300
    again = _scan(str(tmp_path / "photos"), "-o", str(tmp_path / "again.parquet"), "--incremental", str(out))
    assert again.exit_code == 0 and report_metadata(tmp_path / "again.parquet")["reused_rows"] == 2


def test_a_tampered_incremental_row_is_scored_again(tmp_path, head_prefix):
    """Regression: a row whose score is NaN (or inf, or null with status ok, or whose label
    contradicts its score and threshold) was reused as status=ok with no score. Such a row is
    not reused: its file is scored again."""
    photos = write_photos(tmp_path / "photos", 5, seed=6)
    args = ["--weights", str(head_prefix), "--threshold", "0.0"]
    first = tmp_path / "first.parquet"
    assert _scan(str(tmp_path / "photos"), "-o", str(first), *args).exit_code == 0
    table = pq.read_table(first)
    rows = table.to_pylist()
    by_path = {r["path"]: r for r in rows}
    by_path[photos[0]]["score"] = math.nan
    by_path[photos[1]]["score"] = math.inf
    by_path[photos[2]]["score"] = None
    flip = by_path[photos[3]]
    flip["label"] = "natural" if flip["label"] == "ai" else "ai"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), first)
    second = tmp_path / "second.parquet"
    res = _scan(str(tmp_path / "photos"), "-o", str(second), "--incremental", str(first), *args)
    assert res.exit_code == 0, res.output
    new = {r["path"]: r for r in read_report(second).to_pylist()}
    for p in photos[:4]:
        assert new[p]["status"] == "ok" and new[p]["reused"] is None, new[p]
        assert math.isfinite(new[p]["score"])
        assert new[p]["label"] == ("ai" if new[p]["score"] >= 0 else "natural")
    assert new[photos[4]]["reused"] == "unchanged"
    assert report_metadata(second)["reused_rows"] == 1
    assert report_metadata(second)["incremental_unsound_rows"] == 4
    assert "note: 4 rows of the --incremental report did not hold up" in res.stdout
