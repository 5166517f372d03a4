"""A scan, end to end: sources -> decode workers -> batcher -> scorer -> report writer.

One direction, no back and forth. ``run_scan`` only orchestrates: where the report goes
(``staging``), what is known already (``reuse``), which inputs need a decode and what each row
holds (``plan``, ``rows``), and what was done (``summary``). Files that fail anywhere become rows
with ``status=error`` and a reason; an interrupted scan leaves whole report parts behind and
``resume=True`` continues it; ``incremental=OLD_REPORT`` reuses rows of unchanged files.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from .. import inputs, signals
from .. import progress as progress_bars
from ..decode.evidence import load_evidence
from ..decode.launder import spec as stability_spec
from ..engines import Engine, make_engine
from ..errors import UsageError
from ..files import now_iso
from ..inputs.location import ListingLost
from ..models.installed import has_default_head
from ..options import ScanOptions, as_weights
from ..reports.ledger import Ledger
from ..reports.ledger import failure as ledger_failure
from ..reports.parts import ReportWriter
from ..reports.read import iter_report, local_report, report_metadata
from ..tasks.metrics import check_threshold
from ..textsafe import display_path
from .identity import differences, reusable, run_identity
from .plan import Plan
from .reuse import Reuse
from .rows import Rows
from .staging import destination
from .summary import ScanSummary, metadata


def heads_for(weights: str | Sequence[str] | None) -> str | tuple[str, ...] | None:
    """The heads a scan opens: those named, else the default head (None), else none at all (an
    empty tuple: no head is installed, and the scan collects evidence only)."""
    heads = as_weights(weights)
    return () if heads is None and not has_default_head() else heads


def check_roots(paths: Sequence[str]) -> None:
    """A root that surely names nothing is a usage error before the model loads. URLs and
    SHARD::MEMBER roots are not looked up: a missing one comes out of the crawl as an error row
    (a request per root before the model loads would buy little)."""
    missing = [p for p in paths if not inputs.exists(inputs.parse(p))]
    if missing:
        raise UsageError("no such file or folder: " + ", ".join(display_path(p) for p in missing[:5])
                         + (f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""))


def run_scan(paths: Sequence[str], output: str | Path, options: ScanOptions | None = None,
             engine: Engine | None = None) -> ScanSummary:
    """Scan files and folders into a report; see ``ScanSummary.exit_code`` for the outcome (5
    when no root held an image file, unless ``allow_empty``: the report is written all the same).

    Mistakes are found before the model loads: a root that does not exist, an output that may
    not be written (``files.check_output``; an existing report needs ``overwrite``).
    ``options.weights=None`` uses the default head. The engine (``engines``; default: local)
    decodes and scores; everything else here (the crawl, resume, incremental reuse, rows, the
    report) is the same whatever the engine.
    """
    opts = options or ScanOptions()
    run, engine = opts.run, engine or make_engine("local")
    started, t0 = now_iso(), time.perf_counter()
    check_roots(paths)
    dest = destination(output, opts.fmt, opts.overwrite, opts.parts_dir)
    check_threshold(opts.threshold)
    stability = stability_spec(opts.stability)  # a bad condition: refused before the model loads
    evidence = load_evidence(opts.evidence)
    ReportWriter.check(dest.local, opts.resume)
    model = engine.open(heads_for(opts.weights), run)
    rows = Rows(model, opts)
    identity = run_identity(model, rows.thresholds, rows.combine, opts, evidence)
    summary = _summary(rows, model, paths, opts, t0)
    with contextlib.ExitStack() as stack:
        # An old report in a store is fetched into a temporary folder, which goes once the ledger
        # holds its rows; an unreadable one is refused before any part exists.
        fetched = stack.enter_context(contextlib.ExitStack())
        old = fetched.enter_context(local_report(opts.incremental)) if opts.incremental else None
        if old is not None:
            next(iter_report(old, batch_rows=1))
        writer = stack.enter_context(ReportWriter(dest.local, dest.fmt, resume=opts.resume,
                                                  rows_per_part=opts.part_rows, schema=rows.schema,
                                                  identity=identity, explain=differences))
        ledger = stack.enter_context(contextlib.closing(Ledger(writer.parts / "index.sqlite", rows.schema)))
        stack.callback(signals.install())  # SIGTERM (docker stop) and Ctrl-C both stop here, resumably
        # the crawl streams: the bar counts what it finds, and has a total once it ends
        bar = stack.enter_context(progress_bars.bar(unit="file", show=run.progress))
        reuse = Reuse(ledger, **_incremental(old, identity, evidence, stability if rows.heads else None,
                                             summary))

        def emit(row: dict | None) -> None:
            if row is not None:
                summary.count(row)
                writer.write(row)
                reuse.record(row)
            bar.update(1)

        plan = Plan(paths, opts, model.image_size, reuse, rows, summary, emit, evidence, bar)
        try:
            if reuse.incremental:
                ids = [h.model_id for h in model.heads]
                summary.other_heads, summary.other_head_ids = reuse.load_old(old, ids)
                summary.unsound = reuse.unsound
            fetched.close()
            if opts.resume:
                reuse.load_done(writer)
            for res, scores in model.score_stream(plan.jobs(), run.batch_size, run.workers, run.timeout,
                                                  skip=plan.skip):
                plan.row(res, scores)
            if plan.lost:
                raise ListingLost(f"{plan.lost}. The rows written so far are kept in {writer.parts}; no "
                                  "report was written: rerun the same command with --resume")
            summary.seconds = time.perf_counter() - t0
            meta = metadata(summary, opts, engine, model, paths, started, evidence, identity)
            # On resume, rows of the interrupted run stand only where the file was found unchanged:
            # the report is the one a clean scan would write now.
            report = writer.finish(meta, ledger.kept_rows if opts.resume else None, publish=dest.publisher())
            summary.report = dest.done(report)  # type: ignore[assignment]  # a URL for a store
        except sqlite3.Error as exc:
            raise ledger_failure(ledger.path, exc) from None
        except BaseException as exc:
            if not (isinstance(exc, KeyboardInterrupt) or signals.received()):
                raise
            summary.interrupted = True  # also when a library failed on the way out of the interrupt
            summary.seconds = time.perf_counter() - t0
    return summary


def _summary(rows: Rows, model, paths: Sequence[str], opts: ScanOptions, begun: float) -> ScanSummary:
    """The scan's summary before its first row: its heads, its roots (an empty one is named),
    whether an empty scan is allowed, when it began."""
    summary = ScanSummary.of(rows, model)
    summary.roots = [display_path(p) for p in paths] + (
        [] if not opts.from_list else ["the list on standard input" if opts.from_list == "-"
                                       else f"the list {display_path(opts.from_list)}"])
    summary.allow_empty, summary.begun = opts.allow_empty, begun
    summary.reuse_asked = bool(opts.incremental or opts.resume)
    return summary


def _incremental(old: Path | None, identity: dict, evidence, stability: str | None,
                 summary: ScanSummary) -> dict:
    """What an old report gives this scan (``Reuse``'s options): what its recorded run identity
    allows (its scores where the same heads scored the same pixels, its rows where every row
    option and the evidence settings are the same too), and nothing made under another
    ``--stability`` spec (its scores lack, or carry other, ranges). The summary says why not."""
    if old is None:
        return {"incremental": False, "rows_reusable": False}
    meta = report_metadata(old)
    allowed = reusable(meta.get("run_identity"), identity)
    if not allowed.scores:
        summary.incremental_refused = allowed.why
    elif meta.get("stability") != stability:  # a report from before --stability recorded none
        summary.other_stability = str(meta.get("stability") or "none")
    return {"incremental": allowed.scores and not summary.other_stability,
            "rows_reusable": allowed.rows and evidence.same_as(meta.get("evidence"))}
