"""torch, eagerly: float32, or bfloat16 autocast (fast on GPUs; on a CPU, slower than float32)."""

from __future__ import annotations

import torch

from . import Encoder


def available() -> bool:
    return True


def compile(visual: torch.nn.Module, device: torch.device, precision: str) -> Encoder:
    dtype = torch.bfloat16 if precision == "bf16" else None

    @torch.inference_mode()
    def encode(batch: torch.Tensor) -> torch.Tensor:
        if dtype is not None:
            with torch.autocast(device.type, dtype=dtype):
                return visual(batch).float()
        return visual(batch).float()

    return encode
