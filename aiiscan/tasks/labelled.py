"""Labelled image sets for the heads trained on AI images (MPFT, the probe): the seeded held-out
split, the decode stage's crops, and the card's training block (with the fingerprints that let
``calibrate`` refuse images a head learnt from)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..decode.job import DecodeJob
from ..decode.pool import decode_stream
from ..errors import AiiscanError
from ..progress import bar
from .datasets import FOUND_HOW
from .train import training_digest

# Where an MPFT head's labels sit until `aiiscan calibrate` moves them: the classifier's own
# decision boundary, logit 0 (p = 0.5).
LOGIT_THRESHOLD = {"value": 0.0, "policy": "logit:0",
                   "note": "the classifier's decision boundary (p = 0.5), set by aiiscan finetune"}


class FinetuneError(AiiscanError):
    """Fine-tuning cannot go on; the message says why and what to change."""


@dataclass
class Crops:
    """Decoded crops of one labelled set, aligned row by row."""

    paths: list[str]
    sha256: list[str]
    labels: list[int]
    arrays: list[np.ndarray]
    failed: list[tuple[str, str]]


def decode_crops(paths: Sequence[str], labels: Sequence[int], size: int, seed: tuple[int, ...] | None,
                 workers: int | None, fast_decode: bool = True, desc: str | None = None, step: int = 1
                 ) -> Crops:
    """The scan's decode stage: one crop per file (random crop + flip when ``seed`` is set, the
    crop ``step`` pixels apart from the centre one)."""
    jobs = (DecodeJob(p, size, (None,), None if seed is None else (*seed, i), fast_decode=fast_decode,
                      crop_step=step)
            for i, p in enumerate(paths))
    out = Crops([], [], [], [], [])
    with bar(total=len(paths), desc=desc, show=desc is not None) as progress:
        for label, res in zip(labels, decode_stream(jobs, workers, window=64), strict=True):
            if res.status == "ok":
                out.paths.append(res.path)
                out.sha256.append(res.info["sha256"])
                out.labels.append(label)
                out.arrays.append(res.arrays[0])
            else:
                out.failed.append((res.path, res.error or "unknown error"))
            progress.update(1)
    return out


def split(natural: Sequence[str], ai: Sequence[str], fraction: float, seed: int
          ) -> tuple[list[str], list[int], list[str], list[int]]:
    """Stratified, seeded held-out split: (train paths, labels, held-out paths, labels)."""
    rng = np.random.default_rng([seed, 4242])
    tr, trl, va, val = [], [], [], []
    for label, paths in ((0, sorted(natural)), (1, sorted(ai))):
        what = "natural photos" if label == 0 else "AI images"
        if len(paths) < 2:
            raise FinetuneError(f"fine-tuning needs at least 2 {what}, got {len(paths)}. {FOUND_HOW}")
        order = rng.permutation(len(paths))
        n_val = min(len(paths) - 1, max(1, round(fraction * len(paths))))
        va += [paths[i] for i in order[:n_val]]
        tr += [paths[i] for i in order[n_val:]]
        val += [label] * n_val
        trl += [label] * (len(paths) - n_val)
    return tr, trl, va, val


def training_block(settings: dict, natural: Sequence[str], ai: Sequence[str], seen: Crops, val: Crops,
                   history: list[dict]) -> dict:
    """The card's training block of a head trained on AI images: the settings, and what it learnt from."""
    used = list(zip([*seen.sha256, *val.sha256], [*seen.labels, *val.labels], strict=True))
    return {
        **settings,
        "natural_count": len(natural), "ai_count": len(ai),
        "train_count": len(seen.paths), "train_failed": len(seen.failed),
        "heldout_natural": val.labels.count(0), "heldout_ai": val.labels.count(1),
        "heldout_failed": len(val.failed),
        "data_digest": training_digest([*seen.sha256, *val.sha256]),
        # Short content fingerprints let `calibrate` refuse photos and AI images used here.
        "natural_fingerprints": sorted({h[:16] for h, lab in used if lab == 0}),
        "ai_fingerprints": sorted({h[:16] for h, lab in used if lab == 1}),
        "history": history,
    }
