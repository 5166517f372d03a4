"""The one reader of reports: every report aiiscan reads (``--incremental``, ``aiiscan report``, the
Python API, the tests) comes through here, checked against the report schema and conformed to it.

A report is untrusted input: it may come from another machine, another version, or a stranger.
It is checked once, here: its format from its content (Parquet's magic bytes, not its name), its
columns (each named once, the required ones present, each castable to its type: else one
``ReportError`` naming the column), its metadata (a JSON object; a value of the wrong type reads as
absent). Whatever a format's reader fails on comes out as one ``ReportError`` line, never binary.
"""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa

from ..errors import ReportError
from ..files import open_regular
from .formats import SUFFIXES, format_for, module
from .schema import COLUMNS, META_TYPES, conform, heads_in, one_line, optional, report_schema

PARQUET_MAGIC = b"PAR1"


def format_of(path: str | Path) -> str:
    """A local report's format, from its content: Parquet by its magic bytes, whatever its name;
    a text report by its name (.csv, .jsonl), else by its first byte (``{``: JSON Lines)."""
    path = Path(path)
    try:
        with open_regular(path) as f:  # a FIFO named as a report is refused, not waited on
            head = f.read(64)
    except OSError as exc:
        raise ReportError(f"cannot read report {path}: {exc.strerror or exc}") from None
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    named = SUFFIXES.get(path.suffix.lower().lstrip("."))
    if named == "parquet":
        raise ReportError(f"cannot read report {path}: it is named .parquet but is not a Parquet file")
    return named or ("jsonl" if head.lstrip()[:1] == b"{" else "csv")


def _schema_for(path: Path, names: list[str]) -> pa.Schema:
    """The report schema for a report with these columns, or why it is none."""
    twice = sorted(n for n, k in Counter(names).items() if k > 1)
    if twice:
        raise ReportError(f"cannot read report {path}: column(s) {', '.join(map(repr, twice[:5]))[:200]} "
                          "appear more than once")
    missing = [c for c in COLUMNS if c not in names and not optional(c)]
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        raise ReportError(f"{path} is not an aiiscan report (missing columns {shown})")
    return report_schema(heads_in(names))


def iter_report(path: str | Path, batch_rows: int = 8192) -> Iterator[pa.Table]:
    """Any report aiiscan wrote, as tables of about ``batch_rows`` rows with the report schema,
    read as a stream: memory is set by ``batch_rows``, not by the report's length. A multi-head
    report keeps its further heads' columns (``report_schema``)."""
    path = Path(path)
    fmt = module(format_of(path))
    try:
        names, schema, tables = fmt.read(path, lambda cols: _schema_for(path, cols), batch_rows)
        _schema_for(path, names)  # the columns the format's reader found (a text header may lie)
        empty = True
        for table in tables:
            empty = False
            try:
                yield conform(table, schema)
            except ReportError as exc:
                raise ReportError(f"cannot read report {path}: {exc}") from None
        if empty:
            yield schema.empty_table()
    except (OSError, pa.ArrowException, UnicodeError) as exc:
        raise ReportError(f"cannot read report {path}: {one_line(exc)}") from None


def read_report(path: str | Path) -> pa.Table:
    """Any report aiiscan wrote, as one table with the report schema (small reports; use
    ``iter_report`` to stream a large one)."""
    return pa.concat_tables(iter_report(path))


def report_metadata(path: str | Path) -> dict:
    """The scan's metadata (what made the report, and how): a JSON object, or ``ReportError``.
    A known key whose value has the wrong type (``schema.META_TYPES``) reads as absent."""
    path = Path(path)
    try:
        meta = module(format_of(path)).metadata(path)
    except (OSError, pa.ArrowException, ValueError, UnicodeError) as exc:
        raise ReportError(f"cannot read the metadata of report {path}: {one_line(exc)}") from None
    if not isinstance(meta, dict):
        raise ReportError(f"cannot read the metadata of report {path}: not a JSON object")
    return {k: v for k, v in meta.items() if k not in META_TYPES or v is None or _typed(v, META_TYPES[k])}


def _typed(value: object, kind: type | tuple) -> bool:
    if isinstance(kind, tuple):  # (list, item type)
        return isinstance(value, list) and all(x is None or _typed(x, kind[1]) for x in value)
    if kind is float:  # a finite number (JSON's NaN, a bool or a 400-digit integer is none)
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and abs(value) < 1e300 and math.isfinite(value))
    return isinstance(value, kind)


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
        if module(format_for(local)).SIDECAR:
            try:
                stores.get_file(url + ".meta.json", local.with_name(local.name + ".meta.json"))
            except stores.StoreError as exc:
                if exc.kind != "missing":  # a CSV without its sidecar still reads, as before
                    raise ReportError(f"cannot read the report's metadata {url}.meta.json: {exc}") from None
        yield local
