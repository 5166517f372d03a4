"""Hostile zips built byte by byte (issue 24): what ``zipfile`` will not write.

``build`` lays out local headers, data, central directory and end record itself and says where
each central-directory record is, so that a test (or ``benchmarks/archive_budgets.py``) can
change any field afterwards.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

LFH = struct.Struct("<4s2B4HL2L2H")
CDH = struct.Struct("<4s4B4HL2L5H2L")
EOCD = struct.Struct("<4s4H2LH")
DOS_DATE = (2024 - 1980) << 9 | 1 << 5 | 2  # 2024-01-02
DOS_TIME = 3 << 11 | 4 << 5 | 3  # 03:04:06

# Offsets of fields inside a central-directory record and the end record.
CD_FIELDS = {"flags": (8, "H"), "method": (10, "H"), "time": (12, "H"), "date": (14, "H"),
             "crc": (16, "L"), "csize": (20, "L"), "usize": (24, "L"), "offset": (42, "L")}
EOCD_FIELDS = {"disk_count": (8, "H"), "count": (10, "H"), "cd_size": (12, "L"),
               "cd_offset": (16, "L")}


@dataclass
class Built:
    data: bytearray
    records: list[int] = field(default_factory=list)  # where each central-directory record is
    locals: list[int] = field(default_factory=list)  # where each local header is
    eocd: int = 0

    def set(self, record: int | None, name: str, value: int) -> None:
        """Set a field of central-directory record ``record`` (None: of the end record)."""
        at, fmt = CD_FIELDS[name] if record is not None else EOCD_FIELDS[name]
        base = self.records[record] if record is not None else self.eocd
        struct.pack_into("<" + fmt, self.data, base + at, value & (0xFFFF if fmt == "H" else 0xFFFFFFFF))


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def build(members: list[tuple[str, bytes]], method: int = 8, date: int = DOS_DATE,
          time: int = DOS_TIME) -> Built:
    """A plain zip of ``members`` (stored with ``method`` 0 or 8), its offsets noted."""
    out, locals_, cds = bytearray(), [], []
    for name, data in members:
        raw = name.encode()
        packed = _deflate(data) if method == 8 else data
        crc = zlib.crc32(data)
        locals_.append(len(out))
        out += LFH.pack(b"PK\x03\x04", 20, 0, 0x800, method, time, date, crc, len(packed),
                        len(data), len(raw), 0) + raw + packed
        cds.append(CDH.pack(b"PK\x01\x02", 20, 3, 20, 0, 0x800, method, time, date, crc,
                            len(packed), len(data), len(raw), 0, 0, 0, 0, 0o100644 << 16,
                            locals_[-1]) + raw)
    return _finish(out, locals_, cds, len(members))


def _finish(out: bytearray, locals_: list[int], cds: list[bytes], count: int) -> Built:
    cd_start, records = len(out), []
    for rec in cds:
        records.append(len(out))
        out += rec
    eocd = len(out)
    out += EOCD.pack(b"PK\x05\x06", 0, 0, count & 0xFFFF, count & 0xFFFF, eocd - cd_start, cd_start, 0)
    return Built(out, records, locals_, eocd)


def many_entries(n: int, declared: int | None = None) -> bytes:
    """``n`` empty stored members ``000000.png`` ... whose end record declares ``declared``
    members (default ``n``): the entry-count attack. About 100 bytes an entry."""
    out, cds = bytearray(), []
    crc = zlib.crc32(b"")
    for i in range(n):
        raw = f"{i:07d}.png".encode()
        at = len(out)
        out += LFH.pack(b"PK\x03\x04", 20, 0, 0, 0, DOS_TIME, DOS_DATE, crc, 0, 0, len(raw), 0) + raw
        cds.append(CDH.pack(b"PK\x01\x02", 20, 3, 20, 0, 0, 0, DOS_TIME, DOS_DATE, crc, 0, 0,
                            len(raw), 0, 0, 0, 0, 0o100644 << 16, at) + raw)
    return bytes(_finish(out, [], cds, n if declared is None else declared).data)


def quoted_overlap(n: int, kernel: bytes) -> bytes:
    """Fifield's "quoted overlap" zip bomb: member i's deflate stream quotes the local headers
    of members i+1 ... n-1 in stored blocks, then all of them end in one shared ``kernel``
    (deflated). Each member is within any per-member ratio; together they inflate n times the
    kernel from the size of one."""
    tail = _deflate(kernel)
    names = [f"m{i:04d}.png".encode() for i in range(n)]
    # Walk back from the last member: its stream is the kernel; member i's stream is
    # stored-block(LFH i+1) + member i+1's stream.
    stream, quoted, headers = tail, b"", [b""] * n  # quoted: what member i inflates to before the kernel
    sizes: list[tuple[int, int, int]] = [(0, 0, 0)] * n
    for i in range(n - 1, -1, -1):
        sizes[i] = (zlib.crc32(kernel, zlib.crc32(quoted)), len(stream), len(quoted) + len(kernel))
        crc, csize, usize = sizes[i]
        headers[i] = LFH.pack(b"PK\x03\x04", 20, 0, 0, 8, DOS_TIME, DOS_DATE, crc, csize, usize,
                              len(names[i]), 0) + names[i]
        if i:
            h = headers[i]
            stream = struct.pack("<BHH", 0, len(h), len(h) ^ 0xFFFF) + h + stream
            quoted = h + quoted
    out, locals_ = bytearray(), []
    for i in range(n):
        locals_.append(len(out))
        out += headers[i]
        if i + 1 < n:
            out += struct.pack("<BHH", 0, len(headers[i + 1]), len(headers[i + 1]) ^ 0xFFFF)
    out += tail
    cds = [CDH.pack(b"PK\x01\x02", 20, 3, 20, 0, 0, 8, DOS_TIME, DOS_DATE, *sizes[i], len(names[i]),
                    0, 0, 0, 0, 0o100644 << 16, locals_[i]) + names[i] for i in range(n)]
    return bytes(_finish(out, locals_, cds, n).data)
