import numpy as np
import pytest

from aiiscan.metrics import roc_auc


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
