"""Provenance columns: each signal on files the tests craft, and hostile metadata that must
never cost a row its score."""

import io
import json
import re
import struct
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image, PngImagePlugin

from aiiscan.cli import main
from aiiscan.decode.provenance import extract
from aiiscan.reports.read import read_report

DST = "http://cv.iptc.org/newscodes/digitalsourcetype/"
XMP_ATTR = (f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description '
            f'xmp:CreatorTool="Firefly &amp; friends" '
            f'Iptc4xmpExt:DigitalSourceType="{DST}trainedAlgorithmicMedia"/></rdf:RDF></x:xmpmeta>')
XMP_ELEM = (f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description>'
            f'<xmp:CreatorTool>GIMP 2.10</xmp:CreatorTool>'
            f'<Iptc4xmpExt:DigitalSourceType rdf:resource="{DST}digitalCapture"/>'
            f'</rdf:Description></rdf:RDF></x:xmpmeta>')


def _img() -> Image.Image:
    return Image.new("RGB", (64, 48), (90, 120, 150))


def _camera_exif(gps: bool = True, comment: bytes | None = None) -> Image.Exif:
    ex = Image.Exif()
    ex[0x010F], ex[0x0110], ex[0x0131] = "Canon", "EOS 5D Mark IV", "Firmware 1.0"
    sub = ex.get_ifd(0x8769)
    sub[0x9003], sub[0xA434] = "2021:06:01 12:00:00", "EF24-70mm f/2.8L II USM"
    if comment is not None:
        sub[0x9286] = comment
    if gps:
        g = ex.get_ifd(0x8825)
        g[1], g[2], g[3], g[4] = "N", (52.0, 30.0, 0.0), "W", (13.0, 15.0, 0.0)
    return ex


def _jpeg(exif=None, segments: list[tuple[int, bytes]] = ()) -> bytes:
    buf = io.BytesIO()
    _img().save(buf, "JPEG", **({"exif": exif} if exif is not None else {}))
    data = buf.getvalue()
    extra = b"".join(bytes([0xFF, m]) + struct.pack(">H", len(p) + 2) + p for m, p in segments)
    return data[:2] + extra + data[2:]


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def _png(texts: dict | None = None, chunks: list[bytes] = (), exif=None) -> bytes:
    info = PngImagePlugin.PngInfo()
    for k, v in (texts or {}).items():
        info.add_text(k, v)
    buf = io.BytesIO()
    _img().save(buf, "PNG", pnginfo=info, **({"exif": exif} if exif is not None else {}))
    data = buf.getvalue()
    iend = data.rindex(b"IEND") - 4
    return data[:iend] + b"".join(chunks) + data[iend:]


def _webp(chunks: list[tuple[bytes, bytes]]) -> bytes:
    buf = io.BytesIO()
    _img().save(buf, "WEBP", lossless=True)
    data = buf.getvalue()
    body = data[12:] + b"".join(c + struct.pack("<I", len(p)) + p + b"\0" * (len(p) & 1) for c, p in chunks)
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


def _jumbf(ai: bool = True) -> bytes:
    desc = b"jumd" + bytes.fromhex("6332706100110010800000aa00389b71") + b"\x03c2pa\0"
    payload = (b'{"actions":[{"action":"c2pa.created","digitalSourceType":"' + DST.encode()
               + (b"trainedAlgorithmicMedia" if ai else b"digitalCapture") + b'"}]}')
    inner = struct.pack(">I", 8 + len(desc)) + desc + payload
    return struct.pack(">I", 8 + len(inner)) + b"jumb" + inner


def test_camera_exif_columns_and_gps_policy():
    data = _jpeg(_camera_exif())
    out = extract(data, "JPEG")
    assert out["has_exif"] and out["exif_make"] == "Canon" and out["exif_model"] == "EOS 5D Mark IV"
    assert out["exif_software"] == "Firmware 1.0"
    assert out["exif_datetime_original"] == "2021:06:01 12:00:00"
    assert out["exif_lens"] == "EF24-70mm f/2.8L II USM"
    assert out["has_gps"] is True and out["gps"] is None  # coordinates only on request
    assert extract(data, "JPEG", keep_gps=True)["gps"] == "52.500000,-13.250000"
    assert out["provenance_hint"] == "camera-exif" and out["metadata_error"] is None
    png = extract(_png(exif=_camera_exif(gps=False)), "PNG")  # eXIf chunk
    assert png["exif_make"] == "Canon" and png["has_gps"] is False
    plain = extract(_jpeg(), "JPEG")
    assert plain["has_exif"] is False and plain["provenance_hint"] is None


A1111 = "a lighthouse at dusk, oil painting\nNegative prompt: blurry\nSteps: 30, Sampler: Euler a, Seed: 1"


