"""Click options generated from the typed options (``options``): one default, one help text.

``options_for(cls)`` turns every field of an options class (and of the options classes nested in
it) into a click option: the flag from the field's keyword (``--batch-size`` for ``batch_size``)
unless its metadata names another, the type from the annotation (bounds and choices from the
metadata), the default from the field. Fields whose metadata says ``cli=False`` stay out, and so
does anything a command names in ``skip``. ``options.build`` makes the object back from the
parameters click parsed.
"""

from __future__ import annotations

import sys
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import MISSING, Field, fields
from typing import Any

import click

from ..options import param


def _flag(f: Field) -> str:
    return f.metadata.get("flag") or "--" + param(f).replace("_", "-")


def _base(annotation: Any) -> tuple[Any, bool]:
    """(the type, whether the option repeats), from ``X``, ``X | None``, ``tuple[X, ...]``."""
    origin = typing.get_origin(annotation)
    if origin is tuple:
        return typing.get_args(annotation)[0], True
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        many = [a for a in args if typing.get_origin(a) is tuple]
        return (typing.get_args(many[0])[0], True) if many else _base(args[0])
    return annotation, False


class ReportFile(click.ParamType):
    """A report to read: a local file that exists, or an object URL (checked when fetched)."""

    name = "report"

    def convert(self, value, param, ctx):
        from ..inputs import is_remote

        if is_remote(str(value)):
            return str(value)
        return click.Path(exists=True, dir_okay=False).convert(value, param, ctx)


def _click_type(kind: Any, meta: dict) -> Any:
    if meta.get("report"):
        return ReportFile()
    if "choices" in meta:
        return click.Choice(meta["choices"])
    if "path" in meta:
        return click.Path(**meta["path"])
    lo, hi, open_ = meta.get("min"), meta.get("max"), meta.get("open", "")
    if kind is int and (lo is not None or hi is not None):
        return click.IntRange(lo, hi)
    if kind is float and (lo is not None or hi is not None):
        return click.FloatRange(lo, hi, min_open=open_ == "min", max_open=open_ == "max")
    return {int: int, float: float}.get(kind, str)


def _option(f: Field, annotation: Any, as_none: bool) -> Callable:
    meta = f.metadata
    default = None if f.default is MISSING else f.default
    kind, many = _base(annotation)
    common = {"help": meta.get("help"), "hidden": meta.get("hidden", False), "expose_value": True}
    name = param(f)
    if kind is bool:
        if meta.get("negate"):  # the field is on by default; the flag turns it off
            return click.option(meta["negate"], name, is_flag=True, flag_value=False, default=True,
                                show_default=False, **common)
        return click.option(_flag(f), name, is_flag=True, default=bool(default), **common)
    shown = meta.get("default_text")
    kwargs: dict[str, Any] = {"type": _click_type(kind, meta), "multiple": many}
    if many:
        kwargs["default"] = ()
        kwargs["show_default"] = False
    elif default is None:
        kwargs["default"] = None
        kwargs["show_default"] = shown if shown else False
    elif as_none:  # given only when asked for: the owner's default applies, and says so
        kwargs["default"] = None
        kwargs["show_default"] = shown or str(default)
    else:
        kwargs["default"] = default
    if "metavar" in meta:
        kwargs["metavar"] = meta["metavar"]
    return click.option(_flag(f), name, **kwargs, **common)


def _fields(cls: type, skip: set[str]) -> Iterator[tuple[Field, Any]]:
    namespace = vars(sys.modules[cls.__module__])
    for f in fields(cls):
        if f.metadata.get("cli", True) is False or param(f) in skip:
            continue
        if "nested" in f.metadata:
            yield from _fields(f.metadata["nested"], skip)
        else:  # annotations are strings (postponed): only the options' own are resolved
            yield f, eval(f.type, namespace) if isinstance(f.type, str) else f.type


def options_for(cls: type, skip: tuple[str, ...] = (), as_none: bool = False
                ) -> Callable[[Callable], Callable]:
    """A decorator adding ``cls``'s fields as click options, in the order they are declared.
    ``as_none``: an option not given is None, not its default (an engine's options: given to
    another engine they are refused, so "not given" must show)."""
    generated = [_option(f, hint, as_none) for f, hint in _fields(cls, set(skip))]

    def decorate(fn: Callable) -> Callable:
        for option in reversed(generated):
            fn = option(fn)
        return fn
    return decorate
