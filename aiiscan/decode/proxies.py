"""Proxy images: natural photos whose spectrum or pixels were damaged (docs/method.md).

Every proxy maps an HxWx3 uint8 array (the 256x256 resized image) to a new uint8 array,
deterministically given the ``numpy.random.Generator`` it is handed. Proxies are a transform
applied in the decode stage, so train, calibrate and evaluate share one code path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image, ImageFilter

BANDS = ("low", "mid", "high", "all")
PROXY_KINDS = ("freq", "phase", "blur", "sharpen", "noise", "jitter")


def _to_uint8(x: np.ndarray) -> np.ndarray:
    # The reference casts to uint8 without clipping, which wraps values around; we clip.
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def band_slices(h: int, w: int, band: str) -> tuple[slice, slice]:
    """FFT-index rectangle of a band, in the reference's UNSHIFTED geometry (DC at (0, 0)).

    Physically, in an unshifted spectrum ``mid`` holds the highest spatial frequencies, while
    ``low`` and ``high`` both hold low frequencies (the positive and the negative quadrant).
    This is why the paper finds low ~ high > mid; the names are kept as in the reference.
    """
    if band == "low":
        return slice(0, h // 4), slice(0, w // 4)
    if band == "mid":
        return slice(h // 4, 3 * h // 4), slice(w // 4, 3 * w // 4)
    if band == "high":
        return slice(3 * h // 4, h), slice(3 * w // 4, w)
    if band == "all":
        return slice(0, h), slice(0, w)
    raise ValueError(f"unknown band {band!r}; choose one of {', '.join(BANDS)}")


def band_mask(h: int, w: int, band: str, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean HxW mask: ``ratio`` of the band's positions, uniformly at random, set True."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"mask ratio must be in [0, 1], got {ratio}")
    rows, cols = band_slices(h, w, band)
    bh, bw = rows.stop - rows.start, cols.stop - cols.start
    n = bh * bw
    k = int(round(ratio * n))
    flat = np.zeros(n, dtype=bool)
    flat[rng.choice(n, size=k, replace=False)] = True
    mask = np.zeros((h, w), dtype=bool)
    mask[rows, cols] = flat.reshape(bh, bw)
    return mask


def freq_mask(img: np.ndarray, rng: np.random.Generator, band: str = "low",
              ratio: float = 1.0, phase_only: bool = False) -> np.ndarray:
    """Frequency masking (Doloriel & Cheung 2024): zero masked FFT coefficients per channel.

    The same positions are masked in all three channels. ``phase_only`` keeps the amplitude
    and zeroes the phase of masked coefficients instead (paper Table III).
    """
    h, w = img.shape[:2]
    mask = band_mask(h, w, band, ratio, rng)
    spec = np.fft.fft2(img.astype(np.float64), axes=(0, 1))
    if phase_only:
        spec[mask] = np.abs(spec[mask])
    else:
        spec[mask] = 0
    return _to_uint8(np.fft.ifft2(spec, axes=(0, 1)).real)


def radial_band_perturb(img: np.ndarray, r_lo: float = 30.0, r_hi: float = 100.0) -> np.ndarray:
    """Calibration negatives (paper Sec. IV-A, our reading: docs/method.md).

    Zero every frequency whose radial distance from DC in the centred spectrum lies in
    [r_lo, r_hi). Deterministic: the same image always gives the same copy.
    """
    h, w = img.shape[:2]
    yy = np.arange(h)[:, None] - h // 2
    xx = np.arange(w)[None, :] - w // 2
    r = np.sqrt(yy**2 + xx**2)
    keep = ~((r >= r_lo) & (r < r_hi))
    spec = np.fft.fftshift(np.fft.fft2(img.astype(np.float64), axes=(0, 1)), axes=(0, 1))
    spec *= keep[:, :, None]
    out = np.fft.ifft2(np.fft.ifftshift(spec, axes=(0, 1)), axes=(0, 1)).real
    return _to_uint8(out)


def gaussian_blur(img: np.ndarray, rng: np.random.Generator, sigma: float = 1.0) -> np.ndarray:
    return np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(sigma)))


def sharpen(img: np.ndarray, rng: np.random.Generator, amount: float = 1.5) -> np.ndarray:
    return np.asarray(Image.fromarray(img).filter(
        ImageFilter.UnsharpMask(radius=2, percent=int(amount * 100), threshold=0)))


def gaussian_noise(img: np.ndarray, rng: np.random.Generator, sigma: float = 5.0) -> np.ndarray:
    """Additive Gaussian noise, sigma on the 0..255 scale (paper Table III: sigma 5)."""
    return _to_uint8(img.astype(np.float64) + rng.normal(0.0, sigma, size=img.shape))


def color_jitter(img: np.ndarray, rng: np.random.Generator, strength: float = 0.4) -> np.ndarray:
    """Brightness, contrast and saturation each scaled by a factor in [1-s, 1+s]."""
    x = img.astype(np.float64)
    b, c, s = rng.uniform(1 - strength, 1 + strength, size=3)
    x = x * b
    x = (x - x.mean()) * c + x.mean()
    grey = (x @ np.array([0.299, 0.587, 0.114]))[..., None]
    x = (x - grey) * s + grey
    return _to_uint8(x)


@dataclass(frozen=True)
class ProxySpec:
    """How proxies are made; recorded in the model card. ``ratio`` None: the training mode's
    default, filled in by ``options.TrainOptions`` (the field metadata is how the CLI shows it)."""

    kind: str = field(default="freq", metadata={
        "help": "How proxy images are made from natural photos.", "param": "proxy_kind", "flag": "--proxy",
        "choices": PROXY_KINDS})
    band: str = field(default="low", metadata={
        "help": "FFT band for freq/phase proxies (reference geometry; see README).", "choices": BANDS})
    ratio: float | None = field(default=None, metadata={
        "help": "Fraction of the band masked [default: 1.0 for P, 0.1 for N+P and N].", "min": 0, "max": 1})
    sigma: float | None = field(default=None, metadata={
        "help": "Strength of blur/sharpen/noise/jitter proxies [default: 1.0/1.5/5/0.4].",
        "param": "proxy_sigma"})

    def __post_init__(self) -> None:
        if self.kind not in PROXY_KINDS:
            raise ValueError(f"unknown proxy {self.kind!r}; choose one of {', '.join(PROXY_KINDS)}")
        band_slices(8, 8, self.band)
        if self.ratio is not None and not 0.0 <= self.ratio <= 1.0:
            raise ValueError(f"mask ratio must be in [0, 1], got {self.ratio}")

    def to_dict(self) -> dict:
        return asdict(self)

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.ratio is None and self.kind in ("freq", "phase"):
            raise ValueError("the proxy's mask ratio is not set (options.TrainOptions sets the mode's)")
        fn = _REGISTRY[self.kind]
        return fn(self, img, rng)


_REGISTRY: dict[str, Callable[[ProxySpec, np.ndarray, np.random.Generator], np.ndarray]] = {
    "freq": lambda p, x, r: freq_mask(x, r, p.band, p.ratio),
    "phase": lambda p, x, r: freq_mask(x, r, p.band, p.ratio, phase_only=True),
    "blur": lambda p, x, r: gaussian_blur(x, r, p.sigma or 1.0),
    "sharpen": lambda p, x, r: sharpen(x, r, p.sigma or 1.5),
    "noise": lambda p, x, r: gaussian_noise(x, r, p.sigma or 5.0),
    "jitter": lambda p, x, r: color_jitter(x, r, p.sigma or 0.4),
}
