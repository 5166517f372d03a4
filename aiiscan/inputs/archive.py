"""Archive shards as inputs: ``.tar``, ``.tar.gz``/``.tgz`` and ``.zip``, member by member.

A source (``inputs.SOURCES``): an ``ArchiveMember`` is a container (any other location: a
local file, an object in a store) and the member's name exactly as the archive stores it,
shown as ``SHARD::MEMBER`` (``shards/000.tar::dir/img.jpg``, ``s3://b/000.tar::img.jpg``). A
user names one the same way: the first ``::`` after a name ending in an archive suffix splits
the two, so member names may contain ``::`` but container names typed that way may not. The
container is opened through its own source; this module knows none of them.

Nothing is ever extracted to disk: members are read into memory under the decode stage's size
cap. Hostile archives give one error entry (or row) each and the scan goes on:

- names that are absolute or climb out (``/etc/x``, ``../../x``, NUL): an error entry, never read;
- a zip bomb: a member whose declared size is over ``max_ratio`` times its compressed size, or
  a ``.tar.gz`` stream that expands past ``max_ratio`` times the compressed bytes read so far
  or past ``max_total``: refused before or while inflating, never past the cap;
- a quoted-overlap zip bomb (members sharing their compressed bytes, each within the ratio):
  members whose ranges overlap are refused from the central directory alone, one whose local
  header reaches the next member when it is read; whatever the members, a zip's members may
  declare at most ``Limits.budget`` bytes in all (the members past it are refused), and no
  member inflates past its declared size. An uncompressed tar reads each byte once: its
  members cannot overlap (sparse members are refused);
- a truncated archive, a member whose header lies about its size: the members before it are
  listed, then one error entry for the archive; reading a short member is an error row;
- a nested archive (a member named ``*.tar``/``*.zip`` ...): an error entry, not expanded
  (extract it and scan it as its own root);
- a huge member count: a tar listing stops after ``max_members`` with an error entry; a zip
  whose central directory holds more entries (counted, whatever its end record declares) is
  refused with one error entry; its directory is streamed (``zipdir``), never held whole: each
  process that opens a zip keeps 16 bytes per entry;
- a member time that is not a time (a pax ``mtime`` of ``inf`` or ``1e30``, a DOS date of
  month 0): a null ``mtime`` in the row (``location.EntryStat``);
- link, device and FIFO members: links are skipped like symbolic links in a folder, the others
  are error entries; encrypted zip members are error entries.

Reading one member by name needs the archive's index. Zip has one (its central directory; a
member the crawl found carries its record's offset, so a worker reads that record only);
tar does not, so each process keeps a forward cursor per open tar shard (a small LRU of open
shards) that scans headers only as far as the member asked for. Workers get members in
archive order, so a whole shard costs each worker about one pass, also for ``.tar.gz``
(``GzipFile`` seeks forward by inflating; only a backward seek restarts it). With duplicate
member names, the first one is scanned (the crawl lists the name once).
"""

from __future__ import annotations

import bisect
import lzma
import math
import re
import stat as statmod
import struct
import tarfile
import threading
import time
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, ClassVar

import numpy as np

from ..textsafe import display_path, path_from_display
from . import from_display as from_shown
from . import open_seekable, parse, version_tag, zipdir
from .location import Entry, EntryStat, Location, Refused, SourceError, mtime_us_of_seconds

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
SEP = "::"
_MEMBER = re.compile(r"^(.*?\.(?:tar|tar\.gz|tgz|zip))::(.*)\Z", re.IGNORECASE | re.DOTALL)


class ShardError(SourceError):
    """An archive or member that cannot be read; ``str(exc)`` is the row's one-line reason."""


@dataclass(frozen=True)
class ArchiveMember(Location):
    """A member of an archive: the container's location and the member's stored name."""

    container: Location
    member: str
    at: int | None = field(default=None, compare=False)  # a zip member's directory record, as
    #                                 the crawl found it: a hint, not part of the name
    source: ClassVar[str] = "archive"

    @property
    def raw(self) -> str:
        return f"{self.container.raw}{SEP}{self.member}"

    def display(self) -> str:
        """``CONTAINER::MEMBER``, each part as its own source shows it: the first ``::`` after
        the container's archive suffix is always this separator (a store key's own ``::`` is
        escaped in its container's part)."""
        return f"{self.container.display()}{SEP}{display_path(self.member)}"


