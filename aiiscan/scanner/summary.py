"""What a scan did: the counts its summary prints and the metadata its report keeps."""

from __future__ import annotations

import os
import socket
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..card import ThresholdBlock
from ..decode.evidence import Evidence
from ..engines import Engine
from ..errors import EXIT_FILE_ERRORS, EXIT_INTERRUPTED, EXIT_NOTHING, EXIT_OK
from ..files import now_iso
from ..inputs import parse
from ..models import ScorerLike
from ..options import ScanOptions
from ..textsafe import display_path
from ..version import __version__
from .rows import Rows

SHOWN_HEADS = 3  # sets of other heads' model ids named in the summary
MIN_RATE_SECONDS = 1.0  # below this after the first decoded file, a rate says nothing


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
    incremental_refused: str | None = None  # why the --incremental report gave nothing (``identity``)
    unsound: int = 0  # rows of the --incremental report by these heads that do not hold up: rescored
    other_stability: str | None = None  # the --incremental report's --stability spec, when not this scan's
    not_images: int = 0
    archives: int = 0  # among not_images: .tar/.zip files left closed (no --archives)
    seconds: float = 0.0
    threshold: float | None = None
    threshold_source: str = "none"
    interrupted: bool = False
    hints: Counter = field(default_factory=Counter)
    # multi-head scans only: each further head (model id, threshold, its source), the
    # (head k >= 2, label) counts and the way labels combine; every scan: verdicts and their reasons
    more_heads: list[tuple[str, float | None, str]] = field(default_factory=list)
    head_labels: Counter = field(default_factory=Counter)
    combine: str | None = None
    verdicts: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    stability: str | None = None
    unstable: int = 0  # rows whose label flips under a --stability condition
    evidence_only: bool = False  # no head: no score, the evidence columns only
    evidence: Counter = field(default_factory=Counter)  # rows with each kind of evidence found
    # the roots as the user named them (a list file as "--from-list FILE"), the image files found
    # under each (rows with status ok or error, by root index), and whether none at all is fine
    roots: list[str] = field(default_factory=list)
    found: Counter = field(default_factory=Counter)
    allow_empty: bool = False
    # the clock (time.perf_counter) at the start and when the first decoded file came back: the
    # rate leaves out the start-up (model load, worker start) before it
    begun: float = 0.0
    first_file: float | None = None
    reuse_asked: bool = False  # --incremental or --resume: the reuse line shows even when nothing was

    @classmethod
    def of(cls, rows: Rows, model: ScorerLike) -> ScanSummary:
        """A scan's summary before its first row: its heads' thresholds and how they combine."""
        if not rows.thresholds:  # no head: evidence only
            return cls(report=None, evidence_only=True)
        first = rows.thresholds[0]
        return cls(report=None, threshold=first.value, threshold_source=first.source,
                   combine=rows.combine if rows.heads > 1 else None,
                   stability=",".join(str(c) for c in rows.conditions) or None,
                   more_heads=[(h.model_id, t.value, t.source)
                               for h, t in zip(model.heads[1:], rows.thresholds[1:], strict=True)])

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
            reasons = row["verdict_reasons"].split(";") if row.get("verdict_reasons") else ()
            self.reasons.update(reasons)
            self.unstable += any(r.startswith("unstable") for r in reasons)
        for kind in evidence_kinds(row):
            self.evidence[kind] += 1

    def found_in(self, root: int, row: dict) -> None:
        """Count ``row`` as an image file found under root ``root``: a row that was read (ok) or
        that failed (a named file that is not an image is an error row, and was found)."""
        if row.get("status") in ("ok", "error"):
            self.found[root] += 1

    @property
    def empty_roots(self) -> list[str]:
        """The roots under which the scan found no image file."""
        return [r for i, r in enumerate(self.roots) if not self.found[i]]

    @property
    def nothing_found(self) -> bool:
        return not sum(self.found.values())

    def nothing_message(self) -> str:
        """Why an empty scan fails, in one line (as pytest's "no tests ran")."""
        more = f" and {len(self.roots) - 3} more" if len(self.roots) > 3 else ""
        held = " and ".join(self.roots[:3]) + more
        return (f"nothing to scan: {held or 'the scan'} held no image file (pass --allow-empty if an empty "
                "scan is fine)")

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.nothing_found and not self.allow_empty:
            return EXIT_NOTHING
        return EXIT_FILE_ERRORS if self.status.get("error") else EXIT_OK

    @property
    def startup(self) -> float | None:
        """Seconds before the first decoded file came back (model load, worker start)."""
        return None if self.first_file is None else self.first_file - self.begun

    def pairs(self) -> list[tuple[str, str]]:
        """The summary's facts, (label, value), in the order printed; ``lines`` aligns them."""
        if self.evidence_only:
            labels = "none (no head: no pixel detector ran; the report holds evidence only)"
        elif self.threshold is None:
            labels = ("none (the head has no calibrated threshold: run `aiiscan calibrate` or pass "
                      "--threshold)")
        else:
            labels = (", ".join(f"{k} {v}" for k, v in sorted(self.labels.items()))
                      or "none (no file was scored)")
        out = [
            ("status", ", ".join(f"{k} {v}" for k, v in sorted(self.status.items())) or "no files"),
            ("labels", labels),
            *([] if self.evidence_only else [
                ("threshold", "none (not calibrated)" if self.threshold is None else
                 f"{self.threshold:.6g} ({self.threshold_source})")]),
            *self._head_pairs(),
            self._verdict_pair(),
            *([("stability", f"{self.stability}: {_n(self.unstable, 'file')} whose label flips under it "
                             "(verdict uncertain, reason unstable:...)")] if self.stability else []),
            ("provenance", (", ".join(f"{k} {v}" for k, v in sorted(self.hints.items())) or "no hints")
             + " (file metadata: evidence beside the score, not part of it)"),
            ("evidence", ", ".join(f"{k} {v}" for k, v in sorted(self.evidence.items()))
             or "none found (its absence means nothing: metadata is easily stripped)"),
            ("read" if self.evidence_only else "scored", self._timing()),
        ]
        reused = [(self.reused, f"{self.reused} unchanged"),
                  (self.same_content, f"{self.same_content} moved or copied (same content)"),
                  (self.duplicates, f"{_n(self.duplicates, 'duplicate')} of files scored in this scan"),
                  (self.resumed, f"{self.resumed} from the interrupted run")]
        if self.reuse_asked or any(n for n, _ in reused):
            out.append(("reused", ", ".join(text for _, text in reused) + " (column reused)"))
        if self.not_images:
            out.append(("ignored", f"{_n(self.not_images, 'non-image file')} in folders"))
        if self.roots and self.empty_roots:
            out.append(("empty roots", "; ".join(self.empty_roots) + " (no image file found there)"))
        if self.report:
            out.append(("report", str(self.report)))
        return out

    def _timing(self) -> str:
        """How many files in how long; the rate from the first decoded file on, so that a model
        load does not count as scanning time."""
        text = f"{_n(self.scored, 'file')} in {self.seconds:.1f}s"
        startup = self.startup
        if self.scored and startup is not None and self.seconds - startup < MIN_RATE_SECONDS:
            text += " (too short after start-up to give a rate)"  # a batch's files come back at once
        elif self.scored and startup is not None:
            rate = self.scored / (self.seconds - startup)
            text += (f"; {rate:.1f} files/s from the first decoded file (start-up before it, model load "
                     f"included: {startup:.1f}s)")
        return text

    def lines(self) -> list[str]:
        """The summary as printed: aligned ``label: value`` lines, then notes."""
        pairs = self.pairs()
        width = max(len(label) for label, _ in pairs) + 2
        out = [f"{label + ':':<{width}}{value}" for label, value in pairs]
        if self.other_heads:
            ids = "; ".join(self.other_head_ids[:SHOWN_HEADS])
            more = "; and more" if len(self.other_head_ids) > SHOWN_HEADS else ""
            out.append(f"note: {_n(self.other_heads, 'row')} of the --incremental report "
                       f"{'was' if self.other_heads == 1 else 'were'} made by other heads "
                       f"(model_id {ids}{more}): not reused")
        if self.other_stability:
            out.append(f"note: the --incremental report was made under --stability {self.other_stability}, "
                       f"this scan under {self.stability or 'none'}: no row was reused, every file was "
                       "scored again")
        if self.incremental_refused:
            out.append(f"note: nothing of the --incremental report was reused: {self.incremental_refused}")
        if self.unsound:
            out.append(f"note: {_n(self.unsound, 'row')} of the --incremental report did not hold up (a "
                       "score not finite or missing, or a label its score and threshold do not give): "
                       "not reused, scored again if found")
        if self.status.get("error"):
            out.append(f"{_n(self.status['error'], 'file')} could not be scored: see the rows with "
                       "status=error, each with its reason")
        if self.archives:
            out.append(f"{_n(self.archives, 'archive')} (.tar, .tar.gz, .zip) found in folders and left "
                       "closed: add --archives to scan their members")
        if self.status.get("skipped"):
            out.append(f"{_n(self.status['skipped'], 'symbolic link')} not followed (status=skipped): "
                       "add --follow-symlinks to scan their targets")
        return out

    def _head_pairs(self) -> list[tuple[str, str]]:
        """Multi-head scans: each further head's labels and threshold, and the verdict."""
        out = []
        for k, (mid, thr, source) in enumerate(self.more_heads, start=2):
            labels = ", ".join(f"{lab} {n}" for (h, lab), n in sorted(self.head_labels.items()) if h == k)
            out.append((f"head {k}", f"{mid}: labels " + (labels or "none") + "; threshold "
                        + ("none" if thr is None else format(thr, ".6g")) + f" ({source})"))
        return out

    def _verdict_pair(self) -> tuple[str, str]:
        """Verdicts by kind (``--combine`` named for several heads), and the uncertain rows' count."""
        how = f" (--combine {self.combine})" if self.combine else ""
        counts = ", ".join(f"{k} {self.verdicts[k]}" for k in ("ai", "natural", "uncertain")
                           if self.verdicts[k])
        undecided = sum(self.status.values()) - sum(self.verdicts.values())
        return (f"verdict{how}", (counts or "none") + f"; {undecided} without one"
                + ("; uncertain rows name why in verdict_reasons" if self.verdicts["uncertain"] else ""))


