"""aiiscan: flag AI-generated images with CLIP-Flow, a flow trained only on natural photos."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Detector", "scan", "__version__"]

if TYPE_CHECKING:
    from .detector import Detector
    from .scanner import scan


def __getattr__(name: str) -> Any:
    # Lazy: decode workers import this package and must not pay for torch.
    if name == "Detector":
        from .detector import Detector

        return Detector
    if name == "scan":
        from .scanner import scan

        return scan
    raise AttributeError(name)
