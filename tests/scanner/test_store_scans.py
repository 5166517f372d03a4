"""End to end: `aiiscan scan` on a bucket (a real S3-protocol server on 127.0.0.1, moto, with the
fault proxy of tests/s3server.py in front when a test needs faults), on a tar shard and on the
same files in a folder, through the real CLI in a subprocess. Nothing leaves loopback."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from aiiscan.reports.read import read_report, report_metadata

from ..conftest import write_photos
from ..s3server import s3_environment

BUCKET = "scans"
REPO = str(Path(__file__).resolve().parents[2])
N_PHOTOS = 10
SLOW = ("zz_slow_0.png", "zz_slow_1.png", "zz_slow_2.png")  # last in key order; slowed by a hook

# Loaded by every interpreter the scan starts (PYTHONPATH): decoding a zz_slow_* file takes 2 s,
# so a kill lands while they are being read, after the earlier parts are on disk.
_SLOW_HOOK = """
import os, time
import aiiscan.decode.job as decode

_real = decode._decode

def _decode(job):
    if "zz_slow_" in os.path.basename(job.path):
        time.sleep(2)
    return _real(job)

decode._decode = _decode
"""


def _png_with_text(text: str) -> bytes:
    """A valid PNG whose tEXt chunk carries ``text``: same length, other bytes, other sha256."""
    info = PngImagePlugin.PngInfo()
    info.add_text("note", text)
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 80, 40)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


@pytest.fixture(scope="module")
def world(moto_endpoint, tmp_path_factory, head_prefix):
    """The same files in a folder, under s3://scans/photos/ and in a tar shard."""
    import boto3
    root = tmp_path_factory.mktemp("stores_scan")
    src = root / "photos"
    write_photos(src, N_PHOTOS, seed=21, size=(96, 72))
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    (src / "notes.png").write_bytes(b"not an image at all")
    (src / "tagged.png").write_bytes(_png_with_text("AAAA"))
    for name in SLOW:
        write_photos(root / "slow", 1, seed=hash(name) % 1000, size=(96, 72))
        os.replace(root / "slow" / "img_000.png", src / name)
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket=BUCKET)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for f in sorted(src.iterdir()):
            client.put_object(Bucket=BUCKET, Key=f"photos/{f.name}", Body=f.read_bytes())
            tf.add(f, arcname=f.name)
    shard = root / "photos.tar"
    shard.write_bytes(buf.getvalue())
    base = ["--weights", str(head_prefix), "--workers", "1", "--batch-size", "4", "--quiet"]
    return {"root": root, "src": src, "shard": shard, "client": client, "base": base,
            "endpoint": moto_endpoint, "names": sorted(f.name for f in src.iterdir())}


def _env(endpoint: str, tmp: Path, hook: Path | None = None) -> dict:
    env = os.environ | s3_environment(endpoint) | {"XDG_CACHE_HOME": str(tmp / "cache")}
    env["PYTHONPATH"] = os.pathsep.join([*([str(hook)] if hook else []), REPO])
    env.pop("AWS_PROFILE", None)
    return env


def _scan(*args, env, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aiiscan", "scan", *args], env=env, capture_output=True,
                          text=True, timeout=600, **kw)


def _killed_after_two_parts(args: list[str], world: dict, tmp_path: Path, folder: Path, pattern: str) -> None:
    """Run the scan with the slowing hook and SIGKILL it once two parts match ``pattern``."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_SLOW_HOOK)
    proc = subprocess.Popen([sys.executable, "-m", "aiiscan", "scan", *args],
                            env=_env(world["endpoint"], tmp_path, hook),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(list(folder.glob(pattern))) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, "the scan ended before two parts"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _by_name(report) -> dict[str, dict]:
    """Rows keyed by the file's own name (the part after the folder, prefix or 'shard::')."""
    rows = read_report(report).to_pylist()
    out = {r["path"].rsplit("/", 1)[-1].rsplit("::", 1)[-1]: r for r in rows}
    assert len(out) == len(rows)
    return out


