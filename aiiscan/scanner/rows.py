"""Rows: how one input becomes one row of the report, whatever happened to it.

The heads' columns (``score``, ``label``, ``threshold``, ``model_id``, then ``_k`` for head k), their
score ranges under ``--stability``, the verdict (``scanner.verdict``) and its reasons, the file's
facts from its decode, and what a reused row carries. Pure: it reads nothing and writes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..decode.job import DecodeResult
from ..decode.launder import conditions, tag
from ..inputs.location import Entry, Location
from ..models import ScorerLike
from ..options import ScanOptions
from ..reports.schema import RANGE, report_schema, suffix
from .verdict import combine, decide


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
    """The rows of one scan: its schema, its heads' ids and thresholds, how labels combine, and the
    ``--stability`` conditions each file's variants are made under."""

    def __init__(self, model: ScorerLike, opts: ScanOptions):
        self.thresholds = thresholds(model, opts.threshold)
        self.heads = len(model.heads)
        self.schema: pa.Schema = report_schema(self.heads)
        self.combine = opts.combine if self.heads > 1 else "any"  # one head: its own label
        combine([], self.combine)  # an unknown way to combine: refused before any part exists
        self.conditions = conditions(opts.stability) if opts.stability and self.heads else []
        self.keep_gps, self.prompts = opts.keep_gps, opts.prompts
        ids = [h.model_id for h in model.heads] or [None]  # no head: evidence only
        self._ids = {"model_id": ids[0], **{f"model_id_{k}": m for k, m in enumerate(ids[1:], start=2)}}

    @property
    def variants(self) -> tuple:
        """What each decode makes: the original and one copy per condition (no head: nothing)."""
        return (None, *self.conditions) if self.heads else ()

    def base(self, loc: Location, status: str, error: str | None) -> dict:
        return dict.fromkeys(self.schema.names, None) | {
            "path": loc.display(), "status": status, "error": error} | self._ids

    def fresh(self, scores: np.ndarray) -> dict:
        """What this scan's pass gives (``scores``: [variant, head]), as ``carried`` columns, and
        the conditions under which some head's label flips (``unstable``)."""
        out: dict = {"unstable": []}
        for k, t in enumerate(self.thresholds, start=1):
            col, s = scores[:, k - 1], suffix(k)
            out |= {f"score{s}": float(col[0]), f"threshold{s}": t.value}
            if self.conditions:
                out |= {f"score_min{s}": float(col.min()), f"score_max{s}": float(col.max())}
        for i, cond in enumerate(self.conditions, start=1):
            if any(label(float(v), t.value) != label(float(o), t.value)
                   for v, o, t in zip(scores[i], scores[0], self.thresholds, strict=True)):
                out["unstable"].append(f"unstable:{tag(cond)}")
        return out

    def _unstable(self, values: dict) -> list[str]:
        """Reused scores: a head whose range straddles its threshold flips. The conditions are
        those the scores' own row named when it was judged at these thresholds; else unknown
        (``unstable``)."""
        if "unstable" in values:
            return values["unstable"]
        flips = False
        for k, t in enumerate(self.thresholds, start=1):
            lo, hi = values.get(f"score_min{suffix(k)}"), values.get(f"score_max{suffix(k)}")
            flips |= lo is not None and hi is not None and label(lo, t.value) != label(hi, t.value)
        if not flips:
            return []
        same = all(values.get(f"threshold{suffix(k)}") == t.value for k, t in enumerate(self.thresholds, 1))
        named = [r for r in (values.get("verdict_reasons") or "").split(";") if r.startswith("unstable")]
        return named if same and named else ["unstable"]

    def judged(self, evidence: dict, values: dict) -> dict:
        """Every head's score, threshold, label and range, and the verdict with its reasons
        (``values``: the ``carried`` columns of a reused score, or ``fresh``'s)."""
        out: dict = {}
        labels = []
        for k, t in enumerate(self.thresholds, start=1):
            s = suffix(k)
            score = values.get(f"score{s}")
            labels.append(label(score, t.value))
            out |= {f"score{s}": score, f"threshold{s}": t.value, f"label{s}": labels[-1]}
            out |= {f"{c}{s}": values.get(f"{c}{s}") for c in RANGE}
        out["verdict"], out["verdict_reasons"] = decide(evidence, labels, self.combine,
                                                        self._unstable(values))
        return out

    def skipped(self, entry: Entry) -> dict:
        """An input the crawl would not read (a link not followed, a listing that failed)."""
        return self.base(entry.location, "error" if entry.explicit else "skipped", entry.skip)

    def failed(self, res: DecodeResult) -> dict:
        return self.base(res.location, "error", res.error) | facts(res)

    def scored(self, res: DecodeResult, values: dict, reused: tuple[str, str] | None) -> dict:
        """A decoded file's row: its scores (``fresh`` or reused ``carried`` values), and whence
        they came when reused (``(how, from path)``). A non-finite score (of the original or of a
        variant) is an error row, never a label or a verdict."""
        row = self.base(res.location, "ok", None) | facts(res)
        row |= self.judged(row, values)
        if reused is not None:
            row |= {"reused": reused[0], "reused_from": reused[1]}
        bad = [k for k in range(1, self.heads + 1)
               if not all(_finite(values.get(f"{c}{suffix(k)}")) for c in ("score", *RANGE)
                          if c == "score" or self.conditions)]
        if bad:
            which = f" (head {', '.join(map(str, bad))})" if self.heads > 1 else ""
            row |= {f"{c}{suffix(k)}": None for k in range(1, self.heads + 1)
                    for c in ("score", "label", *RANGE)}
            row |= {"status": "error", "error": "non-finite score" + which, "verdict": None,
                    "verdict_reasons": None}
        return row

    def unchanged(self, prior: dict, values: dict) -> dict:
        """The ``--incremental`` report's row of a file unchanged since, judged by this scan's
        thresholds; GPS and prompts only as this scan keeps them."""
        return prior | self.judged(prior, values) | {
            "gps": prior["gps"] if self.keep_gps else None,
            "gen_prompt": prior["gen_prompt"] if self.prompts else None,
            "reused": "unchanged", "reused_from": prior["path"]}


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


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