@dataclass(frozen=True)
class Limits:
    """What one archive may cost, whatever it holds (the README's "Bounds")."""

    max_members: int = 100_000  # entries per archive (a zip's real directory entries); also
    #                             bounds each worker's tar index and zip offsets (16 B/entry)
    max_ratio: float = 200.0  # uncompressed / compressed bytes, checked above ratio_floor
    ratio_floor: int = 1 << 20
    max_total: int = 64 << 30  # bytes an archive may inflate to in all

    def budget(self, archive_size: int) -> int:
        """Bytes an archive's members may declare (zip) or inflate to (``.tar.gz``) in all:
        ``max_ratio`` x its size (at least ``ratio_floor``), at most ``max_total``."""
        return int(min(self.max_total, max(self.ratio_floor, self.max_ratio * archive_size)))


DEFAULT_LIMITS = Limits()


def is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def is_container(loc: Location) -> bool:
    """A location whose name says it is an archive (not a member: nested archives are refused)."""
    return not isinstance(loc, ArchiveMember) and is_archive(loc.raw)


def claim(raw: str) -> ArchiveMember | None:
    """``SHARD::MEMBER`` as a user types it, the container parsed by its own source."""
    m = _MEMBER.match(raw)
    return ArchiveMember(parse(m.group(1)), m.group(2)) if m else None


def from_display(shown: str) -> ArchiveMember | None:
    """The member a report ``path`` names (``ArchiveMember.display`` undone)."""
    m = _MEMBER.match(shown)
    return ArchiveMember(from_shown(m.group(1)), path_from_display(m.group(2))) if m else None


def expand(loc: ArchiveMember, crawl: Any) -> Iterator[Entry]:  # noqa: ARG001
    yield Entry(loc, explicit=True)


def exists(loc: ArchiveMember) -> bool:  # noqa: ARG001
    return True  # a missing member or archive comes out of the crawl as an error row


def is_regular(loc: ArchiveMember) -> bool:  # noqa: ARG001
    return True


def _unsafe_name(name: str) -> str | None:
    if not name or "\x00" in name:
        return "unsafe member name (empty or with a NUL byte): not read"
    parts = re.split(r"[/\\]", name)
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "unsafe member name (absolute path): not read"
    if ".." in parts:
        return "unsafe member name (climbs out with '..'): not read"
    return None


def _oneline(exc: BaseException) -> str:
    text = " ".join(f"{exc}".split())
    return text[:300] or type(exc).__name__


def _container_format(shard: Location) -> str:
    return "zip" if shard.raw.lower().endswith(".zip") else "tar"


def _open_error(shard: Location, exc: BaseException) -> ShardError:
    if isinstance(exc, ShardError):
        return exc
    if isinstance(exc, Refused):
        return ShardError(f"archive is {exc}")
    if isinstance(exc, SourceError):
        return ShardError(f"archive: {exc}")
    if isinstance(exc, FileNotFoundError):
        return ShardError("no such archive (missing, or vanished before it could be read)")
    if isinstance(exc, PermissionError):
        return ShardError("archive: permission denied")
    if isinstance(exc, IsADirectoryError):
        return ShardError("archive is a directory")
    return ShardError(f"not a readable {_container_format(shard)} archive: {_oneline(exc)}")


# ---------------------------------------------------------------------------------------------
# Per-member checks shared by the listing and the reader

@dataclass(frozen=True)
class _Member:
    name: str
    size: int  # declared uncompressed size
    mtime_us: int | None
    etag: str
    problem: str | None = None  # a reason not to read it
    link: bool = False  # a link member: skipped like a symbolic link
    offset: int = 0  # tar: data offset in the (uncompressed) stream
    entry: zipdir.CDEntry | None = None  # zip: its central-directory record


def _problem(name: str) -> str | None:
    bad = _unsafe_name(name)
    if bad:
        return bad
    if is_archive(name):
        return "nested archive: not expanded (extract it and scan it as its own root)"
    return None


