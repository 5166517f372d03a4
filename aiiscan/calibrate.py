"""Choosing a head's threshold without AI images (DESIGN §3, paper Sec. IV-A).

The validation set is held-out natural photos plus copies with the radial band (30, 100) of
their 256x256 spectrum removed, a damage unlike the training proxies. It places a threshold;
it says nothing about how well real AI images are caught, and the card says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__, plots
from .decode import RADIAL, DecodeJob
from .engines import Scorer
from .errors import AiiscanError
from .metrics import balanced_threshold, fpr_threshold, parse_policy, rates_at, roc_auc
from .progress import bar
from .train import training_digest
from .weights import now_iso, write_card

CAUTION = ("This threshold was placed on natural photos and band-(30,100) copies of them. "
           "These figures are not evidence of how well AI-generated images are detected.")


class CalibrationError(AiiscanError, ValueError):
    """The calibration set cannot be used; the message says why and what to give instead."""


@dataclass
class Calibration:
    block: dict  # what went into the card's ``threshold``
    failed: list[tuple[str, str]] = field(default_factory=list)
    plot: str | None = None  # the PNG written, or why none was
    card_path: str = ""

    def lines(self) -> list[str]:
        b, v = self.block, self.block["validation"]
        out = [
            f"threshold {b['value']:.6g} (policy {b['policy']}) written into the model card {self.card_path}",
            f"validation: {v['natural_count']} natural photos + {v['natural_count']} band-(30,100) "
            "copies" + (f"; {len(self.failed)} photos could not be read" if self.failed else ""),
            f"AUC {b['auc']:.4f}, balanced accuracy {b['balanced_accuracy']:.4f}, "
            f"TPR {b['tpr']:.4f}, FPR {b['fpr']:.4f} at the threshold",
            f"median score: natural {b['natural_score_median']:.4g}, "
            f"perturbed {b['perturbed_score_median']:.4g}",
        ]
        if "overlap_check" in v:
            out.append("warning: overlap with the training photos could not be checked "
                       "(the card lists no training fingerprints)")
        if self.plot and self.plot != plots.MISSING:
            out.append(f"plot: {self.plot}")
        out.append(CAUTION)
        return out


def calibrate(detector: Scorer, natural: Sequence[str], policy: str = "balanced",
              limit: int | None = None, seed: int = 0, batch_size: int = 64,
              workers: int | None = None, plot: str | Path | None = None,
              progress: bool = True, exact_decode: bool = False) -> Calibration:
    """Score the photos and their band copies, pick the threshold, write it into the card."""
    kind, target = parse_policy(policy)
    paths = list(natural)
    if limit is not None and len(paths) > limit:
        pick = np.random.default_rng(seed).choice(len(paths), size=limit, replace=False)
        paths = [paths[i] for i in sorted(pick)]
    if len(paths) < 2:
        raise CalibrationError(
            f"calibration needs at least 2 held-out natural photos, got {len(paths)}: give a "
            "folder of authentic photos that were not used for training")
    trained_on = set(detector.card.training.get("natural_fingerprints") or ())
    size = detector.image_size
    jobs = (DecodeJob(p, size, variants=(None, RADIAL), fast_decode=not exact_decode) for p in paths)
    originals, copies, shas, failed = [], [], [], []
    stream = detector.score_stream(jobs, batch_size=batch_size, workers=workers)
    for res, scores in bar(stream, total=len(paths), desc="calibrate", unit="photo", show=progress):
        if scores is None:
            failed.append((res.path, res.error))
            continue
        if res.info["sha256"][:16] in trained_on:
            raise CalibrationError(
                f"{res.path} was used to train this head (its content is in the card's "
                "training.natural_fingerprints); calibrate on natural photos the head has not seen")
        originals.append(float(scores[0]))
        copies.append(float(scores[1]))
        shas.append(res.info["sha256"])
    if len(originals) < 2:
        raise CalibrationError(
            f"calibration needs at least 2 natural photos that decode; {len(originals)} of "
            f"{len(paths)} did" + (f" (first failure: {failed[0][0]}: {failed[0][1]})" if failed else ""))
    neg, pos = np.array(originals), np.array(copies)
    if not (np.isfinite(neg).all() and np.isfinite(pos).all()):
        raise CalibrationError("the head gives non-finite scores on these photos; it cannot be calibrated")
    if kind == "balanced":
        rates = balanced_threshold(neg, pos)
    else:
        rates = rates_at(neg, pos, fpr_threshold(neg, target))
    block = {
        "value": rates.threshold,
        "policy": policy,
        "created": now_iso(),
        "aiiscan_version": __version__,
        "validation": {
            "natural_count": len(originals),
            "natural_failed": len(failed),
            "natural_digest": training_digest(shas),
            "perturbation": "radial band [30, 100) of the centred 256x256 spectrum zeroed",
            "limit": limit,
            "decode": "exact" if exact_decode else "fast",
            "precision": detector.precision,
            "seed": seed,
        },
        "auc": roc_auc(neg, pos),
        "balanced_accuracy": rates.balanced_accuracy,
        "tpr": rates.tpr,
        "fpr": rates.fpr,
        "natural_score_median": float(np.median(neg)),
        "perturbed_score_median": float(np.median(pos)),
        "caution": CAUTION,
    }
    if not trained_on:
        block["validation"]["overlap_check"] = "not possible: the card lists no training fingerprints"
    card = detector.card.with_threshold(block)
    write_card(detector.prefix, card)
    detector.card = card
    result = Calibration(block, failed, card_path=f"{detector.prefix}.json")
    if plot is not None:
        if plots.available():
            plots.histogram(plot, [("natural photos", neg), ("band-(30,100) copies", pos)],
                            rates.threshold, f"calibration of {detector.model_id} ({policy})")
            result.plot = str(plot)
        else:
            result.plot = plots.MISSING
    return result
