"""The one reader of reports: every report aiiscan reads (``--incremental``, ``aiiscan report``, the
Python API, the tests) comes through here, checked against the report schema and conformed to it.

A report is untrusted input: it may come from another machine, another version, or a stranger.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa

from ..errors import ReportError
from .formats import format_for, module
from .schema import COLUMNS, OPTIONAL, conform, heads_in, report_schema


def iter_report(path: str | Path, batch_rows: int = 8192) -> Iterator[pa.Table]:
    """Any report aiiscan wrote, as tables of about ``batch_rows`` rows with the report schema,
    read as a stream: memory is set by ``batch_rows``, not by the report's length. A multi-head
    report keeps its further heads' columns (``report_schema``)."""
    path = Path(path)
    fmt = module(format_for(path))
    try:
        names, schema, tables = fmt.read(path, lambda cols: report_schema(heads_in(cols)), batch_rows)
        missing = [c for c in COLUMNS if c not in names and c not in OPTIONAL]
        if missing:
            raise ReportError(f"{path} is not an aiiscan report (missing columns {missing})")
        empty = True
        for table in tables:
            empty = False
            yield conform(table, schema)
        if empty:
            yield schema.empty_table()
    except (OSError, pa.ArrowInvalid) as exc:
        raise ReportError(f"cannot read report {path}: {exc}") from None


def read_report(path: str | Path) -> pa.Table:
    """Any report aiiscan wrote, as one table with the report schema (small reports; use
    ``iter_report`` to stream a large one)."""
    return pa.concat_tables(iter_report(path))


def report_metadata(path: str | Path) -> dict:
    """The scan's metadata (what made the report, and how)."""
    path = Path(path)
    return module(format_for(path)).metadata(path)


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