def _tar_mtime_us(mtime: object) -> int | None:
    """Whole seconds, as before pax times had fractions; anything that is not a time in years
    1 to 9999 (a pax ``inf``, ``nan``, ``1e30``) is None (``location.mtime_us_of_seconds``)."""
    if isinstance(mtime, float) and math.isfinite(mtime) and abs(mtime) < 1e12:
        mtime = int(mtime)
    return mtime_us_of_seconds(mtime)


def _from_tar(info: tarfile.TarInfo, tag: str) -> _Member:
    problem = _problem(info.name)
    link = info.issym() or info.islnk()
    if not problem and not link:
        if info.issparse():
            problem = "sparse tar member: not supported"
        elif not info.isreg():
            problem = "not a regular file member (device, FIFO or other special entry)"
    return _Member(info.name, info.size, _tar_mtime_us(info.mtime), f"{tag}@{info.offset}",
                   problem, link, info.offset_data)


# ---------------------------------------------------------------------------------------------
# Tar: a forward cursor with an index of what it has passed

class _TarCursor:
    def __init__(self, raw: BinaryIO, size: int | None, tag: str, limits: Limits):
        self.raw, self.size, self.tag, self.limits = raw, size, tag, limits
        self.tf = tarfile.open(fileobj=raw, mode="r:*")
        self.compressed = self.tf.fileobj is not raw
        self.index: dict[str, _Member] = {}
        self.count = 0
        self.error: str | None = None  # why the cursor stopped early

    def advance(self) -> _Member | None:
        """The next member (directories skipped), or None at the end; a corrupt archive, a
        bomb or too many members stop the cursor with ``self.error`` set."""
        while self.error is None:
            try:
                info = self.tf.next()
            except (tarfile.TarError, EOFError, OSError, zlib.error, ValueError) as exc:
                return self._stop(f"truncated or corrupt archive after {self.count} members: "
                                  f"{_oneline(exc)}")
            self.tf.members = []  # tarfile keeps every TarInfo; we keep our own small index
            if info is None:
                self.error = ""
                return None
            if self.compressed:
                out, used = self.tf.offset, max(self.raw.tell(), 1)
                if out > self.limits.max_total:
                    return self._stop(f"archive inflates past {self.limits.max_total} bytes: "
                                      "the rest is not read")
                if out > self.limits.ratio_floor and out > self.limits.max_ratio * used:
                    return self._stop(f"archive inflates over {self.limits.max_ratio:g}:1 "
                                      "(a decompression bomb?): the rest is not read")
            if info.isdir():
                continue
            self.count += 1
            if self.count > self.limits.max_members:
                return self._stop(f"more than {self.limits.max_members} members: the rest are "
                                  "not read (member cap)")
            member = _from_tar(info, self.tag)
            if (not self.compressed and self.size is not None and not member.problem
                    and member.offset + member.size > self.size):
                member = _Member(member.name, member.size, member.mtime_us, member.etag,
                                 f"truncated member: its header says {member.size} bytes, the "
                                 f"archive holds {max(self.size - member.offset, 0)}")
            self.index.setdefault(member.name, member)
            return member
        return None

    def _stop(self, reason: str) -> None:
        self.error = reason
        return None

    def find(self, name: str) -> _Member | None:
        while name not in self.index and self.error is None:
            self.advance()
        return self.index.get(name)

    def read(self, member: _Member, max_bytes: int) -> bytes:
        f = self.tf.fileobj
        f.seek(member.offset)
        data = f.read(min(member.size, max_bytes + 1))
        if len(data) < member.size:
            raise ShardError(f"truncated member: its header says {member.size} bytes, "
                             f"{len(data)} could be read")
        return data

    def close(self) -> None:
        try:
            self.tf.close()
        finally:
            self.raw.close()


# ---------------------------------------------------------------------------------------------
# Zip: the central directory checked as a whole once per process, then streamed

