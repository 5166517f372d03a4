"""A scan, end to end: sources -> decode workers -> batcher -> scorer -> report writer.

One direction, no back and forth. Files that fail anywhere become rows with
``status=error`` and a reason; an interrupted scan leaves whole report parts behind and
``resume=True`` continues it; ``incremental=OLD_REPORT`` reuses rows of unchanged files.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import inputs, signals
from .. import progress as progress_bars
from ..decode.job import DecodeJob, DecodeResult
from ..engines import Engine, make_engine
from ..errors import EXIT_FILE_ERRORS, EXIT_INTERRUPTED, EXIT_OK, AiiscanError, ReportError, UsageError
from ..files import now_iso
from ..inputs.archive import is_container
from ..inputs.crawl import iter_inputs
from ..inputs.location import ListingLost, Location
from ..inputs.store import StoreError, put_file
from ..models import ScorerLike
from ..options import RunOptions, ScanOptions, as_weights
from ..outputs import OutputError, check_output
from ..reports.formats import format_for
from ..reports.ledger import Ledger
from ..reports.ledger import failure as ledger_failure
from ..reports.parts import ReportWriter
from ..reports.read import iter_report, local_report
from ..reports.schema import heads_in, report_schema
from ..tasks.metrics import check_threshold
from ..textsafe import display_path
from ..version import __version__
from .verdict import combine

if TYPE_CHECKING:
    from ..models.scorer import Scorer


_SHOWN_HEADS = 3  # sets of other heads' model ids named in the summary


@dataclass
class ScanSummary:
    report: Path | None
    status: Counter = field(default_factory=Counter)
    labels: Counter = field(default_factory=Counter)
    scored: int = 0
    reused: int = 0
    same_content: int = 0
    duplicates: int = 0
    resumed: int = 0
    other_heads: int = 0  # scored rows of the --incremental report made by other heads: not reused
    other_head_ids: list[str] = field(default_factory=list)  # their model ids (``_load_old``)
    not_images: int = 0
    archives: int = 0  # among not_images: .tar/.zip files left closed (no --archives)
    seconds: float = 0.0
    threshold: float | None = None
    threshold_source: str = "none"
    interrupted: bool = False
    hints: Counter = field(default_factory=Counter)
    # multi-head scans only: each further head (model id, threshold, its source), the
    # (head k >= 2, label) counts, the way the verdict combines labels and the verdict counts
    more_heads: list[tuple[str, float | None, str]] = field(default_factory=list)
    head_labels: Counter = field(default_factory=Counter)
    combine: str | None = None
    verdicts: Counter = field(default_factory=Counter)

    def count(self, row: dict) -> None:
        self.status[row["status"]] += 1
        if row.get("label"):
            self.labels[row["label"]] += 1
        if row.get("provenance_hint"):
            self.hints[row["provenance_hint"]] += 1
        for k in range(2, len(self.more_heads) + 2):
            if row.get(f"label_{k}"):
                self.head_labels[k, row[f"label_{k}"]] += 1
        if row.get("verdict"):
            self.verdicts[row["verdict"]] += 1

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_FILE_ERRORS if self.status.get("error") else EXIT_OK

    def lines(self) -> list[str]:
        rate = self.scored / self.seconds if self.seconds > 0 else 0.0
        if self.threshold is None:
            labels = ("none (the head has no calibrated threshold: run `aiiscan calibrate` or pass "
                      "--threshold)")
        else:
            labels = (", ".join(f"{k} {v}" for k, v in sorted(self.labels.items()))
                      or "none (no file was scored)")
        out = [
            "status: " + (", ".join(f"{k} {v}" for k, v in sorted(self.status.items())) or "no files"),
            "labels: " + labels,
            "threshold: " + ("none (not calibrated)" if self.threshold is None else
                             f"{self.threshold:.6g} ({self.threshold_source})"),
            *self._head_lines(),
            "provenance: " + (", ".join(f"{k} {v}" for k, v in sorted(self.hints.items())) or "no hints")
            + " (file metadata: evidence beside the score, not part of it)",
            f"scored {_n(self.scored, 'file')} in {self.seconds:.1f}s"
            + (f" ({rate:.1f} files/s); " if self.scored else "; ") +
            f"reused {self.reused} unchanged, {self.same_content} moved or copied (same content), "
            f"{_n(self.duplicates, 'duplicate')} of files scored in this scan (column reused); "
            f"{self.resumed} from the interrupted run; "
            f"{_n(self.not_images, 'non-image file')} in folders ignored",
        ]
        if self.other_heads:
            ids = "; ".join(self.other_head_ids[:_SHOWN_HEADS])
            more = "; and more" if len(self.other_head_ids) > _SHOWN_HEADS else ""
            out.append(f"note: {_n(self.other_heads, 'row')} of the --incremental report "
                       f"{'was' if self.other_heads == 1 else 'were'} made by other heads "
                       f"(model_id {ids}{more}): not reused")
        if self.status.get("error"):
            out.append(f"{_n(self.status['error'], 'file')} could not be scored: see the rows with "
                       "status=error, each with its reason")
        if self.archives:
            out.append(f"{_n(self.archives, 'archive')} (.tar, .tar.gz, .zip) found in folders and left "
                       "closed: add --archives to scan their members")
        if self.status.get("skipped"):
            out.append(f"{_n(self.status['skipped'], 'symbolic link')} not followed (status=skipped): "
                       "add --follow-symlinks to scan their targets")
        if self.report:
            out.append(f"report: {self.report}")
        return out

    def _head_lines(self) -> list[str]:
        """Multi-head scans: each further head's labels and threshold, and the verdict."""
        out = []
        for k, (mid, thr, source) in enumerate(self.more_heads, start=2):
            labels = ", ".join(f"{lab} {n}" for (h, lab), n in sorted(self.head_labels.items()) if h == k)
            out.append(f"head {k} ({mid}): labels " + (labels or "none") + "; threshold "
                       + ("none" if thr is None else format(thr, ".6g")) + f" ({source})")
        if self.combine:
            out.append(f"verdict (--combine {self.combine}): "
                       + (", ".join(f"{k} {v}" for k, v in sorted(self.verdicts.items())) or "none"))
        return out


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _label(score: float | None, threshold: float | None) -> str | None:
    if score is None or threshold is None:
        return None
    return "ai" if score >= threshold else "natural"


