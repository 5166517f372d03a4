"""The writer stage: streaming, resumable, atomic reports (Parquet, CSV, JSONL).

While a scan runs, rows go to ``OUT.parts/part-NNNNN.parquet``, each part written to a temp
name and renamed, so a killed scan leaves only whole parts. ``--resume`` reads them back to
know what is done. At the end the parts become the report in the asked-for format, again via
a temp file and a rename: a report under its final name is always complete. A lock file in
the parts folder stops two scans from writing the same output.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from ..errors import AiiscanError
from ..files import file_mode

FORMATS = ("parquet", "csv", "jsonl")
# DuckDB's share while sorting the finished report; beyond it, it spills to disk. 96 MB costs
# about 140 MB of RSS at 1,000,000 rows and sorts them in ~9 s here; 48 MB is too little for it.
SORT_MEMORY = os.environ.get("AIISCAN_SORT_MEMORY", "96MB")
FINISH_BATCH = 16384  # rows per batch on the way from the sort to the report
META_KEY = b"aiiscan"

SCHEMA = pa.schema([
    ("path", pa.string()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("size", pa.int64()),
    # UTC in microseconds, stored without a zone: DuckDB, pandas and pyarrow's to_pylist() read
    # it with no extra module (a zoned one needs pytz in DuckDB; nanoseconds need pandas in
    # to_pylist). CSV/JSONL spell it ISO 8601 with a Z (TIME_FORMAT).
    ("mtime", pa.timestamp("us")),
    # An object's ETag (object stores; an archive member's is its shard's), null for a local file:
    # with size and mtime it tells --resume and --incremental whether an object changed.
    ("etag", pa.string()),
    ("sha256", pa.string()),
    ("format", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("mode", pa.string()),
    ("score", pa.float64()),
    ("label", pa.string()),
    ("threshold", pa.float64()),
    ("model_id", pa.string()),
    # A score not computed by this scan's backbone pass: "unchanged" (same path, size and mtime
    # in the --incremental report), "same_content" (same sha256 at another path of that report:
    # a moved or copied file), "duplicate" (same sha256 as a file scored earlier in this scan).
    # reused_from: the path whose score it carries. Both null for a score computed now.
    ("reused", pa.string()),
    ("reused_from", pa.string()),
    # Provenance evidence (aiiscan.provenance): shown beside the score, never part of it.
    ("has_exif", pa.bool_()),
    ("exif_make", pa.string()),
    ("exif_model", pa.string()),
    ("exif_software", pa.string()),
    ("exif_datetime_original", pa.string()),
    ("exif_lens", pa.string()),
    ("has_gps", pa.bool_()),
    ("gps", pa.string()),
    ("gen_params_present", pa.bool_()),
    ("gen_tool", pa.string()),
    ("gen_prompt", pa.string()),
    ("iptc_digital_source_type", pa.string()),
    ("xmp_creator_tool", pa.string()),
    ("c2pa_present", pa.bool_()),
    ("c2pa_declares_ai", pa.bool_()),
    ("c2pa_claim_generator", pa.string()),
    ("c2pa_valid", pa.bool_()),
    ("provenance_hint", pa.string()),
    ("metadata_error", pa.string()),
])
COLUMNS = SCHEMA.names
OPTIONAL = ("reused", "reused_from", "etag")  # newer than some reports: read as null when absent
HEAD_FIELDS = (("score", pa.float64()), ("label", pa.string()), ("threshold", pa.float64()),
               ("model_id", pa.string()))


def report_schema(heads: int = 1) -> pa.Schema:
    """The report's schema for a scan with ``heads`` heads (``multihead``). One head: ``SCHEMA``,
    exactly. Each further head k adds ``score_k``, ``label_k``, ``threshold_k``, ``model_id_k``,
    and a multi-head report adds ``verdict`` (the combined label), all after ``model_id``."""
    if heads <= 1:
        return SCHEMA
    at = SCHEMA.get_field_index("model_id") + 1
    extra = [pa.field(f"{name}_{k}", kind) for k in range(2, heads + 1) for name, kind in HEAD_FIELDS]
    return pa.schema([*SCHEMA][:at] + extra + [pa.field("verdict", pa.string())] + [*SCHEMA][at:])


def heads_in(names: list[str]) -> int:
    """How many heads a report with these columns holds."""
    n = 1
    while f"score_{n + 1}" in names:
        n += 1
    return n


def _text_schema(schema: pa.Schema) -> pa.Schema:
    # CSV/JSONL: mtime is read as text and parsed by _conform, which accepts our spelling (a Z) and
    # earlier or foreign ones (a +00:00 offset, a space instead of the T, no zone at all).
    return schema.set(schema.get_field_index("mtime"), pa.field("mtime", pa.string()))



def _conform(table: pa.Table, schema: pa.Schema = SCHEMA) -> pa.Table:
    """A table with the report schema (``schema``: a multi-head report's). mtime from any earlier
    spelling (nanoseconds, zoned) is truncated to microseconds; everything else must cast exactly."""
    i = table.schema.get_field_index("mtime")
    col = table.column(i)
    if pa.types.is_string(col.type):
        col = pc.cast(pc.replace_substring_regex(col, r"(Z|[+-]00:?00)$", ""), pa.timestamp("ns"))
    table = table.set_column(i, "mtime", pc.cast(col, pa.timestamp("us"), safe=False))
    for name in OPTIONAL:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(len(table), pa.string()))
    return table.select(schema.names).cast(schema)


class ReportError(AiiscanError):
    """The report cannot be written or read; nothing half-written is left behind."""


SUFFIXES = {"parquet": "parquet", "pq": "parquet", "csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl"}
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # Arrow's %S carries the fraction: 2026-11-23T01:16:45.599949Z
# Spreadsheet formula injection: a cell starting with = + - @ TAB CR is executed by Excel, so
# CSV reports prefix such cells with '. Values that already start with quotes before such a
# character get one more, so that reading a CSV report back (--incremental) strips exactly one
# quote from every value starting with quotes and one of those characters: no value changes.
FORMULA_START = "^'*[=+\\-@\t\r]"


def format_for(path: str | Path, explicit: str | None = None) -> str:
    """The report format: ``explicit`` if given, else from the extension (unknown: an error)."""
    if explicit:
        if explicit not in FORMATS:
            raise ReportError(f"unknown report format {explicit!r}; choose {', '.join(FORMATS)}")
        return explicit
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in SUFFIXES:
        raise ReportError(f"cannot tell the report format of {Path(path).name!r}: its name must end in "
                          ".parquet, .csv or .jsonl")
    return SUFFIXES[suffix]


def _text_columns(table: pa.Table, neutralise: bool) -> pa.Table:
    """mtime as ISO 8601 UTC text and, for spreadsheets, formula-like cells prefixed with '."""
    for i, name in enumerate(table.column_names):
        col = table.column(i)
        if name == "mtime":
            col = pc.strftime(col, format=TIME_FORMAT)
        elif neutralise and pa.types.is_string(col.type):
            risky = pc.fill_null(pc.match_substring_regex(col, FORMULA_START), False)
            col = pc.if_else(risky, pc.binary_join_element_wise("'", col, ""), col)
        table = table.set_column(i, name, col)
    return table


def _unguard(table: pa.Table) -> pa.Table:
    """Undo the formula guard of ``_text_columns`` on a CSV report read back (string columns)."""
    for i, field in enumerate(table.schema):
        if pa.types.is_string(field.type):
            table = table.set_column(i, field, pc.replace_substring_regex(
                table.column(i), pattern="^'(" + FORMULA_START[1:] + ")", replacement="\\1"))
    return table


def iter_report(path: str | Path, batch_rows: int = 8192) -> Iterator[pa.Table]:
    """Any report aiiscan wrote, as tables of about ``batch_rows`` rows with the report schema,
    read as a stream: memory is set by ``batch_rows``, not by the report's length. A multi-head
    report keeps its further heads' columns (``report_schema``)."""
    path = Path(path)
    fmt = format_for(path)
    try:
        if fmt == "parquet":
            # buffered, not pre-buffered: a column chunk streams page by page, so a foreign report
            # with million-row row groups does not land in memory whole
            source = pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)
            names = source.schema_arrow.names
            schema = report_schema(heads_in(names))
            reader = source.iter_batches(batch_size=batch_rows)
        else:
            schema = report_schema(_text_heads(path, fmt))
            text = _text_schema(schema)
            if fmt == "csv":
                reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 24),
                                        convert_options=pacsv.ConvertOptions(column_types=text,
                                                                             strings_can_be_null=True))
            else:
                reader = pajson.open_json(path, read_options=pajson.ReadOptions(block_size=1 << 24),
                                          parse_options=pajson.ParseOptions(explicit_schema=text))
            names = reader.schema.names
        missing = [c for c in COLUMNS if c not in names and c not in OPTIONAL]
        if missing:
            raise ReportError(f"{path} is not an aiiscan report (missing columns {missing})")
        empty = True
        for batch in reader:
            table = pa.Table.from_batches([batch])
            empty = False
            yield _conform(_unguard(table) if fmt == "csv" else table, schema)
        if empty:
            yield schema.empty_table()
    except (OSError, pa.ArrowInvalid) as exc:
        raise ReportError(f"cannot read report {path}: {exc}") from None


