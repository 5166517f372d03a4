"""Locations: the typed name of exactly one object a scan reads.

A location is a value (frozen, hashable, picklable to decode workers) made once, where a name
enters the scan: parsed from what a user typed (``inputs.parse``), or built by a listing from what
the file system, the store or the archive returned. Nothing downstream re-parses a string, so a
bucket key that happens to contain ``::`` or ``?versionId=`` names itself and no other object.

``raw`` is the name as typed or found (file names keep undecodable bytes as surrogates);
``display`` is the report's ``path``: valid UTF-8, one string per object (``textsafe``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

from ..errors import AiiscanError
from ..textsafe import display_path


class SourceError(OSError):
    """An object or listing that cannot be read; ``str(exc)`` is the row's one-line reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class ListingLost(AiiscanError):
    """A listing failed for good mid-way (throttling, a timeout, a lost connection, after the
    retries): what is left of it is unknown, so the scan must not finish as if it were
    complete. The scan driver stops resumably."""


class Refused(ValueError):
    """An object that exists but is not read (a folder, a FIFO, over the size cap); the message
    is the row's one-line reason."""


# The report's mtime is a timestamp[us] (int64) that every reader turns into a date: years 1 to
# 9999, the range of Python's datetime, DuckDB's and pandas' readers.
MIN_MTIME_US = -62_135_596_800_000_000  # 0001-01-01T00:00:00Z
MAX_MTIME_US = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z
MAX_SIZE = (1 << 63) - 1  # the report's int64


def valid_mtime_us(value: object) -> int | None:
    """``value`` (microseconds since the epoch, int or float) as an int when it names an instant
    in years 1 to 9999; None for anything else (NaN, infinities, 1e30, a bool, a string). Never
    raises: a file's metadata is not the scan's business to trust."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if not MIN_MTIME_US <= value <= MAX_MTIME_US:
        return None
    return int(value)


def mtime_us_of_seconds(seconds: object) -> int | None:
    """An mtime given in seconds (a tar header's or pax record's, a store's float) as
    microseconds, or None when it is not a time in years 1 to 9999 (see ``valid_mtime_us``)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return None
    if isinstance(seconds, float):
        if not math.isfinite(seconds) or abs(seconds) > 1e12:
            return None
        return valid_mtime_us(int(seconds * 1_000_000))
    return valid_mtime_us(seconds * 1_000_000) if abs(seconds) <= 10**12 else None


def _valid_size(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SIZE:
        return None
    return value


class _Stat(NamedTuple):
    size: int | None
    mtime_us: int | None
    etag: str | None


class EntryStat(_Stat):
    """What ``--resume``/``--incremental`` compare: size in bytes, mtime in microseconds (the
    report's unit), and a content tag (an object's ETag or version id; for an archive member,
    its CRC or the archive's identity and the member's offset; None for a local file).

    Every source builds its stats here, so this is where raw metadata is checked, once for all
    of them (local files, store objects, tar and zip members): an mtime outside years 1 to 9999
    or not finite (a pax ``mtime=inf``, ``1e30``) and a size that is negative or past int64
    become None (a null in the row), never an exception and never a value that cannot be
    written."""

    __slots__ = ()

    def __new__(cls, size: int | None, mtime_us: int | float | None, etag: str | None) -> EntryStat:
        return super().__new__(cls, _valid_size(size), valid_mtime_us(mtime_us), etag)


@dataclass(frozen=True)
class Location:
    """One object. Subclasses live in their source's module and name it in ``source`` (a key of
    ``inputs.SOURCES``), through which it is stated, read and expanded."""

    source: ClassVar[str]

    @property
    def raw(self) -> str:
        raise NotImplementedError

    def display(self) -> str:
        """The report's ``path``: undecodable bytes as ``\\xNN``, a backslash as ``\\\\``."""
        return display_path(self.raw)

    def key(self) -> str:
        """What makes two spellings one input when a scan de-duplicates its inputs (valid
        UTF-8, like ``display``, so that it can be stored)."""
        return self.display()

    def __str__(self) -> str:
        return self.display()


@dataclass(frozen=True)
class Entry:
    """One input found by the crawl. ``explicit``: named by the user (always reported, even when
    not an image). ``skip``: a reason not to read it at all (a link not followed, a loop)."""

    location: Location
    explicit: bool = False
    skip: str | None = None

    @property
    def path(self) -> str:
        return self.location.display()


@dataclass
class Crawl:
    """How a root is expanded: whether links are followed, whether it came from a list file (a
    list line names an object unless it ends in ``/``: no request per line), and the folders
    already visited (loops are cut)."""

    follow_symlinks: bool = False
    in_list: bool = False
    seen_dirs: set[tuple[int, int]] = field(default_factory=set)
