"""Every writer -> the one reader, over each class's whole domain (issue #24).

A report aiiscan writes (Parquet, CSV, JSON Lines) reads back with every value it holds: any text a
file name, an error or a prompt can carry (newlines, quotes, commas, NUL, bidi controls, undecodable
bytes of a name), any timestamp from year 1 to 9999, any float (NaN and inf too), at any size
(CSV and JSONL past pyarrow's 16 MB blocks)."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiiscan.cli import main
from aiiscan.errors import ReportError
from aiiscan.reports.formats import module
from aiiscan.reports.parts import ReportWriter
from aiiscan.reports.read import read_report, report_metadata
from aiiscan.reports.schema import SCHEMA
from aiiscan.textsafe import display_path

FORMATS = ("parquet", "csv", "jsonl")
HARD = "\n\r\",'\x00\t=+-@ \u202e\u2066\u2028é\U0001f600\\"
# Text as a report holds it (valid UTF-8, so no lone surrogate), weighted to what breaks writers.
TEXT = st.text(st.one_of(st.sampled_from(HARD), st.characters(exclude_categories=("Cs",))), max_size=30)
# A file name as the crawl gives it: surrogateescape's stand-ins for undecodable bytes, shown as \xNN.
UNDECODABLE = st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF)
NAME = st.text(st.one_of(st.sampled_from(HARD), UNDECODABLE, st.characters(exclude_categories=("Cs",))),
               min_size=1, max_size=30).map(display_path)
TIME = st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59, 999999))
FLOAT = st.floats(allow_nan=True, allow_infinity=True)


def _value(field: pa.Field) -> st.SearchStrategy:
    kind = field.type
    if field.name == "path":
        return NAME
    if pa.types.is_timestamp(kind):
        return st.none() | TIME
    if pa.types.is_floating(kind):
        return st.none() | FLOAT
    if pa.types.is_integer(kind):
        bits = kind.bit_width - 1
        return st.none() | st.integers(-(2 ** bits), 2 ** bits - 1)
    if pa.types.is_boolean(kind):
        return st.none() | st.booleans()
    return st.none() | TEXT


ROW = st.fixed_dictionaries({f.name: _value(f) for f in SCHEMA})
ROWS = st.lists(ROW, max_size=6, unique_by=lambda r: r["path"])


def _same(value):
    """A value compared as itself, NaN as NaN."""
    return "NaN" if isinstance(value, float) and math.isnan(value) else value


def _key(row: dict) -> str:
    return row["path"]


def write(out: Path, rows: list[dict], meta: dict | None = None) -> Path:
    """A report written as a scan writes it: parts, the sort, the format's writer."""
    with ReportWriter(out, rows_per_part=4) as w:
        for row in rows:
            w.write(row)
        w.finish(meta or {"command": "test"})
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=ROWS, fmt=st.sampled_from(FORMATS))
def test_every_writer_reads_back_every_value(tmp_path_factory, rows, fmt):
    out = write(tmp_path_factory.mktemp("rt") / f"r.{fmt}", rows)
    back = sorted(read_report(out).to_pylist(), key=_key)
    want = sorted(rows, key=_key)
    assert [{k: _same(v) for k, v in r.items()} for r in back] == \
           [{k: _same(v) for k, v in r.items()} for r in want]
    assert report_metadata(out) == {"command": "test"}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("year", [1, 1677, 2262, 2300, 9999])
def test_timestamps_from_year_1_to_9999(tmp_path, fmt, year):
    """Regression: a file dated after 2262 (or before 1677) made a CSV/JSONL report unreadable
    (timestamp[ns] overflow on read)."""
    when = dt.datetime(year, 12, 31, 23, 59, 59, 999999)
    row = dict.fromkeys(SCHEMA.names) | {"path": "a.png", "status": "ok", "mtime": when}
    out = write(tmp_path / f"r.{fmt}", [row])
    assert read_report(out).column("mtime").to_pylist() == [when]
    res = CliRunner().invoke(main, ["report", str(out), "-o", str(tmp_path / "r.html"), "-q"])
    assert res.exit_code == 0, res.output


