"""Choosing a head's threshold (docs/method.md, "Calibration"; paper Sec. IV-A).

Without AI images the validation set is held-out natural photos plus copies with the radial band
(30, 100) of their 256x256 spectrum removed, a damage unlike the training proxies. It places a
threshold; it says nothing about how well real AI images are caught, and the card says so.

With AI images (``ai=``, the CLI's ``--ai``) they are the positive set instead: an MPFT head is a
classifier trained on AI images, and the band copies say little about it, so its ``balanced``
threshold is refused without them. The card records which positive set was used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..card import ABSENT, ThresholdBlock, ValidationBlock, write_card
from ..decode.job import RADIAL, DecodeJob
from ..decode.launder import conditions
from ..errors import AiiscanError
from ..files import now_iso
from ..models import ScorerLike
from ..models.kinds import kind_spec
from ..progress import bar
from ..version import __version__
from . import plots
from .evaluate import CAVEAT as RANDOM_NOTE
from .metrics import balanced_threshold, fpr_threshold, parse_policy, rates_at, roc_auc
from .train import training_digest

BAND = "band-(30,100) copies"  # validation.positives: the natural photos' band copies
AI = "ai images"               # validation.positives: the AI images given

CAUTION = ("This threshold was placed on natural photos and band-(30,100) copies of them. "
           "These figures are not evidence of how well AI-generated images are detected.")
AI_CAUTION = ("This threshold was placed on natural photos and the AI images given for calibration. "
              "Its TPR holds for images like those; other generators may be caught less often.")
RESOLVE = 3  # natural photos per expected false positive that an FPR target needs to be measured at all


def too_few(natural_count: int, target_fpr: float) -> str | None:
    """Why ``natural_count`` photos cannot place an ``fpr:target`` threshold, or None. Below
    RESOLVE/target photos the target allows fewer than RESOLVE flagged photos: the threshold
    then sits on one or two scores, and an FPR of 0 at it says nothing about the rate. (``fpr:0``,
    above every natural score, asks for no rate.)"""
    if target_fpr <= 0:
        return None
    need = math.ceil(RESOLVE / target_fpr - 1e-9)
    if natural_count >= need:
        return None
    return (f"{natural_count} photos cannot resolve an FPR of {target_fpr * 100:g}%: use at least {need} "
            f"held-out natural photos (at least {RESOLVE} expected false positives)")


NEEDS_AI = ("a {kind} head's balanced threshold needs AI images the head has not seen: pass --ai DIR "
            "or use --policy fpr:X ({reason})")


class CalibrationError(AiiscanError, ValueError):
    """The calibration set cannot be used; the message says why and what to give instead."""


@dataclass
class Calibration:
    block: ThresholdBlock  # what went into the card's ``threshold``
    failed: list[tuple[str, str]] = field(default_factory=list)  # natural photos, then AI images
    plot: str | None = None  # the PNG written
    card_path: str = ""
    # --stability: per condition, the natural photos whose label at the threshold its copy flips;
    # ``unstable``: those flipped by any condition
    flips: dict[str, int] = field(default_factory=dict)
    unstable: int | None = None

    def lines(self) -> list[str]:
        b, v = self.block, self.block.validation
        unread = v.natural_failed + (v.ai_failed or 0)
        if v.positives == AI:
            validation = f"{v.natural_count} natural photos + {v.ai_count} AI images"
            medians = f"natural {b.natural_score_median:.4g}, AI {b.ai_score_median:.4g}"
        else:
            validation = f"{v.natural_count} natural photos + {v.natural_count} {BAND}"
            medians = f"natural {b.natural_score_median:.4g}, perturbed {b.perturbed_score_median:.4g}"
        out = [
            f"threshold {b.value:.6g} (policy {b.policy}) written into the model card {self.card_path}",
            f"validation: {validation}" + (f"; {unread} files could not be read" if unread else ""),
            f"AUC {b.auc:.4f}, balanced accuracy {b.balanced_accuracy:.4f}, "
            f"TPR {b.tpr:.4f}, FPR {b.fpr:.4f} at the threshold",
            f"median score: {medians}",
        ]
        if b.has("warning"):
            out.append(f"warning: {b.warning}")
        if v.has("overlap_check"):
            out.append("warning: overlap with the training photos could not be checked "
                       "(the card lists no training fingerprints)")
        if v.has("ai_overlap_check"):
            out.append("warning: overlap with the AI images used in fine-tuning could not be checked "
                       "(the card lists no training.ai_fingerprints)")
        if self.unstable is not None:
            out.append(f"stability: {self.unstable} of {v.natural_count} natural photos change label at this "
                       "threshold under " + ", ".join(f"{c} ({n})" for c, n in self.flips.items())
                       + " (scan --stability marks such files uncertain)")
        if self.plot:
            out.append(f"plot: {self.plot}")
        out.append(b.caution)
        return out


@dataclass
class _Scored:
    """One set's scores (a row per readable file, a column per decode variant)."""

    scores: np.ndarray
    paths: list[str]
    sha256: list[str]
    failed: list[tuple[str, str]]


