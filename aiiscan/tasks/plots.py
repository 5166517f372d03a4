"""Optional PNG plots (matplotlib, the ``aiiscan[plot]`` extra); everything else works without."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..files import atomic_output
from .metrics import roc_points

MISSING = ("plots need matplotlib, which is not installed: pip install 'aiiscan[plot]' "
           "(everything else works without it)")


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window (cron, servers)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_output(path) as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")


def histogram(path: str | Path, groups: Sequence[tuple[str, np.ndarray]], threshold: float | None,
              title: str) -> None:
    """Score histograms of several groups on shared bins, with the threshold as a line."""
    plt = _pyplot()
    finite = [np.asarray(v, float)[np.isfinite(v)] for _, v in groups]
    everything = np.concatenate(finite) if finite else np.zeros(0)
    bins = np.histogram_bin_edges(everything, bins=40) if len(everything) else 10
    fig, ax = plt.subplots(figsize=(7, 4))
    for (name, _), values in zip(groups, finite, strict=True):
        ax.hist(values, bins=bins, alpha=0.55, label=f"{name} (n={len(values)})")
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4g}")
    ax.set_xlabel("score (higher = more likely AI-generated)")
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.legend(fontsize=8)
    _save(fig, Path(path))
    plt.close(fig)


def roc(path: str | Path, curves: Sequence[tuple[str, np.ndarray, np.ndarray]], title: str) -> None:
    """ROC curves, one per (name, real scores, fake scores)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, neg, pos in curves:
        fpr, tpr = roc_points(neg, pos)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.5)
    ax.set_xlabel("false-positive rate (real flagged)")
    ax.set_ylabel("true-positive rate (fake flagged)")
    ax.set_title(title)
    if len(curves) <= 12:
        ax.legend(fontsize=7)
    _save(fig, Path(path))
    plt.close(fig)
