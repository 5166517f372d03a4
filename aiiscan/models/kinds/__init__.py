"""The kinds of head a model card can name (``card.kind``), and what each one needs.

A kind is a module that defines ``KIND``, a ``HeadKind``: its config (the card's ``head``
block), its card rules, what it means for scans and calibration, and the module of its network
(``net``, which imports torch). ``card`` reads and checks cards through this registry without
torch; ``headfile`` (saving, loading, checking tensors) and ``scorer`` (binding a head to its
backbone) reach the network through ``net``. A new kind is its module(s) plus one line in
``KINDS``; nothing else changes, and scan, calibrate, evaluate and the engines take it.

- ``clip-flow`` (``flow``): a normalizing flow on frozen CLIP features; the default, and the kind
  of every card written before kinds existed.
- ``mpft`` (``mpft``): the last blocks of the CLIP ViT fine-tuned, plus a logit head.
- ``probe`` (``probe``): a logistic regression on the frozen embedding (UnivFD's linear probe).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

DEFAULT_KIND = "clip-flow"
# why calibrate's balanced policy refuses band copies for a head trained on AI images (mpft, probe)
BAND_SAYS_LITTLE = ("the band-(30,100) copies are CLIP-Flow's validation set and say little about a "
                    "classifier trained on AI images")

KINDS: dict[str, str] = {
    "clip-flow": "aiiscan.models.kinds.flow",
    "mpft": "aiiscan.models.kinds.mpft",
    "probe": "aiiscan.models.kinds.probe",
}


@dataclass(frozen=True)
class HeadKind:
    """What a kind of head is, without its network (no torch)."""

    name: str
    config: Any  # a dataclass with from_dict/to_dict: the card's ``head`` block
    check_card: Callable[[dict], None]  # the kind's own card rules (raw JSON); raises ValueError
    net: str  # module with expected/tensors/from_tensors/bind (imports torch)
    tunes_backbone: bool  # False: heads of this kind share one frozen backbone pass
    band_positives: bool  # calibrate's balanced policy may place it on band-(30,100) copies
    learns_from_ai: bool  # trained on AI images: its card lists training.ai_fingerprints
    needs_ai_reason: str = ""  # why ``band_positives`` is False, for calibrate's refusal


def kind_spec(name: str) -> HeadKind:
    """The kind ``name`` (a key of ``KINDS``); its module is imported on first use."""
    try:
        module = KINDS[name]
    except KeyError:
        raise ValueError(f"unknown head kind {name!r} (known: {', '.join(KINDS)})") from None
    return importlib.import_module(module).KIND


def kind_net(name: str) -> ModuleType:
    """The network side of kind ``name`` (imports torch)."""
    return importlib.import_module(kind_spec(name).net)
