"""Issue 14, the input side: strings from files, metadata parsing cost, memory per file, scan
bombs, HEIC/AVIF and EXIF orientation. Every hostile file is generated here."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from aiiscan.decode.job import DecodeJob, decode_job
from aiiscan.reports.parts import ReportWriter
from aiiscan.reports.read import read_report, report_metadata

from ..hostile import (
    _photo,
    _save,
    a1111_text_png,
    gray16_png,
    scan_bomb_jpeg,
    xmp_spaces_jpeg,
    ztxt_flood_png,
)


def _png_with_text(texts: dict[str, str], seed: int = 0) -> bytes:
    info = PngImagePlugin.PngInfo()
    for k, v in texts.items():
        info.add_text(k, v, zip=False)
    buf = io.BytesIO()
    _photo(np.random.default_rng(seed)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def _scan(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aiiscan", "scan", *args, "--workers", "1", "--quiet"],
                          capture_output=True, text=True, timeout=300)


# -- item 1 and the minor item on NUL/bidi: file-derived strings reach the report as safe UTF-8 --

# json.dumps writes these characters as \\uXXXX escapes, as ComfyUI does
COMFY = {"3": {"class_type": "CLIPTextEncode",
               "inputs": {"text": "a cat \ud800 on\x00 a mat \u202eevil\x1b[2J"}}}


def test_lone_surrogate_prompt_scans_and_resumes(tmp_path, head_prefix):
    """ComfyUI JSON with a "\\ud800" escape used to abort the scan (and every --resume)."""
    root = tmp_path / "in"
    root.mkdir()
    (root / "a_ok.png").write_bytes(_png_with_text({}, seed=1))
    (root / "b_comfy.png").write_bytes(_png_with_text({"prompt": json.dumps(COMFY)}))
    out = tmp_path / "r.parquet"
    proc = _scan(str(root), "-o", str(out), "--weights", str(head_prefix))
    assert proc.returncode in (0, 3), proc.stderr
    rows = {Path(r["path"]).name: r for r in read_report(out).to_pylist()}
    comfy = rows["b_comfy.png"]
    assert comfy["status"] == "ok" and comfy["score"] is not None and comfy["gen_tool"] == "comfyui"
    assert comfy["gen_prompt"] == "a cat \\ud800 on\\x00 a mat \\u202eevil\\x1b[2J"

    # an interrupted run (its part holds the first file) resumed past the hostile file
    resumed = tmp_path / "resumed.parquet"
    writer = ReportWriter(resumed, rows_per_part=1, identity=report_metadata(out)["run_identity"])
    writer.write(rows["a_ok.png"])
    writer.flush()
    writer.close()
    proc = _scan(str(root), "-o", str(resumed), "--weights", str(head_prefix), "--resume")
    assert proc.returncode in (0, 3), proc.stderr
    again = {Path(r["path"]).name: r for r in read_report(resumed).to_pylist()}
    assert set(again) == {"a_ok.png", "b_comfy.png"}
    assert again["b_comfy.png"]["gen_prompt"] == comfy["gen_prompt"]


def test_every_file_string_is_clean_utf8(tmp_path):
    """NUL, ESC, C1 and bidi controls and lone surrogates in any metadata field become visible
    escapes; tab and newline stay; the result encodes as UTF-8."""
    exif = Image.Exif()
    exif[0x010F] = "Ca\x01non"
    exif[0x0110] = "EOS\x1b]0;pwned\x07"
    xmp = '<x:xmpmeta><rdf:Description xmp:CreatorTool="Fire\u202efly\u2069"/></x:xmpmeta>'
    buf = io.BytesIO()
    _photo(np.random.default_rng(2)).save(buf, "JPEG", exif=exif, xmp=xmp.encode())
    path = tmp_path / "exif.jpg"
    path.write_bytes(buf.getvalue())
    prov = decode_job(DecodeJob(str(path), provenance=True)).info["provenance"]
    assert prov["exif_make"] == "Ca\\x01non"
    assert prov["exif_model"] == "EOS\\x1b]0;pwned\\x07"
    assert prov["xmp_creator_tool"] == "Fire\\u202efly\\u2069"
    path = tmp_path / "a1111.png"
    params = "line\tone\nline\u2066two\x85three\nSteps: 2, Sampler: x"
    path.write_bytes(_png_with_text({"parameters": params}))
    prov = decode_job(DecodeJob(str(path), provenance=True)).info["provenance"]
    assert prov["gen_prompt"] == "line\tone\nline\\u2066two\\x85three"
    for value in prov.values():
        if isinstance(value, str):
            value.encode("utf-8")


# -- items 3 and 4: metadata parsing linear and bounded, memory per file bounded ----------------

CHILD = """
import json, resource, sys, time
from aiiscan.decode.job import DecodeJob, decode_job
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
r = decode_job(DecodeJob(sys.argv[1], provenance=True))
print(json.dumps({"seconds": time.perf_counter() - t, "status": r.status, "error": r.error,
                  "width": r.info.get("width"), "provenance": r.info.get("provenance"),
                  "extra_rss": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024}))
