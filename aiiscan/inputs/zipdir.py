"""A zip's central directory read as a stream, and its members read by their local headers.

``zipfile.ZipFile`` builds a ``ZipInfo`` for every central-directory entry when it opens an
archive (about 785 MB per million entries, in every process that opens it) and trusts the end
record's member count. Here the directory is parsed record by record from 1 MiB chunks: an
entry is a small tuple that the caller keeps or drops, the real entries are counted (whatever
the end record declares), and nothing is held per entry unless the caller keeps it. A member is
read from its local header's offset, its data inflated at most to its declared size + 1 byte.

Layout as in APPNOTE.TXT (and ``zipfile``): the end record (zip64's when present), the
central-directory records, the local headers; bytes before the archive (a self-extracting
stub) shift every offset, as ``zipfile`` computes it.
"""

from __future__ import annotations

import bz2
import calendar
import lzma
import struct
import zlib
from collections.abc import Iterator
from datetime import datetime
from typing import BinaryIO, NamedTuple

_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_CDH = struct.Struct("<4s4B4HL2L5H2L")  # a central-directory record's fixed part (46 bytes)
_LFH = struct.Struct("<4s2B4HL2L2H")  # a local header's fixed part (30 bytes)
LOCAL_HEADER = _LFH.size
_CHUNK = 1 << 20
METHODS = {0: "stored", 8: "deflate", 12: "bzip2", 14: "lzma"}


class ZipFormatError(ValueError):
    """A zip that cannot be read as one; ``str(exc)`` is the reason."""


class CDEntry(NamedTuple):
    """One central-directory record: ``at`` is its own offset in the file, ``offset`` its local
    header's (both with any prefix added); ``name`` as ``zipfile`` decodes it."""

    index: int
    at: int
    name: str
    raw_name: bytes
    flags: int
    method: int
    dos_time: int
    dos_date: int
    crc: int
    csize: int
    usize: int
    offset: int
    mode: int  # the external attributes' high half (Unix mode bits)

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")


def dos_mtime_us(dos_date: int, dos_time: int) -> int | None:
    """A DOS date and time (no zone, read as UTC as ``zipfile``'s users do) in microseconds;
    None when the fields name no real instant (month 0, day 0 or 31 February, second 60 ...)."""
    try:
        when = datetime(1980 + (dos_date >> 9), (dos_date >> 5) & 0xF, dos_date & 0x1F,
                        dos_time >> 11, (dos_time >> 5) & 0x3F, (dos_time & 0x1F) * 2)
    except ValueError:
        return None
    return calendar.timegm(when.timetuple()) * 1_000_000


def _decode_name(raw: bytes, flags: int) -> str:
    name = raw.decode("utf-8", "surrogateescape") if flags & 0x800 else raw.decode("cp437")
    return name.split("\x00", 1)[0]  # as zipfile: the name ends at a NUL byte