def _big_rows(n: int, prompt: str) -> pa.Table:
    """``n`` error rows whose prompt spans lines (and a formula and a quote), built whole."""
    cols = {f.name: pa.nulls(n, f.type) for f in SCHEMA}
    cols["path"] = pa.array([f"/archive/img_{i:06d}.png" for i in range(n)])
    cols["status"] = pa.array(["error"] * n)
    cols["error"] = pa.array(["corrupt or truncated:\nline two, \"quoted\""] * n)
    cols["gen_prompt"] = pa.array([prompt] * n)
    cols["score"] = pa.array([float("nan")] * n)
    return pa.table(cols, schema=SCHEMA)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_text_reports_past_16_mb_read_back(tmp_path, fmt):
    """Regression: a 19 MB CSV whose error rows carry multi-line prompts could not be read
    ("Expected 36 columns, got 28": pyarrow split its 16 MB blocks inside a quoted cell)."""
    prompt = "=a castle,\nat dusk; \"cinematic\"\r\n" * 300  # about 10 KB, over many lines
    table = _big_rows(2000, prompt)
    out = tmp_path / f"big.{fmt}"
    with open(out, "wb") as sink:
        module(fmt).write(sink, iter(table.to_batches(max_chunksize=512)), SCHEMA, b"{}")
    assert out.stat().st_size > 19 * 2 ** 20
    back = read_report(out)
    assert back.num_rows == 2000
    assert set(back.column("gen_prompt").to_pylist()) == {prompt}
    assert set(back.column("path").to_pylist()) == set(table.column("path").to_pylist())
    res = CliRunner().invoke(main, ["report", str(out), "-o", str(tmp_path / "big.html"), "-q",
                                    "--no-thumbnails"])
    assert res.exit_code == 0, res.output


def test_the_reader_trusts_content_not_the_name(tmp_path):
    """Parquet bytes are read as Parquet whatever the name; a name that lies the other way is one
    line, and no binary is printed."""
    row = dict.fromkeys(SCHEMA.names) | {"path": "a.png", "status": "ok"}
    pq_report = write(tmp_path / "r.parquet", [row])
    odd = tmp_path / "r.out"
    odd.write_bytes(pq_report.read_bytes())
    assert read_report(odd).column("path").to_pylist() == ["a.png"]
    fake = tmp_path / "fake.parquet"
    fake.write_bytes(b"path,status\n\x00\xff\xfe\x1b[31m\n")
    with pytest.raises(ReportError, match="not a Parquet file"):
        read_report(fake)


def test_format_contradicting_the_name_is_refused_up_front(tmp_path):
    """Regression: `-o r.csv --format parquet` wrote Parquet bytes into r.csv, which aiiscan then
    could not read (printing binary). Now: exit 2, one line, nothing written."""
    photo = tmp_path / "p" / "a.png"
    photo.parent.mkdir()
    from PIL import Image
    Image.new("RGB", (32, 32), (10, 20, 30)).save(photo)
    out = tmp_path / "r.csv"
    res = CliRunner().invoke(main, ["scan", str(photo.parent), "-o", str(out), "--format", "parquet",
                                    "-q", "--workers", "0"])
    assert res.exit_code == 2 and "contradicts" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not out.exists() and not Path(f"{out}.parts").exists()
    odd = tmp_path / "r.report"  # a name with no known suffix: --format decides, the reader sniffs
    res = CliRunner().invoke(main, ["scan", str(photo.parent), "-o", str(odd), "--format", "parquet",
                                    "-q", "--workers", "0"])
    assert res.exit_code == 0, res.output
    assert read_report(odd).column("path").to_pylist() == [str(photo)]
