"""DuckDB for out-of-core work: the HTML page's directory table, within a bounded memory that
spills to disk. Imported only where needed. (A report's finish, a sort by path, is ``merge``.)"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ReportError

# DuckDB's share while grouping the page's directory table; beyond it, it spills to disk.
SORT_MEMORY = os.environ.get("AIISCAN_SORT_MEMORY", "96MB")


def duckdb_connect(database: str, spill: Path):
    """DuckDB for out-of-core work (the HTML page's directory table): within
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

