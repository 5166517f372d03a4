"""Finishing a report of any size in the memory of a few batches: an external merge sort by path.

Each part is sorted by path when it is written (``sort_by_path``: a part is small), so the parts
are sorted runs; here they are merged ``FAN_IN`` at a time, through intermediate runs on disk
while there are more, so memory is about ``FAN_IN x RUN_BATCH`` rows whatever the row count.

DuckDB sorted the parts before: its sort pins blocks per column and per sorted run, so with the
report's 45 columns 1,000,000 rows needed more than 96 MB and 4,000,000 more than 160 MB (the
finish of a million-file scan failed). A merge of runs that are already sorted needs no more than
Arrow's vectorised compare, take and concat.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..files import atomic_output
from .schema import conform

FAN_IN = 16  # runs merged at once
RUN_BATCH = 4096  # rows read at a time from each run (a default part is one batch)


def sort_by_path(table: pa.Table) -> pa.Table:
    """``table`` in path order (stable: rows with one path keep their order). Arrow compares
    strings by their UTF-8 bytes, which is code point order, as Python and DuckDB do."""
    return table.take(pc.sort_indices(table, sort_keys=[("path", "ascending")]))


def _is_sorted(paths: pa.ChunkedArray) -> bool:
    if len(paths) < 2:
        return True
    return pc.all(pc.less_equal(paths.slice(0, len(paths) - 1), paths.slice(1))).as_py() is not False


def _read_run(file: Path, schema: pa.Schema, part: bool) -> Iterator[pa.Table]:
    """A run's rows in batches of ``RUN_BATCH``, in ``schema``. A part (``part``) written by an
    older aiiscan (an interrupted run, resumed) may be unsorted: it is sorted here, in the memory
    of one part. The merge's own runs are sorted and can be large: never read whole."""
    source = pq.ParquetFile(file, buffer_size=1 << 20, pre_buffer=False)
    if not part or _is_sorted(source.read(columns=["path"]).column("path")):
        batches = (pa.Table.from_batches([b]) for b in source.iter_batches(batch_size=RUN_BATCH))
    else:
        batches = (pa.Table.from_batches([b]) for b in sort_by_path(source.read()).to_batches(RUN_BATCH))
    for table in batches:
        yield conform(table, schema)


def _merge(runs: list[Iterator[pa.Table]]) -> Iterator[pa.Table]:
    """Merge sorted runs. Each step takes, from every run's current batch, the rows up to the
    smallest of their last paths (the frontier: no row still unread can sort before it), sorts
    that slice and yields it; the run that set the frontier is then used up, so each step makes
    progress. Ties keep run order."""
    heads: list[tuple[pa.Table, Iterator[pa.Table]]] = []
    for run in runs:
        table = next((t for t in run if t.num_rows), None)
        if table is not None:
            heads.append((table, run))
    while heads:
        frontier = min(t.column("path")[-1].as_py() for t, _ in heads)
        taken, kept = [], []
        for table, run in heads:
            n = pc.sum(pc.less_equal(table.column("path"), frontier)).as_py() or 0
            if n:
                taken.append(table.slice(0, n))
            rest = table.slice(n) if n < table.num_rows else next((t for t in run if t.num_rows), None)
            if rest is not None:
                kept.append((rest, run))
        heads = kept
        yield sort_by_path(pa.concat_tables(taken))


def merged(files: list[Path], schema: pa.Schema, work: Path, out_rows: int) -> Iterator[pa.Table]:
    """The rows of the sorted runs ``files`` in path order and in ``schema``, in tables of about
    ``out_rows`` rows.
    While there are more than ``FAN_IN`` runs, groups of them are merged into runs under
    ``work`` (removed at the end)."""
    shutil.rmtree(work, ignore_errors=True)  # an earlier finish's leftovers
    level = 0
    while len(files) > FAN_IN:
        level += 1
        folder = work / f"level-{level}"
        folder.mkdir(parents=True)
        files = [_write_run(files[i:i + FAN_IN], schema, level == 1,
                            folder / f"run-{i // FAN_IN:06d}.parquet") for i in range(0, len(files), FAN_IN)]
    try:
        yield from _rebatch(_merge([_read_run(f, schema, level == 0) for f in files]), out_rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _write_run(files: list[Path], schema: pa.Schema, parts: bool, dest: Path) -> Path:
    """Merge ``files`` (the scan's parts, or runs of a previous level) into one run at ``dest``
    (row groups of ``RUN_BATCH``, read back in batches of that size)."""
    with atomic_output(dest) as sink, pq.ParquetWriter(sink, schema) as w:
        for table in _merge([_read_run(file, schema, parts) for file in files]):
            w.write_table(table, row_group_size=RUN_BATCH)
    return dest


def _rebatch(tables: Iterable[pa.Table], rows: int) -> Iterator[pa.Table]:
    """Tables of about ``rows`` rows (a report format writes each as a row group or a block)."""
    pending: list[pa.Table] = []
    count = 0
    for table in tables:
        pending.append(table)
        count += table.num_rows
        if count >= rows:
            yield pa.concat_tables(pending)
            pending, count = [], 0
    if pending:
        yield pa.concat_tables(pending)
