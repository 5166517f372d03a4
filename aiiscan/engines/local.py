"""The local engine: decode worker processes on this machine, the model in this process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import UsageError
from ..options import RunOptions, opt

if TYPE_CHECKING:
    from ..models.scorer import Scorer


@dataclass
class LocalEngine:
    """``detector``: a scorer already loaded (the Python API, selftest: a ``Detector``, or a
    ``Scorer`` of several heads); else ``open`` loads one for the heads."""

    name: ClassVar[str] = "local"
    detector: Scorer | None = opt(None, cli=False)  # the Python API's, not a command line's

    def open(self, heads: str | tuple[str, ...] | None, run: RunOptions) -> Scorer:
        """A scorer for the head (None: the default) or the tuple of heads."""
        from ..models.scorer import load_scorer

        if self.detector is not None and isinstance(heads, tuple):
            raise UsageError("give either a loaded detector or several heads (--weights), not both")
        scorer = self.detector or load_scorer(heads, run)
        if run.threads:
            import torch

            torch.set_num_threads(run.threads)  # scorer threads vs decode workers on shared cores
        return scorer

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}