def _zip64_extra(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    """Sizes and offset from a zip64 extra field, for the fields the record marks as 0xFFFFFFFF."""
    at = 0
    while at + 4 <= len(extra):
        tag, length = struct.unpack_from("<2H", extra, at)
        body = extra[at + 4:at + 4 + length]
        if tag == 1:
            values = [v[0] for v in struct.iter_unpack("<Q", body[:len(body) // 8 * 8])]
            try:
                if usize == 0xFFFFFFFF:
                    usize = values.pop(0)
                if csize == 0xFFFFFFFF:
                    csize = values.pop(0)
                if offset == 0xFFFFFFFF:
                    offset = values.pop(0)
            except IndexError:
                raise ZipFormatError("corrupt zip64 extra field") from None
            break
        at += 4 + length
    return usize, csize, offset


class Directory:
    """The central directory of the zip in ``raw`` (``size`` bytes): where it is, what the end
    record declares, and its records, streamed."""

    def __init__(self, raw: BinaryIO, size: int | None):
        self.raw, self.prefix = raw, 0
        if size is None:
            size = raw.seek(0, 2)
        self.size = size
        self.declared, self.cd_start, self.cd_end = self._locate()

    def _locate(self) -> tuple[int, int, int]:
        size, raw = self.size, self.raw
        tail_len = min(size, _EOCD.size + 65_535)
        raw.seek(size - tail_len)
        tail = raw.read(tail_len)
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < _EOCD.size:
            raise ZipFormatError("not a zip file (no end of central directory record)")
        _, _, _, _, count, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, at)
        end = size - tail_len + at  # where the record that gives the sizes starts
        loc_at = at - _ZIP64_LOCATOR.size
        if loc_at >= 0 and tail[loc_at:loc_at + 4] == b"PK\x06\x07":
            rec_at = end - _ZIP64_LOCATOR.size - _ZIP64_EOCD.size
            if rec_at < 0:
                raise ZipFormatError("corrupt zip64 end record")
            raw.seek(rec_at)
            rec = raw.read(_ZIP64_EOCD.size)
            if len(rec) != _ZIP64_EOCD.size or rec[:4] != b"PK\x06\x06":
                raise ZipFormatError("corrupt zip64 end record")
            _, _, _, _, _, _, _, count, cd_size, cd_offset = _ZIP64_EOCD.unpack(rec)
            end = rec_at
        prefix = end - cd_size - cd_offset  # bytes before the archive (zipfile's "concat")
        if prefix < 0:
            raise ZipFormatError("bad central directory size or offset")
        self.prefix = prefix
        return count, cd_offset + prefix, cd_offset + prefix + cd_size

    def entries(self, start: int | None = None) -> Iterator[CDEntry]:
        """Every record from ``start`` (default: the first) to the end of the directory, read
        in 1 MiB chunks; a broken record raises ``ZipFormatError``."""
        pos = self.cd_start if start is None else start
        buf, buf_at, index = b"", pos, 0
        while pos < self.cd_end:
            rel = pos - buf_at
            if len(buf) - rel < _CDH.size or len(buf) - rel < self._record_len(buf, rel):
                self.raw.seek(pos)
                buf, buf_at, rel = self.raw.read(min(_CHUNK, self.cd_end - pos)), pos, 0
                if len(buf) < _CDH.size or len(buf) < self._record_len(buf, 0):
                    raise ZipFormatError(f"truncated central directory after {index} entries")
            entry, length = self._parse(buf, rel, pos, index)
            yield entry
            pos += length
            index += 1

    @staticmethod
    def _record_len(buf: bytes, rel: int) -> int:
        if len(buf) - rel < _CDH.size:
            return _CDH.size
        n, x, c = struct.unpack_from("<3H", buf, rel + 28)
        return _CDH.size + n + x + c

    def _parse(self, buf: bytes, rel: int, pos: int, index: int) -> tuple[CDEntry, int]:
        (sig, _, _, _, _, flags, method, dos_time, dos_date, crc, csize, usize, n, x, c, _, _,
         ext, offset) = _CDH.unpack_from(buf, rel)
        if sig != b"PK\x01\x02":
            raise ZipFormatError(f"bad central directory record after {index} entries")
        raw_name = buf[rel + _CDH.size:rel + _CDH.size + n]
        if 0xFFFFFFFF in (usize, csize, offset):
            extra = buf[rel + _CDH.size + n:rel + _CDH.size + n + x]
            usize, csize, offset = _zip64_extra(extra, usize, csize, offset)
        entry = CDEntry(index, pos, _decode_name(raw_name, flags), raw_name, flags, method,
                        dos_time, dos_date, crc, csize, usize, offset + self.prefix, ext >> 16)
        return entry, _CDH.size + n + x + c

    def entry_at(self, at: int, index: int) -> CDEntry | None:
        """The record at ``at`` (a record's offset found by ``entries``), or None."""
        if not self.cd_start <= at < self.cd_end:
            return None
        self.raw.seek(at)
        head = self.raw.read(_CDH.size)
        if len(head) < _CDH.size or head[:4] != b"PK\x01\x02":
            return None
        self.raw.seek(at)
        buf = self.raw.read(self._record_len(head, 0))
        try:
            return self._parse(buf, 0, at, index)[0]
        except (ZipFormatError, struct.error):
            return None

    # -- members -------------------------------------------------------------------------------

    def data_range(self, entry: CDEntry) -> tuple[int, int]:
        """Where the member's compressed bytes are, from its local header: (start, end)."""
        self.raw.seek(entry.offset)
        head = self.raw.read(LOCAL_HEADER)
        if len(head) < LOCAL_HEADER or head[:4] != b"PK\x03\x04":
            raise ZipFormatError("bad local header (not where the central directory says)")
        n, x = struct.unpack_from("<2H", head, 26)
        if self.raw.read(n) != entry.raw_name:
            raise ZipFormatError("file name in the central directory and the local header differ")
        start = entry.offset + LOCAL_HEADER + n + x
        return start, start + entry.csize

    def inflate(self, entry: CDEntry, start: int) -> bytes:
        """The member's bytes, inflated to at most its declared size + 1 (more means it lies)."""
        self.raw.seek(start)
        packed = self.raw.read(entry.csize)
        if len(packed) < entry.csize:
            raise ZipFormatError(f"truncated member: {entry.csize} compressed bytes declared, "
                                 f"{len(packed)} in the archive")
        limit = entry.usize + 1
        if entry.method == 0:
            return packed[:limit]
        if entry.method == 8:
            return zlib.decompressobj(-15).decompress(packed, limit)
        if entry.method == 12:
            return bz2.BZ2Decompressor().decompress(packed, max_length=limit)
        if entry.method == 14 and len(packed) >= 4:
            psize = struct.unpack_from("<H", packed, 2)[0]
            props = packed[4:4 + psize]
            filters = [lzma._decode_filter_properties(lzma.FILTER_LZMA1, props)]  # type: ignore[attr-defined]
            return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters).decompress(
                packed[4 + psize:], max_length=limit)
        raise ZipFormatError(f"unsupported compression method {entry.method}")