def _same_rows(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        x, y = a[name], b[name]
        for col in ("status", "error", "sha256", "format", "size", "width", "height", "label"):
            assert x[col] == y[col], (name, col, x[col], y[col])
        assert (x["score"] is None) == (y["score"] is None), name
        if x["score"] is not None:
            assert abs(x["score"] - y["score"]) <= 1e-6, name


@pytest.fixture(scope="module")
def clean(world, tmp_path_factory):
    """A clean scan of the bucket, the reference for the other tests."""
    tmp = tmp_path_factory.mktemp("clean")
    out = tmp / "bucket.parquet"
    done = _scan(f"s3://{BUCKET}/photos/", "-o", str(out), *world["base"], env=_env(world["endpoint"], tmp))
    assert done.returncode == 3, done.stderr  # broken.png
    return out


# -- (a) folder, bucket and shard agree ------------------------------------------------------------

def test_folder_bucket_and_shard_give_the_same_rows(world, clean, tmp_path):
    env = _env(world["endpoint"], tmp_path)
    local, shard = tmp_path / "local.parquet", tmp_path / "shard.parquet"
    assert _scan(str(world["src"]), "-o", str(local), *world["base"], env=env).returncode == 3
    assert _scan(str(world["shard"]), "-o", str(shard), *world["base"], env=env).returncode == 3
    bucket_rows = _by_name(clean)
    _same_rows(_by_name(local), bucket_rows)
    _same_rows(_by_name(shard), bucket_rows)
    assert set(bucket_rows) == set(world["names"])
    paths = read_report(clean).column("path").to_pylist()
    assert all(p.startswith(f"s3://{BUCKET}/photos/") for p in paths)
    assert all(p.startswith(f"{world['shard']}::") for p in read_report(shard).column("path").to_pylist())
    ok = [r for r in bucket_rows.values() if r["status"] == "ok"]
    assert ok and all(r["etag"] and r["mtime"] is not None for r in ok)  # from the object
    assert all(r["etag"] is None for r in _by_name(local).values())
    for root in (f"s3://{BUCKET}/nothing-here.png", f"s3://{BUCKET}/nothing-here/"):
        assert _missing_root(root, world, tmp_path, env) == "no such object or prefix in the store"


def _missing_root(root: str, world, tmp_path, env) -> str:
    """A URL root that does not exist (an object, or a prefix that lists nothing) is an error
    row and exit 3, not a refusal before the scan, nor an empty report and exit 0."""
    out = tmp_path / "missing.parquet"
    done = _scan(root, "-o", str(out), *world["base"], "--overwrite", env=env)
    assert done.returncode == 3, done.stderr
    (row,) = read_report(out).to_pylist()
    assert (row["path"], row["status"]) == (root, "error")
    return row["error"]


# -- (b) SIGKILL, then --resume -----------------------------------------------------------------------

def test_bucket_scan_killed_then_resumed_equals_a_clean_one(world, clean, tmp_path):
    out = tmp_path / "r.parquet"
    args = [f"s3://{BUCKET}/photos/", "-o", str(out), *world["base"], "--batch-size", "2", "--part-rows", "2"]
    parts = Path(f"{out}.parts")
    _killed_after_two_parts(args, world, tmp_path, parts, "part-*.parquet")
    assert not out.exists()
    done = _scan(*args, "--resume", env=_env(world["endpoint"], tmp_path))
    assert done.returncode == 3, done.stderr
    _same_rows(_by_name(out), _by_name(clean))
    assert report_metadata(out)["resumed_rows"] >= 4
    assert not parts.exists()


# -- (c) --incremental on a bucket ---------------------------------------------------------------------

def test_incremental_rescan_reuses_unchanged_objects_and_rescores_a_changed_one(world, clean, tmp_path):
    env = _env(world["endpoint"], tmp_path)
    again = tmp_path / "again.parquet"
    done = _scan(f"s3://{BUCKET}/photos/", "-o", str(again), *world["base"], "--incremental", str(clean),
                 env=env)
    assert done.returncode == 3, done.stderr
    old = _by_name(clean)
    n_ok = sum(r["status"] == "ok" for r in old.values())
    assert report_metadata(again)["reused_rows"] == n_ok  # no backbone pass at all
    assert all(r["reused"] == "unchanged" for r in _by_name(again).values() if r["status"] == "ok")

    before = old["tagged.png"]
    changed = _png_with_text("BBBB")
    assert len(changed) == before["size"]
    world["client"].put_object(Bucket=BUCKET, Key="photos/tagged.png", Body=changed)
    try:
        third = tmp_path / "third.parquet"
        done = _scan(f"s3://{BUCKET}/photos/", "-o", str(third), *world["base"], "--incremental",
                     str(clean), env=env)
        assert done.returncode == 3, done.stderr
        rows = _by_name(third)
        assert rows["tagged.png"]["reused"] is None  # rescored: a new ETag, the same size
        assert rows["tagged.png"]["etag"] != before["etag"]
        assert rows["tagged.png"]["sha256"] != before["sha256"]
        assert report_metadata(third)["reused_rows"] == n_ok - 1
    finally:
        world["client"].put_object(Bucket=BUCKET, Key="photos/tagged.png", Body=_png_with_text("AAAA"))


# -- (d) throttling, dropped connections, a lost listing -------------------------------------------------

def test_throttling_and_drops_give_error_rows_and_exit_3(world, proxy, tmp_path):
    env = _env(proxy.url, tmp_path)
    proxy.faults["photos/img_001.png"] = ["503*"]
    proxy.faults["photos/img_002.png"] = ["429*"]
    proxy.faults["photos/img_003.png"] = ["drop*"]
    proxy.faults["photos/img_004.png"] = ["503", "drop"]  # transient: retried, then read
    out = tmp_path / "r.parquet"
    done = _scan(f"s3://{BUCKET}/photos/", "-o", str(out), *world["base"], env=env)
    assert done.returncode == 3, done.stderr
    rows = _by_name(out)
    assert rows["img_001.png"]["status"] == "error"
    assert "throttled" in rows["img_001.png"]["error"] and "503" in rows["img_001.png"]["error"]
    assert "after 3 attempts" in rows["img_001.png"]["error"]
    assert "throttled" in rows["img_002.png"]["error"] and "429" in rows["img_002.png"]["error"]
    assert "connection to the store lost" in rows["img_003.png"]["error"]
    assert rows["img_004.png"]["status"] == "ok"
    assert rows["img_005.png"]["status"] == "ok"


def test_a_listing_cut_off_ends_resumable_never_a_half_report(world, clean, proxy, tmp_path):
    env = _env(proxy.url, tmp_path) | {"AIISCAN_STORE_PAGE": "4"}
    proxy.faults[""] = ["pass", "drop*"]  # the first page of the listing, then the connection is gone
    out = tmp_path / "r.parquet"
    args = [f"s3://{BUCKET}/photos/", "-o", str(out), *world["base"], "--part-rows", "2"]
    done = _scan(*args, env=env)
    assert done.returncode == 2, done.stderr
    assert "cut off" in done.stderr and "--resume" in done.stderr
    assert not out.exists()
    assert list(Path(f"{out}.parts").glob("part-*.parquet"))  # the first page's rows are kept
    done = _scan(*args, "--resume", env=_env(world["endpoint"], tmp_path))
    assert done.returncode == 3, done.stderr
    _same_rows(_by_name(out), _by_name(clean))


# -- (e) the report to the bucket ----------------------------------------------------------------------

def test_report_to_the_bucket_appears_whole_and_resumes(world, clean, tmp_path):
    env = _env(world["endpoint"], tmp_path)
    url = f"s3://{BUCKET}/reports/night.parquet"
    parts_dir = tmp_path / "parts"
    args = [f"s3://{BUCKET}/photos/", "-o", url, *world["base"], "--part-rows", "2", "--parts-dir",
            str(parts_dir)]
    _killed_after_two_parts(args, world, tmp_path, parts_dir, "*/night.parquet.parts/part-*.parquet")
    keys = world["client"].list_objects_v2(Bucket=BUCKET, Prefix="reports/").get("Contents", [])
    assert keys == []  # nothing, not half a report
    refused = _scan(*args, env=env)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    done = _scan(*args, "--resume", env=env)
    assert done.returncode == 3, done.stderr
    assert url in done.stdout
    local = tmp_path / "night.parquet"
    local.write_bytes(world["client"].get_object(Bucket=BUCKET, Key="reports/night.parquet")["Body"].read())
    _same_rows(_by_name(local), _by_name(clean))
    assert report_metadata(local)["resumed_rows"] >= 4
    assert list(parts_dir.iterdir()) == []  # the local copy, its parts and their folder are gone
    again = _scan(*args, env=env)
    assert again.returncode == 2 and "already exists" in again.stderr and "--overwrite" in again.stderr


# -- Ray: decode tasks read the bucket by URL, no shared filesystem ----------------------------------

def test_ray_engine_scans_a_bucket_like_the_local_engine(world, clean, tmp_path, monkeypatch):
    """Workers get the backend's settings from their environment (here: inherited from the
    driver that starts the local cluster); the files are never on a shared disk."""
    ray = pytest.importorskip("ray")
    from aiiscan.api import scan_options
    from aiiscan.inputs import store as stores
    from aiiscan.scanner.driver import run_scan
    for var, value in s3_environment(world["endpoint"]).items():
        monkeypatch.setenv(var, value)
    stores._LISTED.clear()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
             configure_logging=False)
    try:
        s = run_scan([f"s3://{BUCKET}/photos/"], tmp_path / "ray.parquet",
                     *scan_options(weights=world["base"][1], device="cpu", engine="ray", batch_size=4,
                                   scorers=1, quiet=True))
    finally:
        ray.shutdown()
    assert s.exit_code == 3
    _same_rows(_by_name(s.report), _by_name(clean))
    assert report_metadata(s.report)["engine"] == "ray"