class _Zip:
    """An open zip. Opening it streams its central directory once (``zipdir``) and keeps, per
    entry, 16 bytes: its record's offset and its local header's offset (sorted), so that a
    member is found by its record and its data range checked against its neighbours'. While
    streaming it checks what no single entry shows:

    - the real entry count, whatever the end record declares: more than ``max_members`` and
      the archive is refused as a whole (one error row);
    - overlapping members (a "quoted-overlap" zip bomb: many members inflating the same
      bytes): a member whose local header and data (``offset + 30 + name + compressed size``)
      overlap another's, or run into the central directory, is refused; a member whose real
      local header (with its extra field) reaches the next member is refused when read;
    - the archive's inflation budget: members read in directory order may declare at most
      ``Limits.budget(archive size)`` bytes in all; the members past it are refused.

    Each refused member keeps its own row, with the reason."""

    def __init__(self, raw: BinaryIO, size: int | None, limits: Limits):
        self.raw, self.limits = raw, limits
        try:
            self.dir = zipdir.Directory(raw, size)
        except (zipdir.ZipFormatError, struct.error) as exc:
            raise ShardError(f"not a readable zip archive: {exc}") from exc
        if self.dir.declared > limits.max_members:
            raise ShardError(f"zip archive declares {self.dir.declared} members, more than the cap "
                             f"{limits.max_members}: not read")
        self.budget = limits.budget(self.dir.size)
        self.names: dict[int, int] | None = None  # hash(name) -> record offset, built on demand
        self._check()

    def _check(self) -> None:
        ats, starts, ends, sizes, readable = array("Q"), array("Q"), array("Q"), array("Q"), bytearray()
        cap = self.limits.max_members
        try:
            for e in self.dir.entries():
                if e.index >= cap:
                    raise ShardError(f"zip central directory holds more than {cap} entries (its end "
                                     f"record declares {self.dir.declared}): not read (member cap)")
                ats.append(e.at)
                starts.append(min(e.offset, _U64))
                ends.append(min(e.offset + zipdir.LOCAL_HEADER + len(e.raw_name) + e.csize, _U64))
                sizes.append(min(e.usize, _U64))
                readable.append(not e.is_dir and self._own_problem(e) is None)
        except (zipdir.ZipFormatError, struct.error) as exc:
            raise ShardError(f"not a readable zip archive: {exc}") from exc
        self.ats = ats
        self.overlapping = _overlapping(starts, ends, self.dir.cd_start)
        self.starts = np.sort(np.frombuffer(starts, dtype=np.uint64))
        self.over_budget_from = len(ats)  # the first entry index past the budget
        total = 0
        for i, ok in enumerate(readable):
            if ok and i not in self.overlapping:
                total += sizes[i]
                if total > self.budget:
                    self.over_budget_from = i
                    break

    def _own_problem(self, e: zipdir.CDEntry) -> str | None:
        """What one entry shows by itself (a name, encryption, a ratio, a method)."""
        problem = _problem(e.name)
        if problem or statmod.S_ISLNK(e.mode):
            return problem
        if e.flags & 0x1:
            return "encrypted zip member: not read"
        limits = self.limits
        if e.usize > limits.ratio_floor and e.usize > limits.max_ratio * max(e.csize, 1):
            return (f"zip member declares {e.usize} bytes from {e.csize} compressed (ratio over "
                    f"{limits.max_ratio:g}:1, a zip bomb?): not inflated")
        if e.method not in zipdir.METHODS:
            return f"zip member uses compression method {e.method}, not supported: not read"
        return None

    def member(self, e: zipdir.CDEntry) -> _Member:
        problem = self._own_problem(e)
        if problem is None and e.index in self.overlapping:
            problem = ("zip member's data overlaps another member's (a quoted-overlap zip bomb?): "
                       "not inflated")
        elif problem is None and e.index >= self.over_budget_from:
            problem = (f"archive inflation budget spent: the members before it declare over "
                       f"{self.budget} bytes in all ({self.limits.max_ratio:g} x the archive's "
                       f"{self.dir.size} bytes, at most {self.limits.max_total}): not inflated")
        return _Member(e.name, e.usize, zipdir.dos_mtime_us(e.dos_date, e.dos_time),
                       f"crc32:{e.crc:08x}", problem, statmod.S_ISLNK(e.mode), entry=e)

    def members(self) -> Iterator[_Member]:
        for e in self.dir.entries():
            if not e.is_dir:
                yield self.member(e)

    def find(self, name: str, at: int | None) -> _Member | None:
        """The first member of that name: by its record's offset when the crawl gave one, else
        through a map of name hashes to record offsets (a dict: about 100 bytes an entry, built
        once, only in a process asked for a member the crawl did not find, such as one typed)."""
        if at is not None:
            e = self._entry_at(at)
            if e is not None and e.name == name and not e.is_dir:
                return self.member(e)
        if self.names is None:
            self.names = {}
            for e in self.dir.entries():
                if not e.is_dir:
                    self.names.setdefault(hash(e.name), e.at)
        at = self.names.get(hash(name))
        e = self._entry_at(at) if at is not None else None
        if e is not None and e.name == name:
            return self.member(e)
        for e in self.dir.entries() if at is not None else ():  # a hash collision: look it up
            if e.name == name and not e.is_dir:
                return self.member(e)
        return None

    def _entry_at(self, at: int) -> zipdir.CDEntry | None:
        i = bisect.bisect_left(self.ats, at)
        return self.dir.entry_at(at, i) if i < len(self.ats) and self.ats[i] == at else None

    def read(self, member: _Member, max_bytes: int) -> bytes:
        e = member.entry
        assert e is not None
        if e.csize > 2 * max_bytes + (1 << 16):
            raise ShardError(f"zip member of {e.csize} compressed bytes exceeds the size cap {max_bytes}")
        try:
            start, end = self.dir.data_range(e)
            nxt = int(np.searchsorted(self.starts, np.uint64(min(e.offset, _U64)), side="right"))
            if end > self.dir.cd_start or (nxt < len(self.starts) and int(self.starts[nxt]) < end):
                raise ShardError("zip member's data overlaps the next member or the central "
                                 "directory (a quoted-overlap zip bomb?): not inflated")
            data = self.dir.inflate(e, start)
        except ShardError:
            raise
        except (zipdir.ZipFormatError, zlib.error, lzma.LZMAError, EOFError, ValueError,
                OSError) as exc:
            raise ShardError(f"corrupt zip member: {_oneline(exc)}") from exc
        if len(data) != member.size:
            got = f"more than {member.size}" if len(data) > member.size else f"{len(data)}"
            raise ShardError(f"member lies about its size: declares {member.size} bytes, "
                             f"inflates to {got}")
        if zlib.crc32(data) != e.crc:
            raise ShardError("corrupt zip member: CRC-32 mismatch")
        return data

    def close(self) -> None:
        self.raw.close()


