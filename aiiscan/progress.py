"""The one progress-bar helper: bars on stderr, only where a person watches.

A bar redrawn into a log file (cron, CI, ``2> scan.log``) is kilobytes of noise, so by default
bars appear only when stderr is a terminal; ``--progress``/``--no-progress`` override that, and
``-q`` turns them off. The rate is averaged over the whole run (``smoothing=0``): the first
batches include start-up, and a moving average there gives wild first ETAs.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from tqdm import tqdm


def wanted(quiet: bool = False, progress: bool | None = None) -> bool:
    """Whether to draw bars: never when quiet, else as asked, else only on a terminal."""
    if quiet:
        return False
    if progress is not None:
        return progress
    return sys.stderr.isatty()


def bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str | None = None,
        unit: str = "file", show: bool = True, leave: bool = False) -> tqdm:
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not show, leave=leave,
                file=sys.stderr, smoothing=0, mininterval=0.5, dynamic_ncols=True)
