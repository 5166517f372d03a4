"""The one progress-bar helper: bars on stderr, only where a person watches.

A bar redrawn into a log file (cron, CI, ``2> scan.log``) is kilobytes of noise, so by default
bars appear only when stderr is a terminal; ``--progress``/``--no-progress`` override that, and
``-q`` turns them off. The rate is averaged over the whole run (``smoothing=0``): the first
batches include start-up, and a moving average there gives wild first ETAs.

Where the count is known up front (train, evaluate, calibrate, finetune) the bar has a total and
a time left from the start. A scan's crawl streams (a folder of millions of files is not listed
before the first is read), so its bar counts what the crawl has found so far (``Bar.found``) and
becomes a bounded bar, with percentage and time left, once the crawl ends (``Bar.crawled``).
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


class Bar(tqdm):
    """A tqdm bar whose total may be learnt on the way (``found``, then ``crawled``)."""

    listed = 0  # items the crawl has found so far

    def found(self, n: int = 1) -> None:
        """``n`` more items to come: shown as the running count while the total is unknown."""
        self.listed += n
        if self.total is None:
            self.set_postfix_str(f"{self.listed} found so far, still listing", refresh=False)

    def crawled(self) -> None:
        """The crawl has ended: what it found is the total, and the bar shows time left."""
        if self.total is None:
            self.total = self.listed
            self.set_postfix_str("", refresh=False)
            self.refresh()


def bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str | None = None,
        unit: str = "file", show: bool = True, leave: bool = False) -> Bar:
    return Bar(iterable, total=total, desc=desc, unit=unit, disable=not show, leave=leave,
               file=sys.stderr, smoothing=0, mininterval=0.5, dynamic_ncols=True)
