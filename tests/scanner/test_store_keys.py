"""Issue 24, identity in buckets: every legal S3 key names itself. An object is listed, read and
reported as exactly its key (``::``, ``?versionId=``, ``#``, ``%``, spaces, ``\\``, a leading
``/``, ``..``), with a report ``path`` that no other object or archive member shares and that
``--incremental`` and ``--resume`` map back to the same object. Against the real S3-protocol
server on 127.0.0.1 (moto); random-init tiny head where a score is needed."""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import tarfile

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiiscan import inputs
from aiiscan.cli import main
from aiiscan.inputs import archive as shards
from aiiscan.inputs import store as stores
from aiiscan.inputs.store import StoreObject
from aiiscan.reports.parts import ReportWriter
from aiiscan.reports.read import read_report
from tests.hostile import plain_png
from tests.s3server import s3_environment

BUCKET = "keys"


@pytest.fixture(scope="module")
def client(moto_endpoint):
    import boto3

    c = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                     aws_access_key_id="testing", aws_secret_access_key="testing")
    c.create_bucket(Bucket=BUCKET)
    return c


@pytest.fixture(scope="module")
def s3env(moto_endpoint, client):
    """The S3 backend pointed at the loopback server, for the whole module (hypothesis runs
    many examples in one test function: a function-scoped monkeypatch would not do)."""
    names = (*s3_environment(moto_endpoint), "AWS_PROFILE", "AWS_ENDPOINT_URL_S3")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update(s3_environment(moto_endpoint))
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(var, None)
    stores._LISTED.clear()
    yield client
    shards.close_all()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _scan(*args: str, code: int | tuple[int, ...] = 0):
    res = CliRunner().invoke(main, ["scan", *args, "--workers", "0", "-q", "--precision", "fp32"])
    assert res.exit_code in ((code,) if isinstance(code, int) else code), res.output
    return res


def _by_path(report) -> dict[str, dict]:
    rows = read_report(report).to_pylist()
    out = {r["path"]: r for r in rows}
    assert len(out) == len(rows), "two rows share a path"
    return out


def test_decoy_keys_are_their_own_objects(s3env, head_prefix, tmp_path, monkeypatch):
    """``v/q?versionId=x.jpg`` beside ``v/q``; ``t/s.tar::m.jpg`` beside the tar ``t/s.tar``
    holding ``m.jpg``: four rows, each with its own object's bytes and score."""
    objects = {"v/q": plain_png(11), "v/q?versionId=x.jpg": plain_png(12), "t/s.tar::m.jpg": plain_png(13),
               "t/s.tar": _tar({"m.jpg": plain_png(14)})}
    for key, data in objects.items():
        s3env.put_object(Bucket=BUCKET, Key=f"decoy/{key}", Body=data)
    want = {f"s3://{BUCKET}/decoy/v/q": plain_png(11),
            f"s3://{BUCKET}/decoy/v/q?versionId=x.jpg": plain_png(12),
            f"s3://{BUCKET}/decoy/t/s.tar\\x3a\\x3am.jpg": plain_png(13),
            f"s3://{BUCKET}/decoy/t/s.tar::m.jpg": plain_png(14)}
    args = ["--weights", str(head_prefix), "--archives"]
    out = tmp_path / "r.parquet"
    _scan(f"s3://{BUCKET}/decoy/", "-o", str(out), *args)
    rows = _by_path(out)
    assert rows.keys() == want.keys()
    for path, data in want.items():
        r = rows[path]
        assert (r["status"], r["sha256"], r["size"], r["reused"]) == (
            "ok", hashlib.sha256(data).hexdigest(), len(data), None), path
    assert len({r["score"] for r in rows.values()}) == 4  # four contents, four scores
    # the object named alone (its URL typed) is that object too, not v/q at another version
    alone = tmp_path / "alone.parquet"
    _scan(f"s3://{BUCKET}/decoy/v/q?versionId=x.jpg", "-o", str(alone), *args)
    assert _by_path(alone)[f"s3://{BUCKET}/decoy/v/q?versionId=x.jpg"]["sha256"] == rows[
        f"s3://{BUCKET}/decoy/v/q?versionId=x.jpg"]["sha256"]
    # --incremental finds every row again under its own path, with its own score
    inc = tmp_path / "inc.parquet"
    _scan(f"s3://{BUCKET}/decoy/", "-o", str(inc), "--incremental", str(out), *args)
    again = _by_path(inc)
    assert {p: (r["reused"], r["sha256"], r["score"]) for p, r in again.items()} == {
        p: ("unchanged", r["sha256"], r["score"]) for p, r in rows.items()}
    # --resume: an interrupted run's rows stand for their own objects only
    finish = ReportWriter.finish

    def stop(self, *a, **kw):
        raise KeyboardInterrupt

    res = tmp_path / "res.parquet"
    monkeypatch.setattr(ReportWriter, "finish", stop)
    _scan(f"s3://{BUCKET}/decoy/", "-o", str(res), "--part-rows", "1", *args, code=130)
    monkeypatch.setattr(ReportWriter, "finish", finish)
    _scan(f"s3://{BUCKET}/decoy/", "-o", str(res), "--part-rows", "1", "--resume", *args)
    resumed = _by_path(res)
    assert {p: r["sha256"] for p, r in resumed.items()} == {p: r["sha256"] for p, r in rows.items()}


