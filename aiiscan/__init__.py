"""aiiscan: flag AI-generated images with CLIP-Flow, a flow trained only on natural photos.

The front door: ``aiiscan.scan``, ``load``, ``train``, ``finetune``, ``calibrate``, ``evaluate``,
``report``, ``evidence``, ``list_heads``, ``head``, ``set_default`` (``api``) and ``Detector``,
each imported on first use, so that decode workers, which import this package, never pay for torch.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from .version import __version__

__all__ = ["Detector", "scan", "load", "train", "finetune", "calibrate", "evaluate", "report", "evidence",
           "list_heads", "head", "set_default", "__version__"]

if TYPE_CHECKING:
    from .api import (
        calibrate,
        evaluate,
        evidence,
        finetune,
        head,
        list_heads,
        load,
        report,
        scan,
        set_default,
        train,
    )
    from .models.scorer import Detector


def _is_our_spawned_worker() -> bool:
    """A child that multiprocessing spawned for an aiiscan command (the parent ran the ``aiiscan``
    script or ``python -m aiiscan``; multiprocessing has already given the child its argv)."""
    if getattr(sys, "orig_argv", [])[-1:] != ["--multiprocessing-fork"] or not sys.argv:
        return False
    main = os.path.normpath(sys.argv[0])
    return os.path.basename(main) == "aiiscan" or main.endswith(os.path.join("aiiscan", "__main__.py"))


# Ctrl-C in a terminal reaches the whole process group, decode workers included, and a worker
# still importing its modules (a second or more) would print a KeyboardInterrupt traceback. The
# main process stops its workers itself, so a worker ignores SIGINT from its first import of
# this package, long before the pool's initializer runs (signals.ignore_in_worker).
if _is_our_spawned_worker():
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def __getattr__(name: str) -> Any:
    if name == "Detector":
        from .models.scorer import Detector

        return Detector
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(name)
