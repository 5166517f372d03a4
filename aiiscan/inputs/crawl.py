"""The crawl: which objects a scan looks at, in a stable order, each once.

Roots (arguments) come first, then the lines of a list file. Each is parsed once into a location
(``inputs.parse``) and expanded by its source: a folder into its files (sorted, recursive), a
store prefix into its objects (streamed, in the store's key order), anything else into itself.
An archive named by the user is expanded into its members; one found in a folder or a prefix
only with ``archives=True``. Whether a file is an image is decided later by its magic bytes, in
the decode workers, which read the file anyway; the crawl only filters by glob.
"""

from __future__ import annotations

import fnmatch
import io
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence

from . import archive, expand, is_regular, parse
from .location import Crawl, Entry, Location

AMBIGUOUS = ("name is ambiguous: '::' after an archive suffix is the archive-member syntax "
             "(SHARD::MEMBER); rename the file")


def _matches(loc: Location, patterns: Sequence[str]) -> bool:
    path = loc.raw
    name = os.path.basename(path)
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(name, p) for p in patterns)


def read_list(source: str) -> Iterator[str]:
    """Paths from a list file, one per line (``-`` reads standard input). UTF-8, with or without
    a byte-order mark (Windows editors write one: it is not part of the first name); undecodable
    bytes are kept as the names they are. Lines end at LF; a CR before it goes (CRLF files).
    Blank lines and comments (first non-blank character ``#``) are skipped: name a file
    starting with ``#`` as ``./#name``."""
    stdin = source == "-"
    raw = sys.stdin.buffer if stdin else open(source, "rb")  # noqa: SIM115
    stream = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="\n")
    try:
        for line in stream:
            line = line.removesuffix("\n").removesuffix("\r")
            if line.strip() and not line.lstrip().startswith("#"):
                yield line
    finally:
        if stdin:
            stream.detach()  # standard input stays open for whoever reads it next
        else:
            stream.close()


def _expanded(loc: Location, crawl: Crawl, archives: bool) -> Iterator[Entry]:
    """A root's entries, archives opened into their members: always when the user named the
    archive, with ``archives`` when a folder or a prefix held it."""
    for entry in expand(loc, crawl):
        found = entry.location
        if found.source == "local" and not entry.explicit and parse(found.raw).source != "local":
            yield Entry(found, explicit=True, skip=AMBIGUOUS)
        elif (entry.skip is None and (entry.explicit or archives) and archive.is_container(found)
              and is_regular(found)):
            yield from archive.members(found)
        else:
            yield entry


def iter_inputs(paths: Iterable[str], from_list: str | None = None,
                include: Sequence[str] = (), exclude: Sequence[str] = (),
                follow_symlinks: bool = False, seen: Callable[[str], bool] | None = None,
                archives: bool = False, on_root: Callable[[int], None] | None = None) -> Iterator[Entry]:
    """Every input once, in a stable order: given paths first (directories expanded), then the
    list. Spellings of one name (``Location.key``) count once, in the form first met.

    ``seen(key)`` records a key and says whether it is new (default: a set in memory; a scan
    passes its on-disk ``reports.ledger.Ledger.add_new``, so that 100 million names cost no
    memory). One root and no list cannot repeat a name, so nothing is recorded then, except
    archive members (a tar may hold one name twice; the first is scanned). Object URLs and
    members are keyed as written: ``a//b`` and ``a/b`` are two objects in a store.

    ``on_root(i)`` is called before the entries of root ``i`` (the list file, all its lines: index
    ``len(paths)``), so that a scan can say which root held nothing."""
    paths = list(paths)
    if seen is None:
        keys: set[str] = set()

        def seen(key: str) -> bool:
            new = key not in keys
            keys.add(key)
            return new

    record = len(paths) > 1 or bool(from_list)
    crawl = Crawl(follow_symlinks=follow_symlinks)
    lists: list[Iterable[str]] = [paths]
    if from_list:
        lists.append(read_list(from_list))
    for index, names in enumerate(lists):
        crawl.in_list = index > 0
        if index and on_root:
            on_root(len(paths))
        for number, raw in enumerate(names):
            if not index and on_root:
                on_root(number)
            for entry in _expanded(parse(raw), crawl, archives):
                loc = entry.location
                if not entry.explicit and include and not _matches(loc, include):
                    continue
                if exclude and _matches(loc, exclude):
                    continue
                if (record or loc.source == "archive") and not seen(loc.key()):
                    continue
                yield entry
