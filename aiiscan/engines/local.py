"""The local engine: decode worker processes on this machine, the model in this process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..options import RunOptions

if TYPE_CHECKING:
    from ..detector import Detector


@dataclass
class LocalEngine:
    """``detector``: a model already loaded (the Python API, selftest); else ``open`` loads one."""

    name: ClassVar[str] = "local"
    detector: Detector | None = None

    def open(self, weights: str | None, run: RunOptions) -> Detector:
        from ..detector import Detector

        det = self.detector or Detector.load(weights, device=run.device, clip_weights=run.clip_weights,
                                             quiet=run.quiet, precision=run.precision)
        if run.threads:
            import torch

            torch.set_num_threads(run.threads)  # scorer threads vs decode workers on shared cores
        return det

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}
