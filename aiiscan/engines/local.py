"""The local engine: decode worker processes on this machine, the model in this process."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..decode.job import DecodeJob, DecodeResult
from ..decode.pool import decode_stream
from ..decode.preprocess import CROP
from ..errors import UsageError
from ..options import DEFAULT_TIMEOUT, RunOptions, opt

if TYPE_CHECKING:
    from ..models.scorer import Scorer


@dataclass
class LocalEngine:
    """``detector``: a scorer already loaded (the Python API, selftest: a ``Detector``, or a
    ``Scorer`` of several heads); else ``open`` loads one for the heads."""

    name: ClassVar[str] = "local"
    detector: Scorer | None = opt(None, cli=False)  # the Python API's, not a command line's

    def open(self, heads: str | tuple[str, ...] | None, run: RunOptions) -> Scorer | DecodeOnly:
        """A scorer for the head (None: the default) or the tuple of heads; no head at all (an
        empty tuple): files are decoded for their evidence, and nothing loads a model."""
        if heads == () and self.detector is None:
            return DecodeOnly()
        from ..models.scorer import load_scorer

        if self.detector is not None and isinstance(heads, tuple) and heads:
            raise UsageError("give either a loaded detector or several heads (--weights), not both")
        scorer = self.detector or load_scorer(heads, run)
        if run.threads:
            import torch

            torch.set_num_threads(run.threads)  # scorer threads vs decode workers on shared cores
        return scorer

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


class DecodeOnly:
    """No head: what an evidence-only scan runs, the decode workers alone (no torch, no model)."""

    card = model_id = prefix = None
    heads: tuple = ()
    passes = 0
    image_size = CROP
    precision = "none (no head)"

    def score_stream(self, jobs: Iterable[DecodeJob], batch_size: int = 64, workers: int | None = None,
                     timeout: float | None = None, skip: Callable[[DecodeResult], bool] | None = None,  # noqa: ARG002
                     ) -> Iterator[tuple[DecodeResult, None]]:
        for res in decode_stream(jobs, workers, timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
                                 window=max(2 * batch_size, 64)):
            yield res, None
