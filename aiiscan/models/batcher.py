"""The batcher: decoded files into batches of crops for the backbone, in input order.

The one decode -> features loop behind training, calibration, evaluation and scans. It groups
(``batch_size`` files a batch) and de-duplicates (identical content in one batch shares one
pass); what to score and with which heads is the scorer's business, what a score means the
caller's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..decode.job import DecodeJob, DecodeResult
from ..decode.pool import decode_stream
from ..options import DEFAULT_TIMEOUT

Encode = Callable[[list[np.ndarray]], torch.Tensor]  # uint8 HWC crops -> features [crop, D]


@dataclass
class Batch:
    """Results in input order; ``wanted[i]``: result i decoded and was not skipped, so it has
    a row of ``features`` ([wanted, variant, D]; None when no result is wanted)."""

    results: list[DecodeResult]
    wanted: list[bool]
    features: torch.Tensor | None


def feature_batches(encode: Encode, jobs: Iterable[DecodeJob], batch_size: int = 64,
                    workers: int | None = None, timeout: float = DEFAULT_TIMEOUT,
                    skip: Callable[[DecodeResult], bool] | None = None) -> Iterator[Batch]:
    """Decode ``jobs`` in worker processes and run ``encode`` over the crops of every variant.

    ``skip(result)``: the caller already knows this decoded file's answer (a scan's content seen
    before), so it gets no backbone pass; it is asked as each result arrives, before batching.
    With ``skip`` given, files with the same content (sha256) in one batch also share one pass
    (only then: training's jobs differ per file in crops and proxies).

    Memory and pace: a result wanting nothing with none pending ahead of it is yielded at once,
    and a batch is also flushed when ``4 * batch_size`` results wait, so a long run of bad files
    never piles up behind one good one. Crops are dropped once encoded: memory stays flat.
    """
    pending: list[DecodeResult] = []
    wanted: list[bool] = []
    n_wanted = 0

    def flush() -> Batch:
        good = [r for r, w in zip(pending, wanted, strict=True) if w]
        if not good:
            return Batch(pending, wanted, None)
        first: dict[object, int] = {}  # content -> its row among the unique crops
        unique: list[DecodeResult] = []
        index = []
        for r in good:
            key = (r.info.get("sha256") if skip is not None else None) or id(r)
            if key not in first:
                first[key] = len(unique)
                unique.append(r)
            index.append(first[key])
        n = len(unique[0].arrays)
        feats = encode([a for r in unique for a in r.arrays]).reshape(len(unique), n, -1)
        for r in good:
            r.arrays = []
        if len(unique) < len(good):
            feats = feats[torch.as_tensor(index, device=feats.device)]
        return Batch(pending, wanted, feats)

    for res in decode_stream(jobs, workers, timeout=timeout, window=max(2 * batch_size, 64)):
        want = res.status == "ok" and not (skip is not None and skip(res))
        if not want:
            res.arrays = []
            if not n_wanted:
                yield Batch([res], [False], None)
                continue
        pending.append(res)
        wanted.append(want)
        n_wanted += want
        if n_wanted >= batch_size or len(pending) >= 4 * batch_size:
            yield flush()
            pending, wanted, n_wanted = [], [], 0
    if pending:
        yield flush()
