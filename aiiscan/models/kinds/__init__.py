"""The kinds of head a model card can name (``card["kind"]``), and what each one needs.

A head kind is a small table of functions; ``weights`` (saving, loading, checking files) and
``detector`` (binding a head to its backbone) go through it and nothing else, so the scan driver,
calibrate, evaluate and the engines score every kind through one ``Detector`` interface.
Adding a kind is a module plus one line in ``KINDS``.

- ``clip-flow`` (``flow.py``): a normalizing flow on frozen CLIP features; the default, and the
  kind of every card written before kinds existed.
- ``mpft`` (``mpft.py``): the last blocks of the CLIP ViT fine-tuned, plus a logit head.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from . import mpft
from .flow import MODES, FlowHead, HeadConfig

DEFAULT_KIND = "clip-flow"
MAX_CLAMP = 80.0  # exp(80) is near float32's largest value: a larger soft clamp can overflow


@dataclass(frozen=True)
class HeadKind:
    name: str
    config_from_dict: Callable[[dict], Any]
    check_card: Callable[[dict], None]  # kind-specific card fields; raises ValueError
    expected: Callable[[Any], dict[str, tuple[tuple[int, ...], torch.dtype]]]  # tensors the card implies
    tensors: Callable[[torch.nn.Module], dict[str, torch.Tensor]]  # what goes into the safetensors
    from_tensors: Callable[[Any, dict[str, torch.Tensor]], torch.nn.Module]
    bind: Callable[..., tuple[Any, torch.nn.Module]]  # (backbone, head, owned) -> scoring pair
    tunes_backbone: bool  # False: heads of this kind can share one frozen backbone pass


# ---- clip-flow --------------------------------------------------------------------------------

def _flow_check(card: dict) -> None:
    head = card["head"]
    limits = {"feature_dim": 16384, "dim": 4096, "blocks": 64, "hidden": 16384}
    for key, hi in limits.items():
        v = head.get(key)
        if key not in head:
            raise ValueError(f"is missing head.{key}")
        if not isinstance(v, int) or isinstance(v, bool):
            raise ValueError(f"field head.{key} has the wrong type ({type(v).__name__})")
        if not 1 <= v <= hi:
            raise ValueError(f"head.{key}={v} is outside 1..{hi}")
    for key, kinds in (("clamp", (int, float)), ("permutation_seed", int)):
        if key not in head:
            raise ValueError(f"is missing head.{key}")
        if not isinstance(head[key], kinds) or isinstance(head[key], bool):
            raise ValueError(f"field head.{key} has the wrong type ({type(head[key]).__name__})")
    clamp, seed = head["clamp"], head["permutation_seed"]
    if not (math.isfinite(clamp) and 0 < clamp <= MAX_CLAMP):
        raise ValueError(f"head.clamp={clamp} is not a number in (0, {MAX_CLAMP}]")
    if not -(2**63) <= seed < 2**64:  # torch.Generator.manual_seed's range
        raise ValueError(f"head.permutation_seed={seed} is outside -2**63..2**64-1")
    if head["feature_dim"] != card["backbone"]["feature_dim"]:
        raise ValueError("head.feature_dim differs from backbone.feature_dim")
    mode = card["training"].get("mode")
    if mode not in MODES:
        raise ValueError(f"training.mode {mode!r} is not one of {MODES}")


def _flow_config(h: dict) -> HeadConfig:
    return HeadConfig(feature_dim=h["feature_dim"], dim=h["dim"], blocks=h["blocks"],
                      hidden=h["hidden"], clamp=float(h["clamp"]), permutation_seed=h["permutation_seed"])


def _flow_expected(config: HeadConfig) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    with torch.device("meta"):  # the card's sizes are known before one byte is allocated
        head = FlowHead(config)
    return {k: (tuple(v.shape), v.dtype) for k, v in head.state_dict().items()}


def _flow_from_tensors(config: HeadConfig, state: dict[str, torch.Tensor]) -> FlowHead:
    head = FlowHead(config)
    head.load_state_dict(state)
    return head


KINDS: dict[str, HeadKind] = {
    "clip-flow": HeadKind(
        name="clip-flow", config_from_dict=_flow_config, check_card=_flow_check,
        expected=_flow_expected, tensors=lambda head: head.state_dict(),
        from_tensors=_flow_from_tensors, bind=lambda backbone, head, owned=False: (backbone, head),
        tunes_backbone=False),
    mpft.KIND: HeadKind(
        name=mpft.KIND, config_from_dict=mpft.MpftConfig.from_dict, check_card=mpft.check_card,
        expected=mpft.expected, tensors=mpft.tensors, from_tensors=mpft.from_tensors, bind=mpft.bind,
        tunes_backbone=True),
}


def kind_of(name: str) -> HeadKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown head kind {name!r} (known: {', '.join(KINDS)})") from None
