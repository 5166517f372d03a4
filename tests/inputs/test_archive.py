"""Archive shards as inputs (aiiscan.inputs.archive): members listed and read in memory, hostile
archives giving one error each, the same decode results as the loose files."""

from __future__ import annotations

import io
import os
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from aiiscan import inputs
from aiiscan.decode.job import DecodeJob, decode_job
from aiiscan.inputs import archive as shards
from aiiscan.inputs.archive import DEFAULT_LIMITS, Limits
from aiiscan.inputs.crawl import iter_inputs
from tests.hostile import plain_png
from tests.inputs.test_store import IMAGES, assert_same_results, image_files


@pytest.fixture(autouse=True)
def _fresh_cache():
    shards.close_all()
    yield
    shards.close_all()


def split_member(raw: str) -> tuple[str, str] | None:
    """(container, member) of a name typed as SHARD::MEMBER, or None."""
    loc = inputs.parse(raw)
    return (loc.container.raw, loc.member) if loc.source == "archive" else None


def is_indirect(raw: str) -> bool:
    return inputs.parse(raw).source != "local"


def iter_members(shard: str, limits: Limits = DEFAULT_LIMITS) -> list[tuple[str, str | None, bool]]:
    return [(e.location.raw, e.skip, e.explicit) for e in shards.members(inputs.parse(shard), limits)]


def read_member(raw: str, max_bytes: int):
    return inputs.read(inputs.parse(raw), max_bytes)


def stat_entry(raw: str):
    return inputs.stat(inputs.parse(raw))


def make_tar(path: Path, members: dict[str, bytes], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            tf.addfile(info, io.BytesIO(data))
    return path


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, (2024, 1, 2, 3, 4, 6)), data,
                        compress_type=zipfile.ZIP_DEFLATED)
    return path


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_member_syntax():
    assert split_member("a/b.tar::x/y.jpg") == ("a/b.tar", "x/y.jpg")
    assert split_member("s3://b/s.TAR.GZ::img::1.jpg") == ("s3://b/s.TAR.GZ", "img::1.jpg")
    assert split_member("a/b.jpg::x") is None and split_member("plain.jpg") is None
    assert is_indirect("a.zip::b.jpg") and not is_indirect("/data/photos/a.jpg")


@pytest.mark.parametrize("suffix,mode", [(".tar", "w"), (".tar.gz", "w:gz"), (".zip", None)])
def test_members_match_loose_files(tmp_path, suffix, mode):
    files = image_files(tmp_path / "loose")
    members = {f"d/{name}": (tmp_path / "loose" / name).read_bytes() for name in IMAGES}
    shard = tmp_path / f"shard{suffix}"
    make_zip(shard, members) if mode is None else make_tar(shard, members, mode)
    before = snapshot(tmp_path)
    listed = list(iter_members(str(shard)))
    assert [p for p, _, _ in listed] == [f"{shard}::d/{n}" for n in IMAGES]
    assert all(problem is None for _, problem, _ in listed)
    for name in IMAGES:
        data, st = read_member(f"{shard}::d/{name}", 1 << 20)
        assert data == members[f"d/{name}"] and st.size == len(data) and st.etag
        assert stat_entry(f"{shard}::d/{name}") == st
    local = [decode_job(DecodeJob(f, explicit=True)) for f in files]
    inside = [decode_job(DecodeJob(f"{shard}::d/{n}", explicit=True)) for n in IMAGES]
    assert_same_results(local, inside)
    assert snapshot(tmp_path) == before  # nothing extracted, nothing written


def test_reading_in_any_order_and_after_a_change(tmp_path):
    blobs = {f"{i:03d}.png": plain_png(i) for i in range(12)}
    shard = make_tar(tmp_path / "s.tar.gz", blobs, "w:gz")
    for name in [*reversed(blobs), *blobs]:
        assert read_member(f"{shard}::{name}", 1 << 20)[0] == blobs[name]
    make_tar(shard, {"000.png": plain_png(99)}, "w:gz")  # rewritten: the cache must notice
    os.utime(shard, ns=(1, 1))
    assert read_member(f"{shard}::000.png", 1 << 20)[0] == plain_png(99)
    with pytest.raises(OSError, match="no such member"):
        read_member(f"{shard}::001.png", 1 << 20)


def test_size_cap_and_missing(tmp_path):
    shard = make_tar(tmp_path / "s.tar", {"a.png": plain_png(1)})
    assert "exceeds the size cap" in decode_job(DecodeJob(f"{shard}::a.png", max_bytes=10)).error
    assert decode_job(DecodeJob(f"{tmp_path}/none.tar::a.png")).error.startswith("no such archive")
    assert "no such member" in decode_job(DecodeJob(f"{shard}::b.png")).error


def _patch_central_size(data: bytes, delta: int) -> bytes:
    at = data.rfind(b"PK\x01\x02")
    size = struct.unpack_from("<L", data, at + 24)[0]
    return data[:at + 24] + struct.pack("<L", size + delta) + data[at + 28:]


