"""aiiscan.watermark against the invisible-watermark library (the oracle), bit for bit.

The oracle is a test-only install: ``pip install --no-deps invisible-watermark
opencv-python-headless PyWavelets`` (``--no-deps``: the package asks for torch, onnx and the GUI
``opencv-python``, none of which dwtDct needs). Tests that need it skip without it; the colour
conversion, threshold, format and natural-photo tests run on the base install.
"""

from __future__ import annotations

import csv
import importlib
import io
import sys
import types
import warnings

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from aiiscan.decode import watermark as wm
from aiiscan.tasks.selftest import synthetic_photo

from ..conftest import EVAL_DEV, TRAIN_NATURAL

SDXL, _, SD1, SD2 = wm.MESSAGES


@pytest.fixture(scope="module")
def oracle() -> types.ModuleType:
    """imwatermark, imported without its rivaGan module when torch or onnxruntime is missing."""
    pytest.importorskip("cv2")
    pytest.importorskip("pywt")
    if importlib.util.find_spec("imwatermark") is None:
        pytest.skip("invisible-watermark is not installed (the oracle)")
    try:
        return importlib.import_module("imwatermark")
    except ImportError:  # rivaGan imports torch at module level; dwtDct needs none of it
        sys.modules["imwatermark.rivaGan"] = types.SimpleNamespace(RivaWatermark=None)
        return importlib.import_module("imwatermark")


def reference_bits(oracle, rgb: np.ndarray, length: int, order: str) -> np.ndarray:
    """The library's decoder on the array it would be handed: cv2.imread's BGR, or RGB as is."""
    from imwatermark.maxDct import EmbedMaxDct

    arr = np.ascontiguousarray(rgb[..., ::-1]) if order == "bgr" else rgb
    with warnings.catch_warnings():  # 'Mean of empty slice' for a bit without a block: read as 0
        warnings.simplefilter("ignore", RuntimeWarning)
        return EmbedMaxDct(watermarks=[], wmLen=length).decode(arr)


def embed(oracle, rgb: np.ndarray, message: wm.Message) -> np.ndarray:
    """The reference encoder on uint8 pixels, in the channel order of the message's generator."""
    enc = oracle.WatermarkEncoder()
    if message.name == "sdxl":
        enc.set_watermark("bits", list(message.bits))
    else:
        enc.set_watermark("bytes", b"StableDiffusionV1" if message.name == "sd1" else b"SDV2")
    out = enc.encode(np.ascontiguousarray(rgb[..., ::-1]) if message.order == "bgr" else rgb.copy(), "dwtDct")
    return np.ascontiguousarray(out[..., ::-1] if message.order == "bgr" else out)


def picture(kind: str, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "noise":
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if kind == "flat":
        return np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (h, w, 3)).copy()
    if kind == "grey":
        return np.repeat(np.asarray(synthetic_photo(rng, (w, h)).convert("L"))[..., None], 3, axis=2)
    if kind == "extremes":  # saturated colours: 0 and 255 only
        return (rng.integers(0, 2, (h, w, 3)) * 255).astype(np.uint8)
    return np.asarray(synthetic_photo(rng, (w, h)))


# (width, height): odd and even sides, sides not multiples of 4 or 8, one block row or column, no
# complete block row (every bit reads 0), and sizes whose block count is under the message length.
SIZES = [(256, 256), (257, 259), (255, 263), (300, 301), (333, 217), (8192, 8), (8, 8192), (9, 7400),
         (10000, 7), (4100, 17), (511, 513), (640, 480), (1031, 767), (271, 1199)]
KINDS = ["photo", "noise", "flat", "grey", "extremes"]