_U64 = (1 << 64) - 1


def _overlapping(starts: array, ends: array, cd_start: int) -> set[int]:
    """Indices of the ranges ``[starts[i], ends[i])`` that overlap another one or run past
    ``cd_start``: sorted by start, a range overlaps an earlier one when it starts before the
    furthest end so far, and a later one when the next start is before its end. (numpy: 8
    bytes an entry, where Python's ``sorted`` takes about 40.)"""
    s, e = np.frombuffer(starts, dtype=np.uint64), np.frombuffer(ends, dtype=np.uint64)
    order = np.argsort(s, kind="stable")
    s, e = s[order], e[order]
    bad = e > cd_start
    if len(s) > 1:
        reach = np.maximum.accumulate(e)
        bad[1:] |= s[1:] < reach[:-1]
        bad[:-1] |= s[1:] < e[:-1]
    return set(order[bad].tolist())


# ---------------------------------------------------------------------------------------------
# Listing (the crawl)

def members(shard: Location, limits: Limits = DEFAULT_LIMITS) -> Iterator[Entry]:
    """An entry for every file member of ``shard``, in archive order, streaming (tar) or from the
    central directory (zip). A member's ``skip`` is a reason not to read it (an error entry,
    except links, which are merely skipped). An archive that cannot be opened, or stops early,
    gives one error entry for the archive itself."""
    try:
        raw, size, tag = open_seekable(shard)
    except (OSError, ValueError) as exc:
        yield Entry(shard, explicit=True, skip=str(_open_error(shard, exc)))
        return
    archive: Any = None
    try:
        try:
            archive = _Zip(raw, size, limits) if _container_format(shard) == "zip" else _TarCursor(
                raw, size, tag, limits)
        except Exception as exc:
            yield Entry(shard, explicit=True, skip=str(_open_error(shard, exc)))
            return
        if isinstance(archive, _Zip):
            listed: Iterator[_Member] = archive.members()
        else:
            listed = iter(archive.advance, None)
        for m in listed:
            loc = ArchiveMember(shard, m.name, m.entry.at if m.entry is not None else None)
            if m.link:
                yield Entry(loc, skip="link member not followed")
            else:
                yield Entry(loc, explicit=m.problem is not None, skip=m.problem)
        if isinstance(archive, _TarCursor) and archive.error:
            yield Entry(shard, explicit=True, skip=archive.error)
    finally:
        if archive is not None:
            archive.close()
        else:
            raw.close()


