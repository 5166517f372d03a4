"""The linear-probe kind: its config and card rules (no torch; the network is ``probe_net``).

A logistic regression on the frozen backbone's final image embedding, as UnivFD does (Ojha et al.,
CVPR 2023: a linear probe on frozen CLIP ViT-L/14 features), trained on natural photos and AI
images with an L2 penalty chosen by held-out AUC (``tasks/probe.py``). It keeps the backbone
frozen, so in a multi-head scan it shares the backbone pass with CLIP-Flow heads.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from . import BAND_SAYS_LITTLE, HeadKind

FEATURES = ("embedding",)  # what the probe reads: the final image embedding (UnivFD's choice)


@dataclass(frozen=True)
class ProbeConfig:
    """Everything needed to rebuild a probe; recorded in the card's ``head``."""

    feature_dim: int
    features: str = "embedding"
    l2: float = 1e-2  # the penalty held-out AUC chose, on standardised features

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, h: dict) -> ProbeConfig:
        return cls(feature_dim=h["feature_dim"], features=h["features"], l2=float(h["l2"]))


def check_card(card: dict) -> None:
    """Probe-specific card fields, checked before any tensor is built (raises ``ValueError``)."""
    head = card["head"]
    dim = head.get("feature_dim")
    if not isinstance(dim, int) or isinstance(dim, bool) or not 1 <= dim <= 16384:
        raise ValueError(f"head.feature_dim={dim!r} is not an integer in 1..16384")
    if dim != card["backbone"]["feature_dim"]:
        raise ValueError("head.feature_dim differs from backbone.feature_dim")
    if head.get("features") not in FEATURES:
        raise ValueError(f"head.features={head.get('features')!r} is not one of {FEATURES}")
    l2 = head.get("l2")
    if not isinstance(l2, (int, float)) or isinstance(l2, bool) or not (math.isfinite(l2) and l2 >= 0):
        raise ValueError(f"head.l2={l2!r} is not a finite number >= 0")


KIND = HeadKind(
    name="probe", config=ProbeConfig, check_card=check_card, net="aiiscan.models.kinds.probe_net",
    tunes_backbone=False, band_positives=False, learns_from_ai=True,
    needs_ai_reason=BAND_SAYS_LITTLE)