def _mtime_int(table: pa.Table) -> pa.Table:
    """mtime as int64 (the report's microseconds), to compare with os.stat's clock."""
    return table.set_column(table.schema.get_field_index("mtime"), "mtime",
                            table.column("mtime").cast(pa.int64()))


def _load_old(ledger: Ledger, incremental: str | Path, models: Sequence[str]) -> tuple[int, list[str]]:
    """The --incremental report's reusable rows into the ledger, streamed: scored by this scan's
    heads (the same number of heads, the same model ids in the same order; else none is reused).

    Returns how many of its scored rows other heads made (so a scan that reuses nothing can say
    why) and their model ids, one string per set of heads ("a", or "a + b" for two), at most
    ``_SHOWN_HEADS`` and one more to show that there are more."""
    other = 0
    sets: dict[str, None] = {}  # ordered, first met first

    def reusable() -> Iterator[pa.Table]:
        nonlocal other
        for table in iter_report(incremental):
            theirs = ["model_id", *(f"model_id_{k}" for k in range(2, heads_in(table.column_names) + 1))]
            ok = pc.fill_null(pc.equal(table.column("status"), "ok"), False)
            if len(theirs) == len(models):
                same = ok
                for col, model in zip(theirs, models, strict=True):
                    same = pc.and_(same, pc.equal(table.column(col), model))
                same = pc.fill_null(same, False)
                yield _mtime_int(table.filter(same))
                foreign = table.filter(pc.and_(ok, pc.invert(same))).select(theirs)
            else:  # another number of heads: no row is reused
                foreign = table.filter(ok).select(theirs)
            other += foreign.num_rows
            if foreign.num_rows and len(sets) <= _SHOWN_HEADS:
                for ids in foreign.group_by(theirs, use_threads=False).aggregate([]).to_pylist():
                    sets.setdefault(" + ".join(str(ids[c]) for c in theirs), None)
    ledger.load_old(reusable())
    return other, list(sets)[:_SHOWN_HEADS + 1]


def _still_true(loc: Location, row: dict) -> bool:
    """Whether a row of the interrupted run still describes the file: same size and mtime, as
    ``--incremental`` asks. A row that recorded neither (the file could not be read, or was
    skipped at the crawl) has nothing to compare and stands."""
    return row["size"] is None or row["mtime"] is None or _unchanged(loc, row)


