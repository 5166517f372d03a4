"""Local files: the fallback source, which claims every name no other source claims.

Directories are walked depth first with entries sorted by name, so two scans of the same tree
list files identically; symbolic links are not followed unless asked, and when they are,
directory loops are cut. The walk keeps its own stack of open folders instead of recursing, so
a tree thousands of levels deep costs memory per level, never Python's recursion limit.
"""

from __future__ import annotations

import os
import stat as statmod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, ClassVar

from ..textsafe import display_path, path_from_display
from .location import Crawl, Entry, EntryStat, Location, Refused


@dataclass(frozen=True)
class LocalFile(Location):
    """A path in the local file system (a str; undecodable bytes as surrogateescape)."""

    path: str
    source: ClassVar[str] = "local"

    @property
    def raw(self) -> str:
        return self.path

    def key(self) -> str:
        return display_path(lexical_key(self.path))


def lexical_key(path: str) -> str:
    """One spelling per file name, lexically: ``a.jpg``, ``./a.jpg`` and ``d//a.jpg`` vs
    ``d/a.jpg`` agree. ``..`` is kept (after a symbolic link it is not the parent), and nothing
    is resolved, so no file is touched."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    return ("/" if path.startswith("/") else "") + "/".join(parts) or "."


def claim(raw: str) -> LocalFile:
    return LocalFile(raw)


def from_display(shown: str) -> LocalFile:
    return LocalFile(path_from_display(shown))


def exists(loc: LocalFile) -> bool:
    return os.path.lexists(loc.path)


def expand(loc: LocalFile, crawl: Crawl) -> Iterator[Entry]:
    """A folder named by the user: every file below it; any other name: itself, explicitly."""
    path = loc.path
    if os.path.isdir(path) and (crawl.follow_symlinks or not os.path.islink(path)):
        st = os.stat(path)
        crawl.seen_dirs.add((st.st_dev, st.st_ino))
        yield from _walk(path, crawl.follow_symlinks, crawl.seen_dirs)
    else:
        yield Entry(loc, explicit=True)


def is_regular(loc: LocalFile) -> bool:
    return os.path.isfile(loc.path)


def _listing(folder: str) -> list[os.DirEntry] | str:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as exc:
        return f"cannot list directory: {exc.strerror}"


def _walk(root: str, follow: bool, seen: set[tuple[int, int]]) -> Iterator[Entry]:
    stack: list[Iterator[os.DirEntry]] = []
    first = _listing(root)
    if isinstance(first, str):
        yield Entry(LocalFile(root), explicit=True, skip=first)
        return
    stack.append(iter(first))
    while stack:
        e = next(stack[-1], None)
        if e is None:
            stack.pop()
            continue
        descend = None
        try:
            entry, descend = _visit(e, follow, seen)
        except OSError as exc:
            entry = Entry(LocalFile(e.path), explicit=True, skip=f"cannot stat: {exc.strerror}")
        if entry is not None:
            yield entry
        if descend is not None:
            listing = _listing(descend)
            if isinstance(listing, str):
                yield Entry(LocalFile(descend), explicit=True, skip=listing)
            else:
                stack.append(iter(listing))


def _visit(e: os.DirEntry, follow: bool, seen: set[tuple[int, int]]) -> tuple[Entry | None, str | None]:
    """What a folder entry gives: an entry to yield, or a folder to descend into."""
    path = e.path
    if e.is_symlink():
        if not follow:
            return Entry(LocalFile(path), skip="symbolic link not followed (use --follow-symlinks)"), None
        try:
            st = os.stat(path)
        except OSError:
            return Entry(LocalFile(path), explicit=True, skip="dangling symbolic link or link loop"), None
        if statmod.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in seen:
                return Entry(LocalFile(path), skip="symbolic link loop (directory already visited)"), None
            seen.add(key)
            return None, path
        return Entry(LocalFile(path)), None
    if e.is_dir(follow_symlinks=False):
        st = e.stat(follow_symlinks=False)
        seen.add((st.st_dev, st.st_ino))
        return None, path
    return Entry(LocalFile(path)), None


def stat(loc: LocalFile) -> EntryStat:
    st = os.stat(loc.path)
    return EntryStat(st.st_size, st.st_mtime_ns // 1000, None)


def read(loc: LocalFile, max_bytes: int) -> tuple[bytes, EntryStat]:
    """The file's bytes and its stat, from one open (the file may change under us). The open
    never blocks: a FIFO or a device is refused before anything is read."""
    fd = os.open(loc.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if statmod.S_ISDIR(st.st_mode):
            raise Refused("is a directory")
        if not statmod.S_ISREG(st.st_mode):
            raise Refused("not a regular file (FIFO, socket or device)")
        if st.st_size > max_bytes:
            raise Refused(f"file of {st.st_size} bytes exceeds the size cap {max_bytes}")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise Refused(f"file grew past the size cap {max_bytes} while being read")
        return data, EntryStat(st.st_size, st.st_mtime_ns // 1000, None)
    finally:
        os.close(fd)


def open_seekable(loc: LocalFile) -> tuple[BinaryIO, int | None, str]:
    """A seekable binary file (for archives), its size, and a tag naming this version of it."""
    # non-blocking open, then fstat: a FIFO, socket or device in an archive's place is refused,
    # never waited on (a plain open() of a FIFO blocks until a writer comes, i.e. for ever)
    fd = os.open(loc.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    st = os.fstat(fd)
    if not statmod.S_ISREG(st.st_mode):
        os.close(fd)
        raise Refused("not a regular file (FIFO, socket, device or folder)")
    os.set_blocking(fd, True)
    f = os.fdopen(fd, "rb")  # kept open by the archive cache
    return f, st.st_size, f"{st.st_size}-{st.st_mtime_ns}-{st.st_ino}"


def version_tag(loc: LocalFile) -> str | None:
    """The tag ``open_seekable`` gave this version of the file, without opening it (a cached
    archive is reused while it matches)."""
    st = os.stat(loc.path)
    return f"{st.st_size}-{st.st_mtime_ns}-{st.st_ino}"
