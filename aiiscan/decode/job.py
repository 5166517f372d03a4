"""The decode stage: one file in, one row's facts plus the uint8 arrays the model needs out.

Runs in worker processes. Every failure (unreadable, vanished, not an image, bomb,
truncated) is caught here and becomes an error result with a one-line reason, so that one
hostile file can never stop a scan. Imports no torch: workers stay small and start fast.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import ImageOps

from .. import inputs
from ..inputs.location import Location, Refused, SourceError
from ..options import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from ..textsafe import clean_text
from .evidence import Evidence
from .formats import IMAGE_EXTENSIONS, sniff_format
from .launder import Condition
from .preprocess import CROP, DecodeError, load, orientation, prepare, probe, resize_for
from .provenance import extract as extract_provenance
from .proxies import ProxySpec, radial_band_perturb
from .watermark import columns as watermark_columns

RADIAL = "radial"  # the calibration perturbation, band (30, 100)

Variant = None | str | ProxySpec


@dataclass(frozen=True)
class DecodeJob:
    """What to make of one file: which variants (original, a proxy, the radial band copy).
    ``location``: the object to read; a name typed by a user is parsed once, here."""

    location: Location
    crop_size: int = CROP
    variants: tuple[Variant, ...] = (None,)
    seed: tuple[int, ...] | None = None  # set for training: random crops/flips, fresh proxies
    crop_step: int = 1  # training crops: this many pixels apart from the centre crop (preprocess.crop)
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES
    explicit: bool = True  # named by the user: reported even when it is not an image
    condition: Condition | None = None  # evaluate --perturb: applied before preprocessing
    fast_decode: bool = True  # JPEG DCT-domain downscaling before the resize (--exact-decode: off)
    provenance: bool = False  # scan: metadata evidence columns from the same bytes
    keep_gps: bool = False
    prompts: bool = True
    evidence: Evidence | None = None  # C2PA trust anchors and user generator rules (load_evidence)
    watermark: bool = False  # scan: invisible-watermark columns from the full-resolution pixels

    def __post_init__(self) -> None:
        if isinstance(self.location, str):
            object.__setattr__(self, "location", inputs.parse(self.location))

    @property
    def path(self) -> str:
        """The name as typed or found (what a task that listed it compares against)."""
        return self.location.raw


@dataclass
class DecodeResult:
    location: Location
    status: str  # "ok", "error", or "skipped" (found in a folder, not an image)
    error: str | None = None
    info: dict = field(default_factory=dict)
    arrays: list[np.ndarray] = field(default_factory=list)

    @property
    def path(self) -> str:
        return self.location.raw


def _variant(img, job: DecodeJob, variant: Variant, index: int) -> np.ndarray:
    rng = None if job.seed is None else np.random.default_rng([*job.seed, index])
    if variant is None:
        return prepare(img, job.crop_size, rng=rng, step=job.crop_step)
    if variant == RADIAL:
        return prepare(img, job.crop_size, radial_band_perturb, rng=rng)
    if isinstance(variant, ProxySpec):
        proxy_rng = np.random.default_rng([*(job.seed or (0,)), index, 1])
        return prepare(img, job.crop_size, lambda a: variant(a, proxy_rng), rng=rng)
    raise ValueError(f"unknown variant {variant!r}")


def _oneline(exc: BaseException) -> str:
    text = f"{exc}".replace("\r", " ").replace("\n", " ").strip()
    return text[:300] or type(exc).__name__


# Lone surrogates (JSON "\ud800" escapes, surrogateescape'd bytes) cannot be written as UTF-8;
# C0/C1 controls (NUL, ESC, ...) and bidirectional controls (U+202E ...) hide or reorder text in
# a terminal, CSV or HTML view. Tab, newline and carriage return are ordinary text.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")  # "<_io.BytesIO object at 0x7f...>" differs per run


def _clean(value: object) -> object:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def _clean_result(result: DecodeResult) -> DecodeResult:
    """Every string a file put into the result (metadata, Pillow's format and mode, error texts)
    goes through ``clean_text``; error texts also lose memory addresses, so that two scans of one
    tree give identical reports. ``path`` is the caller's and stays untouched."""
    if result.error is not None:
        result.error = clean_text(_ADDRESS.sub("", result.error))
    result.info = _clean(result.info)
    prov = result.info.get("provenance")
    if prov and prov.get("metadata_error"):
        prov["metadata_error"] = _ADDRESS.sub("", prov["metadata_error"])
    return result


def decode_job(job: DecodeJob) -> DecodeResult:
    """Never raises for a bad file: the reason goes into the result."""
    with warnings.catch_warnings():
        # Pillow warns about oddities of hostile files on stderr; the row records what matters.
        warnings.simplefilter("ignore")
        return _clean_result(_decode(job))


def _decode(job: DecodeJob) -> DecodeResult:
    result = DecodeResult(location=job.location, status="error")
    try:
        data, where = inputs.read(job.location, job.max_bytes)
        result.info.update(size=where.size, etag=where.etag, mtime_us=where.mtime_us,
                           sha256=hashlib.sha256(data).hexdigest())
        kind = sniff_format(data[:16])
        if kind is None:
            ext = os.path.splitext(job.location.raw)[1].lower()
            if not job.explicit and ext not in IMAGE_EXTENSIONS:
                result.status, result.error = "skipped", "not an image"
                return result
            raise DecodeError("not an image: content matches no supported image format"
                              if data else "empty file (0 bytes)")
        if job.provenance:
            result.info["provenance"] = extract_provenance(data, kind, job.keep_gps, job.prompts,
                                                           job.evidence)
        img = probe(data, job.max_pixels)
        result.info.update(format=img.format, width=img.width, height=img.height, mode=img.mode)
        # Laundering conditions act on the full-resolution image, so they always decode exactly.
        fast = job.fast_decode and job.condition is None
        img = load(img, resize_for(job.crop_size) if fast else None)
        if job.watermark:  # lossless pictures only, so never a JPEG that the fast path downscaled
            result.info.update(watermark_columns(img, data))
        turn = orientation(img)
        if turn in (5, 6, 7, 8):  # width and height as the photo is shown, upright
            result.info.update(width=result.info["height"], height=result.info["width"])
        if job.condition is not None:  # laundering acts on the upright picture
            img = job.condition(ImageOps.exif_transpose(img) if turn != 1 else img)
        result.arrays = [_variant(img, job, v, i) for i, v in enumerate(job.variants)]
        result.status = "ok"
    except SourceError as exc:  # already one line, written for the row
        result.error = str(exc)
    except FileNotFoundError:
        result.error = "no such file (missing, or vanished before it could be read)"
    except PermissionError:
        result.error = "permission denied"
    except IsADirectoryError:
        result.error = "is a directory"
    except (DecodeError, Refused) as exc:
        result.error = _oneline(exc)
    except OSError as exc:
        result.error = f"read error: {_oneline(exc.strerror or exc)}"
    except MemoryError:
        result.error = "out of memory while decoding"
    except Exception as exc:  # a decoder bug on hostile input must not stop the scan
        result.error = f"decoder failure: {type(exc).__name__}: {_oneline(exc)}"
    return result