def _unchanged(loc: Location, old: dict) -> bool:
    """Same size and mtime (µs) as ``old``; for an object whose row and listing both have an ETag,
    the same size and ETag (an object rewritten with the same size has a new ETag, and mtimes
    from a listing and a HEAD request may differ in precision). A local file costs one os.stat;
    a URL a HEAD request (or none: the listing's answer is remembered); a member the shard's
    index."""
    try:
        st = inputs.stat(loc)
    except OSError:
        return False
    if st.etag and old.get("etag"):  # the ETag decides: a store's listing and its HEAD may
        return st.etag == old["etag"] and st.size == old["size"]  # give mtimes of unlike precision
    return st.size == old["size"] and st.mtime_us == old["mtime"]


def staging_for(url: str, parts_dir: str | None = None) -> Path:
    """Where a report bound for an object store is assembled: ``PARTS_DIR/<sha of the URL>/NAME``
    (parts beside it, as for a local report). ``parts_dir``: ``--parts-dir``, else
    ``$AIISCAN_PARTS_DIR``, else ``$XDG_CACHE_HOME/aiiscan/parts`` (``~/.cache/aiiscan/parts``).
    The same URL always maps to the same folder, so ``--resume`` finds the parts."""
    base = parts_dir or os.environ.get("AIISCAN_PARTS_DIR")
    if not base:
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        base = os.path.join(cache, "aiiscan", "parts")
    digest = hashlib.sha256(url.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    name = url.rstrip("/").rsplit("/", 1)[-1]
    return Path(base) / digest / name


def _uploader(url: str, fmt: str) -> Callable[[Path], None]:
    """Publish a finished local report to ``url`` (sidecar metadata first for CSV/JSONL), then
    drop the local copies. A failure leaves the parts for --resume."""
    def publish(local: Path) -> None:
        files = [(local, url)]
        if fmt != "parquet":
            files.insert(0, (local.with_name(local.name + ".meta.json"), url + ".meta.json"))
        try:
            for src, dst in files:
                put_file(src, dst)
        except StoreError as exc:
            raise ReportError(f"cannot upload the report to {url}: {exc}. Every row is kept in "
                              f"{local}.parts: rerun the same command with --resume") from None
        for src, _ in files:
            src.unlink(missing_ok=True)
    return publish


def _drop_staging(local: Path) -> None:
    """Remove the folder ``staging_for`` made for this URL once the upload and the parts' removal
    have left it empty: a nightly job must not leave one empty folder per report URL. Only that
    folder: the one above it may be the user's ``--parts-dir``."""
    with contextlib.suppress(OSError):  # not empty (another scan's parts): it stays
        local.parent.rmdir()


def options_from(*, detector: Scorer | None = None, engine: str = "local", ray_address: str | None = None,
                 gpus_per_worker: float | None = None, cpu_workers: int | None = None,
                 scorers: int | None = None, **kwargs) -> tuple[ScanOptions, Engine]:
    """The Python API's flat keywords as ``ScanOptions`` (with its ``RunOptions``) and an engine.

    ``detector`` (a loaded ``Detector`` or ``Scorer``) runs on the local engine; engine options given to an
    engine that does not have them are refused (``engines.make_engine``).
    """
    run_keys = {f.name for f in fields(RunOptions)}
    run = RunOptions(**{k: v for k, v in kwargs.items() if k in run_keys})
    if "weights" in kwargs:
        kwargs["weights"] = as_weights(kwargs["weights"])
    scan_opts = ScanOptions(run=run, **{k: (tuple(v) if k in ("include", "exclude") else v)
                                        for k, v in kwargs.items() if k not in run_keys})
    own = {k: v for k, v in (("ray_address", ray_address), ("gpus_per_worker", gpus_per_worker),
                             ("cpu_workers", cpu_workers), ("scorers", scorers)) if v is not None}
    if detector is not None:
        own["detector"] = detector
    return scan_opts, make_engine(engine, **own)


def run_scan(paths: Sequence[str], output: str | Path, options: ScanOptions | None = None,
             engine: Engine | None = None) -> ScanSummary:
    """Scan files and folders into a report; see ``ScanSummary.exit_code`` for the outcome.

    Mistakes are found before the model loads: a root that does not exist, an output that may
    not be written (``outputs.check_output``; an existing report needs ``overwrite``).
    ``options.weights=None`` uses the default head (``weights.default_head``). The engine
    (``engines``; default: local) decodes and scores; everything else here (the crawl, resume,
    incremental reuse, rows, the report) is the same whatever the engine.
    """
    opts = options or ScanOptions()
    run = opts.run
    engine = engine or make_engine("local")
    started = now_iso()
    t0 = time.perf_counter()
    # URLs and SHARD::MEMBER roots are not looked up here: a missing one comes out of the crawl
    # as an error row (a request per root before the model loads would buy little).
    missing = [p for p in paths if not inputs.exists(inputs.parse(p))]
    if missing:
        raise UsageError("no such file or folder: " + ", ".join(display_path(p) for p in missing[:5])
                         + (f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""))
    try:
        fmt = format_for(output, opts.fmt)
    except ReportError:
        if inputs.parse(str(output)).source == "local" and os.path.isdir(output):  # the real mistake
            raise OutputError(f"report {str(output)!r} is a folder: name a file in it, "
                              f"e.g. {output}/report.parquet") from None
        raise
    side = (".parts",) if fmt == "parquet" else (".parts", ".meta.json")
    check_output(output, overwrite=opts.overwrite, companions=side, what="report")
    remote = inputs.is_remote(str(output))
    # A report bound for an object store is assembled in a local folder and uploaded whole.
    local_out = staging_for(str(output), opts.parts_dir) if remote else output
    if remote:
        check_output(local_out, overwrite=True, companions=side, what="report's local copy")
    check_threshold(opts.threshold)
    ReportWriter.check(local_out, opts.resume)
    model = engine.open(as_weights(opts.weights), run)
    card, mid, crop = model.card, model.model_id, model.image_size
    heads = model.heads
    multi = len(heads) > 1
    mids = [h.model_id for h in heads]
    schema = report_schema(len(heads))
    threshold, keep_gps, prompts = opts.threshold, opts.keep_gps, opts.prompts
    if threshold is not None:
        thr, thr_source = float(threshold), "--threshold"
    elif card.threshold_value is not None:
        thr = card.threshold_value
        thr_source = f"model card ({card.threshold_policy})"
    else:
        thr, thr_source = None, "none"
    summary = ScanSummary(report=None, threshold=thr, threshold_source=thr_source)
    summary.load_seconds = time.perf_counter() - t0
    thrs = [thr, *(h.card.threshold_value for h in heads[1:])]  # --threshold is head 1's only
    if multi:
        combine([], opts.combine)  # an unknown way to combine: refused before any part exists
        summary.combine = opts.combine
        summary.more_heads = [
            (h.model_id, t, "none" if t is None else f"model card ({h.card.threshold_policy})")
            for h, t in zip(heads[1:], thrs[1:], strict=True)]
    # An old report in a store is fetched into a temporary folder, which goes once the ledger
    # holds its rows (or the scan ends otherwise).
    fetched = contextlib.ExitStack()
    try:
        old = fetched.enter_context(local_report(opts.incremental)) if opts.incremental else None
        if old is not None:
            next(iter_report(old, batch_rows=1))  # unreadable: say so before any part exists
        writer = ReportWriter(local_out, opts.fmt, resume=opts.resume, rows_per_part=opts.part_rows,
                              schema=schema)
    except BaseException:
        fetched.close()
        raise
    try:
        ledger = Ledger(writer.parts / "index.sqlite", schema)
    except AiiscanError:
        writer.close()
        fetched.close()
        raise
    restore = signals.install()  # SIGTERM (docker stop) and Ctrl-C both stop here, resumably
    bar = progress_bars.bar(unit="file", show=run.progress)  # no total: the crawl streams
    try:
        if old is not None:
            summary.other_heads, summary.other_head_ids = _load_old(ledger, old, mids)
            fetched.close()
        if opts.resume:
            for part, first, table in writer.done_batches():
                ledger.load_done(part, _mtime_int(table), first)

        def emit(row: dict) -> None:
            summary.count(row)
            writer.write(row)
            if row["status"] == "ok" and row["sha256"] and row["score"] is not None:
                ledger.add_scored(row["sha256"], row["path"], tuple(row[c] for c in ledger.scores))
            bar.update(1)

        ids = {f"model_id_{k}": m for k, m in enumerate(mids[1:], start=2)}

        def base_row(loc: Location, status: str, error: str | None) -> dict:
            return dict.fromkeys(schema.names, None) | {
                "path": loc.display(), "status": status, "error": error, "model_id": mid} | ids

        def judged(scores: Sequence[float | None]) -> dict:
            """Every head's score, threshold and label, and (several heads) the verdict."""
            out = {"score": scores[0], "threshold": thr, "label": _label(scores[0], thr)}
            for k, (s, t) in enumerate(zip(scores[1:], thrs[1:], strict=True), start=2):
                out |= {f"score_{k}": s, f"threshold_{k}": t, f"label_{k}": _label(s, t)}
            if multi:
                labels = [out["label"], *(out[f"label_{k}"] for k in range(2, len(heads) + 1))]
                out["verdict"] = combine(labels, opts.combine)
            return out

        lost: list[ListingLost] = []

        def jobs() -> Iterator[DecodeJob]:
            try:
                yield from crawl()
            except ListingLost as exc:  # the rows in flight still finish and are kept
                lost.append(exc)

        def crawl() -> Iterator[DecodeJob]:
            for entry in iter_inputs(paths, opts.from_list, opts.include, opts.exclude, opts.follow_symlinks,
                                     seen=ledger.add_new, archives=opts.archives):
                loc = entry.location
                shown = loc.display()
                if opts.resume:
                    row = ledger.done_row(shown)
                    if row is not None and _still_true(loc, row):
                        ledger.keep(shown)
                        summary.resumed += 1
                        summary.count(row)  # the summary and exit code describe the whole report
                        continue
                    # else new, or changed since the interruption: (re)scanned, the new row wins
                if entry.skip:
                    emit(base_row(loc, "error" if entry.explicit else "skipped", entry.skip))
                    continue
                prior = ledger.old_row(shown) if opts.incremental else None
                if prior and _unchanged(loc, prior):
                    emit(prior | judged([prior[c] for c in ledger.scores]) | {
                                  "gps": prior["gps"] if keep_gps else None,
                                  "gen_prompt": prior["gen_prompt"] if prompts else None,
                                  "reused": "unchanged", "reused_from": shown})
                    summary.reused += 1
                    continue
                yield DecodeJob(loc, crop, max_pixels=opts.max_pixels, max_bytes=opts.max_bytes,
                                explicit=entry.explicit, fast_decode=not run.exact_decode, provenance=True,
                                keep_gps=keep_gps, prompts=prompts)

        def known(sha: str | None, loc: Location) -> tuple[str, str, tuple[float, ...]] | None:
            """Scores this scan already has for this content: (how, from which path, one per head).
            A file touched since the old report but with its content unchanged is ``unchanged``."""
            if not sha:
                return None
            hit = ledger.scored(sha)
            if hit is not None:
                return "duplicate", hit[0], hit[1]
            shown = loc.display()
            hit = ledger.old_content(sha, shown) if opts.incremental else None
            if hit is None:
                return None
            return ("unchanged" if hit[0] == shown else "same_content"), hit[0], hit[1]

        def skip(res: DecodeResult) -> bool:
            return known(res.info.get("sha256"), res.location) is not None

        def scored(res: DecodeResult, scores: np.ndarray | None) -> dict:
            row = base_row(res.location, "ok", None) | _info(res)
            hit = known(row["sha256"], res.location)
            if hit is not None:  # the decision is made here, so every engine writes the same rows
                row |= {"reused": hit[0], "reused_from": hit[1]}
                s = list(hit[2])
                if hit[0] == "duplicate":
                    summary.duplicates += 1
                elif hit[0] == "unchanged":
                    summary.reused += 1
                else:
                    summary.same_content += 1
            else:
                s = [float(x) for x in scores[0]]  # the original's score, one per head
                summary.scored += 1
            row |= judged(s)
            bad = [k for k, x in enumerate(s, start=1) if x != x or x in (float("inf"), float("-inf"))]
            if bad:
                which = f" (head {', '.join(map(str, bad))})" if multi else ""
                row |= {"status": "error", "score": None, "label": None, "error": "non-finite score" + which}
                if multi:
                    row |= {f"{c}_{k}": None for k in range(2, len(heads) + 1) for c in ("score", "label")}
                    row["verdict"] = None
            return row

        stream = model.score_stream(jobs(), run.batch_size, run.workers, run.timeout, skip=skip)
        for res, scores in stream:
            if res.status == "skipped":
                summary.not_images += 1
                summary.archives += is_container(res.location)
                bar.update(1)
            elif res.status != "ok":
                emit(base_row(res.location, "error", res.error) | _info(res))
            else:
                emit(scored(res, scores))
        if lost:
            raise ListingLost(f"{lost[0]}. The rows written so far are kept in {writer.parts}; no report "
                              "was written: rerun the same command with --resume")
        summary.seconds = time.perf_counter() - t0
        metadata = _metadata(summary, opts, engine, model, paths, started)
        # On resume, rows of the interrupted run stand only where the file was found unchanged:
        # the report is the one a clean scan would write now.
        summary.report = writer.finish(metadata, ledger.kept_rows if opts.resume else None,
                                       publish=_uploader(str(output), fmt) if remote else None)
        if remote:
            summary.report = output  # type: ignore[assignment]  # the URL
            _drop_staging(local_out)
    except BaseException as exc:
        writer.close()
        if isinstance(exc, sqlite3.Error):
            raise ledger_failure(ledger.path, exc) from None
        if not (isinstance(exc, KeyboardInterrupt) or signals.received()):
            raise
        summary.interrupted = True  # also when a library failed on the way out of the interrupt
        summary.seconds = time.perf_counter() - t0
        return summary
    finally:
        fetched.close()
        ledger.close()
        restore()
        bar.close()
    return summary


def _metadata(summary: ScanSummary, opts: ScanOptions, engine: Engine, model: ScorerLike,
              paths: Sequence[str], started: str) -> dict:
    card, run = model.card, opts.run
    heads = model.heads
    more = {} if len(heads) == 1 else {
        "heads": [{"model_id": h.model_id, "kind": h.card.kind, "model_card_sha256": h.card.digest(),
                   "backbone": h.card.backbone.to_dict(), "threshold_block": _block(h.card.threshold)}
                  for h in heads],
        "head_thresholds": [summary.threshold, *(t for _, t, _ in summary.more_heads)],
        "combine": summary.combine,
        "backbone_passes": model.passes,
    }
    return {
        "aiiscan_version": __version__,
        "model_id": model.model_id,
        "model_card_sha256": card.digest(),
        "backbone": card.backbone.to_dict(),
        "threshold": summary.threshold,
        "threshold_source": summary.threshold_source,
        "threshold_block": _block(card.threshold),
        "command": opts.command,
        "roots": [display_path(p) for p in paths],
        "from_list": opts.from_list,
        "started": started,
        "finished": now_iso(),
        "counts": dict(summary.status),
        "labels": dict(summary.labels),
        "provenance_hints": dict(summary.hints),
        "keep_gps": opts.keep_gps,
        "decode": "exact" if run.exact_decode else "fast (JPEG DCT scaling)",
        "precision": model.precision,
        "engine": engine.name,
        "engine_options": engine.describe(),
        "torch_threads": run.threads,
        "prompts": opts.prompts,
        "resumed_rows": summary.resumed,
        "reused_rows": summary.reused,
        "incremental_other_heads_rows": summary.other_heads,
        "same_content_rows": summary.same_content,
        "duplicate_rows": summary.duplicates,
        "options": opts.to_dict(),  # everything the scan was asked to do, as given
        **more,
    }


def _block(threshold) -> dict | None:
    return None if threshold is None else threshold.to_dict()


def _info(res: DecodeResult) -> dict:
    info = res.info
    return {
        "size": info.get("size"),
        "mtime": info.get("mtime_us"),
        "etag": info.get("etag"),
        "sha256": info.get("sha256"),
        "format": info.get("format"),
        "width": info.get("width"),
        "height": info.get("height"),
        "mode": info.get("mode"),
        **info.get("provenance", {}),
    }


def scan(paths: Sequence[str], output: str | Path, **kwargs) -> Path | None:
    """Python API: scan and return the report path (None if interrupted). Keywords are the
    fields of ``ScanOptions`` and ``RunOptions``, ``detector=`` (a loaded ``Detector``, or a
    ``models.scorer.Scorer`` of several heads), ``weights=[A, B]`` (a multi-head scan;
    ``combine=`` "any" or "all"), ``engine=`` ("local" or "ray") and the engine's own options."""
    return run_scan(paths, output, *options_from(**kwargs)).report
