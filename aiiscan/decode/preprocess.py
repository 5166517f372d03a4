"""Image decoding and the CLIP-Flow preprocessing (docs/method.md), shared by train, calibrate and scan.

Split in two halves on purpose: the decode workers produce small uint8 arrays
(``prepare``: decode, RGB, bilinear resize to 256x256 without keeping the aspect ratio,
optional proxy, crop), and the scorer turns a whole batch into normalised float tensors
(``normalize``) on the device, so no float pixels cross a process boundary.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFile

from ..options import DEFAULT_MAX_PIXELS

RESIZE = 256
CROP = 224
# libjpeg's default progressive script writes 10 scans, and real files rarely hold more than a few
# dozen; each scan walks every block of the image again, so 20,000 tiny scans take minutes.
MAX_JPEG_SCANS = 1000

# Truncated files must fail loudly, not decode with a grey tail; the pixel cap is ours
# (``open_image``, configurable per scan), so Pillow's fixed global limit is switched off.
ImageFile.LOAD_TRUNCATED_IMAGES = False
Image.MAX_IMAGE_PIXELS = None

try:  # HEIC/HEIF with the optional extra aiiscan[heif]; AVIF is Pillow's own (Pillow >= 11.2)
    from pillow_heif import register_heif_opener
except ImportError:
    HEIF = False
else:
    register_heif_opener()
    HEIF = True


class DecodeError(ValueError):
    """A file is not a decodable image; the message is the one-line reason for the report."""


def resize_for(crop: int) -> int:
    """The pre-crop square size: 256 for the paper's 224 crop, scaled for other input sizes."""
    return round(crop * RESIZE / CROP)


_PNG_TEXT = (b"tEXt", b"zTXt", b"iTXt")


def without_png_text(data: bytes) -> bytes:
    """PNG bytes minus their text chunks. Pillow refuses a whole image over one oversized or
    over-compressed text chunk; the pixels do not depend on them, and ``provenance`` reads
    them from the original bytes with its own bounds."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data
    keep, pos, dropped = [data[:8]], 8, False
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        end = pos + 12 + length
        if data[pos + 4:pos + 8] in _PNG_TEXT:
            dropped = True
        else:
            keep.append(data[pos:end])
        if end > len(data) or data[pos + 4:pos + 8] == b"IEND":
            keep.append(data[end:])
            break
        pos = end
    else:
        keep.append(data[pos:])
    return b"".join(keep) if dropped else data


_ENTROPY_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # the first marker after a scan's data


def jpeg_scans(data: bytes, limit: int = MAX_JPEG_SCANS) -> int:
    """Number of scans (SOS markers) of a JPEG, counting stops past ``limit``. Walks the marker
    segments (an EXIF thumbnail's scans are not counted) and skips each scan's entropy-coded
    data with one regular-expression search: milliseconds per megabyte, before any decoding."""
    pos, scans = 2, 0
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
        elif marker == 0xD9:  # end of image
            break
        else:
            pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
            if marker == 0xDA:
                scans += 1
                m = _ENTROPY_END.search(data, pos)
                if scans > limit or m is None:
                    break
                pos = m.start()
    return scans


def probe(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Parse the header only, refusing oversized images before a single pixel is decoded."""
    if not data:
        raise DecodeError("empty file (0 bytes)")
    data = without_png_text(data)
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"decompression bomb refused: {exc}") from None
    except Image.UnidentifiedImageError:  # its message names the BytesIO's memory address
        hint = "; HEIC/HEIF needs the aiiscan[heif] extra" if data[4:8] == b"ftyp" and not HEIF else ""
        raise DecodeError(f"not a decodable image: no decoder recognises the content{hint}") from None
    except Exception as exc:  # Pillow raises many types for junk input
        raise DecodeError(f"not a decodable image: {type(exc).__name__}: {exc}") from None
    if img.format in ("JPEG", "MPO") and jpeg_scans(data) > MAX_JPEG_SCANS:
        raise DecodeError(f"JPEG with more than {MAX_JPEG_SCANS} scans refused (a scan bomb: "
                          "each scan decodes the whole image again)")
    w, h = img.size
    if w * h > max_pixels:
        raise DecodeError(f"image of {w}x{h} = {w * h} pixels exceeds the pixel cap {max_pixels}")
    if w < 1 or h < 1:
        raise DecodeError(f"image has no pixels ({w}x{h})")
    return img


def load(img: Image.Image, draft_to: int | None = None) -> Image.Image:
    """Decode the pixels. ``draft_to``: let a JPEG decode at the smallest DCT scale (1/2, 1/4,
    1/8) that keeps both sides >= draft_to, several times cheaper on camera-sized photos."""
    if draft_to is not None and img.format == "JPEG":
        img.draft(img.mode if img.mode in ("RGB", "L", "CMYK") else "RGB", (draft_to, draft_to))
    try:
        img.load()
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"decompression bomb refused: {exc}") from None
    except Exception as exc:
        raise DecodeError(f"corrupt or truncated image data: {type(exc).__name__}: {exc}") from None
    return img


