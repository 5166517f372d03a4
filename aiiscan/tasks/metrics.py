"""Ranking and threshold metrics, small and tested against hand-computed cases (with ties)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError


def check_threshold(threshold: float | None) -> float | None:
    """A user-given threshold, refused when not finite: NaN would label every file natural
    (every comparison with NaN is false) and still exit 0."""
    if threshold is not None and not math.isfinite(threshold):
        raise UsageError(f"the threshold must be a finite number, not {threshold}")
    return threshold


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    # Tied values share the mean of the ranks they span.
    _, first, counts = np.unique(sorted_x, return_index=True, return_counts=True)
    mean_rank = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(mean_rank, counts)
    return ranks


def roc_auc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting one half (Mann-Whitney)."""
    neg = np.asarray(negatives, dtype=np.float64)
    pos = np.asarray(positives, dtype=np.float64)
    if len(neg) == 0 or len(pos) == 0:
        raise ValueError("AUC needs at least one negative and one positive score")
    ranks = _average_ranks(np.concatenate([neg, pos]))
    rank_sum = ranks[len(neg):].sum()
    return float((rank_sum - len(pos) * (len(pos) + 1) / 2.0) / (len(pos) * len(neg)))


def _scores(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).ravel()


def average_precision(negatives: np.ndarray, positives: np.ndarray) -> float:
    """Area under the step precision-recall curve; tied scores enter together (as scikit-learn)."""
    neg, pos = _scores(negatives), _scores(positives)
    if len(pos) == 0:
        raise ValueError("AP needs at least one positive score")
    scores = np.concatenate([neg, pos])
    labels = np.concatenate([np.zeros(len(neg)), np.ones(len(pos))])
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tp = np.cumsum(labels)[last_of_tie]
    flagged = last_of_tie + 1
    precision = tp / flagged
    recall = tp / len(pos)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


@dataclass(frozen=True)
class Rates:
    """What a threshold does (label ``ai`` when score >= threshold)."""

    threshold: float
    accuracy: float        # over all images
    real_accuracy: float   # natural images kept (1 - FPR)
    fake_accuracy: float   # AI / perturbed images flagged (TPR)

    @property
    def balanced_accuracy(self) -> float:
        return (self.real_accuracy + self.fake_accuracy) / 2.0

    @property
    def tpr(self) -> float:
        return self.fake_accuracy

    @property
    def fpr(self) -> float:
        return 1.0 - self.real_accuracy


def rates_at(negatives: np.ndarray, positives: np.ndarray, threshold: float) -> Rates:
    neg, pos = _scores(negatives), _scores(positives)
    if len(neg) == 0 or len(pos) == 0:
        raise ValueError("accuracy needs at least one negative and one positive score")
    real_ok = int(np.sum(neg < threshold))
    fake_ok = int(np.sum(pos >= threshold))
    return Rates(float(threshold), (real_ok + fake_ok) / (len(neg) + len(pos)),
                 real_ok / len(neg), fake_ok / len(pos))


def _at_or_above(sorted_scores: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """How many of the (ascending) scores are >= each cut: one binary search per cut."""
    return len(sorted_scores) - np.searchsorted(sorted_scores, cuts, side="left")


def roc_points(negatives: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) at every distinct score, from (0, 0) to (1, 1): for plotting."""
    neg, pos = np.sort(_scores(negatives)), np.sort(_scores(positives))
    cuts = np.unique(np.concatenate([neg, pos]))[::-1]
    fpr = np.r_[0.0, _at_or_above(neg, cuts) / len(neg)]
    tpr = np.r_[0.0, _at_or_above(pos, cuts) / len(pos)]
    return fpr, tpr


def _cut_thresholds(values: np.ndarray) -> np.ndarray:
    """One threshold per way of splitting sorted distinct values: below all, between each
    neighbouring pair (the midpoint, so that a score near either side keeps its side), above all."""
    u = np.unique(values)
    above = np.nextafter(u[-1], np.inf)
    return np.r_[u[0], (u[:-1] + u[1:]) / 2.0, above]


def balanced_threshold(negatives: np.ndarray, positives: np.ndarray) -> Rates:
    """The threshold maximising balanced accuracy (the paper's policy); the lowest on ties."""
    neg, pos = np.sort(_scores(negatives)), np.sort(_scores(positives))
    if len(neg) == 0 or len(pos) == 0:
        raise ValueError("a balanced threshold needs at least one negative and one positive score")
    cuts = _cut_thresholds(np.concatenate([neg, pos]))
    real_acc = 1.0 - _at_or_above(neg, cuts) / len(neg)
    fake_acc = _at_or_above(pos, cuts) / len(pos)
    best = int(np.argmax((real_acc + fake_acc) / 2.0))  # argmax: the first, i.e. lowest, on ties
    return rates_at(neg, pos, float(cuts[best]))


def fpr_threshold(negatives: np.ndarray, max_fpr: float) -> float:
    """The lowest threshold that flags at most ``max_fpr`` of the natural images."""
    neg = np.sort(_scores(negatives))[::-1]
    if len(neg) == 0:
        raise ValueError("an FPR threshold needs at least one natural-image score")
    if not 0.0 <= max_fpr < 1.0:
        raise ValueError(f"target false-positive rate must be in [0, 1), got {max_fpr}")
    allowed = int(np.floor(max_fpr * len(neg) + 1e-9))
    # Flag only scores above the (allowed+1)-th highest natural score.
    return float(np.nextafter(neg[allowed], np.inf))


def parse_policy(policy: str) -> tuple[str, float | None]:
    """``balanced`` or ``fpr:X`` (X a fraction, e.g. 0.01 for 1 %)."""
    if policy == "balanced":
        return "balanced", None
    if policy.startswith("fpr:"):
        try:
            x = float(policy[4:])
        except ValueError:
            x = -1.0
        if 0.0 <= x < 1.0:
            return "fpr", x
    raise UsageError(f"unknown threshold policy {policy!r}: use 'balanced' or 'fpr:X' with 0 <= X < 1 "
                     "(e.g. fpr:0.01 flags at most 1% of natural photos)")
