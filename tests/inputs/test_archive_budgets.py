"""Issue 24: an archive's cost is bounded by class, not by case.

- the member cap counts a zip's real central-directory entries, not what its end record declares;
- overlapping zip members (a quoted-overlap bomb) are refused, and an archive's members may
  inflate to at most ``Limits.budget(archive size)`` in all;
- an mtime that is not a time (tar pax ``inf``, ``nan``, ``1e30``; DOS fields with month 0 ...)
  is a null in the row, for every source, never an exception.

Each class has a property test over its whole value domain beside the reported cases. The
memory of a million-entry directory is measured by ``benchmarks/archive_budgets.py``.
"""

from __future__ import annotations

import io
import itertools
import math
import tarfile
import time
from datetime import datetime, timezone

import pyarrow as pa
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiiscan import inputs
from aiiscan.cli import main
from aiiscan.decode.job import DecodeJob, decode_job
from aiiscan.inputs import archive as shards
from aiiscan.inputs import store, zipdir
from aiiscan.inputs.archive import ArchiveMember, Limits
from aiiscan.inputs.location import MAX_MTIME_US, MIN_MTIME_US, EntryStat, mtime_us_of_seconds
from aiiscan.reports.read import read_report
from tests.hostile import plain_png
from tests.inputs import zips

FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
_COUNTER = itertools.count()


@pytest.fixture(autouse=True)
def _fresh_cache():
    shards.close_all()
    yield
    shards.close_all()


def listing(path, limits: Limits = shards.DEFAULT_LIMITS) -> dict[str, str | None]:
    """member name (``<archive>`` for the archive's own row) -> skip reason."""
    return {e.location.member if isinstance(e.location, ArchiveMember) else "<archive>": e.skip
            for e in shards.members(inputs.parse(str(path)), limits)}


def in_range(mtime_us: int | None) -> bool:
    return mtime_us is None or (type(mtime_us) is int and MIN_MTIME_US <= mtime_us <= MAX_MTIME_US)


# -- 1. the member cap counts what is there -------------------------------------------------------
def test_the_member_cap_counts_real_entries_not_the_declared_count(tmp_path):
    lying = tmp_path / "lying.zip"
    lying.write_bytes(zips.many_entries(150, declared=1))  # the reported case, 1000x smaller
    rows = listing(lying, Limits(max_members=100))
    assert list(rows) == ["<archive>"]
    assert "more than 100 entries (its end record declares 1)" in rows["<archive>"]
    with pytest.raises(OSError, match="member cap"):  # named directly: the worker refuses too
        shards.read(inputs.parse(f"{lying}::0000007.png"), 1 << 20, Limits(max_members=100))
    assert len(listing(lying, Limits(max_members=150))) == 150  # at the cap: every member a row


# -- 2. overlapping members and the archive's inflation budget ------------------------------------
def test_a_quoted_overlap_zip_is_refused_member_by_member_in_seconds(tmp_path):
    bomb = tmp_path / "quoted.zip"
    kernel = b"".join(bytes([i % 251]) * 8 + bytes(1016) for i in range(400))  # ~100:1
    bomb.write_bytes(zips.quoted_overlap(60, kernel))
    t = time.perf_counter()
    rows = listing(bomb)
    assert len(rows) == 60 and all("quoted-overlap" in (r or "") for r in rows.values())
    job = decode_job(DecodeJob(f"{bomb}::m0007.png"))
    assert job.status == "error" and "quoted-overlap" in job.error
    assert time.perf_counter() - t < 15


def test_a_local_header_that_reaches_the_next_member_is_refused_when_read(tmp_path):
    built = zips.build([("a.png", plain_png(1)), ("b.png", plain_png(2))])
    built.data[built.locals[0] + 28:built.locals[0] + 30] = (60).to_bytes(2, "little")  # extra field
    path = tmp_path / "extra.zip"
    path.write_bytes(bytes(built.data))
    assert listing(path) == {"a.png": None, "b.png": None}  # the directory alone cannot show it
    assert "quoted-overlap" in decode_job(DecodeJob(f"{path}::a.png")).error
    assert decode_job(DecodeJob(f"{path}::b.png")).status == "ok"


def test_members_past_the_inflation_budget_get_error_rows(tmp_path):
    path = tmp_path / "budget.zip"
    path.write_bytes(bytes(zips.build([(f"{i}.bin", bytes(100_000)) for i in range(5)]).data))
    limits = Limits(max_ratio=2000, ratio_floor=1024, max_total=250_000)
    rows = listing(path, limits)
    assert rows["0.bin"] is None and rows["1.bin"] is None
    assert all("inflation budget spent" in rows[f"{i}.bin"] for i in (2, 3, 4))
    assert len(shards.read(inputs.parse(f"{path}::1.bin"), 1 << 20, limits)[0]) == 100_000
    with pytest.raises(OSError, match="inflation budget"):
        shards.read(inputs.parse(f"{path}::3.bin"), 1 << 20, limits)


MUTABLE = [*zips.CD_FIELDS, "count", "disk_count", "cd_size", "cd_offset"]