def test_hostile_archives(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    png = plain_png(3)
    traversal = make_tar(tmp_path / "trav.tar", {"../evil.png": png, "/abs.png": png, "ok.png": png})
    zbomb = make_zip(tmp_path / "bomb.zip", {"zeros.png": b"\0" * (4 << 20), "ok.png": png})
    tbomb = make_tar(tmp_path / "bomb.tar.gz", {"ok.png": png, "zeros.bin": b"\0" * (8 << 20),
                                                "after.png": png}, "w:gz")
    nested = make_tar(tmp_path / "nested.tar", {"inner.zip": b"PK\x05\x06" + b"\0" * 18, "ok.png": png})
    full = make_tar(tmp_path / "full.tar", {"a.png": png, "b.png": png + b"\0" * 4096})
    truncated = tmp_path / "trunc.tar"
    with tarfile.open(full) as tf:
        cut = tf.getmember("b.png").offset_data + 100
    truncated.write_bytes(full.read_bytes()[:cut])  # a.png whole, b.png cut
    lying = tmp_path / "lying.zip"
    lying.write_bytes(_patch_central_size(make_zip(tmp_path / "l.zip", {"a.png": png}).read_bytes(), 1000))
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"not a zip at all" * 10)
    with tarfile.open(tmp_path / "links.tar", "w") as tf:
        link = tarfile.TarInfo("link.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
        fifo = tarfile.TarInfo("fifo.png")
        fifo.type = tarfile.FIFOTYPE
        tf.addfile(fifo)
    before = snapshot(tmp_path)

    def rows(shard):
        return {p.split("::", 1)[-1] if "::" in p else "<archive>": (problem, explicit)
                for p, problem, explicit in iter_members(str(shard))}

    r = rows(traversal)
    assert "climbs out" in r["../evil.png"][0] and "absolute" in r["/abs.png"][0]
    assert r["ok.png"] == (None, False) and r["../evil.png"][1] is True
    assert "unsafe member name" in decode_job(DecodeJob(f"{traversal}::../evil.png")).error
    r = rows(zbomb)
    assert "zip bomb" in r["zeros.png"][0] and r["ok.png"] == (None, False)
    assert "zip bomb" in decode_job(DecodeJob(f"{zbomb}::zeros.png")).error
    r = rows(tbomb)
    assert r["ok.png"] == (None, False) and "decompression bomb" in r["<archive>"][0]
    assert "after.png" not in r
    assert "nested archive" in rows(nested)["inner.zip"][0]
    r = rows(truncated)
    assert r["a.png"] == (None, False) and "truncated member" in r["b.png"][0]
    assert "truncated or corrupt" in r["<archive>"][0]
    assert decode_job(DecodeJob(f"{truncated}::a.png")).status == "ok"
    bad = decode_job(DecodeJob(f"{lying}::a.png"))
    assert bad.status == "error" and ("size" in bad.error or "corrupt" in bad.error)
    assert "not a readable zip archive" in rows(garbage)["<archive>"][0]
    r = rows(tmp_path / "links.tar")
    assert r["link.png"] == ("link member not followed", False)
    assert "not a regular file member" in r["fifo.png"][0]
    assert decode_job(DecodeJob(f"{tmp_path}/links.tar::link.png")).error == "link member not followed"
    assert snapshot(tmp_path) == before and not (tmp_path / "evil.png").exists()


def test_member_count_cap(tmp_path):
    blobs = {f"{i}.png": b"x" for i in range(30)}
    tar, zp = make_tar(tmp_path / "many.tar", blobs), make_zip(tmp_path / "many.zip", blobs)
    listed = list(iter_members(str(tar), Limits(max_members=10)))
    assert len(listed) == 11 and "more than 10 members" in listed[-1][1]
    listed = list(iter_members(str(zp), Limits(max_members=10)))
    assert listed == [(str(zp), "zip archive declares 30 members, more than the cap 10: not read", True)]


def test_iter_inputs_expands_archives(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.png").write_bytes(plain_png(1))
    make_tar(root / "s.tar", {"x.png": plain_png(2), "y.png": plain_png(3)})
    (root / "odd.tar::z.png").write_bytes(plain_png(4))
    plain = list(iter_inputs([str(root)]))
    assert [(os.path.basename(e.path), e.explicit) for e in plain] == [
        ("a.png", False), ("odd.tar::z.png", True), ("s.tar", False)]
    assert "ambiguous" in plain[1].skip
    expanded = [e.path for e in iter_inputs([str(root)], archives=True)]
    assert expanded[-2:] == [f"{root}/s.tar::x.png", f"{root}/s.tar::y.png"]
    named = list(iter_inputs([str(root / "s.tar")]))  # a shard named as a root: always expanded
    assert [e.path for e in named] == [f"{root}/s.tar::x.png", f"{root}/s.tar::y.png"]
    lst = tmp_path / "list.txt"
    lst.write_text(f"{root}/s.tar::y.png\n{root}/s.tar\n")
    assert [e.path for e in iter_inputs([], from_list=str(lst))] == [
        f"{root}/s.tar::y.png", f"{root}/s.tar::x.png"]
    res = decode_job(DecodeJob(f"{root}/s.tar::x.png", explicit=False))
    assert res.status == "ok" and res.info["sha256"] == decode_job(
        DecodeJob(f"{root}/s.tar::x.png")).info["sha256"]
