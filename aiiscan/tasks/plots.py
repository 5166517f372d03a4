"""PNG plots drawn with Pillow, a base dependency: ``calibrate --plot`` and ``evaluate --plots``
write a real image on every install, with nothing extra to install.

Score histograms with the threshold, and ROC curves: plain charts a reviewer reads at a glance.
Labels come from cards and data sets (generator names, head ids): untrusted text, drawn only
after ``textsafe.clean_text`` and cut to fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..files import atomic_output
from ..textsafe import clean_text
from .metrics import roc_points

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
INK, GRID, CAUTION = (40, 40, 40), (225, 225, 225), (176, 0, 32)
FONT_SIZE = 13
MAX_LABEL = 60  # characters of a label or title drawn (the rest is cut: "...")


@dataclass(frozen=True)
class _Frame:
    """The plotting area in pixels and the data range it shows."""

    left: int
    top: int
    right: int
    bottom: int
    x0: float
    x1: float
    y0: float
    y1: float

    def x(self, v: float) -> float:
        return self.left + (v - self.x0) / (self.x1 - self.x0) * (self.right - self.left)

    def y(self, v: float) -> float:
        return self.bottom - (v - self.y0) / (self.y1 - self.y0) * (self.bottom - self.top)


def _label(text: str) -> str:
    text = clean_text(str(text))
    return text if len(text) <= MAX_LABEL else text[:MAX_LABEL - 3] + "..."


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=FONT_SIZE)


def _fit(draw: ImageDraw.ImageDraw, text: str, width: float) -> str:
    """``text`` cut ("...") to ``width`` pixels: a long title or label is never clipped mid-glyph."""
    text, font = _label(text), _font()
    while len(text) > 4 and draw.textlength(text, font=font) > width:
        text = text[:-4] + "..."
    return text


def _canvas(width: int, height: int, title: str, note: str | None) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A white canvas with its title on top and ``note`` (a caution: a random-init backbone's
    scores mean nothing) at the bottom, as the page and the tables carry theirs."""
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img, "RGBA")  # RGBA fills blend: overlapping histograms stay readable
    draw.text((width / 2, 8), _fit(draw, title, width - 16), fill=INK, font=_font(), anchor="ma")
    if note:
        draw.text((8, height - 6), _fit(draw, note, width - 16), fill=CAUTION, font=_font(), anchor="ld")
    return img, draw


def _ticks(lo: float, hi: float, integer: bool) -> np.ndarray:
    """Five evenly spaced ticks, or (counts) whole numbers in a step of 1, 2 or 5 x 10^k."""
    if not integer:
        return np.linspace(lo, hi, 5)
    rough = max(hi / 5, 1.0)
    step = min(m * 10 ** int(np.floor(np.log10(rough))) for m in (1, 2, 5, 10)
               if m * 10 ** int(np.floor(np.log10(rough))) >= rough)
    return np.arange(0, hi + 1e-9, step)


def _axes(draw: ImageDraw.ImageDraw, f: _Frame, xlabel: str, ylabel: str, integer_y: bool = False) -> None:
    """Grid, ticks with their values, the frame and the axis labels."""
    font = _font()
    xs = np.linspace(f.x0, f.x1, 5)
    for i, v in enumerate(xs):
        x = f.x(v)
        draw.line([(x, f.top), (x, f.bottom)], fill=GRID)
        anchor = "la" if i == 0 else "ra" if i == len(xs) - 1 else "ma"  # the end labels stay inside
        draw.text((x, f.bottom + 4), f"{v:.3g}", fill=INK, font=font, anchor=anchor)
    for v in _ticks(f.y0, f.y1, integer_y):
        y = f.y(v)
        draw.line([(f.left, y), (f.right, y)], fill=GRID)
        draw.text((f.left - 4, y), f"{round(v):d}" if integer_y else f"{v:.2g}", fill=INK, font=font,
                  anchor="rm")
    draw.rectangle([f.left, f.top, f.right, f.bottom], outline=INK)
    draw.text(((f.left + f.right) / 2, f.bottom + 22), xlabel, fill=INK, font=font, anchor="ma")
    draw.text((6, f.top - 18), ylabel, fill=INK, font=font, anchor="la")


