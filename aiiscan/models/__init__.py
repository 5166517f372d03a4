"""Models: the frozen backbone and how it runs, head files, head kinds, the batcher and the scorer.

``ScorerLike`` is what every engine's opened scorer offers (``scorer.Scorer`` locally, the Ray
engine's ``RayScorer``); scan, calibrate and evaluate use nothing else. This module imports no
torch: the protocol is for the torch-free stages that drive a scorer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from ..card import ModelCard
    from ..decode.job import DecodeJob, DecodeResult


class ScorerLike(Protocol):
    """Heads (head 1 first, each with ``card``, ``prefix``, ``model_id``, ``image_size``), the
    backbone passes per crop, and a stream of ``(result, scores [variant, head] | None)`` in input
    order; ``skip(result)`` may spare the backbone a file whose scores the caller knows."""

    card: ModelCard
    model_id: str
    prefix: Path
    heads: Sequence[Any]
    passes: int

    @property
    def image_size(self) -> int: ...

    @property
    def precision(self) -> str: ...

    def score_stream(self, jobs: Iterable[DecodeJob], batch_size: int = 64, workers: int | None = None,
                     timeout: float | None = None, skip: Callable[[DecodeResult], bool] | None = None,
                     ) -> Iterator[tuple[DecodeResult, np.ndarray | None]]: ...
