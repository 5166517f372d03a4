"""The MPFT kind: its config and card rules (no torch; the network is ``mpft_net``).

MPFT as we read arXiv 2601.03586 (README, "MPFT, as we read it"): a partially fine-tuned CLIP ViT
and a logit head. Its card lists every tuned tensor's name and shape, so the file's header is
checked against it before anything is allocated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import BAND_SAYS_LITTLE, HeadKind

FEATURES = ("embedding", "embedding+first-layer")  # what the classifier reads (mpft_net)
MAX_TUNED_ELEMENTS = 2**31  # ~8 GB of float32: more than a whole ViT-bigG image tower
_NAME = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")


@dataclass(frozen=True)
class MpftConfig:
    """Everything needed to rebuild an MPFT head's tensors; recorded in the card's ``head``."""

    feature_dim: int
    tune_blocks: int
    tensors: dict = field(default_factory=dict)  # tuned image-tower tensor name -> shape (list)
    # Cards written before issue 28 have neither field: the classifier read the embedding alone.
    features: str = "embedding"
    trace_dim: int = 0  # first-layer filters read beside the embedding (0 with "embedding")

    def to_dict(self) -> dict:
        return {"feature_dim": self.feature_dim, "tune_blocks": self.tune_blocks,
                "tensors": {k: list(v) for k, v in self.tensors.items()},
                "features": self.features, "trace_dim": self.trace_dim}

    @classmethod
    def from_dict(cls, h: dict) -> MpftConfig:
        return cls(feature_dim=h["feature_dim"], tune_blocks=h["tune_blocks"],
                   tensors={k: list(v) for k, v in h["tensors"].items()},
                   features=h.get("features", "embedding"), trace_dim=h.get("trace_dim", 0))


def check_card(card: dict) -> None:
    """MPFT-specific card fields, checked before any tensor is built (raises ``ValueError``)."""
    head = card["head"]
    for key, hi in (("feature_dim", 16384), ("tune_blocks", 256)):
        v = head.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= hi:
            raise ValueError(f"head.{key}={v!r} is not an integer in 1..{hi}")
    if head["feature_dim"] != card["backbone"]["feature_dim"]:
        raise ValueError("head.feature_dim differs from backbone.feature_dim")
    features, trace_dim = head.get("features", "embedding"), head.get("trace_dim", 0)
    if features not in FEATURES:
        raise ValueError(f"head.features={features!r} is not one of {FEATURES} (a newer aiiscan's MPFT "
                         "head?)")
    if not isinstance(trace_dim, int) or isinstance(trace_dim, bool) or not 0 <= trace_dim <= 16384 \
            or (trace_dim == 0) != (features == "embedding"):
        raise ValueError(f"head.trace_dim={trace_dim!r} does not fit head.features={features!r}")
    tensors = head.get("tensors")
    if not isinstance(tensors, dict) or not 1 <= len(tensors) <= 4096:
        raise ValueError("head.tensors must map 1..4096 tuned tensor names to shapes")
    total = 0
    for name, shape in tensors.items():
        if not _NAME.match(name) or len(name) > 200:
            raise ValueError(f"head.tensors has an invalid tensor name {name[:60]!r}")
        dims_ok = all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 2**24 for d in shape) \
            if isinstance(shape, list) else False
        if not dims_ok or len(shape) > 8:
            raise ValueError(f"head.tensors[{name!r}] is not a shape (a list of at most 8 positive integers)")
        n = 1
        for d in shape:
            n *= d
        total += n
    if total > MAX_TUNED_ELEMENTS:
        raise ValueError(f"head.tensors add up to {total} elements, over the {MAX_TUNED_ELEMENTS} cap")


KIND = HeadKind(
    name="mpft", config=MpftConfig, check_card=check_card, net="aiiscan.models.kinds.mpft_net",
    tunes_backbone=True, band_positives=False, learns_from_ai=True,
    needs_ai_reason=BAND_SAYS_LITTLE)
