"""A head in words: the rows of ``aiiscan heads`` and the text of ``aiiscan heads show``.

What a user would otherwise read from the card's JSON: its kind, backbone, threshold and policy,
what it was trained and calibrated on, its fingerprints, and where its files are. Card strings
are untrusted; the CLI makes them safe for the terminal. No torch.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..card import ModelCard, ThresholdBlock, head_files, model_id
from ..files import open_regular
from .installed import Installed

COLUMNS = ("name", "default", "kind", "backbone", "threshold", "policy", "calibrated on", "trained on",
           "where")


def _backbone(card: ModelCard) -> str:
    return f"{card.backbone.name}/{card.backbone.pretrained}"


def _trained_on(card: ModelCard) -> str:
    t = card.training
    text = f"{t.natural_count or 0} photos"
    return text + (f" + {t.ai_count} AI" if t.ai_count else "")


def _calibrated_on(block: ThresholdBlock | None) -> str:
    if not block or not block.has("validation"):
        return "-"
    v = block.validation
    return f"{v.natural_count} photos" + (f" + {v.ai_count} AI" if v.ai_count else "")


def row(head: Installed) -> dict[str, Any]:
    """One head as ``--json`` gives it (``None`` where the card does not say)."""
    out: dict[str, Any] = {"name": head.name, "default": head.default, "where": str(head.prefix),
                           "problem": head.problem}
    card = head.card
    if card is None:
        return out
    t, th = card.training, card.threshold
    return out | {
        "model_id": model_id(card, head.prefix), "kind": card.kind, "backbone": card.backbone.name,
        "pretrained": card.backbone.pretrained, "threshold": card.threshold_value,
        "policy": card.threshold_policy,
        "calibration_natural_count": th.validation.natural_count if th and th.has("validation") else None,
        "calibration_warning": th.warning if th and th.has("warning") else None,
        "training_natural_count": t.natural_count or 0, "training_ai_count": t.ai_count or 0}


def table(heads: list[Installed]) -> list[str]:
    """The heads as an aligned table (one line per head, the header first)."""
    cells = []
    for h in heads:
        card = h.card
        if card is None:
            cells.append([h.name, "*" if h.default else "", "?", f"unreadable: {h.problem}", "", "", "", "",
                          str(h.prefix)])
            continue
        thr, block = card.threshold_value, card.threshold
        warned = " (too few!)" if block and block.has("warning") else ""
        cells.append([h.name, "*" if h.default else "", card.kind, _backbone(card),
                      "none" if thr is None else f"{thr:.6g}", card.threshold_policy or "uncalibrated",
                      _calibrated_on(block) + warned, _trained_on(card), str(h.prefix)])
    rows = [list(COLUMNS), *cells]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS) - 1)]
    return ["  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]).rstrip() for r in rows]


def _kept(card: ModelCard) -> str:
    """What training kept: a probe's regularisation, or an epoch (MPFT's 0 is its linear-probe
    start), and what chose it."""
    t = card.training
    if card.kind == "probe":
        return f"l2 {card.head.l2:g} ({t.get('kept_by') or 'held-out AUC'})"
    epoch = t.get("kept_epoch")
    start = " (the linear-probe start)" if epoch == 0 and card.kind == "mpft" else ""
    return f"kept epoch {'?' if epoch is None else epoch}{start} ({t.get('kept_by') or '?'})"


def _sha256(path: Path) -> str:
    try:
        with open_regular(path) as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"


def _threshold(block: ThresholdBlock | None, earlier: int) -> list[str]:
    if not block:
        return ["threshold   none: uncalibrated, scans give scores without labels "
                "(place one with `aiiscan calibrate`)"]
    v = block.validation if block.has("validation") else None
    placed = f", placed {block.created}" if block.has("created") else ""
    out = [f"threshold   {block.value:.6g}, policy {block.policy}{placed}"]
    if block.has("note"):
        out.append(f"            {block.note}")
    if v is not None:
        positives = f"{v.ai_count} AI images" if v.ai_count else f"{v.natural_count} {v.positives}"
        unread = (v.natural_failed or 0) + (v.ai_failed or 0)
        out.append(f"            on {v.natural_count} natural photos + {positives}"
                   + (f" ({unread} unreadable)" if unread else "")
                   + f"; calibration set digest {v.natural_digest}")
    if block.has("auc"):
        out.append(f"            AUC {block.auc:.4f}, balanced accuracy {block.balanced_accuracy:.4f}, "
                   f"TPR {block.tpr:.4f}, FPR {block.fpr:.4f} at the threshold")
    if block.has("warning"):
        out.append(f"            warning: {block.warning}")
    if block.has("caution"):
        out.append(f"            {block.caution}")
    if earlier:
        out.append(f"            {earlier} earlier calibration(s) in calibration_history")
    return out


def describe(head: Installed) -> list[str]:
    """One head's card in words, for ``aiiscan heads show``."""
    card, prefix = head.card, head.prefix
    st, js = head_files(prefix)
    if card is None:
        return [f"{head.name}: {head.problem}"]
    b, t = card.backbone, card.training
    digest = _sha256(st)
    match = ("matches the card" if digest == card.tensors_sha256 else
             "the card records no digest" if not card.tensors_sha256 else "DOES NOT match the card's "
             f"tensors_sha256 {card.tensors_sha256}: the file was modified or truncated")
    mode = f"mode {t.mode}, " if t.mode else ""
    trained = f"{t.natural_count or 0} natural photos ({t.natural_failed or 0} unreadable)"
    if t.ai_count:
        trained += f" + {t.ai_count} AI images"
    out = [
        f"{head.name}" + ("  (the default head: commands use it without --weights)" if head.default else ""),
        f"model id    {model_id(card, prefix)} (what reports name it)",
        f"kind        {card.kind}",
        f"backbone    {b.name}, pretrained {b.pretrained} (from {b.source}); feature dim {b.feature_dim}, "
        f"image size {b.get('image_size', '?')}",
        f"            weights sha256 {b.get('weights_sha256') or '-'}, "
        f"config sha256 {b.get('config_sha256') or '-'}",
        f"trained     {card.created or '?'} with aiiscan {card.aiiscan_version}: {mode}{trained}, "
        f"{_kept(card)}",
        f"            training set digest {t.get('natural_digest') or t.get('data_digest') or '-'}; "
        "fingerprints listed: "
        f"{len(t.natural_fingerprints or ())} natural, {len(t.ai_fingerprints or ())} AI "
        "(calibrate refuses these images, evaluate warns)",
    ]
    if card.random_init:
        out.append("            random-init backbone: its scores say nothing about AI images (tests only)")
    out += _threshold(card.threshold, len(card.calibration_history))
    out += [f"tensors     {st} (sha256 {digest}, {match})",
            f"card        {js} (sha256 {_sha256(js)})"]
    return out