# ---------------------------------------------------------------------------------------------
# Reading (the decode workers): a small per-process cache of open shards

_CACHE: OrderedDict[Location, tuple[Any, str, float]] = OrderedDict()
_CACHE_MAX = 4
_REMOTE_TTL = 30.0  # a shard without a cheap version tag (a store's) is reopened after this long
_LOCK = threading.RLock()


def _archive(shard: Location, limits: Limits) -> Any:
    now = time.monotonic()
    hit = _CACHE.get(shard)
    if hit is not None:
        archive, tag, opened = hit
        current = version_tag(shard)
        if (now - opened < _REMOTE_TTL) if current is None else current == tag:
            _CACHE.move_to_end(shard)
            return archive
        _evict(shard)
    raw, size, tag = open_seekable(shard)
    try:
        archive = _Zip(raw, size, limits) if _container_format(shard) == "zip" else _TarCursor(
            raw, size, tag, limits)
    except BaseException:
        raw.close()
        raise
    _CACHE[shard] = (archive, tag, now)
    while len(_CACHE) > _CACHE_MAX:
        _evict(next(iter(_CACHE)))
    return archive


def _evict(shard: Location) -> None:
    archive = _CACHE.pop(shard)[0]
    try:
        archive.close()
    except Exception:  # closing a broken archive must not hide the real error
        pass


def _lookup(loc: ArchiveMember, limits: Limits) -> tuple[Any, _Member]:
    shard, name = loc.container, loc.member
    bad = _problem(name)
    if bad:
        raise ShardError(bad)
    try:
        archive = _archive(shard, limits)
    except Exception as exc:
        raise _open_error(shard, exc) from exc
    if isinstance(archive, _TarCursor):
        try:
            member = archive.find(name)
        except Exception as exc:  # a cursor broken half-way: reopen next time
            _evict(shard)
            raise _open_error(shard, exc) from exc
        if member is None:
            raise ShardError(f"no such member in the archive{': ' + archive.error if archive.error else ''}")
    else:
        try:
            member = archive.find(name, loc.at)
        except Exception as exc:
            _evict(shard)
            raise _open_error(shard, exc) from exc
        if member is None:
            raise ShardError("no such member in the archive")
    return archive, member


def stat(loc: ArchiveMember, limits: Limits = DEFAULT_LIMITS) -> EntryStat:
    """Size, mtime (µs) and a content tag of a member: the zip CRC-32, or for tar the shard's
    identity (size, mtime, inode; a store's ETag) and the member's offset."""
    with _LOCK:
        _, m = _lookup(loc, limits)
        return EntryStat(m.size, m.mtime_us, m.etag)


def read(loc: ArchiveMember, max_bytes: int, limits: Limits = DEFAULT_LIMITS) -> tuple[bytes, EntryStat]:
    """A member's bytes (at most ``max_bytes``) and its stat; never writes anything."""
    with _LOCK:
        archive, m = _lookup(loc, limits)
        if m.link:
            raise ShardError("link member not followed")
        if m.problem:
            raise ShardError(m.problem)
        if m.size > max_bytes:
            raise ShardError(f"member of {m.size} bytes exceeds the size cap {max_bytes}")
        try:
            data = archive.read(m, max_bytes)
        except ShardError:
            raise
        except Exception as exc:
            _evict(loc.container)
            raise ShardError(f"archive read failed: {_oneline(exc)}") from exc
        return data, EntryStat(m.size, m.mtime_us, m.etag)


def close_all() -> None:
    """Close every cached shard: a process that read members for a while (the HTML page's
    thumbnails, a notebook) gives their files back."""
    with _LOCK:
        while _CACHE:
            _evict(next(iter(_CACHE)))
