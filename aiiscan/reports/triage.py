"""What a triage page ranks and counts, in memory bounded by what it shows.

A ranking keeps the top ``top`` distinct contents (copies collapsed by sha256, so 38 copies of
one photo fill one card, not 38) and a few paths of each; error reasons are counted once the
parts that differ from file to file (paths, quoted names, numbers) are taken out, so "no such
file: /a/1.jpg" and "no such file: /b/2.jpg" are one reason with a count of 2.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

COPY_PATHS = 3  # further paths of a collapsed card listed on it
MAX_REASONS = 200  # distinct error reasons counted; any later new one counts as OTHER_REASON
OTHER_REASON = "(other reasons)"
REASON_CHARS = 160

# (pattern, replacement), in this order: quoted names first (they may hold spaces and slashes),
# then anything shaped like a path or URL, then numbers (sizes, offsets, counts, addresses).
_REASON_PATTERNS = ((r"'[^']*'", "'…'"), (r'"[^"]*"', '"…"'), (r"\S*[/\\]\S*", "<path>"),
                    (r"0x[0-9a-fA-F]+", "N"), (r"\d+(\.\d+)?", "N"), (r"\s+", " "))


def normalise_reasons(reasons: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Each error text with paths, quoted names and numbers replaced (``<path>``, ``'…'``,
    ``N``), trimmed to ``REASON_CHARS``; null or empty reads ``(no reason given)``."""
    out = pc.fill_null(reasons, "")
    for pattern, replacement in _REASON_PATTERNS:
        out = pc.replace_substring_regex(out, pattern=pattern, replacement=replacement)
    out = pc.utf8_slice_codeunits(pc.utf8_trim_whitespace(out), 0, REASON_CHARS)
    return pc.if_else(pc.equal(out, ""), "(no reason given)", out)


def normalise_reason(reason: str | None) -> str:
    """``normalise_reasons`` for one text (the CLI summary's form of the same rule)."""
    return normalise_reasons(pa.array([reason], pa.string()))[0].as_py()


class ReasonCounts:
    """Files per (status, normalised reason); at most ``MAX_REASONS`` distinct reasons are kept,
    later new ones are counted together, so a report of unique texts cannot grow the page."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()

    def add(self, status: pa.ChunkedArray, error: pa.ChunkedArray) -> None:
        table = pa.table({"status": pc.fill_null(status, "none"), "reason": normalise_reasons(error)})
        grouped = table.group_by(["status", "reason"], use_threads=False).aggregate([("reason", "count")])
        columns = (grouped.column(c).to_pylist() for c in ("status", "reason", "reason_count"))
        for st, reason, n in zip(*columns, strict=True):
            key = (st, reason)
            if key not in self.counts and len(self.counts) >= MAX_REASONS:
                key = (st, OTHER_REASON)
            self.counts[key] += n

    def rows(self) -> list[tuple[str, str, int]]:
        """(reason, status, files), most files first, then by reason."""
        return [(r, s, n) for (s, r), n in sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0][1]))]


class Ranking:
    """The first ``top`` distinct contents in ``sort_keys`` order (ties in report order), each
    with its number of copies and up to ``COPY_PATHS`` further paths.

    Memory is set by ``top`` and the batch, never by the report: each batch is merged with the
    kept rows, grouped by content (sha256; a row without one is its own group), and cut back to
    ``top`` groups. Copies are counted among the kept candidates: a content that left the top
    and came back (it cannot, with equal scores and report order breaking ties) would restart."""

    def __init__(self, top: int, sort_keys: Sequence[tuple[str, str]]):
        self.top = max(top, 0)
        self.sort_keys = [*sort_keys, ("_row", "ascending")]
        self.best: pa.Table | None = None
        self.paths: dict[str, list[str]] = {}  # key -> paths in report order (the card's first)

    def add(self, cand: pa.Table) -> None:
        """Merge ``cand`` (rows with a ``_row`` column, their position in the report)."""
        if not self.top or not len(cand):
            return
        sha = cand.column("sha256") if "sha256" in cand.column_names else pa.nulls(len(cand), pa.string())
        own = pc.binary_join_element_wise("row:", pc.cast(cand.column("_row"), pa.string()), "")
        key = pc.if_else(pc.fill_null(pc.not_equal(sha, ""), False), sha, own)
        new = cand.append_column("_key", key)
        if self.best is not None and len(self.best) >= self.top:  # full: most rows cannot enter
            new = new.filter(self._could_enter(new))
        new = new.append_column("_copies", pa.array(np.ones(len(new), np.int64)))
        merged = new if self.best is None else pa.concat_tables([self.best, new])
        merged = merged.take(pc.sort_indices(merged, sort_keys=self.sort_keys))  # nulls last
        groups = pa.table({"_key": merged.column("_key"), "_pos": pa.array(np.arange(len(merged))),
                           "_copies": merged.column("_copies")})
        groups = groups.group_by("_key", use_threads=False).aggregate([("_pos", "min"), ("_copies", "sum")])
        groups = groups.take(pc.sort_indices(groups, sort_keys=[("_pos_min", "ascending")]))
        groups = groups.slice(0, self.top)
        best = merged.take(groups.column("_pos_min"))
        self.best = best.set_column(best.schema.get_field_index("_copies"), "_copies",
                                    groups.column("_copies_sum"))
        self._remember_paths(new)

    def _could_enter(self, new: pa.Table):
        """Rows not behind the last kept row on the first sort key, and copies of kept rows:
        the only ones that can change the ranking or its copy counts."""
        column, order = self.sort_keys[0]
        last = self.best.column(column)[-1]
        kept = pc.is_in(new.column("_key"), value_set=self.best.column("_key"))
        if not last.is_valid:  # the ranking ends in nulls: any row may enter
            return pa.array(np.ones(len(new), bool))
        ahead = (pc.greater_equal if order == "descending" else pc.less_equal)(new.column(column), last)
        return pc.or_(pc.fill_null(ahead, False), kept)

    def _remember_paths(self, new: pa.Table) -> None:
        kept = self.best.column("_key")
        full = pa.array([k for k, v in self.paths.items() if len(v) > COPY_PATHS], pa.string())
        wanted = pc.and_(pc.is_in(new.column("_key"), value_set=kept),
                         pc.invert(pc.is_in(new.column("_key"), value_set=full)))
        listed = new.filter(wanted)
        keys, paths_ = listed.column("_key").to_pylist(), listed.column("path").to_pylist()
        for key, path in zip(keys, paths_, strict=True):
            paths = self.paths.setdefault(key, [])
            if len(paths) <= COPY_PATHS:
                paths.append(path)
        self.paths = {k: self.paths.get(k, []) for k in kept.to_pylist()}

    def rows(self) -> list[dict]:
        """The kept rows in order; each with ``copies`` and ``other_paths`` (not its own)."""
        if self.best is None:
            return []
        out = []
        for row in self.best.drop_columns(["_row"]).to_pylist():
            key = row.pop("_key")
            row["copies"] = row.pop("_copies")
            row["other_paths"] = [p for p in self.paths.get(key, []) if p != row["path"]][:COPY_PATHS]
            out.append(row)
        return out