def _draw(paths: Sequence[str], limit: int | None, rng: np.random.Generator) -> list[str]:
    paths = list(paths)
    if limit is not None and len(paths) > limit:
        pick = rng.choice(len(paths), size=limit, replace=False)
        paths = [paths[i] for i in sorted(pick)]
    return paths


def _score(detector: ScorerLike, paths: list[str], variants: tuple, trained: dict[str, str], what: str,
           batch_size: int, workers: int | None, progress: bool, exact_decode: bool) -> _Scored:
    """Score ``paths``; refuse one whose content the card lists among the training data
    (``trained``: short fingerprint -> the card field that lists it)."""
    size = detector.image_size
    jobs = (DecodeJob(p, size, variants=variants, fast_decode=not exact_decode) for p in paths)
    rows, kept, shas, failed = [], [], [], []
    stream = detector.score_stream(jobs, batch_size=batch_size, workers=workers)
    for res, scores in bar(stream, total=len(paths), desc=f"calibrate ({what})", unit="file", show=progress):
        if scores is None:
            failed.append((res.path, res.error))
            continue
        listed = trained.get(res.info["sha256"][:16])
        if listed:
            raise CalibrationError(
                f"{res.path} was used to train this head (its content is in the card's training.{listed}); "
                f"calibrate on {what} the head has not seen")
        rows.append(np.asarray(scores[:, 0], dtype=np.float64))  # one head: its score per variant
        kept.append(res.path)
        shas.append(res.info["sha256"])
    if len(rows) < 2:
        raise CalibrationError(
            f"calibration needs at least 2 {what} that decode; {len(rows)} of {len(paths)} did"
            + (f" (first failure: {failed[0][0]}: {failed[0][1]})" if failed else ""))
    return _Scored(np.stack(rows), kept, shas, failed)


