"""The scan's per-file memory, on disk: what a scan must look up per file, in SQLite.

A scan may list 100 million files and be given an old report of 10 million rows. Everything
the driver looks up per file (is this path already done? unchanged since the old report? has
this content been scored before?) lives here instead of in Python dicts and sets, so the scan's
memory is set by its in-flight window, not by the archive.

Why SQLite (the standard library) and not a sorted merge of the crawl against a path-sorted
old report: a merge needs the crawl in the report's order, and a scan's inputs are any mix of
roots and lists in any order, escaped for display; an index answers a lookup in any order in
O(log n). Measured against the dict it replaced (``python benchmarks/ledger_index.py``, 1,000,000
old rows, shared 2-core machine): the dict grew the process by 2,833 MiB, the ledger by 158 MiB
(its batches and SQLite's page cache, the same at 10,000,000 rows); loading took 47 s vs 34 s;
a lookup 2 µs vs 10-60 µs, negligible beside a decode. DuckDB, which sorts the final report, is
built for scans, not for one-row lookups (~0.2 ms each from Python).

The file lives beside the report's parts and is rebuilt from them on ``--resume``; nothing in it
needs to survive a crash, so it is written without a journal or fsync.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa

from ..errors import AiiscanError
from .schema import carried

FACTS = ("verdict", "verdict_reasons", "c2pa_trust", "generator_kind", "watermark")  # summary.count's
CACHE_KIB = 16 * 1024  # SQLite page cache: the index's share of the scan's memory


def _rows(batch: pa.RecordBatch) -> Iterator[tuple]:
    return zip(*(col.to_pylist() for col in batch.columns), strict=True)


class LedgerError(AiiscanError):
    """The index beside the parts could not be written (a full disk, a file size limit)."""


def failure(path: Path, exc: sqlite3.Error) -> LedgerError:
    return LedgerError(f"cannot write the scan's index {path}: {exc}. The rows written before this are "
                       "kept; free space (or fix the folder) and rerun the same command with --resume")


class Ledger:
    """SQLite tables of one scan: ``seen`` (crawl de-duplication), ``old`` (the --incremental
    report's reusable rows), ``done`` (rows an interrupted run wrote) and ``scored`` (content
    scored in this scan, by sha256: the columns ``schema.carried`` names)."""

    def __init__(self, path: str | Path, schema: pa.Schema):
        self.path = Path(path)
        self.scores = carried(schema)  # every head's score, range and threshold; the verdict's reasons
        scores = ", ".join(f"{c} {'TEXT' if pa.types.is_string(schema.field(c).type) else 'REAL'}"
                           for c in self.scores)
        marks = ", ".join("?" * len(self.scores))
        self._insert_scored = f"INSERT OR IGNORE INTO scored VALUES (?, ?, {marks})"
        self.path.unlink(missing_ok=True)  # a leftover of an interrupted run: rebuilt from the parts
        self.columns = schema.names
        # what a resumed row must bring to the scan's summary besides status, label and hint (every
        # head's label, the verdict and its reasons, the evidence): kept as one JSON text per row
        self.facts = [c for c in schema.names if c.startswith("label_") or c in FACTS]
        self._bools = [i for i, f in enumerate(schema) if pa.types.is_boolean(f.type)]  # SQLite: 0/1
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            for pragma in ("journal_mode=OFF", "synchronous=OFF", "temp_store=FILE",
                           f"cache_size=-{CACHE_KIB}", "locking_mode=EXCLUSIVE"):
                self.db.execute(f"PRAGMA {pragma}")
            cols = ", ".join(f'"{c}"' for c in self.columns)
            self.db.executescript(f"""
                CREATE TABLE seen (key TEXT PRIMARY KEY) WITHOUT ROWID;
                CREATE TABLE old ({cols});
                CREATE TABLE done (path TEXT PRIMARY KEY, part INTEGER, row INTEGER, status TEXT,
                                   label TEXT, provenance_hint TEXT, size INTEGER, mtime INTEGER,
                                   etag TEXT, facts TEXT, kept INTEGER DEFAULT 0);
                CREATE TABLE scored (sha256 TEXT PRIMARY KEY, path TEXT, {scores}) WITHOUT ROWID;
            """)
        except sqlite3.Error as exc:
            self.path.unlink(missing_ok=True)
            raise failure(self.path, exc) from None
        self._old_indexed = False

    # -- the crawl ------------------------------------------------------------------------------
    def add_new(self, key: str) -> bool:
        """Record ``key``; False when it was recorded before."""
        return self.db.execute("INSERT OR IGNORE INTO seen VALUES (?)", (key,)).rowcount == 1

    # -- --incremental ----------------------------------------------------------------------------
    def load_old(self, batches: Iterable[pa.RecordBatch]) -> int:
        """Store the old report's reusable rows (already filtered), batch by batch; index them."""
        n = 0
        self.db.execute("BEGIN")
        for batch in batches:
            if not batch.num_rows:
                continue
            # columns with a value in this batch only: a report's many empty provenance columns
            # would cost a bound parameter per row each (a third of the load time)
            cols = [c for c in self.columns if batch.column(c).null_count < batch.num_rows]
            names = ", ".join(f'"{c}"' for c in cols)
            self.db.executemany(f"INSERT INTO old ({names}) VALUES ({', '.join('?' * len(cols))})",
                                _rows(batch.select(cols)))
            n += batch.num_rows
        self.db.execute("COMMIT")
        # Indexes after the bulk insert: one sort each instead of a b-tree update per row.
        self.db.execute("CREATE INDEX old_path ON old (path)")
        self.db.execute("CREATE INDEX old_sha ON old (sha256)")
        self._old_indexed = True
        return n

    def old_row(self, path: str) -> dict | None:
        """The old report's row for ``path`` (the last one, if a foreign report repeats it)."""
        if not self._old_indexed:
            return None
        cur = self.db.execute("SELECT * FROM old WHERE path = ? ORDER BY rowid DESC LIMIT 1", (path,))
        row = cur.fetchone()
        if row is None:
            return None
        row = list(row)
        for i in self._bools:
            row[i] = None if row[i] is None else bool(row[i])
        return dict(zip(self.columns, row, strict=True))

    def old_content(self, sha256: str, path: str | None = None) -> tuple[str, tuple] | None:
        """(path, the carried values: ``scores``' columns) of an old row with this content:
        ``path``'s own when it
        has it (a file touched but not changed), else the first by path."""
        if not self._old_indexed:
            return None
        return self._split(self.db.execute(f"SELECT path, {self._cols} FROM old WHERE sha256 = ? "
                                           "ORDER BY path = ? DESC, path LIMIT 1", (sha256, path)).fetchone())

    @property
    def _cols(self) -> str:
        return ", ".join(self.scores)

    @staticmethod
    def _split(row: tuple | None) -> tuple[str, tuple] | None:
        return None if row is None else (row[0], tuple(row[1:]))

    # -- --resume ---------------------------------------------------------------------------------
    def load_done(self, part: int, batch: pa.RecordBatch, first_row: int) -> None:
        """Rows of an interrupted run's part; a later row for a path replaces an earlier one.
        Scores it made count as this scan's (``scored``), as in the run that was interrupted."""
        cols = batch.select(["path", "status", "label", "provenance_hint", "size", "mtime", "etag"])
        facts = batch.select(self.facts).to_pylist()
        rows = ((r[0], part, first_row + i, *r[1:], json.dumps(facts[i]))
                for i, r in enumerate(_rows(cols)))
        self.db.executemany("INSERT OR REPLACE INTO done (path, part, row, status, label, provenance_hint, "
                            "size, mtime, etag, facts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        ok = batch.select(["status", "sha256", "path", *self.scores])
        self.db.executemany(self._insert_scored,
                            (r[1:] for r in _rows(ok) if r[0] == "ok" and r[1] and r[3] is not None))

    def done_row(self, path: str) -> dict | None:
        """The interrupted run's row for ``path``: what resume compares, and what the summary counts."""
        names = ("status", "label", "provenance_hint", "size", "mtime", "etag")
        row = self.db.execute(f"SELECT {', '.join(names)}, facts FROM done WHERE path = ?",
                              (path,)).fetchone()
        if row is None:
            return None
        return json.loads(row[-1] or "{}") | dict(zip(names, row[:-1], strict=True))

    def keep(self, path: str) -> None:
        """The interrupted run's row for ``path`` stands in the final report."""
        self.db.execute("UPDATE done SET kept = 1 WHERE path = ?", (path,))

    def kept_rows(self, part: int) -> list[int]:
        """Row numbers of ``part`` that stand (at most one part's rows: bounded)."""
        return [r for (r,) in self.db.execute("SELECT row FROM done WHERE part = ? AND kept = 1 ORDER BY row",
                                              (part,))]

    # -- content already scored -------------------------------------------------------------------
    def add_scored(self, sha256: str, path: str, scores: tuple) -> None:
        """``scores``: the values of the ``scores`` columns, in their order."""
        self.db.execute(self._insert_scored, (sha256, path, *scores))

    def scored(self, sha256: str) -> tuple[str, tuple] | None:
        """(path, the carried values) of the first file of this scan with this content."""
        return self._split(self.db.execute(f"SELECT path, {self._cols} FROM scored WHERE sha256 = ?",
                                           (sha256,)).fetchone())

    def close(self) -> None:
        try:
            self.db.close()
        finally:
            self.path.unlink(missing_ok=True)