"""


def _decode_in_child(tmp_path: Path, data: bytes, timeout: float = 60) -> dict:
    """decode_job on ``data`` in a fresh process: its own time and peak-memory growth, and a
    hard stop for code that would run for minutes."""
    path = tmp_path / "case.bin"
    path.write_bytes(data)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _xmp_png(xmp: str) -> bytes:
    return _png_with_text({"XML:com.adobe.xmp": xmp})


BAIT = {  # each took from 40 s to hours before (cubic or quadratic backtracking)
    "xmp element, 32 KB of spaces (JPEG)": xmp_spaces_jpeg(32 * 1024),
    "xmp element, 2 MB of spaces": _xmp_png("<x:xmpmeta><xmp:CreatorTool>" + " " * 2_000_000),
    "xmp elements never closed": _xmp_png("<x:xmpmeta>" + "<xmp:CreatorTool> a " * 100_000),
    "xmp rdf:resource never closed": _xmp_png("<Iptc4xmpExt:DigitalSourceType " * 60_000),
    "xmp openers sharing one end": _xmp_png("<xmp:CreatorTool rdf:resource " * 60_000 + ">"),
    "xmp attribute never closed": _xmp_png('xmp:CreatorTool = "' + " " * 2_000_000),
    "a1111 Steps, 400 KB": a1111_text_png(400 * 1024),
    "a1111 Steps, 4 MB": a1111_text_png(4 * 1024 * 1024),
}


@pytest.mark.parametrize("name", list(BAIT))
def test_metadata_parsing_is_linear_on_backtracking_bait(tmp_path, name):
    """Inputs that held a worker for minutes (or the whole --timeout) parse in well under the
    bound; the image keeps its score."""
    out = _decode_in_child(tmp_path, BAIT[name], timeout=30)
    assert out["status"] == "ok"
    assert out["seconds"] < 5, out["seconds"]


def test_xmp_fields_still_found_by_the_linear_parser():
    from aiiscan.decode.provenance import _xmp_field

    xmp = ('<x:xmpmeta><xmp:CreatorTool>\n  GIMP &amp; co \n</xmp:CreatorTool>'
           '<Iptc4xmpExt:DigitalSourceType rdf:resource="http://x/trainedAlgorithmicMedia"/>'
           "<a xmp:Rating = '5'/><xmp:Label><rdf:Alt>nested</rdf:Alt></xmp:Label></x:xmpmeta>")
    assert _xmp_field(xmp, "xmp:CreatorTool") == "GIMP & co"
    assert _xmp_field(xmp, "Iptc4xmpExt:DigitalSourceType") == "http://x/trainedAlgorithmicMedia"
    assert _xmp_field(xmp, "xmp:Rating") == "5"
    assert _xmp_field(xmp, "xmp:Label") is None  # markup inside: not a plain value
    assert _xmp_field("<xmp:CreatorToolX>no</xmp:CreatorToolX>", "xmp:CreatorTool") is None


def test_text_chunks_share_one_inflation_budget(tmp_path):
    """250 zTXt chunks of 4 MB each took 1 GB; the file's text now stops at MAX_TEXT_TOTAL."""
    from aiiscan.decode.provenance import MAX_TEXT_TOTAL

    out = _decode_in_child(tmp_path, ztxt_flood_png(250))
    assert out["status"] == "ok"
    assert "246 PNG text chunks skipped" in out["provenance"]["metadata_error"]
    assert out["extra_rss"] < 4 * MAX_TEXT_TOTAL, out["extra_rss"] / 2**20


def test_sixteen_bit_image_memory_is_bounded(tmp_path):
    """A 16-bit grey PNG was rescaled in float64 at full resolution (8+ bytes per pixel on top
    of the decoded image); now about 3 bytes per pixel plus one strip."""
    side = 6000
    out = _decode_in_child(tmp_path, gray16_png(side))
    assert out["status"] == "ok" and out["width"] == side
    assert out["extra_rss"] < 5 * side * side + 100 * 2**20, out["extra_rss"] / 2**20


