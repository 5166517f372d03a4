"""Runtimes: how the frozen backbone executes (the scorer never needs to know).

A runtime module defines ``available() -> bool`` and ``compile(visual, device, precision, ...)
-> Encoder``, an encoder being a callable from a normalised float32 NCHW batch to float32
features ``[batch, D]``. ``RUNTIMES`` lists them by name; ``choose`` picks one for a device and a
``--precision``:

  fp32   torch in float32, everywhere: the exact reference every other runtime is measured against;
  bf16   native bf16 through the fastest runtime present: OpenVINO on a CPU (torch bf16 autocast
         when OpenVINO is missing), torch bf16 autocast on a GPU;
  auto   bf16 where the hardware computes it natively (a GPU; a CPU with AMX or AVX512-BF16 and
         OpenVINO present), fp32 elsewhere.

A runtime that cannot serve a tower (its export fails, or does not reproduce the torch tower)
falls back to torch, with one warning. A new runtime is a module and one line here.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from types import ModuleType

import torch

Encoder = Callable[[torch.Tensor], torch.Tensor]

RUNTIMES: dict[str, str] = {
    "torch": "aiiscan.models.runtimes.torch_eager",
    "openvino": "aiiscan.models.runtimes.openvino",
}


def runtime(name: str) -> ModuleType:
    return importlib.import_module(RUNTIMES[name])


def choose(device: torch.device, precision: str, native_bf16: bool | None = None) -> tuple[str, str]:
    """(runtime name, precision it runs) for ``--precision`` on ``device``. ``native_bf16``
    overrides what the CPU reports (``False``: behave as on a CPU without AMX/AVX512-BF16;
    the environment variable ``AIISCAN_NATIVE_BF16=0`` does the same)."""
    if precision == "fp32":
        return "torch", "fp32"
    if device.type != "cpu":
        return "torch", "bf16"  # auto and bf16 on a GPU: autocast, as ever
    ov = runtime("openvino")
    if precision == "bf16":
        return ("openvino", "bf16") if ov.available() else ("torch", "bf16")
    native = ov.native_bf16() if native_bf16 is None else (native_bf16 and ov.available())
    return ("openvino", "bf16") if native else ("torch", "fp32")


def compile_encoder(visual: torch.nn.Module, device: torch.device, precision: str,
                    native_bf16: bool | None = None, identity: dict | None = None,
                    image_size: int | None = None) -> tuple[Encoder, str]:
    """An encoder for ``visual`` on ``device``, and what runs it: ``"fp32 (torch)"``,
    ``"bf16 (openvino)"``... (what a report records)."""
    name, effective = choose(device, precision, native_bf16)
    if name != "torch":
        try:
            enc = runtime(name).compile(visual, device, effective, image_size=image_size, identity=identity)
            return enc, f"{effective} ({name})"
        except Exception as exc:  # noqa: BLE001 - any failure of an optional runtime: torch serves
            effective = effective if precision == "bf16" else "fp32"
            print(f"WARNING: the {name} runtime cannot serve this backbone ({exc}); "
                  f"running it in torch {effective} instead.", file=sys.stderr)
    return runtime("torch").compile(visual, device, effective), f"{effective} (torch)"
