"""A scan, end to end: sources -> decode workers -> batcher -> scorer -> report writer.

One direction, no back and forth. Files that fail anywhere become rows with
``status=error`` and a reason; an interrupted scan leaves whole report parts behind and
``resume=True`` continues it; ``incremental=OLD_REPORT`` reuses rows of unchanged files.
"""

from __future__ import annotations

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

from . import __version__, signals
from . import progress as progress_bars
from .decode import DecodeJob, DecodeResult
from .engines import Engine, Scorer, make_engine
from .errors import EXIT_FILE_ERRORS, EXIT_INTERRUPTED, EXIT_OK, AiiscanError, UsageError
from .files import now_iso
from .ledger import Ledger
from .ledger import failure as ledger_failure
from .metrics import check_threshold
from .options import RunOptions, ScanOptions
from .outputs import check_output
from .report import COLUMNS, SCHEMA, ReportError, ReportWriter, format_for, iter_report
from .sources import ListingLost, iter_inputs
from .stores import StoreError, is_indirect, is_url, put_file, stat_entry
from .textsafe import display_path

if TYPE_CHECKING:
    from .detector import Detector


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
    not_images: int = 0
    seconds: float = 0.0
    threshold: float | None = None
    threshold_source: str = "none"
    interrupted: bool = False
    hints: Counter = field(default_factory=Counter)

    def count(self, row: dict) -> None:
        self.status[row["status"]] += 1
        if row.get("label"):
            self.labels[row["label"]] += 1
        if row.get("provenance_hint"):
            self.hints[row["provenance_hint"]] += 1

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
            f"threshold: {'none' if self.threshold is None else format(self.threshold, '.6g')} "
            f"({self.threshold_source})",
            "provenance: " + (", ".join(f"{k} {v}" for k, v in sorted(self.hints.items())) or "no hints")
            + " (file metadata: evidence beside the score, not part of it)",
            f"scored {_n(self.scored, 'file')} in {self.seconds:.1f}s ({rate:.1f} files/s); "
            f"reused {self.reused} unchanged, {self.same_content} moved or copied (same content), "
            f"{_n(self.duplicates, 'duplicate')} of files scored in this scan (column reused); "
            f"{self.resumed} from the interrupted run; "
            f"{_n(self.not_images, 'non-image file')} in folders ignored",
        ]
        if self.status.get("error"):
            out.append(f"{_n(self.status['error'], 'file')} could not be scored: see the rows with "
                       "status=error, each with its reason")
        if self.status.get("skipped"):
            out.append(f"{_n(self.status['skipped'], 'symbolic link')} not followed (status=skipped): "
                       "add --follow-symlinks to scan their targets")
        if self.report:
            out.append(f"report: {self.report}")
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


def _load_old(ledger: Ledger, incremental: str | Path, model: str) -> int:
    """The --incremental report's reusable rows (scored by this model) into the ledger, streamed."""
    def reusable() -> Iterator[pa.Table]:
        for table in iter_report(incremental):
            keep = pc.and_(pc.equal(table.column("status"), "ok"), pc.equal(table.column("model_id"), model))
            yield _mtime_int(table.filter(pc.fill_null(keep, False)))
    return ledger.load_old(reusable())


def _still_true(path: str, row: dict) -> bool:
    """Whether a row of the interrupted run still describes the file: same size and mtime, as
    ``--incremental`` asks. A row that recorded neither (the file could not be read, or was
    skipped at the crawl) has nothing to compare and stands."""
    return row["size"] is None or row["mtime"] is None or _unchanged(path, row)


def _unchanged(path: str, old: dict) -> bool:
    """Same size and mtime (µs) as ``old``; for an object whose row and listing both have an ETag,
    the same size and ETag (an object rewritten with the same size has a new ETag, and mtimes
    from a listing and a HEAD request may differ in precision). A local
    file costs one os.stat; a URL a HEAD request (or none: the listing's answer is remembered);
    a member the shard's index."""
    if ("::" in path or "://" in path) and is_indirect(path):  # the cheap test first
        try:
            st = stat_entry(path)
        except OSError:
            return False
        if st.etag and old.get("etag"):  # the ETag decides: a store's listing and its HEAD may
            return st.etag == old["etag"] and st.size == old["size"]  # give mtimes of unlike precision
        return st.size == old["size"] and st.mtime_us == old["mtime"]
    try:
        lst = os.stat(path)
    except OSError:
        return False
    return lst.st_size == old["size"] and lst.st_mtime_ns // 1000 == old["mtime"]  # report: µs


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