@pytest.mark.parametrize("texts, tool, prompt", [
    ({"parameters": A1111}, "a1111", "a lighthouse at dusk, oil painting"),
    ({"prompt": json.dumps({"3": {"class_type": "KSampler", "inputs": {}},
                            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox"}}}),
      "workflow": json.dumps({"nodes": []})}, "comfyui", "a red fox"),
    ({"Software": "NovelAI", "Description": "1girl, cherry blossoms",
      "Comment": json.dumps({"prompt": "1girl, cherry blossoms", "steps": 28})}, "novelai",
     "1girl, cherry blossoms"),
    ({"invokeai_metadata": json.dumps({"positive_prompt": "castle in fog", "seed": 3})}, "invokeai",
     "castle in fog"),
    ({"sd-metadata": json.dumps({"image": {"prompt": [{"prompt": "old invoke", "weight": 1}]}})},
     "invokeai", "old invoke"),
    ({"generation_data": "{}"}, "other", None),
])
def test_generator_text_chunks(texts, tool, prompt):
    out = extract(_png(texts), "PNG")
    assert (out["gen_params_present"], out["gen_tool"], out["gen_prompt"]) == (True, tool, prompt)
    assert out["provenance_hint"] == "declared-ai"
    assert extract(_png(texts), "PNG", prompts=False)["gen_prompt"] is None


def test_a1111_parameters_in_jpeg_user_comment_and_prompt_cap():
    comment = b"UNICODE\0" + A1111.encode("utf-16-be")
    out = extract(_jpeg(_camera_exif(gps=False, comment=comment)), "JPEG")
    assert out["gen_tool"] == "a1111" and out["gen_prompt"] == "a lighthouse at dusk, oil painting"
    assert out["provenance_hint"] == "declared-ai"  # a declaration beats camera EXIF
    long = extract(_png({"parameters": "x" * 2000 + "\nSteps: 1, Sampler: a"}), "PNG")
    assert len(long["gen_prompt"]) == 500


def test_xmp_digital_source_type_and_creator_tool_in_three_containers():
    app1 = (1, b"http://ns.adobe.com/xap/1.0/\0" + XMP_ATTR.encode())
    out = extract(_jpeg(segments=[(0xE1, app1[1])]), "JPEG")
    assert out["iptc_digital_source_type"] == "trainedAlgorithmicMedia"
    assert out["xmp_creator_tool"] == "Firefly & friends"
    assert out["provenance_hint"] == "declared-ai"
    itxt = b"XML:com.adobe.xmp\0\0\0\0\0" + XMP_ELEM.encode()
    out = extract(_png(chunks=[_chunk(b"iTXt", itxt)]), "PNG")
    assert (out["iptc_digital_source_type"], out["xmp_creator_tool"]) == ("digitalCapture", "GIMP 2.10")
    assert out["provenance_hint"] is None  # a capture declaration is not an AI one
    out = extract(_webp([(b"XMP ", XMP_ATTR.encode())]), "WEBP")
    assert out["iptc_digital_source_type"] == "trainedAlgorithmicMedia"


def test_c2pa_presence_in_jpeg_png_webp():
    jumbf = _jumbf(ai=True)
    app11 = b"JP\0\x01\0\0\0\x01" + jumbf
    for data, fmt in ((_jpeg(segments=[(0xEB, app11)]), "JPEG"),
                      (_png(chunks=[_chunk(b"caBX", jumbf)]), "PNG"),
                      (_webp([(b"C2PA", jumbf)]), "WEBP")):
        out = extract(data, fmt)
        assert out["c2pa_present"] is True and out["c2pa_declares_ai"] is True, fmt
        assert out["provenance_hint"] == "declared-ai"
        try:
            import c2pa  # noqa: F401
        except ImportError:
            assert out["c2pa_valid"] is None
        else:  # our forged manifest is not a signed one: never reported valid
            assert out["c2pa_valid"] is False and "C2PA" in out["metadata_error"]
    out = extract(_png(chunks=[_chunk(b"caBX", _jumbf(ai=False))]), "PNG")
    assert out["c2pa_present"] is True and out["c2pa_declares_ai"] is False
    assert extract(_png(), "PNG")["c2pa_present"] is False


def _broken_exif_blobs() -> list[bytes]:
    # IFD offset past the end; an IFD pointing at itself (loop); a count of 65535 entries.
    return [b"MM\0*\0\0\xff\xff", b"II*\0\x08\0\0\0\x01\0\x0f\x01\x02\0\xff\xff\xff\x7f\x08\0\0\0\x08\0\0\0",
            b"II*\0\x08\0\0\0\xff\xff" + b"\0" * 20]


def test_hostile_metadata_never_raises():
    cases = [extract(_jpeg(segments=[(0xE1, b"Exif\0\0" + blob)]), "JPEG") for blob in _broken_exif_blobs()]
    bad_utf8 = _chunk(b"iTXt", b"parameters\0\0\0\0\0" + b"\xff\xfe bad \xc3\x28" + b"\nSteps: 2, Sampler: x")
    bomb = _chunk(b"zTXt", b"parameters\0\0" + zlib.compress(b"a" * 20_000_000, 9))
    truncated = _png()[:-30] + _chunk(b"tEXt", b"k\0v")[:6]
    cases += [extract(_png(chunks=[bad_utf8]), "PNG"), extract(_png(chunks=[bomb]), "PNG"),
              extract(truncated, "PNG"), extract(b"\xff\xd8\xff\xe1\xff", "JPEG"),
              extract(b"RIFF\0\0\0\0WEBPXMP \xff\xff\xff\x7f", "WEBP"), extract(b"", None)]
    for out in cases:
        assert set(out) >= {"metadata_error", "provenance_hint", "has_exif"}
    assert "\ufffd" in cases[3]["gen_prompt"]  # invalid UTF-8 shown as replacement characters
    assert "inflates past" in cases[4]["metadata_error"] and cases[4]["gen_tool"] == "a1111"
    assert "runs past the end" in cases[5]["metadata_error"]


def test_scan_writes_columns_and_keeps_scores_on_hostile_metadata(head_prefix, tmp_path):
    root = tmp_path / "evidence"
    root.mkdir()
    files = {
        "camera.jpg": _jpeg(_camera_exif()),
        "a1111.png": _png({"parameters": A1111}),
        "xmp.jpg": _jpeg(segments=[(0xE1, b"http://ns.adobe.com/xap/1.0/\0" + XMP_ATTR.encode())]),
        "c2pa.png": _png(chunks=[_chunk(b"caBX", _jumbf())]),
        "huge_text.png": _png(chunks=[_chunk(b"tEXt", b"Comment\0" + b"=" * 50_000_000)]),
        "bomb_text.png": _png(chunks=[_chunk(b"zTXt", b"parameters\0\0" + zlib.compress(b"b" * 30_000_000))]),
        "broken_exif.jpg": _jpeg(segments=[(0xE1, b"Exif\0\0" + _broken_exif_blobs()[1])]),
        "bad_utf8.png": _png(chunks=[_chunk(b"iTXt", b"parameters\0\0\0\0\0\xff\xfe\nSteps: 1, Sampler: z")]),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    out = tmp_path / "r.parquet"
    res = CliRunner().invoke(main, ["scan", str(root), "-o", str(out), "--weights", str(head_prefix),
                                    "--workers", "2", "--quiet"])
    assert res.exit_code == 0, res.output
    assert re.search(r"provenance: +camera-exif 1, declared-ai 5", res.output)
    rows = {Path(r["path"]).name: r for r in read_report(out).to_pylist()}
    assert all(r["status"] == "ok" and r["score"] is not None for r in rows.values())
    assert rows["camera.jpg"]["exif_make"] == "Canon" and rows["camera.jpg"]["gps"] is None
    assert rows["a1111.png"]["gen_tool"] == "a1111"
    assert rows["xmp.jpg"]["iptc_digital_source_type"] == "trainedAlgorithmicMedia"
    assert rows["c2pa.png"]["c2pa_present"] is True
    assert "over 4194304 bytes" in rows["huge_text.png"]["metadata_error"]
    assert "inflates past" in rows["bomb_text.png"]["metadata_error"]
    assert rows["bad_utf8.png"]["gen_tool"] == "a1111"

    res = CliRunner().invoke(main, ["scan", str(root), "-o", str(tmp_path / "g.csv"), "--weights",
                                    str(head_prefix), "--workers", "0", "--keep-gps", "--no-prompts",
                                    "--quiet"])
    rows = {Path(r["path"]).name: r for r in read_report(tmp_path / "g.csv").to_pylist()}
    assert rows["camera.jpg"]["gps"] == "52.500000,-13.250000"
    assert rows["a1111.png"]["gen_prompt"] is None and rows["a1111.png"]["gen_tool"] == "a1111"


@pytest.mark.parametrize(("make", "model", "shown"), [
    ("Canon", "Canon EOS 5D Mark II", "Canon EOS 5D Mark II"),  # the make repeated in the model tag
    ("canon", "Canon EOS R5", "Canon EOS R5"),
    ("NIKON CORPORATION", "NIKON D750", "NIKON CORPORATION NIKON D750"),
    ("Apple", "iPhone 12", "Apple iPhone 12"),
    (None, "X100V", "X100V"), ("FUJIFILM", None, "FUJIFILM"), ("  ", "  ", ""), (None, None, ""),
])
def test_a_camera_is_named_once(make, model, shown):
    """The page's cards and `aiiscan evidence` name a camera by one rule (``camera_name``)."""
    from aiiscan.decode.provenance import camera_name

    assert camera_name(make, model) == shown