# -- item 5: progressive JPEG scan bomb ------------------------------------------------------------

def test_progressive_scan_bomb_is_refused_cheaply(tmp_path):
    from aiiscan.decode.preprocess import MAX_JPEG_SCANS, jpeg_scans

    real = _save(_photo(np.random.default_rng(3), 640, 480), "JPEG", progressive=True)
    assert 5 <= jpeg_scans(real) <= 20 and jpeg_scans(_save(_photo(np.random.default_rng(3)), "JPEG")) == 1
    bomb = scan_bomb_jpeg(20_000, 1024)
    assert jpeg_scans(bomb) == MAX_JPEG_SCANS + 1  # counting stops at the limit
    out = _decode_in_child(tmp_path, bomb, timeout=120)
    assert out["status"] == "error" and f"more than {MAX_JPEG_SCANS} scans" in out["error"]
    assert out["seconds"] < 2, out["seconds"]
    (tmp_path / "real.jpg").write_bytes(real)
    assert decode_job(DecodeJob(str(tmp_path / "real.jpg"))).status == "ok"


# -- item 10: HEIC/HEIF (optional extra), AVIF, and error texts without memory addresses -----------

def test_heic_decodes_with_the_heif_extra(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif")
    img = _photo(np.random.default_rng(4), 96, 64)
    heif = pillow_heif.from_pillow(img)
    buf = io.BytesIO()
    heif.save(buf, format="HEIF", quality=90)
    (tmp_path / "p.heic").write_bytes(buf.getvalue())
    res = decode_job(DecodeJob(str(tmp_path / "p.heic"), provenance=True))
    assert res.status == "ok", res.error
    assert (res.info["format"], res.info["width"], res.info["height"]) == ("HEIF", 96, 64)
    (tmp_path / "p.png").write_bytes(_save(img, "PNG"))
    ref = decode_job(DecodeJob(str(tmp_path / "p.png")))
    assert np.abs(res.arrays[0].astype(int) - ref.arrays[0].astype(int)).mean() < 8  # lossy, same picture


def test_avif_decodes(tmp_path):
    from PIL import features

    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF codec")
    (tmp_path / "p.avif").write_bytes(_save(_photo(np.random.default_rng(5), 96, 64), "AVIF", quality=90))
    res = decode_job(DecodeJob(str(tmp_path / "p.avif")))
    assert res.status == "ok" and res.info["format"] == "AVIF", res.error


def test_undecodable_heif_error_is_reproducible(tmp_path):
    """A file that sniffs as HEIF but holds junk: the reason names no memory address
    (``<_io.BytesIO object at 0x7f...>``), so two scans of one tree give identical reports."""
    rng = np.random.default_rng(6)
    junk = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + rng.bytes(4000)
    errors = set()
    for name in ("a.heic", "b.heic"):
        (tmp_path / name).write_bytes(junk)
        res = decode_job(DecodeJob(str(tmp_path / name)))
        assert res.status == "error"
        assert "0x" not in res.error and " object at" not in res.error, res.error
        errors.add(res.error)
    assert len(errors) == 1


# -- minor: EXIF orientation -----------------------------------------------------------------------

@pytest.mark.parametrize("tag, stored", [(6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270),
                                         (3, Image.Transpose.ROTATE_180)])
def test_exif_orientation_gives_the_upright_size_and_pixels(tmp_path, tag, stored):
    """A camera stores the sensor's pixels and says how to turn them: the row reports the
    upright width and height, and the model sees the upright picture."""
    upright = _photo(np.random.default_rng(7), 96, 64)
    exif = Image.Exif()
    exif[0x0112] = tag
    (tmp_path / "upright.png").write_bytes(_save(upright, "PNG"))
    (tmp_path / "turned.png").write_bytes(_save(upright.transpose(stored), "PNG", exif=exif))
    a = decode_job(DecodeJob(str(tmp_path / "upright.png")))
    b = decode_job(DecodeJob(str(tmp_path / "turned.png")))
    assert (b.info["width"], b.info["height"]) == (a.info["width"], a.info["height"]) == (96, 64)
    assert np.abs(a.arrays[0].astype(int) - b.arrays[0].astype(int)).max() <= 1  # resize rounding
