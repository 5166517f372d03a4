"""Inputs: what a scan reads, each object named by a typed location (``location.Location``).

A source is a module that owns one kind of location and answers for it:

- ``claim(raw) -> Location | None``: the location a user-typed name means, if this source's;
- ``from_display(shown) -> Location | None``: the location a report ``path`` (``display``) names;
- ``expand(loc, crawl) -> Iterator[Entry]``: what a root named by the user stands for (a folder's
  files, a prefix's objects, or the object itself);
- ``exists(loc)``, ``is_regular(loc)``: cheap checks before a scan starts and while crawling;
- ``stat(loc) -> EntryStat``, ``read(loc, max_bytes) -> (bytes, EntryStat)``;
- ``open_seekable(loc) -> (file, size, version tag)`` and ``version_tag(loc)``: random access, for
  archives kept in it.

``SOURCES`` lists them in the order they are asked to claim a name (the local file system last:
it claims everything). A new kind of input is one module and one line here. Modules are imported
on first use, so a local scan never imports a store's client. Nothing outside this package tests
a string for ``://`` or ``::``: everything else holds locations. Imports no torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType
from typing import BinaryIO

from .location import Crawl, Entry, EntryStat, Location

SOURCES: dict[str, str] = {
    "archive": "aiiscan.inputs.archive",  # SHARD::MEMBER (first: its container is any other kind)
    "store": "aiiscan.inputs.store",  # s3://, gs://, az://, abfs://, http(s):// (lists only)
    "local": "aiiscan.inputs.local",  # everything else: a path in the local file system
}

_LOADED: dict[str, ModuleType] = {}


def source(name: str) -> ModuleType:
    """The module of source ``name``, imported on first use."""
    mod = _LOADED.get(name)
    if mod is None:
        mod = _LOADED[name] = importlib.import_module(SOURCES[name])
    return mod


def parse(raw: str) -> Location:
    """The location a name typed by a user (an argument, a list line) means."""
    for name in SOURCES:
        loc = source(name).claim(raw)
        if loc is not None:
            return loc
    raise ValueError(f"no source claims {raw!r}")  # unreachable: the local source claims all


def from_display(shown: str) -> Location:
    """The location a report's ``path`` names: ``Location.display`` undone, so that a store key
    holding ``::`` is that object, not an archive member (``parse`` reads what a user types)."""
    for name in SOURCES:
        loc = source(name).from_display(shown)
        if loc is not None:
            return loc
    raise ValueError(f"no source claims {shown!r}")  # unreachable: the local source claims all


def expand(loc: Location, crawl: Crawl) -> Iterator[Entry]:
    return source(loc.source).expand(loc, crawl)


def exists(loc: Location) -> bool:
    """False only when the name surely names nothing (a local path that does not exist); a
    remote one is not asked here, it comes out of the crawl as an error row."""
    return source(loc.source).exists(loc)


def is_regular(loc: Location) -> bool:
    return source(loc.source).is_regular(loc)


def stat(loc: Location) -> EntryStat:
    """Size, mtime (µs) and content tag; raises ``OSError`` when the object cannot be stated."""
    return source(loc.source).stat(loc)


def read(loc: Location, max_bytes: int) -> tuple[bytes, EntryStat]:
    """The object's bytes (at most ``max_bytes``, else ``location.Refused``) and its stat."""
    return source(loc.source).read(loc, max_bytes)


def open_seekable(loc: Location) -> tuple[BinaryIO, int | None, str]:
    return source(loc.source).open_seekable(loc)


def version_tag(loc: Location) -> str | None:
    return source(loc.source).version_tag(loc)


def is_remote(raw: str) -> bool:
    """Whether a name typed by a user (an output, a report to read) is an object in a store."""
    return parse(raw).source == "store"
