import json
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from aiiscan.cli import main
from aiiscan.inputs.crawl import iter_inputs
from aiiscan.reports.read import read_report, report_metadata

from ..conftest import write_photos


def _png_bomb(path: Path, side: int = 30000) -> None:
    """A valid tiny PNG whose header claims side x side pixels (decompression bomb)."""
    def chunk(tag, data):
        return len(data).to_bytes(4, "big") + tag + data + zlib.crc32(tag + data).to_bytes(4, "big")
    ihdr = side.to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    raw = zlib.compress(b"\x00" * (side + 1) * 4, 9)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


@pytest.fixture()
def mixed(tmp_path):
    root = tmp_path / "mixed"
    good = write_photos(root, 4, seed=1, ext="png")
    from PIL import Image
    img = Image.open(good[0])
    for fmt, ext in (("JPEG", "jpg"), ("WEBP", "webp"), ("GIF", "gif"), ("BMP", "bmp"),
                     ("TIFF", "tif")):
        p = root / f"as_{ext}.{ext}"
        img.convert("RGB").save(p, fmt)
        good.append(str(p))
    sub = root / "sub dir" / "ünïcödé"
    sub.mkdir(parents=True)
    p = sub / "photo with spaces é.png"
    img.save(p)
    good.append(str(p))
    wrong_ext = root / "really_png.jpg"
    img.save(wrong_ext, "PNG")
    good.append(str(wrong_ext))
    bad = {}
    jpg = Path(root / "as_jpg.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    bad["truncated.jpg"] = "corrupt or truncated"
    (root / "zero.png").write_bytes(b"")
    bad["zero.png"] = "empty file"
    (root / "text.jpg").write_text("hello, not an image")
    bad["text.jpg"] = "not an image"
    _png_bomb(root / "bomb.png")
    bad["bomb.png"] = "pixel cap"
    locked = root / "locked.png"
    img.save(locked)
    locked.chmod(0)
    if os.geteuid() != 0:
        bad["locked.png"] = "permission denied"
    else:
        good.append(str(locked))  # root reads anything
    os.symlink("loop_b", root / "loop_a")
    os.symlink("loop_a", root / "loop_b")
    (root / "notes.txt").write_text("ignored: not an image, not named like one")
    return root, good, bad


def _scan(args, input=None):
    return CliRunner().invoke(main, ["scan", *args], input=input, catch_exceptions=False)


def test_scan_mixed_folder_end_to_end(mixed, head_prefix, tmp_path):
    root, good, bad = mixed
    out = tmp_path / "r.parquet"
    res = _scan([str(root), "-o", str(out), "--weights", str(head_prefix), "--workers", "2",
                 "--batch-size", "4", "--max-pixels", "50000000", "--quiet"])
    assert res.exit_code == 3, res.output  # some files errored, report written
    table = pq.read_table(out)
    rows = {r["path"]: r for r in table.to_pylist()}
    expected = set(good) | {str(root / b) for b in bad} | {str(root / "loop_a"), str(root / "loop_b")}
    assert set(rows) == expected and len(table) == len(expected)
    for p in good:
        assert rows[p]["status"] == "ok" and rows[p]["score"] == rows[p]["score"], p
        assert rows[p]["sha256"] and rows[p]["width"] > 0 and rows[p]["model_id"]
        assert rows[p]["label"] is None  # no calibrated threshold yet
    for name, reason in bad.items():
        r = rows[str(root / name)]
        assert r["status"] == "error" and reason in r["error"], (name, r["error"])
        assert r["score"] is None and r["label"] is None
    assert rows[str(root / "loop_a")]["status"] == "skipped"
    assert rows[str(root / "really_png.jpg")]["format"] == "PNG"
    meta = report_metadata(out)
    assert meta["aiiscan_version"] and meta["counts"]["error"] == len(bad)
    df = pd.read_parquet(out)
    assert len(df) == len(expected)

    for ext in ("csv", "jsonl"):
        other = tmp_path / f"r.{ext}"
        _scan([str(root), "-o", str(other), "--weights", str(head_prefix), "--workers", "0",
               "--max-pixels", "50000000", "--quiet"])
        t2 = read_report(other)
        a = table.sort_by("path").to_pydict()
        b = t2.sort_by("path").to_pydict()
        for col in ("path", "status", "sha256", "size", "width", "format"):
            assert a[col] == b[col], (ext, col)
        for x, y in zip(a["score"], b["score"], strict=True):
            assert (x is None and y is None) or x == pytest.approx(y, rel=1e-6)
        assert json.loads(Path(f"{other}.meta.json").read_text())["model_id"] == meta["model_id"]


def test_threshold_sets_labels_and_exit_code_zero(tmp_path, head_prefix, photos):
    out = tmp_path / "r.parquet"
    res = _scan([*photos[:6], "-o", str(out), "--weights", str(head_prefix), "--threshold", "0",
                 "--workers", "0", "--quiet"])
    assert res.exit_code == 0
    rows = read_report(out).to_pylist()
    assert {r["label"] for r in rows} <= {"ai", "natural"}
    assert all(r["label"] == ("ai" if r["score"] >= 0 else "natural") for r in rows)
    assert all(r["threshold"] == 0 for r in rows)


def test_from_list_and_stdin(tmp_path, head_prefix, photos):
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join(photos[:3]) + "\n\n")
    out = tmp_path / "a.parquet"
    _scan(["--from-list", str(lst), "-o", str(out), "--weights", str(head_prefix), "--workers", "0"])
    assert sorted(read_report(out).column("path").to_pylist()) == sorted(photos[:3])
    out2 = tmp_path / "b.parquet"
    _scan(["--from-list", "-", "-o", str(out2), "--weights", str(head_prefix), "--workers", "0"],
          input="\n".join(photos[3:5]))
    assert sorted(read_report(out2).column("path").to_pylist()) == sorted(photos[3:5])