def calibrate(detector: ScorerLike, natural: Sequence[str], policy: str = "balanced",
              limit: int | None = None, seed: int = 0, batch_size: int = 64,
              workers: int | None = None, plot: str | Path | None = None,
              progress: bool = True, exact_decode: bool = False,
              ai: Sequence[str] | None = None, stability: str | None = None) -> Calibration:
    """Score the natural photos and the positive set, pick the threshold, write it into the card.

    The positive set is ``ai`` (AI images the head has not seen) when given, else band copies of
    the natural photos. ``limit`` draws at most that many files from each set (seeded).
    ``stability`` (as ``scan --stability``): also count the natural photos whose label at the
    chosen threshold flips under a condition, from the same decode (which is then exact, as a
    scan with ``--stability`` decodes, and recorded so in the card).
    """
    conds = conditions(stability) if stability else []
    exact_decode = exact_decode or bool(conds)
    kind, target = parse_policy(policy)
    card = detector.card
    spec = kind_spec(card.kind)
    if kind == "balanced" and not ai and not spec.band_positives:
        raise CalibrationError(NEEDS_AI.format(kind=spec.name, reason=spec.needs_ai_reason))
    paths = _draw(natural, limit, np.random.default_rng(seed))
    if len(paths) < 2:
        raise CalibrationError(
            f"calibration needs at least 2 held-out natural photos, got {len(paths)}: give a "
            "folder of authentic photos that were not used for training")
    fakes = _draw(ai or (), limit, np.random.default_rng([seed, 1]))
    if ai is not None and len(fakes) < 2:
        raise CalibrationError(
            f"calibration needs at least 2 AI images, got {len(fakes)}: give AI images that were not "
            "used for training")
    trained = card.trained_on()
    run = {"batch_size": batch_size, "workers": workers, "progress": progress, "exact_decode": exact_decode}
    nat = _score(detector, paths, ((None,) if fakes else (None, RADIAL)) + tuple(conds), trained,
                 "natural photos", **run)
    got = _score(detector, fakes, (None,), trained, "AI images", **run) if fakes else None
    if got is not None:
        both = set(nat.sha256) & set(got.sha256)
        if both:
            first = next(p for p, h in zip(got.paths, got.sha256, strict=True) if h in both)
            raise CalibrationError(f"{len(both)} files are in both the natural and the AI set (same "
                                   f"content), e.g. {first}: each image belongs to one set")
    neg = nat.scores[:, 0]
    pos = got.scores[:, 0] if got is not None else nat.scores[:, 1]
    copies = nat.scores[:, nat.scores.shape[1] - len(conds):]  # one column per --stability condition
    if not (np.isfinite(neg).all() and np.isfinite(pos).all()):
        raise CalibrationError("the head gives non-finite scores on these files; it cannot be calibrated")
    if kind == "balanced":
        rates = balanced_threshold(neg, pos)
    else:
        rates = rates_at(neg, pos, fpr_threshold(neg, target))
    with_ai = got is not None
    validation = ValidationBlock(
        natural_count=len(neg), natural_failed=len(nat.failed), natural_digest=training_digest(nat.sha256),
        positives=AI if with_ai else BAND,
        ai_count=len(pos) if with_ai else ABSENT, ai_failed=len(got.failed) if with_ai else ABSENT,
        ai_digest=training_digest(got.sha256) if with_ai else ABSENT,
        perturbation=ABSENT if with_ai else "radial band [30, 100) of the centred 256x256 spectrum zeroed",
        limit=limit, decode="exact" if exact_decode else "fast", precision=detector.precision, seed=seed,
        overlap_check=ABSENT if trained else "not possible: the card lists no training fingerprints",
        ai_overlap_check=("not possible: the card lists no training.ai_fingerprints"
                          if with_ai and spec.learns_from_ai and not card.training.has("ai_fingerprints")
                          else ABSENT))
    median = float(np.median(pos))
    block = ThresholdBlock(
        value=rates.threshold, policy=policy, created=now_iso(), aiiscan_version=__version__,
        validation=validation, auc=roc_auc(neg, pos), balanced_accuracy=rates.balanced_accuracy,
        tpr=rates.tpr, fpr=rates.fpr, natural_score_median=float(np.median(neg)),
        ai_score_median=median if with_ai else ABSENT, perturbed_score_median=ABSENT if with_ai else median,
        caution=AI_CAUTION if with_ai else CAUTION,
        warning=(too_few(len(neg), target) if kind == "fpr" else None) or ABSENT)
    card = card.with_threshold(block)
    write_card(detector.prefix, card)
    detector.card = card
    result = Calibration(block, nat.failed + (got.failed if got is not None else []),
                         card_path=f"{detector.prefix}.json")
    if conds:
        flipped = (copies >= rates.threshold) != (neg >= rates.threshold)[:, None]
        result.flips = {str(c): int(n) for c, n in zip(conds, flipped.sum(axis=0), strict=True)}
        result.unstable = int(flipped.any(axis=1).sum())
    if plot is not None:
        label = "AI images" if fakes else BAND
        plots.histogram(plot, [("natural photos", neg), (label, pos)], rates.threshold,
                        f"calibration of {detector.model_id} ({policy}; positives: {label})",
                        note=RANDOM_NOTE if detector.card.random_init else None)
        result.plot = str(plot)
    return result
