"""Generator-like pixel traces planted in photos, for the learning proofs of every trainer.

No AI image can be used in the suite, so the tests, ``selftest`` and ``benchmarks/mpft_traces.py``
make their positives here: a photo with one faint trace that common generators leave. Each is a
few grey levels or a smoothing, invisible at a glance, and spread over the whole image:

- ``checkerboard``: a period-2 checkerboard (+-8 grey levels), the spectral peak that
  transposed-convolution upsampling leaves;
- ``resample``: the picture shrunk to 2/3 and interpolated back up (bilinear, x1.5), the
  periodic correlations and lost high band of upsampled output;
- ``jpeg``: an 8x8-block JPEG round trip (quality 75), the block grid and quantised high band of
  a generator's compressed output;
- ``colour-peak``: a faint diagonal grating of period 3 pixels in the red and green channels
  (+-6 and +-3 levels, random phase), a narrow peak in the colour spectrum. (A purely chromatic
  one, red against blue, is invisible to the suite's first layer, whose filters are the same on
  every channel: no trainer could learn it from that layer.)

They prove that a trainer is wired to learn a trace its features carry; they say nothing about
detecting real AI images.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image


def _rgb(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.float64)


def _image(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "RGB")


def checkerboard(img: Image.Image, rng: np.random.Generator, amplitude: float = 8.0) -> Image.Image:  # noqa: ARG001
    a = _rgb(img)
    yy, xx = np.mgrid[0:a.shape[0], 0:a.shape[1]]
    return _image(a + np.where((yy + xx) % 2 == 0, amplitude, -amplitude)[..., None])


def resample(img: Image.Image, rng: np.random.Generator) -> Image.Image:  # noqa: ARG001
    w, h = img.size
    small = img.convert("RGB").resize((max(1, round(w / 1.5)), max(1, round(h / 1.5))), Image.BILINEAR)
    return small.resize((w, h), Image.BILINEAR)


def jpeg(img: Image.Image, rng: np.random.Generator) -> Image.Image:  # noqa: ARG001
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=75)
    with Image.open(io.BytesIO(buf.getvalue())) as out:
        return out.convert("RGB")


def colour_peak(img: Image.Image, rng: np.random.Generator, amplitude: float = 6.0) -> Image.Image:
    a = _rgb(img)
    yy, xx = np.mgrid[0:a.shape[0], 0:a.shape[1]]
    wave = amplitude * np.cos(2 * np.pi * (xx + yy) / 3 + rng.uniform(0, 2 * np.pi))
    a[..., 0] += wave
    a[..., 1] += wave / 2
    return _image(a)


TRACES: dict[str, Callable[[Image.Image, np.random.Generator], Image.Image]] = {
    "checkerboard": checkerboard, "resample": resample, "jpeg": jpeg, "colour-peak": colour_peak,
}


def plant(img: Image.Image, trace: str, rng: np.random.Generator) -> Image.Image:
    """``img`` with ``trace`` (a key of ``TRACES``) planted."""
    try:
        return TRACES[trace](img, rng)
    except KeyError:
        raise ValueError(f"unknown trace {trace!r} (known: {', '.join(TRACES)})") from None
