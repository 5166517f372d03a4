"""A file's verdict: its evidence and its heads' labels fused by one ordered rule (docs/verdicts.md).

The rule, first match decides (each step is tested on its own in tests/scanner/test_verdict.py):

1. AI evidence and natural evidence together: ``uncertain`` (both sets of reasons).
2. AI evidence (a trusted C2PA manifest declaring AI, a decoded generator watermark, generator
   metadata by a rule): ``ai``, whatever the heads say; their labels stay among the reasons.
3. Natural evidence (a trusted C2PA manifest that declares no AI step) with a head that says
   ``ai`` or a label that flips under ``--stability``: ``uncertain``; else ``natural``.
4. A label that flips under a ``--stability`` condition: ``uncertain`` (``unstable:<condition>``).
5. ``--combine agree`` with heads that disagree: ``uncertain``.
6. The heads' labels combined by ``--combine`` (``any``/``all``; one head: its label): ``ai`` or
   ``natural``.
7. Nothing decides (no threshold, no evidence): null.

``heads-disagree`` is a reason whenever two heads' labels differ. Missing metadata is never
evidence, and camera EXIF (trivially copied) is not read here at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import UsageError
from ..options import COMBINE

AI, NATURAL, UNCERTAIN = "ai", "natural", "uncertain"


def combine(labels: Sequence[str | None], how: str = "any") -> str | None:
    """The heads' labels as one: ``any``: ``ai`` if any head says ``ai``, ``natural`` if every
    head says ``natural``; ``all``: ``ai`` only if every head says ``ai``, ``natural`` if any says
    ``natural``; ``agree``: the label every head gives, ``uncertain`` when two differ. Else null
    (a head without a threshold decides nothing)."""
    if how not in COMBINE:
        raise UsageError(f"unknown --combine {how!r}: choose one of {', '.join(COMBINE)}")
    given = [x for x in labels if x is not None]
    if how == "agree":
        if len(set(given)) > 1:
            return UNCERTAIN
        return given[0] if given and len(given) == len(labels) else None
    first, other = (AI, NATURAL) if how == "any" else (NATURAL, AI)
    if first in labels:
        return first
    return other if labels and all(x == other for x in labels) else None


def evidence_tags(row: Mapping) -> tuple[list[str], list[str]]:
    """(AI evidence, natural evidence) of a row's evidence columns (docs/evidence.md), as reasons.
    An untrusted or invalid C2PA manifest is no evidence here (anyone can sign one); one that
    declares AI is still read by the generator rules (``generator-metadata``)."""
    ai, natural = [], []
    if row.get("c2pa_trust") == "trusted":
        if row.get("c2pa_ai") == "generated" and row.get("c2pa_ai_in") == "active":
            ai.append("c2pa-trusted-ai")
        elif row.get("c2pa_ai"):  # edited with AI, or AI only in an ingredient
            ai.append("c2pa-trusted-ai-edited")
        else:
            natural.append("c2pa-trusted-no-ai")
    if row.get("watermark"):
        ai.append(f"watermark-{row['watermark']}")
    if row.get("generator_kind") == "generated":
        ai.append("generator-metadata")
    elif row.get("generator_kind") == "edited":
        ai.append("generator-metadata-edited")
    return ai, natural


def head_tags(labels: Sequence[str | None]) -> list[str]:
    """One reason per head that labels: ``score>=threshold`` (head 1), ``score_2<threshold_2``..."""
    out = []
    for k, lab in enumerate(labels, start=1):
        if lab is not None:
            s = "" if k == 1 else f"_{k}"
            out.append(f"score{s}{'>=' if lab == AI else '<'}threshold{s}")
    return out


def decide(row: Mapping, labels: Sequence[str | None], how: str = "any",
           unstable: Sequence[str] = ()) -> tuple[str | None, str | None]:
    """(verdict, reasons joined by ``;``) of one file: ``row`` holds its evidence columns,
    ``labels`` its heads' labels (none: an evidence-only scan), ``how`` the ``--combine`` rule,
    ``unstable`` the ``unstable:...`` reasons of labels that flip under ``--stability``."""
    ai, natural = evidence_tags(row)
    heads = head_tags(labels)
    disagree = ["heads-disagree"] if len({x for x in labels if x is not None}) > 1 else []
    combined = combine(labels, how) if labels else None
    verdict: str | None
    if ai and natural:
        verdict, reasons = UNCERTAIN, ai + natural
    elif ai:
        verdict, reasons = AI, ai
    elif natural:
        against = AI in labels or bool(unstable)
        verdict, reasons = (UNCERTAIN if against else NATURAL), natural
    elif unstable:
        verdict, reasons = UNCERTAIN, list(unstable)
    else:
        verdict, reasons = combined, []
    if verdict is None:
        return None, None
    tail = [t for t in [*disagree, *heads, *unstable] if t not in reasons]
    return verdict, ";".join(reasons + tail)