def evidence_kinds(row: dict) -> list[str]:
    """The kinds of evidence a row carries, as the summary and the HTML page count them."""
    kinds = []
    if row.get("c2pa_trust") not in (None, "none"):
        kinds.append(f"c2pa {row['c2pa_trust']}")
    if row.get("generator_kind"):
        kinds.append(f"generator metadata ({row['generator_kind']})")
    if row.get("watermark"):
        kinds.append(f"watermark {row['watermark']}")
    return kinds


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def metadata(summary: ScanSummary, opts: ScanOptions, engine: Engine, model: ScorerLike,
             paths: Sequence[str], started: str, evidence: Evidence, identity: dict) -> dict:
    """The report's metadata: what made it (heads, engine, options as given; ``identity``, what
    a later ``--incremental`` compares) and what it holds."""
    card, run = model.card, opts.run
    heads = model.heads
    more = {} if len(heads) <= 1 else {
        "heads": [{"model_id": h.model_id, "kind": h.card.kind, "model_card_sha256": h.card.digest(),
                   "backbone": h.card.backbone.to_dict(), "threshold_block": _block(h.card.threshold)}
                  for h in heads],
        "head_thresholds": [summary.threshold, *(t for _, t, _ in summary.more_heads)],
        "combine": summary.combine,
        "backbone_passes": model.passes,
    }
    if summary.stability:
        more["backbone_passes_per_file"] = model.passes * (1 + len(summary.stability.split(",")))
    return {
        "aiiscan_version": __version__,
        "model_id": model.model_id,
        "model_card_sha256": card and card.digest(),
        "backbone": card and card.backbone.to_dict(),
        "threshold": summary.threshold,
        "threshold_source": summary.threshold_source,
        "threshold_block": card and _block(card.threshold),
        "command": opts.command,
        "roots": [display_path(absolute(p)) for p in paths],  # where the scan looked, wherever it ran
        "cwd": _cwd(),  # relative row paths are relative to it
        "host": socket.gethostname(),
        "from_list": opts.from_list,
        "started": started,
        "finished": now_iso(),
        "counts": dict(summary.status),
        "labels": dict(summary.labels),
        "provenance_hints": dict(summary.hints),
        "verdicts": dict(summary.verdicts),
        "verdict_reasons": dict(summary.reasons),
        # --incremental compares it: scores made under another spec are made again
        "stability": summary.stability,
        "keep_gps": opts.keep_gps,
        # --stability's conditions act on the full-resolution picture: its scans decode exactly
        "decode": "exact" if run.exact_decode or summary.stability else "fast (JPEG DCT scaling)",
        "precision": getattr(model, "runs_as", model.precision),  # what ran: "bf16 (openvino)"
        "engine": engine.name,
        "engine_options": engine.describe(),
        "torch_threads": run.threads,
        "prompts": opts.prompts,
        "resumed_rows": summary.resumed,
        "reused_rows": summary.reused,
        "incremental_other_heads_rows": summary.other_heads,
        "incremental_unsound_rows": summary.unsound,
        "incremental_refused": summary.incremental_refused,
        "same_content_rows": summary.same_content,
        "duplicate_rows": summary.duplicates,
        "options": opts.to_dict(),  # everything the scan was asked to do, as given
        "evidence": evidence.metadata(),  # what made the evidence columns (--incremental compares it)
        "run_identity": identity,  # scanner.identity
        **more,
    }


def absolute(root: str) -> str:
    """A local root as an absolute path (a report read from another folder still says where the
    scan looked); an object URL or an archive member as given."""
    return os.path.abspath(root) if parse(root).source == "local" else root


def _cwd() -> str | None:
    try:
        return display_path(os.getcwd())
    except OSError:  # the folder was removed while the scan ran
        return None


def _block(threshold: ThresholdBlock | None) -> dict | None:
    return None if threshold is None else threshold.to_dict()