@FUZZ
@given(data=st.data())
def test_central_directory_mutations_never_crash_nor_pass_the_budgets(tmp_path, data):
    n = data.draw(st.integers(1, 5), label="members")
    blobs = st.one_of(st.binary(max_size=300), st.sampled_from([b"", bytes(3000), plain_png(1)]))
    built = zips.build([(f"m{i}.png", data.draw(blobs)) for i in range(n)],
                       method=data.draw(st.sampled_from([0, 8])))
    offsets = [*built.locals, *built.records, built.eocd]
    value = st.one_of(st.sampled_from([0, 1, 2, 0xFFFF, 0xFFFFFFFF]), st.sampled_from(offsets),
                      st.integers(0, 0xFFFFFFFF))
    moved_directory = False
    for name, record, v in data.draw(st.lists(st.tuples(st.sampled_from(MUTABLE), st.integers(0, n - 1),
                                                        value), max_size=4), label="mutations"):
        if name in zips.CD_FIELDS:
            built.set(record, name, v)
        else:
            built.set(None, name, v)
            moved_directory |= name in ("cd_size", "cd_offset")
    path = tmp_path / f"z{next(_COUNTER)}.zip"
    path.write_bytes(bytes(built.data))
    limits = Limits(max_members=4, max_ratio=20.0, ratio_floor=256, max_total=6_000)
    shard = inputs.parse(str(path))
    entries = list(shards.members(shard, limits))
    refused = [e for e in entries if e.location == shard]
    members = [e for e in entries if isinstance(e.location, ArchiveMember)]
    assert (len(refused) == 1 and not members) or (not refused and members) or moved_directory
    if not refused and not moved_directory:
        assert [e.location.member for e in members] == [f"m{i}.png" for i in range(n)]
    total = 0
    for e in members:
        outcomes = []
        for loc in (e.location, ArchiveMember(shard, e.location.member)):  # found, and typed
            try:
                blob, stat = shards.read(loc, 1 << 16, limits)
            except OSError as exc:
                outcomes.append(str(exc))
                assert e.skip is None or str(exc) == e.skip
                continue
            assert e.skip is None and len(blob) == stat.size and in_range(stat.mtime_us)
            outcomes.append(blob)
        assert outcomes[0] == outcomes[1]
        total += len(outcomes[0]) if isinstance(outcomes[0], bytes) else 0
    assert total <= limits.budget(path.stat().st_size)
    shards.close_all()


# -- 3. mtimes: whatever a member says, a time or a null ------------------------------------------
def pax_tar(members: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, mtime in members.items():
            data = plain_png(len(name))
            info = tarfile.TarInfo(name)
            info.size, info.pax_headers = len(data), {"mtime": mtime}
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


BAD_PAX = {"inf.png": "inf", "nan.png": "nan", "huge.png": "1e30", "past.png": "-1e15",
           "int64.png": "1e15", "ok.png": "1700000000.5"}


def test_pax_mtimes_that_are_no_times_give_null_mtimes_and_a_whole_report(tmp_path):
    tar = tmp_path / "pax.tar"
    tar.write_bytes(pax_tar(BAD_PAX))
    dos = zips.build([("month0.png", plain_png(1)), ("ok.png", plain_png(2))])
    dos.set(0, "date", (44 << 9) | 0 << 5 | 2)  # month 0
    dos.set(0, "time", 31)  # second 62
    zp = tmp_path / "dos.zip"
    zp.write_bytes(bytes(dos.data))
    first, out = tmp_path / "first.parquet", tmp_path / "again.parquet"
    for report, extra in ((first, []), (out, ["--incremental", str(first)])):  # null mtimes read back
        res = CliRunner().invoke(main, ["scan", str(tar), str(zp), "-o", str(report), "--workers", "0",
                                        "-q", *extra])
        assert res.exit_code == 0, res.output
    rows = {r["path"].split("::")[1] + ("@zip" if ".zip::" in r["path"] else ""): r
            for r in read_report(out).to_pylist()}
    assert len(rows) == 8 and {r["status"] for r in rows.values()} == {"ok"}
    assert all(rows[n]["mtime"] is None for n in ("inf.png", "nan.png", "huge.png", "past.png",
                                                  "int64.png", "month0.png@zip"))
    assert rows["ok.png"]["mtime"] == datetime(2023, 11, 14, 22, 13, 20)
    assert rows["ok.png@zip"]["mtime"] == datetime(2024, 1, 2, 3, 4, 6)


mtimes = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**30), 10**30))


@FUZZ
@given(value=mtimes)
def test_any_mtime_number_is_a_time_or_null(value):
    for us in (EntryStat(1, value, None).mtime_us, mtime_us_of_seconds(value),
               store._mtime_us({"mtime": value}), shards._tar_mtime_us(value)):
        assert in_range(us)
        if us is not None:
            pa.array([us], pa.timestamp("us"))  # writable
    if isinstance(value, int) and abs(value) < 10**11:
        assert mtime_us_of_seconds(value) == value * 1_000_000 or abs(value) > 253402300799


@FUZZ
@given(text=st.one_of(mtimes.map(repr), mtimes.map(str), st.text(max_size=12)))
def test_any_pax_mtime_lists_and_stats(tmp_path, text):
    if "\x00" in text or "\n" in text:
        text = "0"
    path = tmp_path / f"p{next(_COUNTER)}.tar"
    path.write_bytes(pax_tar({"a.png": text}))
    rows = listing(path)
    assert list(rows) == ["a.png"] and rows["a.png"] is None
    assert in_range(inputs.stat(inputs.parse(f"{path}::a.png")).mtime_us)
    shards.close_all()


@FUZZ
@given(date=st.integers(0, 0xFFFF), tm=st.integers(0, 0xFFFF))
def test_any_dos_date_and_time_is_a_time_or_null(date, tm):
    us = zipdir.dos_mtime_us(date, tm)
    assert in_range(us)
    fields = (1980 + (date >> 9), (date >> 5) & 15, date & 31, tm >> 11, (tm >> 5) & 63, (tm & 31) * 2)
    try:
        expect = datetime(*fields, tzinfo=timezone.utc)
    except ValueError:
        assert us is None
    else:
        assert us == math.floor(expect.timestamp()) * 1_000_000