def test_usage_errors_exit_2_without_report(tmp_path, head_prefix, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default output is ./report.parquet: never the caller's folder
    res = CliRunner().invoke(main, ["scan", "-o", str(tmp_path / "x.parquet"), "--weights",
                                    str(head_prefix)])
    assert res.exit_code == 2
    res = CliRunner().invoke(main, ["scan", str(tmp_path), "--weights", str(tmp_path / "none")])
    assert res.exit_code == 2 and "no head named" in res.output
    assert not (tmp_path / "x.parquet").exists()


def test_crawl_order_is_stable_and_globs_filter(tmp_path):
    write_photos(tmp_path / "b", 3, seed=0)
    write_photos(tmp_path / "a", 3, seed=1, ext="jpg")
    first = [e.path for e in iter_inputs([str(tmp_path)])]
    assert first == [e.path for e in iter_inputs([str(tmp_path)])]
    assert first == sorted(first)
    only_jpg = [e.path for e in iter_inputs([str(tmp_path)], include=["*.jpg"])]
    assert len(only_jpg) == 3 and all(p.endswith(".jpg") for p in only_jpg)
    no_b = [e.path for e in iter_inputs([str(tmp_path)], exclude=[str(tmp_path / "b") + "/*"])]
    assert len(no_b) == 3


def test_follow_symlinks_cuts_loops(tmp_path):
    write_photos(tmp_path / "d", 2, seed=0)
    os.symlink(tmp_path / "d", tmp_path / "d" / "self")
    entries = list(iter_inputs([str(tmp_path / "d")], follow_symlinks=True))
    assert sum(1 for e in entries if not e.skip) == 2
    assert any(e.skip and "loop" in e.skip for e in entries)


def test_two_scans_cannot_write_the_same_report(tmp_path):
    from aiiscan.errors import ReportError
    from aiiscan.reports.parts import ReportWriter

    with ReportWriter(tmp_path / "r.parquet"):
        with pytest.raises(ReportError, match="another scan"):
            ReportWriter(tmp_path / "r.parquet", resume=True)


def _cli(*args):
    return [sys.executable, "-m", "aiiscan", "scan", *args]


def test_sigkill_then_resume_gives_the_same_rows(tmp_path, head_prefix):
    files = write_photos(tmp_path / "many", 160, seed=3, size=(96, 72))
    clean = tmp_path / "clean.parquet"
    base = ["--weights", str(head_prefix), "--workers", "1", "--batch-size", "8", "--quiet"]
    subprocess.run(_cli(str(tmp_path / "many"), "-o", str(clean), *base), check=True)
    out = tmp_path / "killed.parquet"
    proc = subprocess.Popen(_cli(str(tmp_path / "many"), "-o", str(out), "--part-rows", "8", *base))
    parts = Path(f"{out}.parts")
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("part-*.parquet"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "a killed scan must not leave a complete-looking report"
    written = len(list(parts.glob("part-*.parquet")))
    assert 3 <= written < 20
    done = subprocess.run(_cli(str(tmp_path / "many"), "-o", str(out), "--resume", *base))
    assert done.returncode == 0
    a = read_report(clean).sort_by("path").to_pydict()
    b = read_report(out).sort_by("path").to_pydict()
    assert b["path"] == a["path"] == sorted(files)
    assert b["score"] == pytest.approx(a["score"], abs=1e-6)  # batch composition moves the last bits
    assert report_metadata(out)["resumed_rows"] >= 24
    assert not parts.exists()


def test_existing_parts_without_resume_are_not_overwritten(tmp_path, head_prefix, photos):
    out = tmp_path / "r.parquet"
    Path(f"{out}.parts").mkdir()
    res = CliRunner().invoke(main, ["scan", photos[0], "-o", str(out), "--weights", str(head_prefix)])
    assert res.exit_code == 2 and "--resume" in res.output


def test_incremental_rescans_only_what_changed(tmp_path, head_prefix):
    files = write_photos(tmp_path / "arch", 6, seed=4)
    base = ["--weights", str(head_prefix), "--workers", "0", "--quiet"]
    first = tmp_path / "n1.parquet"
    _scan([str(tmp_path / "arch"), "-o", str(first), *base])
    second = tmp_path / "n2.parquet"
    _scan([str(tmp_path / "arch"), "-o", str(second), "--incremental", str(first), *base])
    meta = report_metadata(second)
    assert meta["reused_rows"] == 6
    assert read_report(second).to_pydict()["score"] == read_report(first).to_pydict()["score"]
    write_photos(tmp_path / "tmpnew", 1, seed=99)[0]
    os.replace(tmp_path / "tmpnew" / "img_000.png", files[2])
    third = tmp_path / "n3.parquet"
    _scan([str(tmp_path / "arch"), "-o", str(third), "--incremental", str(second), *base])
    assert report_metadata(third)["reused_rows"] == 5
    rows3 = {r["path"]: r for r in read_report(third).to_pylist()}
    rows2 = {r["path"]: r for r in read_report(second).to_pylist()}
    assert rows3[files[2]]["sha256"] != rows2[files[2]]["sha256"]
    assert all(rows3[f]["score"] == rows2[f]["score"] for f in files if f != files[2])


def test_python_api(tmp_path, head_prefix, photos):
    import aiiscan

    det = aiiscan.Detector.load(head_prefix, device="cpu", quiet=True)
    from PIL import Image

    s_img = det.score_images([Image.open(photos[0])])
    s_path = det.score_paths([photos[0], str(tmp_path / "missing.png")])
    assert s_path[1] is None and s_img[0] == pytest.approx(s_path[0], rel=1e-6)
    report = aiiscan.scan([photos[0]], tmp_path / "api.parquet", detector=det, workers=0, quiet=True)
    assert report == tmp_path / "api.parquet" and report.is_file()


def test_selftest_command_passes():
    res = CliRunner().invoke(main, ["selftest"])
    assert res.exit_code == 0, res.output
    assert "selftest PASSED" in res.output and "no meaning" in res.output


def test_python_api_example_runs(tmp_path, head_prefix, photos):
    example = Path(__file__).resolve().parents[2] / "examples" / "python_api.py"
    proc = subprocess.run([sys.executable, str(example), str(head_prefix), photos[0].rsplit("/", 1)[0],
                           str(tmp_path / "ex.parquet")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout and (tmp_path / "ex.parquet").is_file()


def test_fast_jpeg_decode_keeps_facts_and_stays_close(tmp_path):
    from PIL import Image

    from aiiscan.decode.job import DecodeJob, decode_job
    from aiiscan.tasks.selftest import synthetic_photo

    big = tmp_path / "big.jpg"
    synthetic_photo(np.random.default_rng(0), (2400, 1800)).save(big, quality=92)
    fast = decode_job(DecodeJob(str(big)))
    exact = decode_job(DecodeJob(str(big), fast_decode=False))
    size = (fast.info["width"], fast.info["height"])
    assert size == (exact.info["width"], exact.info["height"]) == (2400, 1800)
    a, b = fast.arrays[0].astype(int), exact.arrays[0].astype(int)
    assert a.shape == b.shape == (224, 224, 3) and not np.array_equal(a, b)
    assert np.abs(a - b).mean() < 3.0  # DCT scaling keeps what survives the resize to 256
    png = tmp_path / "big.png"
    Image.open(big).save(png)
    assert np.array_equal(decode_job(DecodeJob(str(png))).arrays[0],
                          decode_job(DecodeJob(str(png), fast_decode=False)).arrays[0])


def test_exact_decode_and_precision_are_recorded(tmp_path, head_prefix, photos):
    out = tmp_path / "r.parquet"
    res = CliRunner().invoke(main, ["scan", photos[0], "-o", str(out), "--weights", str(head_prefix),
                                    "--exact-decode", "--precision", "bf16", "--workers", "0", "--quiet"])
    assert res.exit_code == 0, res.output
    meta = report_metadata(out)
    assert meta["decode"] == "exact" and meta["precision"].startswith("bf16 (")
    out2 = tmp_path / "t.parquet"  # a subprocess: --threads sets torch's global thread count
    proc = subprocess.run(_cli(photos[0], "-o", str(out2), "--weights", str(head_prefix), "--threads", "1",
                               "--workers", "0", "--quiet"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert report_metadata(out2)["torch_threads"] == 1