def _text_heads(path: Path, fmt: str) -> int:
    """Heads of a CSV or JSONL report: from its header line, or its first row's keys."""
    with open(path, encoding="utf-8", errors="replace") as f:
        first = f.readline(1 << 20)  # a header or first row; a hostile file is not read whole
    if fmt == "csv":
        names = next(csv.reader([first]), [])
    else:
        try:
            names = list(json.loads(first)) if first.strip() else []
        except (ValueError, TypeError):
            names = []
    return heads_in(names)


def read_report(path: str | Path) -> pa.Table:
    """Any report aiiscan wrote, as one table with the report schema (small reports; use
    ``iter_report`` to stream a large one)."""
    return pa.concat_tables(iter_report(path))


def report_metadata(path: str | Path) -> dict:
    path = Path(path)
    if format_for(path) == "parquet":
        meta = pq.read_schema(path).metadata or {}
        return json.loads(meta.get(META_KEY, b"{}"))
    sidecar = path.with_name(path.name + ".meta.json")
    return json.loads(sidecar.read_text()) if sidecar.is_file() else {}



@contextmanager
def local_report(path: str | Path) -> Iterator[Path]:
    """A report to read where it is; one in an object store (``s3://bucket/night.parquet``) is
    fetched whole, with its ``.meta.json`` sidecar, into a temporary folder that goes afterwards.

    Why a whole copy: the readers stream a local file by record batch and DuckDB sorts it out of
    core, and a report is small beside the archive it describes (about 200 bytes a row)."""
    from .. import inputs
    from ..inputs import store as stores

    url = str(path)
    if not inputs.is_remote(url):
        yield Path(path)
        return
    format_for(url)  # an unknown suffix is refused before any download
    with tempfile.TemporaryDirectory(prefix="aiiscan-report-") as tmp:
        local = Path(tmp) / f"report{Path(url).suffix.lower()}"  # the object's name is not trusted
        try:
            stores.get_file(url, local)
        except stores.StoreError as exc:
            raise ReportError(f"cannot read the report {url}: {exc}") from None
        if format_for(local) != "parquet":
            try:
                stores.get_file(url + ".meta.json", local.with_name(local.name + ".meta.json"))
            except stores.StoreError as exc:
                if exc.kind != "missing":  # a CSV without its sidecar still reads, as before
                    raise ReportError(f"cannot read the report's metadata {url}.meta.json: {exc}") from None
        yield local


