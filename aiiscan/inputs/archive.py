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
  a ``.tar.gz`` stream that expands past ``max_ratio`` or ``max_total``: refused before or
  while inflating, never past the cap;
- a truncated archive, a member whose header lies about its size: the members before it are
  listed, then one error entry for the archive; reading a short member is an error row;
- a nested archive (a member named ``*.tar``/``*.zip`` ...): an error entry, not expanded
  (extract it and scan it as its own root);
- a huge member count: listing stops after ``max_members`` with an error entry; a zip whose
  end record declares more is refused before its central directory is loaded;
- link, device and FIFO members: links are skipped like symbolic links in a folder, the others
  are error entries; encrypted zip members are error entries.

Reading one member by name needs the archive's index. Zip has one (its central directory);
tar does not, so each process keeps a forward cursor per open tar shard (a small LRU of open
shards) that scans headers only as far as the member asked for. Workers get members in
archive order, so a whole shard costs each worker about one pass, also for ``.tar.gz``
(``GzipFile`` seeks forward by inflating; only a backward seek restarts it). With duplicate
member names, the first one is scanned (the crawl lists the name once).
"""

from __future__ import annotations

import re
import stat as statmod
import struct
import tarfile
import threading
import time
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, ClassVar

from . import open_seekable, parse, version_tag
from .location import Entry, EntryStat, Location, Refused, SourceError

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
    source: ClassVar[str] = "archive"

    @property
    def raw(self) -> str:
        return f"{self.container.raw}{SEP}{self.member}"


@dataclass(frozen=True)
class Limits:
    max_members: int = 100_000  # per archive; also bounds each worker's tar index
    max_ratio: float = 200.0  # uncompressed / compressed bytes, checked above ratio_floor
    ratio_floor: int = 1 << 20
    max_total: int = 64 << 30  # bytes a compressed tar may inflate to in all


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
    zinfo: zipfile.ZipInfo | None = None


def _problem(name: str) -> str | None:
    bad = _unsafe_name(name)
    if bad:
        return bad
    if is_archive(name):
        return "nested archive: not expanded (extract it and scan it as its own root)"
    return None


def _from_tar(info: tarfile.TarInfo, tag: str) -> _Member:
    problem = _problem(info.name)
    link = info.issym() or info.islnk()
    if not problem and not link:
        if info.issparse():
            problem = "sparse tar member: not supported"
        elif not info.isreg():
            problem = "not a regular file member (device, FIFO or other special entry)"
    return _Member(info.name, info.size, int(info.mtime) * 1_000_000, f"{tag}@{info.offset}",
                   problem, link, info.offset_data)


def _zip_mtime_us(info: zipfile.ZipInfo) -> int | None:
    try:
        import calendar
        return calendar.timegm((*info.date_time, 0, 0, 0)) * 1_000_000  # zip times: no zone
    except (ValueError, OverflowError, TypeError):
        return None


def _from_zip(info: zipfile.ZipInfo, limits: Limits) -> _Member:
    problem = _problem(info.filename)
    mode = info.external_attr >> 16
    link = statmod.S_ISLNK(mode)
    if not problem and not link:
        if info.flag_bits & 0x1:
            problem = "encrypted zip member: not read"
        elif (info.file_size > limits.ratio_floor
              and info.file_size > limits.max_ratio * max(info.compress_size, 1)):
            problem = (f"zip member declares {info.file_size} bytes from {info.compress_size} "
                       f"compressed (ratio over {limits.max_ratio:g}:1, a zip bomb?): not inflated")
    return _Member(info.filename, info.file_size, _zip_mtime_us(info), f"crc32:{info.CRC:08x}",
                   problem, link, zinfo=info)


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
# Zip: refuse absurd member counts before zipfile loads the central directory

_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")


def _zip_declared_count(raw: BinaryIO, size: int) -> int | None:
    """Member count from the end-of-central-directory record (zip64 too), or None."""
    tail_len = min(size, _EOCD.size + 65_535)
    raw.seek(size - tail_len)
    tail = raw.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        return None
    count = _EOCD.unpack_from(tail, at)[4]
    loc_at = at - _ZIP64_LOCATOR.size
    if loc_at >= 0 and tail[loc_at:loc_at + 4] == b"PK\x06\x07":
        offset = _ZIP64_LOCATOR.unpack_from(tail, loc_at)[2]
        raw.seek(offset)
        rec = raw.read(_ZIP64_EOCD.size)
        if len(rec) == _ZIP64_EOCD.size and rec[:4] == b"PK\x06\x06":
            count = _ZIP64_EOCD.unpack(rec)[6]
    return count


class _Zip:
    def __init__(self, raw: BinaryIO, size: int | None, limits: Limits):
        self.raw, self.limits = raw, limits
        declared = _zip_declared_count(raw, size) if size else None
        if declared is not None and declared > limits.max_members:
            raise ShardError(f"zip archive declares {declared} members, more than the cap "
                             f"{limits.max_members}: not read")
        raw.seek(0)
        self.zf = zipfile.ZipFile(raw)
        self.index: dict[str, _Member] = {}
        for info in self.zf.infolist():
            if not info.is_dir():
                self.index.setdefault(info.filename, _from_zip(info, limits))

    def members(self) -> Iterator[_Member]:
        for info in self.zf.infolist():
            if not info.is_dir():
                yield _from_zip(info, self.limits)

    def read(self, member: _Member, max_bytes: int) -> bytes:
        try:
            with self.zf.open(member.zinfo) as f:
                data = f.read(max_bytes + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError,
                ValueError, OSError) as exc:
            raise ShardError(f"corrupt zip member: {_oneline(exc)}") from exc
        if len(data) > max_bytes:
            raise ShardError(f"member inflates past the size cap {max_bytes}")
        if len(data) != member.size:
            raise ShardError(f"member lies about its size: declares {member.size} bytes, "
                             f"inflates to {len(data)}")
        return data

    def close(self) -> None:
        try:
            self.zf.close()
        finally:
            self.raw.close()


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
            loc = ArchiveMember(shard, m.name)
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
        member = archive.index.get(name)
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
