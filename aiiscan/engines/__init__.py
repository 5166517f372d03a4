"""Engines: where decoding and scoring run, chosen by name.

An engine is a small dataclass of its own options whose ``open(heads, run)`` loads the heads
(``heads``: one head, None for the default, or a tuple of several) and returns a
``models.ScorerLike``: the heads' cards and ids, the crop size, and ``score_stream(jobs)``, which
decodes each ``DecodeJob`` (its variants, condition and seed included) and yields ``(result,
scores [variant, head])`` in input order, ``None`` for a file that did not decode.
``scan``, ``calibrate`` and ``evaluate`` consume only that, so they run on any engine.

Adding an engine is a module with such a class and one line in ``ENGINES``; nothing in the
scan driver changes. Engine modules import their heavy dependencies (torch, Ray) inside
``open``, so choosing among them costs nothing.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Protocol

from ..errors import UsageError
from ..models import ScorerLike
from ..options import RunOptions
from .local import LocalEngine
from .ray import RayEngine


class Engine(Protocol):
    name: str

    def open(self, heads: str | tuple[str, ...] | None, run: RunOptions) -> ScorerLike: ...

    def describe(self) -> dict: ...  # its name and options, for the report's metadata


ENGINES: dict[str, type] = {
    "local": LocalEngine,
    "ray": RayEngine,
}
# Every engine's own options (the CLI offers them all and refuses those of another engine).
ENGINE_OPTIONS = {f.name for cls in ENGINES.values() for f in fields(cls)}


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
