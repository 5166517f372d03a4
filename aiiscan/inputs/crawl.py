"""The source stage: which files a scan looks at, in a stable order.

Directories are walked recursively with entries sorted by name, so two scans of the same
tree list files identically. Whether a file is an image is decided later by its magic bytes
(in the decode workers, which read the file anyway); the crawler only filters by glob.
Symbolic links are not followed unless asked; when they are, directory loops are cut.

Object-store URLs (``stores``) and archive shards (``shards``) are inputs too: a URL prefix is
listed as a stream, an archive named as a root or in a list is expanded member by member
(``SHARD::MEMBER``), and one found in a folder or a prefix only with ``archives=True``.
Neither module is imported for a purely local scan's work beyond a string test per input.
"""

from __future__ import annotations

import fnmatch
import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from ..errors import AiiscanError

IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".dib", ".tif", ".tiff",
    ".mpo", ".heic", ".heif", ".avif",
})


def sniff_format(head: bytes) -> str | None:
    """Image format from the first bytes of a file, or None when it is not one we decode."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"):
            return "HEIF"
    return None


@dataclass(frozen=True)
class Entry:
    """One input. ``explicit``: named by the user (always reported, even when not an image).
    ``skip``: a reason not to read it at all (a link not followed, a loop)."""

    path: str
    explicit: bool = False
    skip: str | None = None


def _matches(path: str, patterns: Sequence[str]) -> bool:
    name = os.path.basename(path)
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(name, p) for p in patterns)


AMBIGUOUS = ("name is ambiguous: '::' after an archive suffix is the archive-member syntax "
             "(SHARD::MEMBER); rename the file")


def _walk(root: str, follow: bool, seen: set[tuple[int, int]]) -> Iterator[Entry]:
    try:
        with os.scandir(root) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        yield Entry(root, explicit=True, skip=f"cannot list directory: {exc.strerror}")
        return
    for e in entries:
        path = e.path
        try:
            if e.is_symlink():
                if not follow:
                    yield Entry(path, skip="symbolic link not followed (use --follow-symlinks)")
                    continue
                try:
                    st = os.stat(path)
                except OSError:
                    yield Entry(path, explicit=True, skip="dangling symbolic link or link loop")
                    continue
                if stat.S_ISDIR(st.st_mode):
                    key = (st.st_dev, st.st_ino)
                    if key in seen:
                        yield Entry(path, skip="symbolic link loop (directory already visited)")
                        continue
                    seen.add(key)
                    yield from _walk(path, follow, seen)
                    continue
                yield Entry(path)
            elif e.is_dir(follow_symlinks=False):
                st = e.stat(follow_symlinks=False)
                seen.add((st.st_dev, st.st_ino))
                yield from _walk(path, follow, seen)
            else:
                yield Entry(path)
        except OSError as exc:
            yield Entry(path, explicit=True, skip=f"cannot stat: {exc.strerror}")


def read_list(source: str) -> Iterator[str]:
    """Paths from a list file, one per line (``-`` reads standard input). Blank lines and
    comments (first non-blank character ``#``) are skipped: name a file starting with ``#``
    as ``./#name``."""
    stream = sys.stdin if source == "-" else open(source, encoding="utf-8",  # noqa: SIM115
                                                     errors="surrogateescape")
    try:
        for line in stream:
            line = line.rstrip("\r\n")
            if line.strip() and not line.lstrip().startswith("#"):
                yield line
    finally:
        if stream is not sys.stdin:
            stream.close()


def lexical_key(path: str) -> str:
    """One spelling per file name, lexically: ``a.jpg``, ``./a.jpg`` and ``d//a.jpg`` vs
    ``d/a.jpg`` agree. ``..`` is kept (after a symbolic link it is not the parent), and nothing
    is resolved, so no file is touched."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    return ("/" if path.startswith("/") else "") + "/".join(parts) or "."


def _members(shard: str) -> Iterator[Entry]:
    from .archive import iter_members
    for path, problem, explicit in iter_members(shard):
        yield Entry(path, explicit=explicit, skip=problem)


class ListingLost(AiiscanError):
    """A prefix's listing failed for good mid-way (throttling, a timeout, a lost connection,
    after the retries): what is left of the prefix is unknown, so the scan must not finish as
    if it were complete. The scan driver stops resumably."""


def _remote(raw: str, archives: bool, in_list: bool) -> Iterator[Entry]:
    """Entries for a URL or an ``archive::member`` input named by the user. A listing that is
    cut off by a transient failure raises ``ListingLost``; denied or missing is an error entry,
    and so is a prefix under which nothing at all is listed."""
    from . import store as stores
    from .archive import is_archive, split_member
    if split_member(raw) is not None:
        yield Entry(raw, explicit=True)
        return
    if stores.scheme(raw) not in stores.LISTABLE:  # http(s): one object per line
        yield from (_members(raw) if is_archive(raw) else [Entry(raw, explicit=True)])
        return
    try:
        # A list line is an object unless it ends with "/" (no request per line); a root is
        # asked: object, prefix, or nothing.
        if raw.endswith("/") or raw.rstrip("/").count("/") == 2:  # ".../" or "s3://bucket"
            kind = "directory"
        else:
            kind = "file" if in_list else stores.url_kind(raw)
    except stores.StoreError as exc:
        if exc.kind in stores.TRANSIENT:
            raise ListingLost(f"cannot reach {raw}: {exc}") from None
        yield Entry(raw, explicit=True, skip=str(exc))
        return
    if kind == "missing":
        yield Entry(raw, explicit=True, skip=stores.NOTHING_THERE)
    elif kind == "file":
        yield from (_members(raw) if is_archive(raw) else [Entry(raw, explicit=True)])
    else:
        try:
            for url in stores.iter_prefix(raw):
                if archives and is_archive(url):
                    yield from _members(url)
                else:
                    yield Entry(url)
        except stores.NothingListed as exc:  # a typo'd prefix: an error row, as a missing object
            yield Entry(raw, explicit=True, skip=str(exc))
        except stores.StoreError as exc:
            if exc.kind in stores.TRANSIENT:
                raise ListingLost(f"the listing of {raw} was cut off: {exc}") from None
            yield Entry(raw, explicit=True, skip=f"cannot list the prefix: {exc}")


def iter_inputs(paths: Iterable[str], from_list: str | None = None,
                include: Sequence[str] = (), exclude: Sequence[str] = (),
                follow_symlinks: bool = False, seen: Callable[[str], bool] | None = None,
                archives: bool = False) -> Iterator[Entry]:
    """Every input once, in a stable order: given paths first (directories expanded), then the
    list. Spellings of one name (``lexical_key``) count once, in the form first met.

    ``seen(key)`` records a key and says whether it is new (default: a set in memory; a scan
    passes its on-disk ``ledger.Ledger.add_new``, so that 100 million names cost no memory).
    One root and no list cannot repeat a name, so nothing is recorded then, except archive
    members (a tar may hold one name twice; the first is scanned).

    URLs (``s3://b/prefix/``) are listed, archives named as inputs are expanded into
    ``SHARD::MEMBER`` entries; with ``archives=True`` so are archives found while crawling.
    URLs and members are keyed as written: ``a//b`` and ``a/b`` are two objects in a store."""
    paths = list(paths)
    if seen is None:
        keys: set[str] = set()

        def seen(key: str) -> bool:
            new = key not in keys
            keys.add(key)
            return new

    record = len(paths) > 1 or bool(from_list)
    seen_dirs: set[tuple[int, int]] = set()

    def admit(entry: Entry) -> Entry | None:
        if not entry.explicit and include and not _matches(entry.path, include):
            return None
        if exclude and _matches(entry.path, exclude):
            return None
        path = entry.path
        if "::" in path or "://" in path:
            from .store import is_indirect
            if is_indirect(path):
                if (record or "::" in path) and not seen(path):
                    return None
                return entry
        if record and not seen(lexical_key(path)):
            return None
        return entry

    sources: list[Iterable[str]] = [paths]
    if from_list:
        sources.append(read_list(from_list))
    for index, source in enumerate(sources):
        for raw in source:
            if "::" in raw or "://" in raw:  # cheap test first: local names rarely hold either
                from .store import is_indirect
                if is_indirect(raw):
                    for entry in _remote(raw, archives, in_list=index > 0):
                        kept = admit(entry)
                        if kept:
                            yield kept
                    continue
            if os.path.isdir(raw) and (follow_symlinks or not os.path.islink(raw)):
                st = os.stat(raw)
                seen_dirs.add((st.st_dev, st.st_ino))
                for entry in _walk(raw, follow_symlinks, seen_dirs):
                    if "::" in entry.path:
                        from .archive import split_member
                        if split_member(entry.path) is not None:
                            entry = Entry(entry.path, explicit=True, skip=AMBIGUOUS)
                    elif archives and not entry.skip and _is_archive_file(entry.path):
                        for member in _members(entry.path):
                            kept = admit(member)
                            if kept:
                                yield kept
                        continue
                    kept = admit(entry)
                    if kept:
                        yield kept
            elif _is_archive_file(raw):
                for member in _members(raw):
                    kept = admit(member)
                    if kept:
                        yield kept
            else:
                kept = admit(Entry(raw, explicit=True))
                if kept:
                    yield kept


def _is_archive_file(path: str) -> bool:
    """An archive by its suffix that is a regular file (a link to one is followed only when
    named by the user, like any named file)."""
    lower = path.lower()
    if not lower.endswith((".tar", ".tgz", ".tar.gz", ".zip")):
        return False
    return os.path.isfile(path)


def _looks_like_image(entry: Entry) -> bool:
    if entry.explicit:
        return True
    try:
        with open(entry.path, "rb") as f:
            return sniff_format(f.read(16)) is not None
    except OSError:
        return False


FOUND_HOW = ("Folders are searched recursively for image files; symbolic links are not followed "
             "(name such files in a list with --natural-list instead).")


def list_images(paths: Iterable[str], from_list: str | None = None) -> list[str]:
    """Image files for training, calibration and evaluation: named files are kept as given
    (a bad one becomes a counted failure later); files found in folders must look like images."""
    return [e.path for e in iter_inputs(paths, from_list) if not e.skip and _looks_like_image(e)]