def test_a_failed_upload_keeps_the_parts_and_resume_uploads(world, tmp_path, monkeypatch):
    from aiiscan.api import scan_options
    from aiiscan.errors import ReportError
    from aiiscan.inputs import store as stores
    from aiiscan.scanner.driver import run_scan
    for var, value in s3_environment(world["endpoint"]).items():
        monkeypatch.setenv(var, value)
    stores._LISTED.clear()
    url = "s3://later/night.csv"  # the bucket does not exist yet: the upload fails
    kw = dict(weights=world["base"][1], device="cpu", workers=0, quiet=True, parts_dir=str(tmp_path / "p"))
    with pytest.raises(ReportError, match="cannot upload the report to s3://later/night.csv.*--resume"):
        run_scan([str(world["src"])], url, *scan_options(**kw))
    assert list((tmp_path / "p").glob("*/night.csv.parts/part-*.parquet"))
    world["client"].create_bucket(Bucket="later")
    s = run_scan([str(world["src"])], url, *scan_options(resume=True, **kw))
    assert s.report == url and s.exit_code == 3
    body = world["client"].get_object(Bucket="later", Key="night.csv")["Body"].read().decode()
    assert len(body.splitlines()) == 1 + len(world["names"])  # header + one row per file
    meta = world["client"].get_object(Bucket="later", Key="night.csv.meta.json")["Body"].read()
    assert b'"resumed_rows"' in meta
    assert list((tmp_path / "p").iterdir()) == []  # --parts-dir itself stays