def duckdb_connect(database: str, spill: Path):
    """DuckDB for out-of-core work (finishing a report, the HTML page's directory table): within
    ``SORT_MEMORY``, one thread, spilling to ``spill``. Imported here only (about a second)."""
    import duckdb

    try:
        return duckdb.connect(database, config={"memory_limit": SORT_MEMORY, "threads": 1, "temp_directory":
                                                str(spill), "preserve_insertion_order": False})
    except duckdb.Error as exc:
        raise ReportError(f"cannot start DuckDB: {str(exc).splitlines()[0]}") from None


@contextmanager
def duckdb_errors(what: str, retry: str) -> Iterator[None]:
    """DuckDB's failures as one-line ``ReportError``s: ``what`` failed; ``retry`` says what to do,
    with ``{fix}`` standing for the remedy (more memory, or the disk fixed)."""
    import duckdb

    try:
        yield
    except duckdb.OutOfMemoryException as exc:
        raise ReportError(f"{what} ran out of its memory ({SORT_MEMORY}): {str(exc).splitlines()[0]}. "
                          + retry.format(fix="set AIISCAN_SORT_MEMORY=1GB (or more)")) from None
    except duckdb.Error as exc:  # I/O above all: a full disk under the spill
        raise ReportError(f"{what} failed (disk?): {str(exc).splitlines()[0]}. "
                          + retry.format(fix="fix that")) from None

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
            existed = self.parts.exists()
            self.parts.mkdir(exist_ok=True)
            self._lock()  # first: a running scan must be named as such, not as an interrupted one
        except OSError as exc:
            raise ReportError(f"cannot create {self.parts}: {exc.strerror or exc}") from None
        if existed and not resume:
            self._unlock()
            raise ReportError(
                f"{self.parts} holds an interrupted scan: add --resume to continue it, "
                "or delete that folder to start over")
        self.next_part = self.first_new = len(self._part_files())

    @staticmethod
    def check(out: str | Path, resume: bool) -> None:
        """What the constructor would refuse, checked without creating anything: run before the
        model loads, so a rival or interrupted scan is named in a second, not after a minute."""
        out = Path(out)
        parts = out.with_name(out.name + ".parts")
        if not parts.is_dir():
            return
        try:
            fd = os.open(parts / "LOCK", os.O_RDONLY)
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
        fd = os.open(self.parts / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
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
                table = _conform(pa.Table.from_batches([batch]), self.schema)
                yield number, first, table
                first += len(table)

    def write(self, row: dict) -> None:
        self.buffer.append(row)
        if len(self.buffer) >= self.rows_per_part:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        table = pa.Table.from_pylist(self.buffer, schema=self.schema)
        final = self.parts / f"part-{self.next_part:05d}.parquet"
        tmp = self.parts / f".tmp-{self.next_part:05d}.parquet"
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
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
            tmp = file.with_name(".tmp-" + file.name)
            pq.write_table(pq.read_table(file).take(pa.array(rows, pa.int64())), tmp)
            os.replace(tmp, file)

    def _sorted(self) -> Iterator[pa.RecordBatch]:
        """Every row of the parts, sorted by path, as a stream.

        DuckDB sorts out of core within ``SORT_MEMORY`` (spilling to the parts folder), so
        finishing a scan of any size takes the same memory; pyarrow's sort holds the whole
        table (1.5 GB for 1,000,000 rows), and a hand-written external merge sort is what
        DuckDB already is."""
        files = self._part_files()
        if not files:
            yield from self.schema.empty_table().to_batches()
            return
        con = duckdb_connect(":memory:", self.parts / "sort.tmp")
        retry = f"Every row is kept in {self.parts}: {{fix}} and rerun the same command with --resume"
        try:
            with duckdb_errors("sorting the report", retry):
                rel = con.read_parquet([str(f) for f in files]).order("path")
                stream = getattr(rel, "to_arrow_reader", None) or rel.fetch_arrow_reader  # duckdb 2.x, 1.x
                for batch in stream(FINISH_BATCH):
                    if batch.num_rows:
                        table = pa.Table.from_batches([batch])
                        yield from table.select(self.schema.names).cast(self.schema).to_batches()
        finally:
            con.close()

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
        tmp = None
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{self.out.name}.", dir=self.out.parent)
            os.close(fd)
            tmp = Path(tmp_name)
            os.chmod(tmp, file_mode())
            self._write_sorted(tmp, meta)
            if self.fmt != "parquet":
                side = self.out.with_name(self.out.name + ".meta.json")
                side_tmp = side.with_name("." + side.name + ".tmp")
                side_tmp.write_bytes(meta)
                os.replace(side_tmp, side)
            os.replace(tmp, self.out)
        except OSError as exc:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            raise ReportError(f"cannot write {self.out}: {exc.strerror or exc}. Every row is kept in "
                              f"{self.parts}: fix that and rerun the same command with --resume") from None
        except BaseException:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            raise
        if publish is not None:
            publish(self.out)
        self._unlock()
        shutil.rmtree(self.parts, ignore_errors=True)
        return self.out

    def _write_sorted(self, tmp: Path, meta: bytes) -> None:
        batches = self._sorted()
        if self.fmt == "parquet":
            with pq.ParquetWriter(tmp, self.schema.with_metadata({META_KEY: meta})) as w:
                for batch in batches:
                    w.write_batch(batch)
        elif self.fmt == "csv":
            with pacsv.CSVWriter(tmp, _text_schema(self.schema)) as w:
                for batch in batches:
                    w.write_table(_text_columns(pa.Table.from_batches([batch], self.schema), neutralise=True))
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                for batch in batches:
                    text = _text_columns(pa.Table.from_batches([batch], self.schema), neutralise=False)
                    f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in text.to_pylist())

    def close(self) -> None:
        """Keep what was written (for --resume) and release the lock."""
        try:
            self.flush()
        finally:
            self._unlock()

    def __enter__(self) -> ReportWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
