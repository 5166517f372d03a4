import numpy as np
import pytest

from aiiscan.tasks.metrics import (
    average_precision,
    balanced_threshold,
    fpr_threshold,
    parse_policy,
    rates_at,
    roc_auc,
    roc_points,
)


def test_auc_perfect_and_reversed():
    assert roc_auc([0, 1], [2, 3]) == 1.0
    assert roc_auc([2, 3], [0, 1]) == 0.0


def test_auc_with_ties_by_hand():
    # pairs (pos, neg): 1v0 win, 1v1 tie, 2v0 win, 2v1 win -> (3 + 0.5) / 4
    assert roc_auc([0, 1], [1, 2]) == pytest.approx(3.5 / 4)
    assert roc_auc([1, 1, 1], [1, 1]) == pytest.approx(0.5)


def test_auc_needs_both_classes():
    with pytest.raises(ValueError):
        roc_auc(np.array([]), [1.0])


def test_average_precision_by_hand():
    # scikit-learn's doc example: y = [0, 0, 1, 1], scores [0.1, 0.4, 0.35, 0.8] -> 0.8333
    assert average_precision([0.1, 0.4], [0.35, 0.8]) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert average_precision([0.0], [1.0, 2.0]) == 1.0


def test_average_precision_with_ties_by_hand():
    # 1.0 (pos) first: P=1, R=1/2; then 0.5 shared by a pos and a neg enters at once: P=2/3, R=1.
    assert average_precision([0.5], [0.5, 1.0]) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # Everything tied: one operating point, precision = share of positives.
    assert average_precision([1, 1], [1, 1]) == pytest.approx(0.5)
    assert average_precision([1, 1, 1], [1]) == pytest.approx(0.25)


def test_rates_at_threshold_by_hand():
    r = rates_at([0, 1, 2, 3], [2, 5], 2.0)  # label ai when score >= 2; a tie at 2 is flagged
    assert (r.real_accuracy, r.fake_accuracy) == (0.5, 1.0)
    assert r.accuracy == pytest.approx(4 / 6)
    assert (r.tpr, r.fpr, r.balanced_accuracy) == (1.0, 0.5, 0.75)


def test_balanced_threshold_known_answers():
    best = balanced_threshold([0, 1, 2], [1.5, 3])
    assert best.threshold == 1.25 and best.balanced_accuracy == pytest.approx(5 / 6)
    tied = balanced_threshold([1, 1], [1, 2])   # the tie at 1 cannot be split: cut above it
    assert tied.threshold == 1.5 and tied.balanced_accuracy == 0.75
    perfect = balanced_threshold([0, 1], [5, 6])
    assert perfect.threshold == 3.0 and perfect.balanced_accuracy == 1.0
    inverted = balanced_threshold([5, 6], [0, 1])  # nothing beats 0.5: lowest such cut (flag all)
    assert inverted.balanced_accuracy == 0.5 and inverted.threshold == 0.0


def test_fpr_threshold_known_answers():
    neg = np.arange(100, dtype=float)
    t = fpr_threshold(neg, 0.01)
    assert 98 < t < 99 + 1e-9 and np.sum(neg >= t) == 1
    assert np.sum(neg >= fpr_threshold(neg, 0.0)) == 0
    assert np.sum(neg >= fpr_threshold(neg, 0.105)) == 10
    # Ties cannot be split: at most 50 % of [5, 5, 5, 1] means flagging none of the 5s.
    t = fpr_threshold([5, 5, 5, 1], 0.5)
    assert t > 5 and np.nextafter(5.0, np.inf) == t
    assert np.sum(np.array([5, 5, 5, 1]) >= fpr_threshold([5, 5, 5, 1], 0.75)) == 3


def test_policy_parsing_and_errors():
    assert parse_policy("balanced") == ("balanced", None)
    assert parse_policy("fpr:0.01") == ("fpr", 0.01)
    for bad in ("fpr:1.5", "fpr:x", "strict", "fpr:-0.1"):
        with pytest.raises(ValueError, match="policy"):
            parse_policy(bad)
    with pytest.raises(ValueError):
        fpr_threshold([], 0.1)
    with pytest.raises(ValueError):
        balanced_threshold([1.0], [])


def test_roc_points_run_corner_to_corner():
    fpr, tpr = roc_points([0, 1], [1, 2])
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    # trapezoid area equals the tie-aware AUC
    assert np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2) == pytest.approx(roc_auc([0, 1], [1, 2]))


def test_balanced_threshold_equals_brute_force_on_random_tied_scores():
    rng = np.random.default_rng(3)
    for _ in range(20):
        neg = rng.integers(0, 12, rng.integers(1, 30)).astype(float)  # many ties
        pos = rng.integers(3, 15, rng.integers(1, 30)).astype(float)
        cuts = np.unique(np.r_[neg, pos, np.nextafter(max(neg.max(), pos.max()), np.inf)])
        brute = max(rates_at(neg, pos, c).balanced_accuracy for c in cuts)
        assert balanced_threshold(neg, pos).balanced_accuracy == pytest.approx(brute)