# -- reports that live in the bucket: --incremental, --html and `aiiscan report` by URL -------------

def test_nightly_job_keeps_its_reports_in_the_bucket(world, clean, tmp_path):
    """Monday's CSV report in the bucket feeds Tuesday's --incremental scan, whose page goes to
    the bucket too; `aiiscan report URL --thumbnails-from-store` makes the page from the bucket,
    thumbnails included (objects and tar members are read as the scan read them)."""
    env = _env(world["endpoint"], tmp_path) | {"TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    mon, tue = f"s3://{BUCKET}/reports/mon.csv", f"s3://{BUCKET}/reports/tue.parquet"
    page_url = f"s3://{BUCKET}/reports/tue.html"
    src = f"s3://{BUCKET}/photos/"
    assert _scan(src, "-o", mon, *world["base"], env=env).returncode == 3
    done = _scan(src, "-o", tue, *world["base"], "--incremental", mon, "--html", page_url, env=env)
    assert done.returncode == 3, done.stderr
    get = world["client"].get_object
    local = tmp_path / "tue.parquet"
    local.write_bytes(get(Bucket=BUCKET, Key="reports/tue.parquet")["Body"].read())
    rows = _by_name(local)
    n_ok = sum(r["status"] == "ok" for r in rows.values())
    assert report_metadata(local)["reused_rows"] == n_ok  # every scored object reused from Monday's CSV
    _same_rows(rows, _by_name(clean))
    page = get(Bucket=BUCKET, Key="reports/tue.html")["Body"].read().decode()
    assert "<h1>aiiscan report: tue.parquet</h1>" in page
    assert page.count('<img alt="thumbnail" src="data:image/jpeg;base64,') == n_ok

    # The same page made by `aiiscan report`, from the bucket and from a shard's report.
    made = subprocess.run([sys.executable, "-m", "aiiscan", "report", tue, "-o", str(tmp_path / "p.html"),
                           "--thumbnails-from-store"], env=env, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "p.html").read_text().count('<img alt="thumbnail"') == n_ok
    shard_report = tmp_path / "shard.parquet"
    assert _scan(str(world["shard"]), "-o", str(shard_report), *world["base"], env=env).returncode == 3
    made = subprocess.run([sys.executable, "-m", "aiiscan", "report", str(shard_report), "-o",
                           str(tmp_path / "s.html"), "--thumbnails-from-store", "--thumbnails-from-roots"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "s.html").read_text().count('<img alt="thumbnail"') == n_ok
    assert list((tmp_path / "tmp").iterdir()) == []  # the fetched copies are gone
    assert list((tmp_path / "cache" / "aiiscan" / "parts").iterdir()) == []  # nothing staged is left

    # A missing old report is one line and exit 2, before any part exists.
    out = tmp_path / "x.parquet"
    bad = _scan(src, "-o", str(out), *world["base"], "--incremental", f"s3://{BUCKET}/reports/nope.parquet",
                env=env)
    assert bad.returncode == 2 and "cannot read the report s3://scans/reports/nope.parquet" in bad.stderr
    assert "Traceback" not in bad.stderr and not Path(f"{out}.parts").exists()