def options_from(*, detector: Detector | None = None, engine: str = "local", ray_address: str | None = None,
                 gpus_per_worker: float | None = None, cpu_workers: int | None = None,
                 scorers: int | None = None, **kwargs) -> tuple[ScanOptions, Engine]:
    """The Python API's flat keywords as ``ScanOptions`` (with its ``RunOptions``) and an engine.

    ``detector`` (a loaded ``Detector``) runs on the local engine; engine options given to an
    engine that does not have them are refused (``engines.make_engine``).
    """
    run_keys = {f.name for f in fields(RunOptions)}
    run = RunOptions(**{k: v for k, v in kwargs.items() if k in run_keys})
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
    missing = [p for p in paths if not os.path.lexists(p) and not is_indirect(p)]
    if missing:
        raise UsageError("no such file or folder: " + ", ".join(display_path(p) for p in missing[:5])
                         + (f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""))
    fmt = format_for(output, opts.fmt)
    side = (".parts",) if fmt == "parquet" else (".parts", ".meta.json")
    check_output(output, overwrite=opts.overwrite, companions=side, what="report")
    remote = is_url(str(output))
    # A report bound for an object store is assembled in a local folder and uploaded whole.
    local_out = staging_for(str(output), opts.parts_dir) if remote else output
    if remote:
        check_output(local_out, overwrite=True, companions=side, what="report's local copy")
    check_threshold(opts.threshold)
    ReportWriter.check(local_out, opts.resume)
    model = engine.open(opts.weights, run)
    card, mid, crop = model.card, model.model_id, model.image_size
    threshold, keep_gps, prompts = opts.threshold, opts.keep_gps, opts.prompts
    if threshold is not None:
        thr, thr_source = float(threshold), "--threshold"
    elif card.threshold_value is not None:
        thr = card.threshold_value
        thr_source = f"model card ({card.threshold_policy})"
    else:
        thr, thr_source = None, "none"
    summary = ScanSummary(report=None, threshold=thr, threshold_source=thr_source)
    if opts.incremental:
        next(iter_report(opts.incremental, batch_rows=1))  # unreadable: say so before any part exists
    writer = ReportWriter(local_out, opts.fmt, resume=opts.resume, rows_per_part=opts.part_rows)
    try:
        ledger = Ledger(writer.parts / "index.sqlite", SCHEMA)
    except AiiscanError:
        writer.close()
        raise
    restore = signals.install()  # SIGTERM (docker stop) and Ctrl-C both stop here, resumably
    bar = progress_bars.bar(unit="file", show=run.progress)  # no total: the crawl streams
    try:
        if opts.incremental:
            _load_old(ledger, opts.incremental, mid)
        if opts.resume:
            for part, first, table in writer.done_batches():
                ledger.load_done(part, _mtime_int(table), first)

        def emit(row: dict) -> None:
            summary.count(row)
            writer.write(row)
            if row["status"] == "ok" and row["sha256"] and row["score"] is not None:
                ledger.add_scored(row["sha256"], row["path"], row["score"])
            bar.update(1)

        def base_row(path: str, status: str, error: str | None) -> dict:
            return dict.fromkeys(COLUMNS, None) | {
                "path": display_path(path), "status": status, "error": error, "model_id": mid}

        lost: list[ListingLost] = []

        def jobs() -> Iterator[DecodeJob]:
            try:
                yield from crawl()
            except ListingLost as exc:  # the rows in flight still finish and are kept
                lost.append(exc)

        def crawl() -> Iterator[DecodeJob]:
            for entry in iter_inputs(paths, opts.from_list, opts.include, opts.exclude, opts.follow_symlinks,
                                     seen=ledger.add_new, archives=opts.archives):
                shown = display_path(entry.path)
                if opts.resume:
                    row = ledger.done_row(shown)
                    if row is not None and _still_true(entry.path, row):
                        ledger.keep(shown)
                        summary.resumed += 1
                        summary.count(row)  # the summary and exit code describe the whole report
                        continue
                    # else new, or changed since the interruption: (re)scanned, the new row wins
                if entry.skip:
                    emit(base_row(entry.path, "error" if entry.explicit else "skipped", entry.skip))
                    continue
                prior = ledger.old_row(shown) if opts.incremental else None
                if prior and _unchanged(entry.path, prior):
                    emit(prior | {"threshold": thr, "label": _label(prior["score"], thr),
                                  "gps": prior["gps"] if keep_gps else None,
                                  "gen_prompt": prior["gen_prompt"] if prompts else None,
                                  "reused": "unchanged", "reused_from": shown})
                    summary.reused += 1
                    continue
                yield DecodeJob(entry.path, crop, max_pixels=opts.max_pixels, max_bytes=opts.max_bytes,
                                explicit=entry.explicit, fast_decode=not run.exact_decode, provenance=True,
                                keep_gps=keep_gps, prompts=prompts)

        def known(sha: str | None) -> tuple[str, str, float] | None:
            """A score this scan already has for this content: (how, from which path, score)."""
            if not sha:
                return None
            hit = ledger.scored(sha)
            if hit is not None:
                return "duplicate", hit[0], hit[1]
            hit = ledger.old_content(sha) if opts.incremental else None
            return None if hit is None else ("same_content", hit[0], hit[1])

        def reuse(res: DecodeResult) -> np.ndarray | None:
            hit = known(res.info.get("sha256"))
            return None if hit is None else np.array([hit[2]])

        def scored(res: DecodeResult, s: float) -> dict:
            row = base_row(res.path, "ok", None) | _info(res)
            hit = known(row["sha256"])
            if hit is not None:  # the decision is made here, so every engine writes the same rows
                row |= {"reused": hit[0], "reused_from": hit[1]}
                s = hit[2]
                if hit[0] == "duplicate":
                    summary.duplicates += 1
                else:
                    summary.same_content += 1
            else:
                summary.scored += 1
            row |= {"score": s, "threshold": thr, "label": _label(s, thr)}
            if s != s or s in (float("inf"), float("-inf")):
                row |= {"status": "error", "error": "non-finite score", "score": None, "label": None}
            return row

        for res, scores in model.score_stream(jobs(), run.batch_size, run.workers, run.timeout, reuse=reuse):
            if res.status == "skipped":
                summary.not_images += 1
                bar.update(1)
            elif scores is None:
                emit(base_row(res.path, "error", res.error) | _info(res))
            else:
                emit(scored(res, float(scores[0])))
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
        ledger.close()
        restore()
        bar.close()
    return summary


def _metadata(summary: ScanSummary, opts: ScanOptions, engine: Engine, model: Scorer, paths: Sequence[str],
              started: str) -> dict:
    card, run = model.card, opts.run
    return {
        "aiiscan_version": __version__,
        "model_id": model.model_id,
        "model_card_sha256": card.digest(),
        "backbone": card.backbone,
        "threshold": summary.threshold,
        "threshold_source": summary.threshold_source,
        "threshold_block": card.threshold,
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
        "same_content_rows": summary.same_content,
        "duplicate_rows": summary.duplicates,
        "options": opts.to_dict(),  # everything the scan was asked to do, as given
    }


def _info(res: DecodeResult) -> dict:
    info = res.info
    return {
        "size": info.get("size"),
        "mtime": None if info.get("mtime_ns") is None else info["mtime_ns"] // 1000,  # µs
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
    fields of ``ScanOptions`` and ``RunOptions``, ``detector=`` (a loaded ``Detector``),
    ``engine=`` ("local" or "ray") and the engine's own options."""
    return run_scan(paths, output, *options_from(**kwargs)).report
