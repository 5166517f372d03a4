"""What a scan knows before it scores a file, kept on disk (``reports.ledger``), not in memory.

- ``--resume``: the rows an interrupted run wrote; one stands while its file is unchanged.
- ``--incremental OLD``: the old report's rows made by the same heads; an unchanged file keeps
  its row, a moved or copied one (same sha256) its scores.
- content scored earlier in this scan: a duplicate keeps the first copy's scores.

"Unchanged" means the same size and mtime (µs); for an object whose row and listing both have an
ETag, the same size and ETag (an object rewritten with the same size has a new ETag, and mtimes
from a listing and a HEAD request may differ in precision).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from .. import inputs
from ..inputs.location import Location
from ..reports.ledger import Ledger
from ..reports.parts import ReportWriter
from ..reports.read import iter_report
from ..reports.schema import RANGE, heads_in
from .summary import SHOWN_HEADS


def _mtime_int(table: pa.Table) -> pa.Table:
    """mtime as int64 (the report's microseconds), to compare with the file system's clock."""
    return table.set_column(table.schema.get_field_index("mtime"), "mtime",
                            table.column("mtime").cast(pa.int64()))


def unchanged(loc: Location, old: dict) -> bool:
    """Whether ``loc`` is still what ``old`` describes. A local file costs one stat; a URL a HEAD
    request (or none: the listing's answer is remembered); a member the shard's index."""
    try:
        st = inputs.stat(loc)
    except OSError:
        return False
    if st.etag and old.get("etag"):  # the ETag decides: a store's listing and its HEAD may
        return st.etag == old["etag"] and st.size == old["size"]  # give mtimes of unlike precision
    return st.size == old["size"] and st.mtime_us == old["mtime"]


def sound(table: pa.Table, heads: int) -> pa.ChunkedArray:
    """Which scored rows of an old report may be reused: every head's score finite, its threshold
    finite or null, its label the one that score and threshold give (``rows.label``), and its
    range (``--stability``) null or finite around the score. A row a scan wrote always is; a
    tampered or foreign one (a NaN score, ok with no score, an "ai" below its threshold) is not,
    and its file is scored again."""
    ok = pc.equal(table.column("status"), "ok")
    for k in range(1, heads + 1):
        suffix = "" if k == 1 else f"_{k}"
        score, thr, lab = (table.column(f"{c}{suffix}") for c in ("score", "threshold", "label"))
        given = pc.if_else(pc.greater_equal(score, thr), "ai", "natural")
        ok = pc.and_(ok, pc.is_finite(score))
        ok = pc.and_(ok, pc.if_else(pc.is_null(thr), pc.is_null(lab),
                                    pc.and_(pc.is_finite(thr), pc.equal(lab, given))))
        lo, hi = (table.column(f"{c}{suffix}") for c in RANGE)
        ok = pc.and_(ok, pc.if_else(pc.and_(pc.is_null(lo), pc.is_null(hi)), True,
                                    pc.and_(pc.less_equal(lo, score), pc.less_equal(score, hi))))
    return pc.fill_null(ok, False)


class Reuse:
    """The scan's lookups: what is done, what the old report holds, what content was scored."""

    def __init__(self, ledger: Ledger, incremental: bool, rows_reusable: bool = True):
        """``rows_reusable``: the old report's evidence was made as this scan would make it (the
        same evidence code, rules and trust anchors); otherwise an unchanged file is decoded
        again for its evidence, though its scores are still reused by content."""
        self.ledger = ledger
        self.incremental = incremental
        self.rows_reusable = rows_reusable
        self.unsound = 0  # rows by these heads that do not hold up (``sound``): not reused

    def load_old(self, report: str | Path, models: Sequence[str]) -> tuple[int, list[str]]:
        """The old report's reusable rows into the ledger, streamed: scored by this scan's heads
        (the same number of heads, the same model ids in the same order; else none is reused).

        Returns how many of its scored rows other heads made (so a scan that reuses nothing can
        say why) and their model ids, one string per set of heads ("a", or "a + b" for two), at
        most ``SHOWN_HEADS`` and one more to show that there are more."""
        other = 0
        sets: dict[str, None] = {}  # ordered, first met first

        def reusable() -> Iterator[pa.Table]:
            nonlocal other
            for table in iter_report(report):
                theirs = ["model_id", *(f"model_id_{k}" for k in range(2, heads_in(table.column_names) + 1))]
                ok = pc.fill_null(pc.equal(table.column("status"), "ok"), False)
                if not models:  # an evidence-only scan reuses the rows of evidence-only scans
                    same = pc.fill_null(pc.and_(ok, pc.is_null(table.column("model_id"))), False)
                    yield _mtime_int(table.filter(same))
                    foreign = table.filter(pc.and_(ok, pc.invert(same))).select(theirs)
                elif len(theirs) == len(models):
                    ours = ok
                    for col, model in zip(theirs, models, strict=True):
                        ours = pc.and_(ours, pc.equal(table.column(col), model))
                    ours = pc.fill_null(ours, False)
                    same = pc.and_(ours, sound(table, len(models)))
                    self.unsound += pc.sum(pc.cast(pc.xor(ours, same), pa.int64())).as_py() or 0
                    yield _mtime_int(table.filter(same))
                    foreign = table.filter(pc.and_(ok, pc.invert(ours))).select(theirs)
                else:  # another number of heads: no row is reused
                    foreign = table.filter(ok).select(theirs)
                other += foreign.num_rows
                if foreign.num_rows and len(sets) <= SHOWN_HEADS:
                    for ids in foreign.group_by(theirs, use_threads=False).aggregate([]).to_pylist():
                        sets.setdefault(" + ".join(str(ids[c]) for c in theirs), None)
        self.ledger.load_old(reusable())
        return other, list(sets)[:SHOWN_HEADS + 1]

    def load_done(self, writer: ReportWriter) -> None:
        """The interrupted run's rows (``--resume``)."""
        for part, first, table in writer.done_batches():
            self.ledger.load_done(part, _mtime_int(table), first)

    def resumed(self, loc: Location) -> dict | None:
        """The interrupted run's row for ``loc`` if it still describes the file (it then stands
        in the report); None: new, or changed since, so scanned again. A row that recorded no
        size or mtime (unreadable, or skipped at the crawl) has nothing to compare and stands."""
        shown = loc.display()
        row = self.ledger.done_row(shown)
        if row is None:
            return None
        if row["size"] is not None and row["mtime"] is not None and not unchanged(loc, row):
            return None
        self.ledger.keep(shown)
        return row

    def old_row(self, loc: Location) -> dict | None:
        """The old report's row of a file unchanged since (``--incremental``)."""
        prior = self.ledger.old_row(loc.display()) if self.incremental and self.rows_reusable else None
        return prior if prior and unchanged(loc, prior) else None

    def scores(self, row: dict) -> dict:
        """What a row's scores carry (``schema.carried``)."""
        return {c: row.get(c) for c in self.ledger.scores}

    def known(self, sha: str | None, loc: Location) -> tuple[str, str, dict] | None:
        """Scores this scan already has for this content: (how, from which path, what they carry).
        A file touched since the old report but with its content unchanged is ``unchanged``."""
        if not sha:
            return None
        hit = self.ledger.scored(sha)
        if hit is not None:
            return "duplicate", hit[0], dict(zip(self.ledger.scores, hit[1], strict=True))
        shown = loc.display()
        hit = self.ledger.old_content(sha, shown) if self.incremental else None
        if hit is None:
            return None
        how = "unchanged" if hit[0] == shown else "same_content"
        return how, hit[0], dict(zip(self.ledger.scores, hit[1], strict=True))

    def record(self, row: dict) -> None:
        """A row written by this scan: its scores answer later copies of its content."""
        if row["status"] == "ok" and row["sha256"] and row["score"] is not None:
            self.ledger.add_scored(row["sha256"], row["path"], tuple(row[c] for c in self.ledger.scores))
