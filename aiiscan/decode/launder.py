"""Laundering conditions for ``evaluate --perturb``: what images suffer on their way to a user.

A detector whose verdict flips when an image is re-encoded, resized or cropped is of little
use, so evaluation re-runs under each condition. They act on the decoded image in memory,
before preprocessing, in the decode workers (no torch here).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageFilter

from ..errors import UsageError
from .preprocess import to_rgb

# kind -> (meaning of the value, valid range)
CONDITIONS = {
    "jpeg": ("JPEG re-encode quality", (1, 100)),
    "webp": ("WebP re-encode quality", (1, 100)),
    "resize": ("scale factor of both sides", (0.01, 4.0)),
    "blur": ("Gaussian blur sigma in pixels", (0.0, 50.0)),
    "crop": ("centre crop, fraction of each side kept", (0.05, 1.0)),
}


@dataclass(frozen=True)
class Condition:
    kind: str
    value: float

    @classmethod
    def parse(cls, text: str) -> Condition:
        kind, _, raw = text.partition(":")
        if kind not in CONDITIONS:
            raise UsageError(f"unknown perturbation {text!r}: use one of "
                             + ", ".join(f"{k}:X ({m})" for k, (m, _) in CONDITIONS.items()))
        try:
            value = float(raw)
        except ValueError:
            raise UsageError(f"perturbation {text!r} needs a number after '{kind}:'") from None
        lo, hi = CONDITIONS[kind][1]
        if not lo <= value <= hi:
            raise UsageError(f"perturbation {text!r}: {CONDITIONS[kind][0]} must be in [{lo:g}, {hi:g}]")
        return cls(kind, value)

    def __str__(self) -> str:
        return f"{self.kind}:{self.value:g}"

    def __call__(self, img: Image.Image) -> Image.Image:
        img = to_rgb(img)
        if self.kind in ("jpeg", "webp"):
            buf = io.BytesIO()
            img.save(buf, "JPEG" if self.kind == "jpeg" else "WEBP", quality=int(self.value))
            out = Image.open(io.BytesIO(buf.getvalue()))
            out.load()
            return out
        if self.kind == "resize":
            w, h = (max(1, round(s * self.value)) for s in img.size)
            return img.resize((w, h), Image.Resampling.BICUBIC)
        if self.kind == "blur":
            return img.filter(ImageFilter.GaussianBlur(self.value))
        w, h = img.size
        cw, ch = max(1, round(w * self.value)), max(1, round(h * self.value))
        left, top = (w - cw) // 2, (h - ch) // 2
        return img.crop((left, top, left + cw, top + ch))


def conditions(spec: str) -> list[Condition]:
    """The conditions of a comma-separated spec (``scan --stability jpeg:75,resize:0.5``), each
    once, in the order given."""
    out: list[Condition] = []
    for part in spec.split(","):
        if part.strip():
            cond = Condition.parse(part.strip())
            if cond not in out:
                out.append(cond)
    return out


def spec(text: str | None) -> str | None:
    """A ``--stability`` spec in its one spelling (``jpeg:75,resize:0.5``), as the report records
    it and ``--incremental`` compares it; None for none. ``UsageError`` for a bad condition."""
    return ",".join(str(c) for c in conditions(text)) or None if text else None


def tag(cond: Condition) -> str:
    """The condition as a verdict reason names it: ``jpeg75``, ``resize0.5``."""
    return f"{cond.kind}{cond.value:g}"
