"""Engines: where decoding and scoring run, chosen by name.

An engine is a small dataclass of its own options whose ``open(weights, run)`` loads the head
(``weights``: one head, None for the default, or a tuple of several) and returns a ``Scorer``:
the card, the model id, the crop size, and ``score_stream(jobs)``,
which decodes each ``DecodeJob`` (its variants, condition and seed included) and yields
``(result, one score per variant)`` in input order, ``None`` for a file that did not decode;
``reuse(result)``, when given, may answer with scores the scan already has for that content
(an engine that can skips the backbone pass for it).
``scan``, ``calibrate`` and ``evaluate`` consume only that, so they run on any engine.
A multi-head scorer (``multihead.MultiHead`` on the local engine, ``RayScorer`` given several
heads) has the same shape, with ``heads`` (head 1 first), ``passes`` (backbone passes per crop)
and ``(result, [variant, head])`` scores.

Adding an engine is a module with such a class and one line in ``ENGINES``; nothing in the
scan driver changes. Engine modules import their heavy dependencies (torch, Ray) inside
``open``, so choosing among them costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Protocol

import numpy as np

from ..decode.job import DecodeJob, DecodeResult
from ..errors import UsageError
from ..options import RunOptions
from .local import LocalEngine
from .ray import RayEngine


class Scorer(Protocol):
    """What an opened engine offers (``detector.Detector`` is the local one)."""

    card: object  # weights.ModelCard
    model_id: str
    prefix: Path

    @property
    def image_size(self) -> int: ...

    @property
    def precision(self) -> str: ...

    def score_stream(self, jobs: Iterable[DecodeJob], batch_size: int = 64, workers: int | None = None,
                     timeout: float = ..., reuse: Callable[[DecodeResult], np.ndarray | None] | None = None,
                     ) -> Iterator[tuple[DecodeResult, np.ndarray | None]]: ...


class Engine(Protocol):
    name: str

    def open(self, weights: str | tuple[str, ...] | None, run: RunOptions) -> Scorer: ...

    def describe(self) -> dict: ...  # its name and options, for the report's metadata


ENGINES: dict[str, type] = {
    "local": LocalEngine,
    "ray": RayEngine,
}


def make_engine(name: str, **options) -> Engine:
    """The engine ``name`` with ``options``; an option it does not have is a usage error."""
    if name not in ENGINES:
        raise UsageError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")
    cls = ENGINES[name]
    own = {f.name for f in fields(cls)}
    foreign = sorted(k for k in options if k not in own)
    if foreign:
        flags = ", ".join("--" + k.replace("_", "-") for k in foreign)
        owners = sorted(n for n, c in ENGINES.items() if {f.name for f in fields(c)} & set(foreign))
        raise UsageError(f"{flags} only applies to --engine {' or '.join(owners) or '(none)'}, not {name}")
    return cls(**options)
