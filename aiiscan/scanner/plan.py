"""The scan's plan: which inputs need a decode, and the row of every one that does not.

The crawl streams inputs; each is either answered at once (a row of the interrupted run that
still stands, an input not to be read, an unchanged file of the ``--incremental`` report) or
becomes a ``DecodeJob``. What comes back from the engine becomes its row (``row``), reused
scores included: the decision is made here, so every engine writes the same rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from ..decode.evidence import Evidence
from ..decode.job import DecodeJob, DecodeResult
from ..inputs.archive import is_container
from ..inputs.crawl import iter_inputs
from ..inputs.location import ListingLost
from ..options import ScanOptions
from ..progress import Bar
from .reuse import Reuse
from .rows import Rows
from .summary import ScanSummary


class Plan:
    """One scan's inputs into jobs and results into rows: ``emit(row)`` writes a row, ``emit(None)``
    counts a file that gets none (not an image)."""

    def __init__(self, paths: Sequence[str], opts: ScanOptions, crop: int, reuse: Reuse, rows: Rows,
                 summary: ScanSummary, emit: Callable[[dict | None], None], evidence: Evidence,
                 bar: Bar | None = None):
        self.paths, self.opts, self.crop, self.evidence = paths, opts, crop, evidence
        self.reuse, self.rows, self.summary, self.emit = reuse, rows, summary, emit
        self.bar = bar  # told what the crawl finds, and when it ends: then it has a total
        self.lost: ListingLost | None = None  # a listing cut off: the rows in flight still finish
        # Which root each input came from, so the summary can name a root that held nothing. One
        # root needs no record; with several, the jobs in flight are keyed (the engine may return
        # them in any order), so the record never holds more than the engine's window.
        self.root = 0
        self.several = len(paths) + bool(opts.from_list) > 1
        self.in_flight: dict[str, int] = {}

    def jobs(self) -> Iterator[DecodeJob]:
        try:
            yield from self._crawl()
        except ListingLost as exc:
            self.lost = exc
        if self.bar is not None:
            self.bar.crawled()

    def _at_root(self, index: int) -> None:
        self.root = index

    def _crawl(self) -> Iterator[DecodeJob]:
        opts, summary = self.opts, self.summary
        for entry in iter_inputs(self.paths, opts.from_list, opts.include, opts.exclude, opts.follow_symlinks,
                                 seen=self.reuse.ledger.add_new, archives=opts.archives,
                                 on_root=self._at_root):
            loc = entry.location
            if opts.resume:
                row = self.reuse.resumed(loc)
                if row is not None:
                    summary.resumed += 1
                    summary.count(row)  # the summary and exit code describe the whole report
                    summary.found_in(self.root, row)
                    continue
                # else new, or changed since the interruption: (re)scanned, the new row wins
            if self.bar is not None:
                self.bar.found()
            if entry.skip:  # a link not followed (skipped), or a root that is not there (an error: found)
                row = self.rows.skipped(entry)
                summary.found_in(self.root, row)
                self.emit(row)
                continue
            prior = self.reuse.old_row(loc)
            if prior is not None:
                row = self.rows.unchanged(prior, self.reuse.scores(prior))
                summary.found_in(self.root, row)
                self.emit(row)
                summary.reused += 1
                continue
            if self.several:
                self.in_flight[loc.key()] = self.root
            yield DecodeJob(loc, self.crop, variants=self.rows.variants,
                            max_pixels=opts.max_pixels, max_bytes=opts.max_bytes,
                            explicit=entry.explicit, fast_decode=not opts.run.exact_decode, provenance=True,
                            keep_gps=opts.keep_gps, prompts=opts.prompts, evidence=self.evidence,
                            watermark=True)

    def _known(self, res: DecodeResult) -> tuple[str, str, dict] | None:
        """Scores this scan already has for the content (none to have without a head)."""
        return self.reuse.known(res.info.get("sha256"), res.location) if self.rows.heads else None

    def skip(self, res: DecodeResult) -> bool:
        """Content whose scores the scan already has gets no backbone pass."""
        return self._known(res) is not None

    def row(self, res: DecodeResult, scores: np.ndarray | None) -> None:
        """The row of what the engine gave back for one job (``scores``: [variant, head])."""
        summary = self.summary
        if summary.first_file is None:
            summary.first_file = time.perf_counter()
        root = self.in_flight.pop(res.location.key(), 0) if self.several else 0
        if res.status != "skipped":  # an image, or a file that failed: found
            summary.found[root] += 1
        if res.status == "skipped":  # found in a folder, not an image: counted, no row
            summary.not_images += 1
            summary.archives += is_container(res.location)
            self.emit(None)
            return
        if res.status != "ok":
            self.emit(self.rows.failed(res))
            return
        hit = self._known(res)
        if hit is None:
            summary.scored += 1
            values = {} if scores is None else self.rows.fresh(scores)  # no head: no score
            self.emit(self.rows.scored(res, values, None))
            return
        how, source, known = hit
        if how == "duplicate":
            summary.duplicates += 1
        elif how == "unchanged":
            summary.reused += 1
        else:
            summary.same_content += 1
        self.emit(self.rows.scored(res, known, (how, source)))
