"""DuckDB for out-of-core work: finishing a report (a sort by path of any size) and the HTML page's
directory table, within a bounded memory that spills to disk. Imported only where needed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ReportError

# DuckDB's share while sorting the finished report; beyond it, it spills to disk. 96 MB costs
# about 140 MB of RSS at 1,000,000 rows and sorts them in ~9 s here; 48 MB is too little for it.
SORT_MEMORY = os.environ.get("AIISCAN_SORT_MEMORY", "96MB")


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