def _legend(draw: ImageDraw.ImageDraw, f: _Frame, entries: Sequence[tuple[str, tuple[int, ...]]]) -> None:
    font = _font()
    x, y = f.right - 8, f.top + 8
    width = max((draw.textlength(text, font=font) for text, _ in entries), default=0) + 22
    draw.rectangle([x - width - 4, y - 4, x + 4, y + 18 * len(entries)], fill=(255, 255, 255, 215))
    for text, colour in entries:
        draw.rectangle([x - width, y + 3, x - width + 12, y + 13], fill=colour)
        draw.text((x - width + 18, y), text, fill=INK, font=font, anchor="la")
        y += 18


def _save(img: Image.Image, path: Path) -> None:
    with atomic_output(path) as f:
        img.save(f, format="PNG", optimize=True)


def histogram(path: str | Path, groups: Sequence[tuple[str, np.ndarray]], threshold: float | None,
              title: str, note: str | None = None) -> None:
    """Score histograms of several groups on shared bins, with the threshold as a dashed line."""
    finite = [np.asarray(v, float)[np.isfinite(np.asarray(v, float))] for _, v in groups]
    everything = np.concatenate([*finite, [threshold] if threshold is not None else []])
    edges = np.histogram_bin_edges(everything, bins=40) if len(everything) else np.linspace(0, 1, 41)
    counts = [np.histogram(values, bins=edges)[0] for values in finite]
    top = max((int(c.max()) for c in counts if len(c)), default=0) or 1
    img, draw = _canvas(800, 440, title, note)
    f = _Frame(70, 40, 780, 380, float(edges[0]), float(edges[-1]), 0.0, top * 1.08)
    _axes(draw, f, "score (higher = more likely AI-generated)", "images", integer_y=True)
    entries = []
    for k, ((name, _), values, c) in enumerate(zip(groups, finite, counts, strict=True)):
        colour = COLOURS[k % len(COLOURS)]
        for lo, hi, n in zip(edges[:-1], edges[1:], c, strict=True):
            if n:
                draw.rectangle([f.x(lo), f.y(n), f.x(hi), f.bottom], fill=(*colour, 140))
        entries.append((_label(f"{name} (n={len(values)})"), colour))
    if threshold is not None and np.isfinite(threshold):
        x = f.x(float(threshold))
        for y in range(f.top, f.bottom, 10):
            draw.line([(x, y), (x, min(y + 6, f.bottom))], fill=INK, width=2)
        entries.append((f"threshold {threshold:.4g}", INK))
    _legend(draw, f, entries)
    _save(img, Path(path))


def roc(path: str | Path, curves: Sequence[tuple[str, np.ndarray, np.ndarray]], title: str,
        note: str | None = None) -> None:
    """ROC curves, one per (name, real scores, fake scores); the legend when 12 or fewer."""
    img, draw = _canvas(560, 560, title, note)
    f = _Frame(70, 40, 540, 500, 0.0, 1.0, 0.0, 1.0)
    _axes(draw, f, "false-positive rate (real flagged)", "true-positive rate (fake flagged)")
    draw.line([(f.x(0), f.y(0)), (f.x(1), f.y(1))], fill=(160, 160, 160))
    entries = []
    for k, (name, neg, pos) in enumerate(curves):
        fpr, tpr = roc_points(neg, pos)
        colour = COLOURS[k % len(COLOURS)]
        draw.line([(f.x(a), f.y(b)) for a, b in zip(fpr, tpr, strict=True)], fill=colour, width=2)
        entries.append((_label(name), colour))
    if len(curves) <= 12:
        _legend(draw, _Frame(f.left, f.bottom - 8 - 18 * len(entries) - 8, f.right, f.bottom, 0, 1, 0, 1),
                entries)
    _save(img, Path(path))
