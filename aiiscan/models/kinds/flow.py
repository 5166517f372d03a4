"""The CLIP-Flow kind: its config and card rules (no torch; the network is ``flow_net``)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ...options import MODES
from . import HeadKind

MAX_CLAMP = 80.0  # exp(80) is near float32's largest value: a larger soft clamp can overflow


@dataclass(frozen=True)
class FlowConfig:
    """Everything needed to rebuild a head; recorded in the model card."""

    feature_dim: int
    dim: int = 128
    blocks: int = 8
    hidden: int = 512
    clamp: float = 2.0
    permutation_seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, h: dict) -> FlowConfig:
        return cls(feature_dim=h["feature_dim"], dim=h["dim"], blocks=h["blocks"], hidden=h["hidden"],
                   clamp=float(h["clamp"]), permutation_seed=h["permutation_seed"])


def check_card(card: dict) -> None:
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


KIND = HeadKind(name="clip-flow", config=FlowConfig, check_card=check_card,
                net="aiiscan.models.kinds.flow_net", tunes_backbone=False, band_positives=True,
                learns_from_ai=False)
