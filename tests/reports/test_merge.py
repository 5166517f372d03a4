"""The finish's external merge sort (``reports.merge``) against Python's ``sorted``: any paths,
any part sizes, any fan-in, through intermediate runs on disk; rows stay whole."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from aiiscan.reports import merge
from aiiscan.reports.parts import ReportWriter
from aiiscan.reports.read import read_report
from aiiscan.reports.schema import COLUMNS, SCHEMA

# report paths are valid UTF-8 (display form): any character but a lone surrogate
PATHS = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


def _finish(paths: list[str], part_rows: int, folder: Path) -> list[tuple[str, int]]:
    writer = ReportWriter(folder / "r.parquet", rows_per_part=part_rows)
    for i, p in enumerate(paths):
        writer.write(dict.fromkeys(COLUMNS) | {"path": p, "status": "ok", "size": i})
    writer.finish({})
    table = read_report(folder / "r.parquet")
    assert not writer.parts.exists()
    return list(zip(table.column("path").to_pylist(), table.column("size").to_pylist(), strict=True))


@settings(max_examples=60, deadline=None)
@given(paths=st.lists(PATHS, max_size=80), part_rows=st.integers(1, 9), fan_in=st.integers(2, 5),
       batch=st.integers(1, 4))
def test_any_paths_any_parts_any_fan_in(paths, part_rows, fan_in, batch):
    old = merge.FAN_IN, merge.RUN_BATCH
    merge.FAN_IN, merge.RUN_BATCH = fan_in, batch
    try:
        with tempfile.TemporaryDirectory() as d:
            got = _finish(paths, part_rows, Path(d))
    finally:
        merge.FAN_IN, merge.RUN_BATCH = old
    # every row once, whole (path with its own size), in code point order of the path
    assert sorted(got, key=lambda r: r[1]) == [(p, i) for i, p in enumerate(paths)]
    assert [p for p, _ in got] == sorted(paths)


def test_paths_sort_by_code_point_as_python_does():
    paths = ["b", "a", "\U0001f600", "\uffff", "é", "E", "", "a\x00", "\u202e"]
    table = pa.table({"path": paths})
    assert merge.sort_by_path(table).column("path").to_pylist() == sorted(paths)


def test_an_unsorted_part_of_an_older_run_is_sorted_in(tmp_path):
    """Parts written before parts were sorted (an interrupted run of an older aiiscan, resumed)
    still finish in path order."""
    writer = ReportWriter(tmp_path / "r.csv", rows_per_part=4)
    for p in ["/m/1", "/a/1", "/z/1", "/c/1"]:
        writer.write(dict.fromkeys(COLUMNS) | {"path": p, "status": "ok"})
    writer.close()
    old = pa.Table.from_pylist([dict.fromkeys(COLUMNS) | {"path": p, "status": "ok"}
                                for p in ["/y/2", "/b/2", "/n/2"]], schema=SCHEMA)
    pq.write_table(old, writer.parts / "part-00001.parquet")  # as an older writer left it
    again = ReportWriter(tmp_path / "r.csv", resume=True)
    again.finish({})
    assert read_report(tmp_path / "r.csv").column("path").to_pylist() == sorted(
        ["/m/1", "/a/1", "/z/1", "/c/1", "/y/2", "/b/2", "/n/2"])