@pytest.mark.parametrize("case", range(len(SIZES)))
def test_decode_bits_match_the_reference_decoder(oracle, case: int) -> None:
    """Raw bits, not verdicts: every length the decoder may be asked for, both channel orders, on
    unmarked and marked pictures."""
    rng = np.random.default_rng(case)
    w, h = SIZES[case]
    rgb = picture(KINDS[case % len(KINDS)], w, h, rng)
    if case % 3 == 0 and h >= 16 and w >= 16:  # a marked one, in the order its message uses
        rgb = embed(oracle, rgb, wm.MESSAGES[case % 4])
    for length in (1, 7, 32, 48, 136, 200):
        for order in ("bgr", "rgb"):
            mine = wm.decode_bits(rgb, length, order)
            assert mine.dtype == bool and mine.shape == (length,)
            np.testing.assert_array_equal(mine, reference_bits(oracle, rgb, length, order),
                                          err_msg=f"{w}x{h} {order} length {length}")


def test_decode_bits_match_on_many_random_pictures(oracle) -> None:
    rng = np.random.default_rng(2024)
    for _ in range(12):
        w, h = (int(x) for x in rng.integers(240, 720, 2))
        rgb = picture(str(rng.choice(KINDS)), w, h, rng)
        length = int(rng.integers(1, 160))
        for order in ("bgr", "rgb"):
            np.testing.assert_array_equal(wm.decode_bits(rgb, length, order),
                                          reference_bits(oracle, rgb, length, order))


@pytest.mark.parametrize("message", wm.MESSAGES, ids=lambda m: f"{m.name}-{m.order}")
def test_each_known_message_round_trips(oracle, message: wm.Message, tmp_path) -> None:
    """Reference encoder -> lossless PNG -> our decoder: the reference's bits, and detect names it."""
    rgb = np.asarray(synthetic_photo(np.random.default_rng(3), (640, 480)))
    marked = embed(oracle, rgb, message)
    Image.fromarray(marked).save(tmp_path / "marked.png")
    with Image.open(tmp_path / "marked.png") as img:
        assert wm.skip_reason(img, (tmp_path / "marked.png").read_bytes()) is None
        img.load()
        bits = wm.decode_bits(img, len(message.bits), message.order)
        found = wm.detect(img)
    np.testing.assert_array_equal(bits, reference_bits(oracle, marked, len(message.bits), message.order))
    errors = int((bits != np.array(message.bits, bool)).sum())
    assert found == wm.Watermark(message.name, errors, len(message.bits), message.order,
                                 message.false_positive)
    assert errors <= message.max_errors
    assert wm.detect(rgb) is None


