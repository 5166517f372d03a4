"""Head files: ``X.safetensors`` (head tensors only) beside ``X.json`` (the card, ``card.py``);
where heads are found, installed, saved and loaded.

Never pickle: a downloaded head is data, it cannot run code. The card is size-capped and
validated before any tensor is built; the tensors are checked against the card's config.
Writes are atomic (temp file + rename), so a killed process never leaves half a head.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from ..card import CARD_FORMAT, ModelCard, head_files, write_card
from ..errors import WeightsError
from ..files import atomic_output
from .installed import read_head_card, verify_digest
from .kinds import kind_net

_ST_DTYPES = {torch.float32: "F32", torch.int64: "I64"}  # the dtypes a head holds, as safetensors names them


def save_head(prefix: str | Path, head: torch.nn.Module, card: ModelCard) -> ModelCard:
    """Write tensors (those the card's kind keeps) then card, both atomically; the card records
    the tensors' digest."""
    st_path, _ = head_files(prefix)
    st_path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in kind_net(card.kind).tensors(head).items()}
    data = save(tensors, metadata={"format": CARD_FORMAT})
    digest = hashlib.sha256(data).hexdigest()
    with atomic_output(st_path) as f:
        f.write(data)
    card = replace(card, tensors_sha256=digest)
    write_card(prefix, card)
    return card


def _expected_tensors(card: ModelCard) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Names, shapes and dtypes of a head's tensors, from its card alone (no memory): the
    card's sizes are known before one byte is allocated."""
    return kind_net(card.kind).expected(card.head)


def _check_header(st_path: Path, expected: dict[str, tuple[tuple[int, ...], torch.dtype]]) -> None:
    """Compare the card's tensors with the safetensors header (read, not loaded) and the file's
    size, so that a card claiming a huge head fails here instead of allocating it."""
    size = st_path.stat().st_size
    need = sum(math.prod(shape) * dtype.itemsize for shape, dtype in expected.values())
    if need > size:
        raise WeightsError(f"{st_path} holds {size} bytes but its card implies {need} bytes of "
                           "tensors: the card does not describe this file")
    try:
        with safe_open(str(st_path), framework="pt") as f:
            slices = {k: f.get_slice(k) for k in f.keys()}
            found = {k: (tuple(v.get_shape()), v.get_dtype()) for k, v in slices.items()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{st_path} is not a readable safetensors file: {exc}") from None
    if set(found) != set(expected):
        missing = sorted(set(expected) - set(found))[:3]
        extra = sorted(set(found) - set(expected))[:3]
        raise WeightsError(f"{st_path} does not fit its card: missing {missing}, unexpected {extra}")
    for key, (shape, dtype) in expected.items():
        if found[key] != (shape, _ST_DTYPES.get(dtype)):
            raise WeightsError(f"{st_path}: tensor {key} is {found[key][0]}/{found[key][1]}, the card "
                               f"implies {shape}/{_ST_DTYPES.get(dtype, dtype)}")


def load_head(weights: str | Path | None, map_location: str = "cpu"
              ) -> tuple[torch.nn.Module, ModelCard, Path]:
    """Head, card and resolved prefix; refuses tampered, truncated or mismatched files, and
    checks every size the card claims against the file before anything is allocated."""
    card, prefix = read_head_card(weights)
    st_path, _ = head_files(prefix)
    _check_header(st_path, _expected_tensors(card))
    verify_digest(card, prefix)
    try:
        tensors = load_file(str(st_path), device=map_location)
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{st_path} is not a readable safetensors file: {exc}") from None
    head = kind_net(card.kind).from_tensors(card.head, tensors)
    return head.eval(), card, prefix


def check_backbone(card: ModelCard, identity: dict) -> None:
    """Refuse a head trained on a different backbone (features would be meaningless to it)."""
    from .backbone import BackboneIdentity

    mine = BackboneIdentity(**{k: identity[k] for k in BackboneIdentity.__dataclass_fields__})
    diffs = mine.mismatch(card.backbone)
    if diffs:
        raise WeightsError("this head does not belong to the backbone in use:\n  " + "\n  ".join(diffs))
