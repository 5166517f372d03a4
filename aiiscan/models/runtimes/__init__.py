"""Runtimes: how the frozen backbone executes (the scorer never needs to know).

A runtime module defines ``available() -> bool`` and ``compile(visual, device, precision) ->
Encoder``, an encoder being a callable from a normalised float32 NCHW batch to float32 features
``[batch, D]``. ``RUNTIMES`` lists them by name; ``choose`` picks one for a device and a
``--precision`` (``auto``, ``fp32``, ``bf16``). ``fp32`` is always torch in float32: the exact
reference every other runtime is measured against. A new runtime is a module and one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

import torch

Encoder = Callable[[torch.Tensor], torch.Tensor]

RUNTIMES: dict[str, str] = {
    "torch": "aiiscan.models.runtimes.torch_eager",
}


def runtime(name: str) -> ModuleType:
    return importlib.import_module(RUNTIMES[name])


def choose(device: torch.device, precision: str) -> tuple[str, str]:
    """(runtime name, precision it runs) for ``--precision`` on ``device``: ``auto`` is bf16
    autocast on a GPU and float32 on a CPU; ``fp32`` and ``bf16`` are taken as asked."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    return "torch", precision


def compile_encoder(visual: torch.nn.Module, device: torch.device, precision: str) -> tuple[Encoder, str]:
    """An encoder for ``visual`` on ``device``, and what it runs (``"fp32"``, ``"bf16"``...)."""
    name, effective = choose(device, precision)
    return runtime(name).compile(visual, device, effective), effective