def test_detect_reports_the_full_decode_of_a_large_image(oracle) -> None:
    """On a large picture the first pass reads a subset of blocks; the bit errors reported are still
    those of the reference decoder over the whole image."""
    rng = np.random.default_rng(11)
    rgb = np.asarray(synthetic_photo(rng, (1280, 1032)))
    assert len(wm._screen_rows(1032 // 8, 1280 // 8)) < 1032 // 8
    marked = embed(oracle, rgb, SD1)
    found = wm.detect(marked)
    reference = reference_bits(oracle, marked, len(SD1.bits), "bgr")
    assert found is not None and found.name == "sd1"
    assert found.bit_errors == int((reference != np.array(SD1.bits, bool)).sum())
    assert {s.message.name: s.passed for s in wm.screen(rgb)} == dict.fromkeys(("sdxl", "sd1", "sd2"), False)
    assert wm.detect(rgb) is None


def test_full_decode_in_strips_is_the_same(oracle, monkeypatch) -> None:
    rgb = picture("photo", 333, 301, np.random.default_rng(8))
    whole = wm.decode_bits(rgb, 136)
    monkeypatch.setattr(wm, "STRIP_PIXELS", 333 * 20)  # strips of 16 rows, the last one 8
    np.testing.assert_array_equal(wm.decode_bits(rgb, 136), whole)
    np.testing.assert_array_equal(whole, reference_bits(oracle, rgb, 136, "bgr"))


def test_small_pictures_are_refused_as_the_library_does(oracle) -> None:
    rgb = np.zeros((255, 257, 3), np.uint8)  # 65,535 pixels
    with pytest.raises(RuntimeError):
        oracle.WatermarkDecoder("bits", 48).decode(rgb, "dwtDct")
    with pytest.raises(ValueError, match="256x256"):
        wm.decode_bits(rgb, 48)
    assert wm.detect(rgb) is None and wm.screen(rgb) == []


def test_u_plane_is_opencvs_for_every_colour(oracle) -> None:
    import cv2

    v = np.arange(1 << 24, dtype=np.uint32)
    rgb = np.stack([v >> 16, (v >> 8) & 255, v & 255], -1).astype(np.uint8).reshape(4096, 4096, 3)
    img = Image.fromarray(rgb)
    for order, handed in (("bgr", np.ascontiguousarray(rgb[..., ::-1])), ("rgb", rgb)):
        expected = cv2.cvtColor(handed, cv2.COLOR_BGR2YUV)[..., 1]
        np.testing.assert_array_equal(wm._u_plane(img, order), expected)


def test_u_plane_is_the_fixed_point_formula_for_every_colour() -> None:
    """No oracle needed: OpenCV's 14-bit formula, written out, for all 2**24 colours."""
    v = np.arange(1 << 24, dtype=np.uint32)
    rgb = np.stack([v >> 16, (v >> 8) & 255, v & 255], -1).astype(np.uint8).reshape(4096, 4096, 3)
    r, g, b = (rgb[..., i].astype(np.int32) for i in range(3))
    for order, (blue, red) in (("bgr", (b, r)), ("rgb", (r, b))):
        y = (red * 4899 + g * 9617 + blue * 1868 + 8192) >> 14
        u = ((blue - y) * 8061 + (128 << 14) + 8192) >> 14
        np.testing.assert_array_equal(wm._u_plane(Image.fromarray(rgb), order), u)
    assert u.min() >= 17  # so every LL coefficient is positive: the library's abs() changes nothing


def test_haar_ll_is_pywts() -> None:
    pywt = pytest.importorskip("pywt")
    rng = np.random.default_rng(5)
    u = rng.integers(0, 256, (64, 96), dtype=np.uint8)
    u[:8] = np.arange(96, dtype=np.uint8)  # ties and runs, where float rounding decides the max
    ll, _ = pywt.dwt2(u, "haar")
    p = wm._PAIR[(u[0::2].astype(np.uint16) << 8) | u[1::2]]
    np.testing.assert_array_equal(p[:, 0::2] + p[:, 1::2], ll)


def test_thresholds_and_their_bounds() -> None:
    assert wm.binomial_tail(48, 8) == pytest.approx(1.6526e-6, rel=1e-4)
    assert wm.binomial_tail(32, 32) == 1.0 and wm.binomial_tail(10, 0) == 2 ** -10
    assert [(m.name, m.order, len(m.bits)) for m in wm.MESSAGES] == [
        ("sdxl", "rgb", 48), ("sdxl", "bgr", 48), ("sd1", "bgr", 136), ("sd2", "bgr", 32)]
    assert "".join(map(str, SDXL.bits)) == "101100111110110010010000011110111011000110011110"
    assert np.packbits(SD1.bits).tobytes() == b"StableDiffusionV1"
    assert all(m.false_positive < 2e-6 for m in wm.MESSAGES)
    assert wm.FALSE_POSITIVE < 1e-5


def _encoded(img: Image.Image, fmt: str, **kw) -> tuple[Image.Image, bytes]:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    data = buf.getvalue()
    return Image.open(io.BytesIO(data)), data


def test_skip_reason_keeps_lossless_colour_pictures_only() -> None:
    photo = synthetic_photo(np.random.default_rng(0), (320, 240))
    for fmt, kw in (("PNG", {}), ("BMP", {}), ("TIFF", {}), ("WEBP", {"lossless": True})):
        assert wm.skip_reason(*_encoded(photo, fmt, **kw)) is None, fmt
    assert wm.skip_reason(*_encoded(photo.convert("RGBA"), "PNG")) is None
    assert "lossy" in wm.skip_reason(*_encoded(photo, "JPEG", quality=95))
    assert "lossy WebP" in wm.skip_reason(*_encoded(photo, "WEBP", quality=95))
    assert "mode L" in wm.skip_reason(*_encoded(photo.convert("L"), "PNG"))
    assert "mode P" in wm.skip_reason(*_encoded(photo.convert("P"), "PNG"))
    assert "256x256" in wm.skip_reason(*_encoded(photo.resize((200, 200)), "PNG"))


def test_webp_chunk_walk() -> None:
    photo = synthetic_photo(np.random.default_rng(1), (64, 64))
    frames = [photo, photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    _, lossless = _encoded(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    _, lossy = _encoded(frames[0], "WEBP", save_all=True, append_images=frames[1:], quality=80)
    assert wm._webp_lossless(lossless) and not wm._webp_lossless(lossy)
    assert not wm._webp_lossless(b"RIFF\xff\xff\xff\xffWEBP")  # truncated: no image chunk


def test_the_decode_stage_fills_the_report_columns(oracle, tmp_path) -> None:
    from aiiscan.decode.job import DecodeJob, decode_job
    from aiiscan.reports.schema import SCHEMA, conform

    rgb = np.asarray(synthetic_photo(np.random.default_rng(3), (640, 480)))
    marked = embed(oracle, rgb, SD2)
    Image.fromarray(marked).save(tmp_path / "marked.png")
    Image.fromarray(marked).save(tmp_path / "marked.jpg", quality=95)
    Image.fromarray(rgb).save(tmp_path / "plain.png")

    def info(name: str, watermark: bool = True) -> dict:
        res = decode_job(DecodeJob(str(tmp_path / name), provenance=True, watermark=watermark))
        assert res.status == "ok"
        return res.info

    errors = int((wm.decode_bits(marked, 32) != np.array(SD2.bits, bool)).sum())
    found = info("marked.png")
    assert (found["watermark"], found["watermark_bit_errors"]) == ("sd2", errors)
    for name in ("marked.jpg", "plain.png"):  # lossy: not checked; unmarked: nothing found
        assert (info(name)["watermark"], info(name)["watermark_bit_errors"]) == (None, None)
    assert "watermark" not in info("marked.png", watermark=False)  # train, calibrate, evaluate
    assert SCHEMA.field("watermark_bit_errors").type == pa.int32()
    older = pa.table({f.name: pa.nulls(1, f.type) for f in SCHEMA if not f.name.startswith("watermark")})
    assert conform(older).column("watermark_bit_errors").to_pylist() == [None]


@pytest.mark.skipif(not TRAIN_NATURAL.is_dir(), reason="no train-natural photos here")
def test_no_watermark_in_natural_photos() -> None:
    rows = list(csv.DictReader(open(TRAIN_NATURAL / "MANIFEST.tsv"), delimiter="\t"))
    for row in rows[::47]:
        with Image.open(TRAIN_NATURAL / row["local_path"]) as img:
            assert wm.detect(img.convert("RGB")) is None, row["local_path"]


@pytest.mark.skipif(not (EVAL_DEV / "fake" / "sd-compvis-outputs").is_dir(),
                    reason="no eval-dev CompVis outputs here")
def test_compvis_outputs_carry_sd1() -> None:
    """Real SD 1.x outputs of CompVis txt2img.py: most carry its message (benchmarks/watermark_recall.py)."""
    paths = sorted((EVAL_DEV / "fake" / "sd-compvis-outputs").glob("*.png"))[:6]
    found = []
    for p in paths:
        with Image.open(p) as img:
            found.append(wm.detect(img))
    assert sum(f is not None and f.name == "sd1" for f in found) >= len(paths) // 2
