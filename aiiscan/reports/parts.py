"""The writer stage: streaming, resumable, atomic reports.

While a scan runs, rows go to ``OUT.parts/part-NNNNN.parquet``, each part written to a temp
name and renamed, so a killed scan leaves only whole parts. ``--resume`` reads them back to
know what is done. At the end the parts become the report in the asked-for format
(``reports.formats``), sorted by path, again via a temp file and a rename: a report under its
final name is always complete. A lock file in the parts folder stops two scans from writing the
same output.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ReportError
from ..files import atomic_output, atomic_write_bytes
from .formats import format_for, module
from .merge import merged, sort_by_path
from .schema import SCHEMA, conform, heads_in

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
FINISH_BATCH = 16384  # rows per batch on the way from the sort to the report


class ReportWriter:
    """Streams rows to parts, then finishes atomically. Use as a context manager."""

    def __init__(self, out: str | Path, fmt: str | None = None, resume: bool = False,
                 rows_per_part: int = 1024, schema: pa.Schema = SCHEMA):
        self.out = Path(out)
        self.schema = schema  # ``report_schema(heads)``
        self.fmt = format_for(self.out, fmt)
        self.parts = self.out.with_name(self.out.name + ".parts")
        self.rows_per_part = rows_per_part
        self.buffer: list[dict] = []
        self._lock_fd: int | None = None
        if not self.out.parent.is_dir():
            raise ReportError(f"output folder {self.out.parent} does not exist")
        if not os.access(self.out.parent, os.W_OK):
            raise ReportError(f"output folder {self.out.parent} is not writable")
        try:
            existed = os.path.lexists(self.parts)
            self.parts.mkdir(exist_ok=True)
            if not stat.S_ISDIR(os.lstat(self.parts).st_mode):  # a link planted in its place
                raise ReportError(f"{self.parts} is not a folder (a symbolic link?): aiiscan writes "
                                  "parts only into a folder of its own; remove it")
            self._lock()  # first: a running scan must be named as such, not as an interrupted one
        except OSError as exc:
            raise ReportError(f"cannot create {self.parts}: {exc.strerror or exc}") from None
        if existed and not resume:
            self._unlock()
            raise ReportError(
                f"{self.parts} holds an interrupted scan: add --resume to continue it, "
                "or delete that folder to start over")
        self.next_part = self.first_new = len(self._part_files())
        self.created = not existed  # this scan made the parts folder (not --resume's)

    @staticmethod
    def check(out: str | Path, resume: bool) -> None:
        """What the constructor would refuse, checked without creating anything: run before the
        model loads, so a rival or interrupted scan is named in a second, not after a minute."""
        out = Path(out)
        parts = out.with_name(out.name + ".parts")
        if not parts.is_dir():
            return
        try:
            fd = os.open(parts / "LOCK", os.O_RDONLY | NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            fd = None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ReportError(f"another scan is writing {out} (lock held on {parts})") from None
            finally:
                os.close(fd)
        if not resume:
            raise ReportError(f"{parts} holds an interrupted scan: add --resume to continue it, "
                              "or delete that folder to start over")

    def _lock(self) -> None:
        fd = os.open(self.parts / "LOCK", os.O_RDWR | os.O_CREAT | NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ReportError(f"another scan is writing {self.out} (lock held on {self.parts})") from None
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _part_files(self) -> list[Path]:
        return sorted(self.parts.glob("part-*.parquet"))

    def done_batches(self) -> Iterator[tuple[int, int, pa.Table]]:
        """What an interrupted run wrote (for --resume), streamed: ``(part, first row, rows)``.
        Parts are numbered in the order they were written, so a later row for a path is the
        newer one."""
        for number, file in enumerate(self._part_files()[:self.first_new]):
            first = 0
            source = pq.ParquetFile(file, buffer_size=1 << 20, pre_buffer=False)
            had, has = heads_in(source.schema_arrow.names), heads_in(self.schema.names)
            if had != has:
                raise ReportError(f"{self.parts} holds an interrupted scan with {had} head(s), this one "
                                  f"has {has}: resume with the same --weights, or delete that folder to "
                                  "start over")
            for batch in source.iter_batches(batch_size=8192):
                table = conform(pa.Table.from_batches([batch]), self.schema)
                yield number, first, table
                first += len(table)

    def write(self, row: dict) -> None:
        self.buffer.append(row)
        if len(self.buffer) >= self.rows_per_part:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        table = sort_by_path(pa.Table.from_pylist(self.buffer, schema=self.schema))  # a sorted run
        final = self.parts / f"part-{self.next_part:05d}.parquet"
        try:
            with atomic_output(final) as f:
                pq.write_table(table, f)
        except OSError as exc:
            raise ReportError(
                f"cannot write {final}: {exc.strerror or exc}. The rows written before this are "
                "kept; free space (or fix the folder) and rerun the same command with --resume") from None
        self.next_part += 1
        self.buffer.clear()

    def _compact(self, kept: Callable[[int], list[int]]) -> None:
        """Rewrite the interrupted run's parts with only the rows that stand (``kept(part)``:
        their row numbers): rows of files rescanned since, or gone from the inputs, leave. Each
        part is replaced atomically, so a crash here loses nothing that stands."""
        for number, file in enumerate(self._part_files()[:self.first_new]):
            rows = kept(number)
            if len(rows) == pq.read_metadata(file).num_rows:  # all stand: not even read
                continue
            kept_rows = pq.read_table(file).take(pa.array(rows, pa.int64()))
            with atomic_output(file) as f:
                pq.write_table(kept_rows, f)

    def _sorted(self) -> Iterator[pa.RecordBatch]:
        """Every row of the parts, sorted by path, as a stream: the parts are sorted runs, merged
        out of core (``merge``), so finishing a scan of any size takes the same memory."""
        files = self._part_files()
        if not files:
            yield from self.schema.empty_table().to_batches()
            return
        for table in merged(files, self.schema, self.parts / "merge.tmp", FINISH_BATCH):
            yield from table.combine_chunks().to_batches()

    def finish(self, metadata: dict, kept: Callable[[int], list[int]] | None = None,
               publish: Callable[[Path], None] | None = None) -> Path:
        """Write the whole report atomically, sorted by path, and remove the parts.

        ``kept`` (--resume): for each part of the interrupted run, the row numbers that stand.
        ``publish(report)``: called once the local report is whole, before the parts go (an
        upload to an object store): if it fails, the parts stay for --resume.
        Every format is written batch by batch: memory does not grow with the report."""
        self.flush()
        if kept is not None:
            self._compact(kept)
        meta = json.dumps(metadata, sort_keys=True, default=str).encode()
        try:
            with atomic_output(self.out) as f:
                self._write_sorted(f, meta)
                if module(self.fmt).SIDECAR:  # before the report: a report is never without it
                    atomic_write_bytes(self.out.with_name(self.out.name + ".meta.json"), meta)
        except OSError as exc:
            raise ReportError(f"cannot write {self.out}: {exc.strerror or exc}. Every row is kept in "
                              f"{self.parts}: fix that and rerun the same command with --resume") from None
        if publish is not None:
            publish(self.out)
        self._unlock()
        shutil.rmtree(self.parts, ignore_errors=True)
        return self.out

    def _write_sorted(self, sink: BinaryIO, meta: bytes) -> None:
        module(self.fmt).write(sink, self._sorted(), self.schema, meta)

    def close(self) -> None:
        """Keep what was written (for --resume) and release the lock."""
        try:
            self.flush()
        finally:
            self._unlock()

    def __enter__(self) -> ReportWriter:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        """A scan that fails before its first row (a refused --incremental report, a bad option
        found late) leaves nothing behind: the parts folder it made goes, so the next plain run is
        not told of an interrupted scan. Anything written stays for --resume."""
        if (kind is not None and not issubclass(kind, KeyboardInterrupt) and self.created
                and self.next_part == 0 and not self.buffer):
            self._unlock()
            shutil.rmtree(self.parts, ignore_errors=True)
            return
        self.close()
