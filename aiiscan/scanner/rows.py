"""Rows: how one input becomes one row of the report, whatever happened to it.

The heads' columns (``score``, ``label``, ``threshold``, ``model_id``, then ``_k`` for head k), the
verdict of several heads (``verdict``), the file's facts from its decode, and what a reused row
carries. Pure: it reads nothing and writes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from ..decode.job import DecodeResult
from ..inputs.location import Entry, Location
from ..models import ScorerLike
from ..options import ScanOptions
from ..reports.schema import report_schema
from .verdict import combine


@dataclass(frozen=True)
class HeadThreshold:
    """The threshold a head labels at, and where it comes from."""

    value: float | None
    source: str  # "--threshold", "model card (POLICY)" or "none"


def thresholds(model: ScorerLike, threshold: float | None) -> list[HeadThreshold]:
    """Per head: ``--threshold`` is head 1's only; every head else labels at its card's."""
    out = []
    for k, head in enumerate(model.heads):
        card = head.card
        if k == 0 and threshold is not None:
            out.append(HeadThreshold(float(threshold), "--threshold"))
        elif card.threshold_value is not None:
            out.append(HeadThreshold(card.threshold_value, f"model card ({card.threshold_policy})"))
        else:
            out.append(HeadThreshold(None, "none"))
    return out


def label(score: float | None, threshold: float | None) -> str | None:
    if score is None or threshold is None:
        return None
    return "ai" if score >= threshold else "natural"


class Rows:
    """The rows of one scan: its schema, its heads' ids and thresholds, how labels combine."""

    def __init__(self, model: ScorerLike, opts: ScanOptions):
        self.thresholds = thresholds(model, opts.threshold)
        self.heads = len(model.heads)
        self.schema: pa.Schema = report_schema(self.heads)
        self.combine = opts.combine if self.heads > 1 else None
        if self.combine:
            combine([], self.combine)  # an unknown way to combine: refused before any part exists
        self.keep_gps, self.prompts = opts.keep_gps, opts.prompts
        ids = [h.model_id for h in model.heads] or [None]  # no head: evidence only
        self._ids = {"model_id": ids[0], **{f"model_id_{k}": m for k, m in enumerate(ids[1:], start=2)}}

    def base(self, loc: Location, status: str, error: str | None) -> dict:
        return dict.fromkeys(self.schema.names, None) | {
            "path": loc.display(), "status": status, "error": error} | self._ids

    def judged(self, scores: Sequence[float | None]) -> dict:
        """Every head's score, threshold and label, and (several heads) the verdict."""
        out: dict = {}
        for k, (s, t) in enumerate(zip(scores, self.thresholds, strict=True), start=1):
            suffix = "" if k == 1 else f"_{k}"
            out |= {f"score{suffix}": s, f"threshold{suffix}": t.value, f"label{suffix}": label(s, t.value)}
        if self.combine:
            labels = [out["label"], *(out[f"label_{k}"] for k in range(2, self.heads + 1))]
            out["verdict"] = combine(labels, self.combine)
        return out

    def skipped(self, entry: Entry) -> dict:
        """An input the crawl would not read (a link not followed, a listing that failed)."""
        return self.base(entry.location, "error" if entry.explicit else "skipped", entry.skip)

    def failed(self, res: DecodeResult) -> dict:
        return self.base(res.location, "error", res.error) | facts(res)

    def scored(self, res: DecodeResult, scores: Sequence[float], reused: tuple[str, str] | None) -> dict:
        """A decoded file's row: its scores (one per head), and whence they came when reused
        (``(how, from path)``). A non-finite score is an error row, never a label."""
        row = self.base(res.location, "ok", None) | facts(res) | self.judged(scores)
        if reused is not None:
            row |= {"reused": reused[0], "reused_from": reused[1]}
        bad = [k for k, x in enumerate(scores, start=1) if x is None or not math.isfinite(x)]
        if bad:
            which = f" (head {', '.join(map(str, bad))})" if self.heads > 1 else ""
            row |= {"status": "error", "score": None, "label": None, "error": "non-finite score" + which}
            if self.heads > 1:
                row |= {f"{c}_{k}": None for k in range(2, self.heads + 1) for c in ("score", "label")}
                row["verdict"] = None
        return row

    def unchanged(self, prior: dict, scores: Sequence[float]) -> dict:
        """The ``--incremental`` report's row of a file unchanged since, judged by this scan's
        thresholds; GPS and prompts only as this scan keeps them."""
        return prior | self.judged(scores) | {
            "gps": prior["gps"] if self.keep_gps else None,
            "gen_prompt": prior["gen_prompt"] if self.prompts else None,
            "reused": "unchanged", "reused_from": prior["path"]}


def facts(res: DecodeResult) -> dict:
    """The file's facts its decode found (size, time, digest, format, metadata evidence)."""
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
        "watermark": info.get("watermark"),
        "watermark_bit_errors": info.get("watermark_bit_errors"),
    }