def open_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode bytes to a loaded Pillow image at full resolution."""
    return load(probe(data, max_pixels))


STRIP_PIXELS = 4 * 1024 * 1024  # pixels converted at a time (a float64 strip is 32 MB)
_HIGH_BIT = ("I;16", "I;16B", "I;16L", "I", "F")


def _strips(img: Image.Image):
    """(top, strip) pairs covering the image, about ``STRIP_PIXELS`` pixels each."""
    rows = max(1, STRIP_PIXELS // img.width)
    for top in range(0, img.height, rows):
        yield top, img.crop((0, top, img.width, min(img.height, top + rows)))


def _to_l(img: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float pixels rescaled (min..max -> 0..255) to an 8-bit L image, one
    strip at a time: the same values as a whole-image float64 rescale, without its 8 bytes per
    pixel (a 16-bit 13000x13000 PNG used to take 4 GB)."""
    lo, hi = np.inf, -np.inf
    for _, strip in _strips(img):
        arr = np.asarray(strip, dtype=np.float64)
        lo, hi = min(lo, float(arr.min())), max(hi, float(arr.max()))
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    out = Image.new("L", img.size)
    for top, strip in _strips(img):
        arr = np.asarray(strip, dtype=np.float64)
        out.paste(Image.fromarray(((arr - lo) * scale).round().astype(np.uint8), "L"), (0, top))
    return out


def _flatten(strip: Image.Image) -> Image.Image:
    if strip.mode == "P":
        strip = strip.convert("RGBA")
    if strip.mode in ("RGBA", "LA", "PA"):
        rgba = strip.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return strip.convert("RGB")


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB pixels of any mode; 16-bit and float images are rescaled, alpha is flattened on white.
    Converted a strip at a time, so the working memory beyond the decoded image is the 3 bytes
    per pixel of the result plus one strip, whatever the mode."""
    if img.mode == "RGB":
        return img
    if img.mode in _HIGH_BIT:
        img = _to_l(img)
    if img.mode == "L":
        return img.convert("RGB")
    out = Image.new("RGB", img.size)
    for top, strip in _strips(img):
        out.paste(_flatten(strip), (0, top))
    return out


_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}


def orientation(img: Image.Image) -> int:
    """The EXIF orientation (1-8) of a decoded image; 1 when absent, invalid or unreadable."""
    try:
        value = img.getexif().get(0x0112, 1)
    except Exception:  # hostile EXIF: the pixels are still good
        return 1
    return value if value in _TRANSPOSE else 1


def resize_square(img: Image.Image, size: int = RESIZE) -> np.ndarray:
    """Bilinear resize to size x size, aspect ratio NOT kept (as the paper), HWC uint8, turned
    upright by the EXIF orientation as a viewer shows it. Turning the small square instead of the
    full image is the same up to rounding and costs nothing. Grey images are resized before they
    become RGB (the same pixels, a third of the memory)."""
    turn = _TRANSPOSE.get(orientation(img))
    if img.mode in _HIGH_BIT:
        img = _to_l(img)
    if img.mode == "L":
        small = img.resize((size, size), Image.BILINEAR).convert("RGB")
    else:
        small = to_rgb(img).resize((size, size), Image.BILINEAR)
    return np.asarray(small.transpose(turn) if turn is not None else small, dtype=np.uint8)


def crop(arr: np.ndarray, size: int = CROP, rng: np.random.Generator | None = None, step: int = 1
         ) -> np.ndarray:
    """Centre crop at test time; with ``rng``, a random crop and a random horizontal flip. With
    ``step`` > 1 the random crop sits a multiple of ``step`` pixels from the centre crop, so a
    pixel grid of period dividing ``step`` keeps the phase the centre crop (a scan) gives it."""
    h, w = arr.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    if rng is None:
        return np.ascontiguousarray(arr[top:top + size, left:left + size])
    if step == 1:
        top = int(rng.integers(0, h - size + 1))
        left = int(rng.integers(0, w - size + 1))
    else:
        top += step * int(rng.integers(-(top // step), (h - size - top) // step + 1))
        left += step * int(rng.integers(-(left // step), (w - size - left) // step + 1))
    out = arr[top:top + size, left:left + size]
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def prepare(img: Image.Image, crop_size: int = CROP,
            transform: Callable[[np.ndarray], np.ndarray] | None = None,
            rng: np.random.Generator | None = None, step: int = 1) -> np.ndarray:
    """Decoded image -> the uint8 crop the model sees; ``transform`` (a proxy) acts at 256x256."""
    arr = resize_square(img, resize_for(crop_size))
    if transform is not None:
        arr = transform(arr)
    return crop(arr, crop_size, rng, step)
