"""Locations: the typed name of exactly one object a scan reads.

A location is a value (frozen, hashable, picklable to decode workers) made once, where a name
enters the scan: parsed from what a user typed (``inputs.parse``), or built by a listing from what
the file system, the store or the archive returned. Nothing downstream re-parses a string, so a
bucket key that happens to contain ``::`` or ``?versionId=`` names itself and no other object.

``raw`` is the name as typed or found (file names keep undecodable bytes as surrogates);
``display`` is the report's ``path``: valid UTF-8, one string per object (``textsafe``).
"""

from __future__ import annotations

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


class EntryStat(NamedTuple):
    """What ``--resume``/``--incremental`` compare: size in bytes, mtime in microseconds (the
    report's unit), and a content tag (an object's ETag or version id; for an archive member,
    its CRC or the archive's identity and the member's offset; None for a local file)."""

    size: int | None
    mtime_us: int | None
    etag: str | None


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
