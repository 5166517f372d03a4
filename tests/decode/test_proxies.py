import numpy as np
import pytest
from PIL import Image

from aiiscan.decode.preprocess import crop, prepare, resize_square, to_rgb
from aiiscan.decode.proxies import ProxySpec, band_mask, band_slices, freq_mask, radial_band_perturb


def _img(seed=0, size=64):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _soft(seed=0, size=64):
    """Low contrast around grey: removing a band without DC needs no clipping."""
    return np.random.default_rng(seed).integers(100, 156, (size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("band,rows,cols", [
    ("low", (0, 16), (0, 16)), ("mid", (16, 48), (16, 48)),
    ("high", (48, 64), (48, 64)), ("all", (0, 64), (0, 64)),
])
def test_band_geometry_is_the_reference_unshifted_one(band, rows, cols):
    r, c = band_slices(64, 64, band)
    assert (r.start, r.stop, c.start, c.stop) == (*rows, *cols)


def test_mask_ratio_and_confinement():
    rng = np.random.default_rng(0)
    mask = band_mask(64, 64, "mid", 0.25, rng)
    assert mask.sum() == round(0.25 * 32 * 32)
    outside = mask.copy()
    outside[16:48, 16:48] = False
    assert not outside.any()


def test_freq_mask_zeroes_same_positions_in_every_channel():
    img = _soft()
    out = freq_mask(img, np.random.default_rng(3), "mid", 1.0)
    spec = np.fft.fft2(out.astype(float), axes=(0, 1))
    # Rounding to uint8 leaves small residues; the masked block lost almost all its energy.
    orig = np.fft.fft2(img.astype(float), axes=(0, 1))
    for c in range(3):
        assert np.abs(spec[16:48, 16:48, c]).mean() < 0.1 * np.abs(orig[16:48, 16:48, c]).mean()
        assert np.isclose(np.abs(spec[0, 0, c]), np.abs(orig[0, 0, c]), rtol=0.01)


def test_freq_mask_is_seeded_and_clipped():
    img = _img()
    a = freq_mask(img, np.random.default_rng(5), "all", 0.3)
    b = freq_mask(img, np.random.default_rng(5), "all", 0.3)
    c = freq_mask(img, np.random.default_rng(6), "all", 0.3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    bright = np.full((32, 32, 3), 250, np.uint8)
    bright[::2, ::2] = 0
    out = freq_mask(bright, np.random.default_rng(0), "mid", 1.0)
    assert out.dtype == np.uint8 and out.max() == 255  # clipped, not wrapped around


def test_phase_only_keeps_amplitude():
    img = _soft()
    out = freq_mask(img, np.random.default_rng(0), "mid", 1.0, phase_only=True)
    amp_in = np.abs(np.fft.fft2(img.astype(float), axes=(0, 1)))[16:48, 16:48]
    amp_out = np.abs(np.fft.fft2(out.astype(float), axes=(0, 1)))[16:48, 16:48]
    assert np.median(np.abs(amp_out - amp_in) / (amp_in + 1)) < 0.35
    assert not np.array_equal(out, img.astype(np.uint8))


def test_radial_band_removes_only_that_ring():
    img = _img(size=256)
    out = radial_band_perturb(img).astype(float)
    spec = np.fft.fftshift(np.fft.fft2(out, axes=(0, 1)), axes=(0, 1))
    orig = np.fft.fftshift(np.fft.fft2(img.astype(float), axes=(0, 1)), axes=(0, 1))
    yy, xx = np.mgrid[0:256, 0:256] - 128
    r = np.hypot(yy, xx)
    ring, outside = (r >= 32) & (r < 98), (r < 28) | (r > 102)
    assert np.abs(spec[ring]).mean() < 0.05 * np.abs(orig[ring]).mean()
    assert np.allclose(np.abs(spec[outside]).mean(), np.abs(orig[outside]).mean(), rtol=0.05)
    assert np.array_equal(radial_band_perturb(img), radial_band_perturb(img))


@pytest.mark.parametrize("kind", ["freq", "phase", "blur", "sharpen", "noise", "jitter"])
def test_every_proxy_is_deterministic_and_changes_pixels(kind):
    img = _img()
    spec = ProxySpec(kind=kind, ratio=0.5)
    a, b = spec(img, np.random.default_rng(1)), spec(img, np.random.default_rng(1))
    assert a.dtype == np.uint8 and a.shape == img.shape
    assert np.array_equal(a, b) and not np.array_equal(a, img)


def test_bad_proxy_settings_are_refused():
    with pytest.raises(ValueError):
        ProxySpec(kind="nope")
    with pytest.raises(ValueError):
        ProxySpec(band="side")
    with pytest.raises(ValueError):
        ProxySpec(ratio=1.5)


def test_preprocessing_ignores_aspect_and_centre_crops():
    img = Image.fromarray(np.tile((np.arange(400) % 256).astype(np.uint8)[None, :, None], (100, 1, 3)))
    arr = resize_square(img)
    assert arr.shape == (256, 256, 3)
    out = prepare(img)
    assert out.shape == (224, 224, 3)
    assert np.array_equal(out, arr[16:240, 16:240])
    rng_a, rng_b = np.random.default_rng(0), np.random.default_rng(0)
    assert np.array_equal(crop(arr, 224, rng_a), crop(arr, 224, rng_b))


def test_stepped_training_crops_keep_the_centre_crops_grid_phase():
    """--crop-step 8: every random crop sits a multiple of 8 pixels from the centre crop (so an
    8-pixel block grid keeps the phase a scan sees), and over many draws each such place is used."""
    yy, xx = np.mgrid[0:256, 0:256]
    arr = np.stack([yy, xx, np.zeros_like(yy)], axis=-1).astype(np.uint8)  # each pixel names its place
    places = set()
    for seed in range(200):
        out = crop(arr, 224, np.random.default_rng(seed), step=8)
        top = int(out[0, 0, 0])
        left = int(min(out[0, 0, 1], out[0, -1, 1]))  # a flipped crop starts at its right edge
        assert (top - 16) % 8 == 0 and (left - 16) % 8 == 0
        places.add((top, left))
    assert {t for t, _ in places} == {0, 8, 16, 24, 32} == {c for _, c in places}
    small = np.zeros((73, 73, 3), np.uint8)
    assert crop(small, 64, np.random.default_rng(0), step=8).shape == (64, 64, 3)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L", "CMYK", "I;16", "1", "F"])
def test_every_mode_becomes_rgb(mode):
    base = Image.fromarray(_img(size=32))
    img = base.convert(mode) if mode not in ("I;16", "F") else base.convert("L").convert(mode)
    out = to_rgb(img)
    assert out.mode == "RGB" and out.size == (32, 32)
