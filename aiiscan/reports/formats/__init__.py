"""Report formats: one module each, chosen by name (``FORMATS``) or by the report's extension.

A format module defines ``SIDECAR`` (whether the scan's metadata goes beside the report, in
``REPORT.meta.json``), ``write(sink, batches, schema, meta)`` (every row, batch by batch, into an
open binary file: the temporary ``files.atomic_output`` made, never a name) and
``read(path, schema_for, batch_rows)`` (the report back as a stream of tables in
the report's column types, mtime still as the format spells it). ``reports.read`` checks and
conforms what a format reads; the writer stage (``reports.parts``) calls ``write``. A new format
is one module and one line here, plus its suffixes.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from ...errors import ReportError

FORMATS: dict[str, str] = {
    "parquet": "aiiscan.reports.formats.parquet",
    "csv": "aiiscan.reports.formats.csv",
    "jsonl": "aiiscan.reports.formats.jsonl",
}
SUFFIXES = {"parquet": "parquet", "pq": "parquet", "csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl"}


def format_for(path: str | Path, explicit: str | None = None) -> str:
    """The report format: ``explicit`` if given, else from the extension (unknown: an error). An
    ``explicit`` format that contradicts a known extension (``r.csv`` with ``parquet``) is refused:
    the file's name would lie about its bytes."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if explicit:
        if explicit not in FORMATS:
            raise ReportError(f"unknown report format {explicit!r}; choose {', '.join(FORMATS)}")
        if SUFFIXES.get(suffix, explicit) != explicit:
            raise ReportError(f"--format {explicit} contradicts the name {Path(path).name!r} (a "
                              f"{SUFFIXES[suffix]} report): name it .{explicit}, or drop --format")
        return explicit
    if suffix not in SUFFIXES:
        raise ReportError(unknown_format(path))
    return SUFFIXES[suffix]


PAGE_SUFFIXES = ("html", "htm", "xhtml")
# suffixes people type for the formats aiiscan writes under another name
MEANT = {"json": "jsonl", "ndjson": "jsonl", "jsonlines": "jsonl", "tsv": "csv", "parq": "parquet",
         "pqt": "parquet"}


def unknown_format(path: str | Path) -> str:
    """Why no report can be written to ``path`` (no format has its suffix), with what was
    probably meant: ``report.json`` is JSONL, ``report.html`` is ``--html``."""
    name = Path(path).name
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix in PAGE_SUFFIXES:
        return (f"-o {name}: a scan's -o is its report (.parquet, .csv or .jsonl); the HTML page is "
                f"--html {name} (e.g. -o report.parquet --html {name})")
    if suffix in MEANT:
        return (f"cannot tell the report format of {name!r}: did you mean "
                f"{Path(name).with_suffix('.' + MEANT[suffix])}? (or pass --format)")
    return f"cannot tell the report format of {name!r}: end it in .parquet, .csv or .jsonl, or pass --format"


def module(fmt: str) -> ModuleType:
    return importlib.import_module(FORMATS[fmt])
