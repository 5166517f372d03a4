"""A scan's run identity: everything that decides what a row holds, as one JSON object.

Two runs may share rows only when they would write the same row for the same file. ``--resume``
continues an interrupted scan only with the identity recorded in its parts folder (``RUN.json``,
written when the folder is made): resuming with another head, threshold, precision or decode
setting would mix rows of two runs in one report under one run's metadata. ``--incremental``
reuses an old report's rows only where its recorded identity (the report metadata's
``run_identity``) gives the same rows, and its scores only where the same heads scored the same
pixels; the rows it reuses are judged again by this scan's thresholds (``rows.Rows.unchanged``).

The options part comes from one tuple, ``ROW_OPTIONS``: an option that changes what a row holds
is added there, and resume and incremental compare it from then on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..decode.evidence import Evidence
from ..models import ScorerLike
from ..options import ScanOptions
from ..textsafe import for_terminal
from .rows import HeadThreshold

IDENTITY_VERSION = 1
# Options (of ``ScanOptions`` or its ``RunOptions``) that change what a row holds.
ROW_OPTIONS = ("exact_decode", "max_pixels", "max_bytes", "keep_gps", "prompts", "stability")
# Among them, those that change the pixels a head scores (and so its score).
PIXEL_OPTIONS = ("exact_decode",)


def option_values(opts: ScanOptions) -> dict[str, Any]:
    """The ``ROW_OPTIONS`` of a scan, each from ``ScanOptions`` or its ``RunOptions``."""
    return {name: getattr(opts, name) if hasattr(opts, name) else getattr(opts.run, name)
            for name in ROW_OPTIONS}


def scores_digest(card: Any) -> str:
    """The card without what ``calibrate`` writes (threshold, its history, metrics): what decides
    a head's scores, whatever threshold labels them."""
    d = {k: v for k, v in card.to_dict().items() if k not in ("threshold", "calibration_history", "metrics")}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def run_identity(model: ScorerLike, thresholds: Sequence[HeadThreshold], combine: str | None,
                 opts: ScanOptions, evidence: Evidence) -> dict[str, Any]:
    """The identity of a scan about to run: its heads (id, card digests, the threshold each labels
    at), how labels combine, what runs the backbone, the ``ROW_OPTIONS`` and the evidence
    settings. JSON-ready; equal identities write equal rows for an unchanged file."""
    ev = evidence.metadata()
    return {
        "version": IDENTITY_VERSION,
        "heads": [{"model_id": h.model_id, "model_card_sha256": h.card.digest(),
                   "scores_sha256": scores_digest(h.card), "threshold": t.value}
                  for h, t in zip(model.heads, thresholds, strict=True)],
        "combine": combine,
        "precision": _precision(model),
        "options": option_values(opts),
        "evidence": {"version": ev["version"], "generator_rules_digest": ev["generator_rules_digest"],
                     "c2pa_trust_anchors": (ev["c2pa_trust_anchors"] or {}).get("sha256")},
    }


def _precision(model: ScorerLike) -> str:
    """What runs the backbone, as a report records it (``"bf16 (openvino)"``); a scorer that
    cannot say before it runs (Ray's actors choose on their machines) gives the precision asked,
    except fp32, which runs in torch on every machine."""
    ran = getattr(model, "runs_as", None)
    if ran is not None:
        return str(ran)
    return "fp32 (torch)" if model.precision == "fp32" else str(model.precision)


def _short(value: Any) -> str:
    """A recorded value for a one-line message: escaped, and cut to a readable length."""
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return for_terminal(text if len(text) <= 80 else text[:77] + "...")


def _head(h: Any) -> str:
    if not isinstance(h, dict):
        return _short(h)
    card = str(h.get("model_card_sha256") or "?")[:12]
    return f"{_short(h.get('model_id'))} (card {card}, threshold {_short(h.get('threshold'))})"


def differences(was: Any, now: dict[str, Any]) -> list[str]:
    """What differs between a recorded identity and this run's, each as 'X used A, this one B'
    (at most a few, for one line); empty when they are the same."""
    if not isinstance(was, dict) or was.get("version") != now["version"]:
        return ["its run identity (RUN.json) is missing or unreadable (an older aiiscan made it, or it "
                "was damaged)"]
    out = []
    old_heads, new_heads = was.get("heads"), now["heads"]
    if not isinstance(old_heads, list) or len(old_heads) != len(new_heads):
        n = len(old_heads) if isinstance(old_heads, list) else "?"
        out.append(f"it used {n} head{'' if n == 1 else 's'}, this one {len(new_heads)}")
    else:
        for k, (a, b) in enumerate(zip(old_heads, new_heads, strict=True), start=1):
            if a != b:
                out.append(f"it used head {k} {_head(a)}, this one {_head(b)}")
    for key in ("combine", "precision", "evidence") if not out else ("precision", "evidence"):
        if was.get(key) != now[key]:
            out.append(f"it used {key} {_short(was.get(key))}, this one {_short(now[key])}")
    old_opts = was.get("options") if isinstance(was.get("options"), dict) else {}
    for name, value in now["options"].items():
        if old_opts.get(name, "(not recorded)") != value:
            out.append(f"it used {name}={_short(old_opts.get(name, '(not recorded)'))}, this one "
                       f"{name}={_short(value)}")
    return out


@dataclass(frozen=True)
class Reusable:
    """What an ``--incremental`` report may give this scan: its scores (the same heads scored the
    same pixels on the same runtime) and its rows (besides, every row option the same). ``why``:
    a one-line reason when it gives nothing."""

    scores: bool
    rows: bool
    why: str | None = None


def reusable(was: Any, now: dict[str, Any]) -> Reusable:
    """What an old report's recorded identity (``was``) lets this scan (``now``) reuse. Heads are
    compared by model id and by what decides their scores (not the threshold: reused rows are
    labelled by this scan's thresholds). A report made by other model ids is left to the per-row
    check (``reuse.Reuse.load_old``), which counts and names those heads."""
    if not isinstance(was, dict) or was.get("version") != now["version"]:
        return Reusable(False, False, "it records no run identity (written by an older aiiscan, or "
                                      "not by aiiscan)")
    heads = was.get("heads") if isinstance(was.get("heads"), list) else []
    ids = [h.get("model_id") if isinstance(h, dict) else None for h in heads]
    if ids != [h["model_id"] for h in now["heads"]]:
        return Reusable(True, False)
    why = []
    for k, (a, b) in enumerate(zip(heads, now["heads"], strict=True), start=1):
        if a.get("scores_sha256") != b["scores_sha256"]:
            why.append(f"head {k}'s card differs")
    if was.get("precision") != now["precision"]:
        why.append(f"precision {_short(was.get('precision'))}, this scan {_short(now['precision'])}")
    old_opts = was.get("options") if isinstance(was.get("options"), dict) else {}
    pixels = [n for n in PIXEL_OPTIONS if old_opts.get(n, "(not recorded)") != now["options"][n]]
    why += [f"{n}={_short(old_opts.get(n, '(not recorded)'))}" for n in pixels]
    if why:
        return Reusable(False, False, "its scores were made otherwise (" + "; ".join(why) + ")")
    rows = all(old_opts.get(n, "(not recorded)") == v for n, v in now["options"].items())
    return Reusable(True, rows)

