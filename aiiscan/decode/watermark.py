"""Invisible watermarks that Stable Diffusion's reference code embeds, read without model weights.

SD 1.x (CompVis ``txt2img.py``), SD 2 (Stability-AI ``stablediffusion``) and SDXL (diffusers,
Stability-AI ``generative-models``) embed a fixed message with the invisible-watermark library's
``dwtDct`` method. This module is a vectorised, opencv-free and PyWavelets-free copy of that
library's decoder (``imwatermark.maxDct.EmbedMaxDct.decode``), bit for bit:

1. The encoder is handed a 3-channel uint8 array it takes for BGR; OpenCV turns it into YUV with
   14-bit fixed-point arithmetic: ``Y = (4899 R + 9617 G + 1868 B + 8192) >> 14`` and
   ``U = ((B - Y) * 8061 + 128 * 16384 + 8192) >> 14``. Only U carries the mark (the library's
   per-channel scales are ``[0, 36, 36]`` but its loop stops after channel 1: Y has scale 0, V is
   never visited).
2. One level of a Haar DWT (``pywt.dwt2(..., 'haar')``) of U cropped to multiples of 4; only the
   LL band is used: ``LL = h * (h*u[2i, 2j] + h*u[2i+1, 2j]) + h * (...)``, h = 0.7071067811865476,
   in that float order (rows first), which this module repeats exactly.
3. LL is cut into 4x4 blocks (8x8 pixels), row-major; block k carries bit ``k % length``. Despite
   the name there is no DCT in the decoder: in each block it takes the largest of the 15
   coefficients after the first (by magnitude; all are positive, since U >= 17 for any uint8
   colour), and votes 1 when that value modulo 36 exceeds 18.
4. Each bit is the mean of its votes, ``mean * 255 > 127``; a bit without a vote is 0.

A known message is decided by its bit-error count (Hamming distance), never by exact match:
lossless copies decode with a few errors, natural photos with about half. Each message in
``MESSAGES`` carries its threshold and the false-positive bound that threshold gives for random
bits. The mark does not survive JPEG (see ``skip_reason``); its absence means nothing.

Speed: the colour conversion runs as two Pillow matrix conversions (exact: every intermediate of
the fixed-point formulas is a float32 that Pillow's ``+ 0.5`` and truncation floor correctly),
the first DWT pass as one table look-up. ``detect`` first reads about SCREEN_BLOCKS blocks from
evenly spaced rows (``screen``) and measures how much more often the blocks carrying a message's
1 bits vote 1 than those carrying its 0 bits; only above SCREEN_CONTRAST does it decode the whole
image, and those full-decode bits (the reference decoder's) decide.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
from PIL import Image

SCALE = 36.0  # the library's default scale for U
MIN_PIXELS = 256 * 256  # the library refuses to encode or decode anything smaller
SCREEN_BLOCKS = 1536  # blocks read by detect's first pass (a 1024-wide image: 12 of its 128 block rows)
STRIP_PIXELS = 4 * 1024 * 1024  # pixels decoded at a time by a full decode (~100 MB of work arrays)
SCREEN_CONTRAST = 0.08  # the first pass hands over to the full decode from this vote contrast on

_Q = 16384.0  # OpenCV's fixed point (yuv_shift = 14)
# Pillow's convert(matrix) computes m0*R + m1*G + m2*B + m3 + 0.5 in float32 and truncates: every
# term below is an integer over 2**14 with a numerator under 2**23, so it is exact and the
# truncation is the floor that OpenCV's descale by ``>> 14`` takes.
_Y = {"bgr": (4899 / _Q, 9617 / _Q, 1868 / _Q, 0.0),  # a file's RGB pixels handed over as BGR
      "rgb": (1868 / _Q, 9617 / _Q, 4899 / _Q, 0.0)}  # RGB pixels handed over unchanged
_B_SLOT = {"bgr": "B", "rgb": "R"}  # the channel the library takes for blue
_U = (8061 / _Q, -8061 / _Q, 0.0, 128.0)  # on (blue, Y, -): U = floor((blue - Y) * 8061 / 2**14 + 128.5)

_H = 0.7071067811865476  # pywt.Wavelet('haar').dec_lo[1]
_i = np.arange(65536)
# h * (h*a + h*b) for every vertical pair of U values (a << 8 | b): one table look-up replaces the
# first DWT pass and the second pass's products, with the same float rounding as pywt.
_PAIR = _H * (_H * (_i >> 8).astype(np.float64) + _H * (_i & 255).astype(np.float64))
del _i


def binomial_tail(n: int, t: int) -> float:
    """P(at most t errors among n random bits): the chance that an unmarked image whose decoded
    bits are fair coin flips comes within t errors of a given message."""
    return sum(math.comb(n, k) for k in range(t + 1)) / 2 ** n


def _bits_of(data: bytes) -> tuple[int, ...]:
    return tuple(int(b) for b in np.unpackbits(np.frombuffer(data, np.uint8)))


@dataclass(frozen=True)
class Message:
    """A message some generator embeds, with the channel order its encoder was fed."""

    name: str  # the report's ``watermark`` value
    bits: tuple[int, ...]
    order: str  # "bgr": the RGB picture was turned BGR first (as the encoder expects); "rgb": not
    max_errors: int  # found at <= this many bit errors
    embedder: str

    @property
    def false_positive(self) -> float:
        return binomial_tail(len(self.bits), self.max_errors)


_SDXL = _bits_of((0b101100111110110010010000011110111011000110011110).to_bytes(6, "big"))
# Thresholds (benchmarks/watermark_recall.py): each keeps the chance that random bits pass near
# 1e-6, well below the closest of 1,051 natural photos (12 and 15 of 48 errors in the two orders,
# 56 of 136, 8 of 32). Lossless copies either decode with a few errors or fail outright (near half
# the bits, when the picture's blocks nearly all vote alike), so looser thresholds gain little:
# 73.9 % of SDXL copies at 8, 77.3 % at 10; SD 1 75.6 % at 40; SD 2 64.0 % at 3, 66.8 % at 5.
MESSAGES: tuple[Message, ...] = (
    Message("sdxl", _SDXL, "rgb", 8, "diffusers SDXL pipelines before 0.27 (RGB fed as BGR)"),
    Message("sdxl", _SDXL, "bgr", 8, "diffusers >= 0.27 and Stability-AI generative-models SDXL"),
    Message("sd1", _bits_of(b"StableDiffusionV1"), "bgr", 40, "CompVis stable-diffusion txt2img.py"),
    Message("sd2", _bits_of(b"SDV2"), "bgr", 3, "Stability-AI stablediffusion txt2img.py"),
)
# All messages tested on one image: the chance that random bits match any of them.
FALSE_POSITIVE = sum(m.false_positive for m in MESSAGES)


@dataclass(frozen=True)
class Watermark:
    """A known message found in an image, from a full decode (the reference decoder's bits)."""

    name: str
    bit_errors: int
    bits: int
    order: str
    false_positive: float  # the message's binomial bound at its threshold


def _rgb(image: Image.Image | np.ndarray) -> Image.Image:
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected a (H, W, 3) uint8 array, got {image.dtype} {image.shape}")
        return Image.fromarray(image, "RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _u_plane(img: Image.Image, order: str) -> np.ndarray:
    """OpenCV's uint8 U channel of an RGB picture handed over in ``order`` (exact for all 2**24
    colours)."""
    y = img.convert("L", matrix=_Y[order])
    pair = Image.merge("RGB", (img.getchannel(_B_SLOT[order]), y, y))
    return np.asarray(pair.convert("L", matrix=_U))


def _votes(u: np.ndarray) -> np.ndarray:
    """One vote per 8x8-pixel block of a U plane whose sides are multiples of 8: (rows, cols) bool."""
    u16 = u.astype(np.uint16)
    p = np.take(_PAIR, (u16[0::2] << 8) | u16[1::2])
    ll = p[:, 0::2] + p[:, 1::2]
    nr, nc = ll.shape[0] // 4, ll.shape[1] // 4
    blocks = ll.reshape(nr, 4, nc, 4)  # [block row, row in block, block column, column in block]
    # The block's max without its first coefficient: column 0 below row 0, and columns 1-3.
    top = np.maximum(blocks[:, 1:, :, 0].max(axis=1), blocks.max(axis=1)[..., 1:].max(axis=2))
    return np.remainder(top, SCALE) > SCALE / 2


def _tally(votes: np.ndarray, rows: np.ndarray, ncols: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Votes for 1 and votes in all per bit; block (i, j) carries bit (i * ncols + j) % length."""
    index = ((rows[:, None] * ncols + np.arange(ncols)) % length).ravel()
    ones = np.bincount(index, weights=votes.ravel(), minlength=length)
    return ones, np.bincount(index, minlength=length)


def _bits(ones: np.ndarray, n: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):  # no vote: nan, read as 0 like the library
        return ones / n * 255 > 127


def _full_votes(img: Image.Image, order: str) -> np.ndarray:
    """Votes of every block, a strip of about STRIP_PIXELS pixels at a time: blocks are
    independent, and a whole 179-megapixel picture would need gigabytes of float64 coefficients."""
    w, h = img.width // 8 * 8, img.height // 8 * 8
    if not w or not h:
        return np.zeros((h // 8, w // 8), bool)
    step = max(8, STRIP_PIXELS // w // 8 * 8)
    if step >= h and (w, h) == img.size:
        return _votes(_u_plane(img, order))
    return np.concatenate([_votes(_u_plane(img.crop((0, top, w, min(h, top + step))), order))
                           for top in range(0, h, step)])


def decode_bits(image: Image.Image | np.ndarray, length: int, order: str = "bgr") -> np.ndarray:
    """The ``length`` bits the invisible-watermark library's dwtDct decoder reads, bit for bit:
    ``EmbedMaxDct(wmLen=length).decode(bgr)`` with ``bgr`` the RGB picture turned BGR (order
    "bgr", what ``cv2.imread`` gives) or the RGB array as it is (order "rgb"). ``image``: a Pillow
    image (alpha ignored, as ``cv2.imread`` does) or an (H, W, 3) uint8 RGB array."""
    img = _rgb(image)
    if img.width * img.height < MIN_PIXELS:
        raise ValueError(f"image of {img.width}x{img.height} is under 256x256 pixels; dwtDct refuses it")
    votes = _full_votes(img, order)
    return _bits(*_tally(votes, np.arange(votes.shape[0]), votes.shape[1], length))


def _screen_rows(block_rows: int, block_cols: int) -> np.ndarray:
    """Evenly spaced block rows holding about SCREEN_BLOCKS blocks (all rows of a small image)."""
    k = min(block_rows, -(-SCREEN_BLOCKS // block_cols))
    return ((np.arange(k) + 0.5) * block_rows / k).astype(np.int64)


def _band_votes(img: Image.Image, rows: np.ndarray, order: str) -> np.ndarray:
    w = img.width // 8 * 8
    band = Image.new("RGB", (w, 8 * len(rows)))
    for k, i in enumerate(rows):
        band.paste(img.crop((0, 8 * int(i), w, 8 * int(i) + 8)), (0, 8 * k))
    return _votes(_u_plane(band, order))


@dataclass(frozen=True)
class Screen:
    """detect's first pass for one message."""

    message: Message
    # Share of 1-votes among the blocks that carry the message's 1 bits minus that share among
    # those carrying its 0 bits: about 0 on an unmarked image whatever its colours (a picture
    # whose blocks nearly all vote 1 gives no contrast), clearly positive on a marked one.
    contrast: float
    whole: bool  # the subset was the whole image (a small one): no second pass needed

    @property
    def passed(self) -> bool:
        return self.whole or self.contrast >= SCREEN_CONTRAST


def screen(image: Image.Image | np.ndarray) -> list[Screen]:
    """The first pass of ``detect`` for every known message, on an evenly spaced subset of block
    rows (about SCREEN_BLOCKS blocks; all of a small image's)."""
    return _screen(_rgb(image), {})


def _screen(img: Image.Image, full: dict[str, np.ndarray]) -> list[Screen]:
    """``screen``; when the subset is the whole image, its votes per order go into ``full``."""
    block_rows, block_cols = img.height // 8, img.width // 8
    if img.width * img.height < MIN_PIXELS or not block_rows or not block_cols:
        return []
    rows = _screen_rows(block_rows, block_cols)
    whole = len(rows) == block_rows
    out = []
    for order in sorted({m.order for m in MESSAGES}):
        if whole:
            votes = full[order] = _full_votes(img, order)
        else:
            votes = _band_votes(img, rows, order)
        for m in (m for m in MESSAGES if m.order == order):
            ones, n = _tally(votes, rows, block_cols, len(m.bits))
            one = np.array(m.bits, bool)
            with np.errstate(invalid="ignore", divide="ignore"):
                contrast = ones[one].sum() / n[one].sum() - ones[~one].sum() / n[~one].sum()
            out.append(Screen(m, float(np.nan_to_num(contrast)), whole))
    return out


def detect(image: Image.Image | np.ndarray) -> Watermark | None:
    """The known message (``MESSAGES``) an image carries, or None. ``image``: the decoded pixels at
    full resolution, as stored (before any EXIF rotation), a Pillow image or an RGB uint8 array.

    ``screen`` reads a subset of blocks; for a message it passes, the whole image is decoded and
    that decode's bit errors (the reference decoder's bits) decide. When several messages are
    found, the one with the fewest errors relative to its threshold is reported."""
    img = _rgb(image)
    found: list[tuple[float, Watermark]] = []
    full: dict[str, np.ndarray] = {}
    for s in _screen(img, full):
        if not s.passed:
            continue
        m = s.message
        if m.order not in full:
            full[m.order] = _full_votes(img, m.order)
        votes = full[m.order]
        bits = _bits(*_tally(votes, np.arange(votes.shape[0]), votes.shape[1], len(m.bits)))
        errors = int((bits != np.array(m.bits, bool)).sum())
        if errors <= m.max_errors:
            found.append((errors / (m.max_errors + 1),
                          Watermark(m.name, errors, len(m.bits), m.order, m.false_positive)))
    return min(found, key=lambda f: f[0])[1] if found else None


LOSSLESS = ("PNG", "BMP", "TIFF", "WEBP")


def _webp_lossless(data: bytes) -> bool:
    """Whether a WebP's first image chunk is VP8L (lossless) rather than VP8 (lossy)."""
    pos = 12
    while pos + 8 <= len(data):
        kind, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if kind in (b"VP8L", b"VP8 "):
            return kind == b"VP8L"
        if kind == b"ANMF":  # animation frame: its image chunk follows a 16-byte header
            pos += 8 + 16
            continue
        pos += 8 + size + (size & 1)
    return False


def skip_reason(img: Image.Image, data: bytes) -> str | None:
    """Why an image is not checked, or None. dwtDct lives in small shifts of U that lossy coding
    quantises away: of marked copies saved as JPEG q90, at most 1.3 % are still found (q95: at
    most 18 %; benchmarks/watermark_recall.py), and a JPEG would need the full-resolution decode
    that the scan's DCT-domain downscaling avoids. Lossy WebP, AVIF and HEIF fare no better. A
    palette or grey picture has lost the colour the mark lives in."""
    fmt = img.format
    if fmt not in LOSSLESS:
        return f"lossy or unsupported format ({fmt}): dwtDct does not survive lossy coding"
    if fmt == "WEBP" and not _webp_lossless(data):
        return "lossy WebP: dwtDct does not survive lossy coding"
    if fmt == "TIFF" and str(img.info.get("compression", "")).lower() in ("jpeg", "tiff_jpeg"):
        return "JPEG-compressed TIFF: dwtDct does not survive lossy coding"
    if img.mode not in ("RGB", "RGBA", "RGBX"):
        return f"mode {img.mode}: dwtDct marks 8-bit colour pictures"
    if img.width * img.height < MIN_PIXELS:
        return "under 256x256 pixels: dwtDct refuses such images"
    return None


def columns(img: Image.Image, data: bytes) -> dict:
    """The report's ``watermark`` (sdxl, sd1, sd2) and ``watermark_bit_errors`` for a decoded image
    and its file's bytes: both null when nothing was found or the image is not checked
    (``skip_reason``). Evidence beside the score: a failure here leaves them null, never the row."""
    try:
        found = None if skip_reason(img, data) else detect(img)
    except Exception:
        found = None
    return {"watermark": found and found.name, "watermark_bit_errors": found and found.bit_errors}