def test_report_paths_name_their_objects_back():
    """``from_display`` undoes ``display`` for objects, members of objects and local files."""
    obj = StoreObject("s3://b/t/s.tar::m.jpg")
    member = shards.ArchiveMember(StoreObject("s3://b/t/s.tar"), "m.jpg")
    tricky = shards.ArchiveMember(StoreObject("s3://b/x::y.tar"), "a::b\\c.png")
    assert obj.display() != member.display()
    for loc in (obj, member, tricky, StoreObject("s3://b/a\\x3a::b"), inputs.parse("/d/a\udcff\\.png")):
        assert inputs.from_display(loc.display()) == loc, loc


# Any legal key, drawn from characters that break parsers: separators, URL syntax, escapes, dots,
# controls, bidi and astral characters. Not "\n": moto's server answers 404 to a PUT of such a key
# (S3 itself takes it; the code path is the same as for "\r" and "\t", which are here).
KEY_CHARS = st.sampled_from(list(":?#%&=+ /\\.~*\r\t\x01'\"<>|[]{}") + ["::", "..", "?versionId=", "%2F",
                                                                      "\u202e", "é", "\U0001f600", "x"])
KEYS = st.lists(KEY_CHARS, min_size=1, max_size=24).map("".join).filter(
    lambda k: not k.endswith("/") and len(f"h/000/{k}".encode()) <= 1024)
_counter = itertools.count()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=st.lists(KEYS, min_size=1, max_size=4, unique=True))
def test_any_legal_key_is_listed_read_and_reported_as_itself(s3env, tmp_path, keys):
    """Evidence-only scans (no head): each key one row with its own bytes, under a path that
    leads back to it, and an --incremental rescan finds each row again."""
    prefix = f"h/{next(_counter):03d}/"
    want = {}
    for i, key in enumerate(keys):
        data = plain_png(100 + i)
        s3env.put_object(Bucket=BUCKET, Key=prefix + key, Body=data)
        want[StoreObject(f"s3://{BUCKET}/{prefix}{key}").display()] = hashlib.sha256(data).hexdigest()
    out = tmp_path / f"{prefix.replace('/', '_')}.parquet"
    _scan(f"s3://{BUCKET}/{prefix}", "-o", str(out))
    rows = _by_path(out)
    assert {p: r["sha256"] for p, r in rows.items()} == want
    for path in rows:
        assert inputs.from_display(path).raw.removeprefix(f"s3://{BUCKET}/{prefix}") in keys
    inc = out.with_name("inc-" + out.name)
    _scan(f"s3://{BUCKET}/{prefix}", "-o", str(inc), "--incremental", str(out))
    assert {p: (r["reused"], r["sha256"]) for p, r in _by_path(inc).items()} == {
        p: ("unchanged", s) for p, s in want.items()}
