"""Issue 14, the input side: strings from files, metadata parsing cost, memory per file, scan
bombs, HEIC/AVIF and EXIF orientation. Every hostile file is generated here."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from aiiscan.decode import DecodeJob, decode_job
from aiiscan.report import ReportWriter, read_report

from .hostile import _photo


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
    writer = ReportWriter(resumed, rows_per_part=1)
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
