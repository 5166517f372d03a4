"""The scorer stage: heads bound to their backbones, scoring decoded crops; ``Detector`` for notebooks.

A ``Scorer`` holds one or more heads and always answers with scores shaped ``[variant, head]``
(``[crop, head]`` for ``score_arrays``), so no caller branches on the number of heads. Each file
is decoded once for all heads. Heads whose kind keeps the backbone frozen (CLIP-Flow) and whose
cards name the same backbone share one backbone object, hence one pass per crop; a head that
tunes the backbone (MPFT) binds its own copy of the image tower and gets its own pass over the
same crops. Heads must take the same crop size (one decode serves them all): others are refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..card import ModelCard, model_id
from ..decode.job import DecodeJob, DecodeResult
from ..decode.preprocess import prepare
from ..errors import UsageError
from ..options import DEFAULT_TIMEOUT, RunOptions
from .backbone import CLIP_WEIGHTS_ENV, BackboneError, ClipBackbone, build_backbone, resolve_device
from .batcher import feature_batches
from .headfile import check_backbone, load_head
from .kinds import HeadKind, kind_net, kind_spec


@dataclass
class Head:
    """One head bound to the backbone its scores read (an MPFT head: its own tuned copy)."""

    card: ModelCard
    prefix: Path
    model_id: str
    kind: HeadKind
    net: torch.nn.Module
    backbone: ClipBackbone

    @classmethod
    def bind(cls, backbone: ClipBackbone, net: torch.nn.Module, card: ModelCard, prefix: Path,
             owned: bool = False) -> Head:
        """``owned``: the backbone was built for this head alone, so a kind that tunes the
        backbone may change it in place instead of copying it. Refuses another backbone."""
        check_backbone(card, backbone.identity.to_dict())
        backbone, net = kind_net(card.kind).bind(backbone, net, owned)
        return cls(card, prefix, model_id(card, prefix), kind_spec(card.kind),
                   net.to(backbone.device).eval(), backbone)

    @property
    def image_size(self) -> int:
        return self.backbone.image_size


def check_crop_sizes(heads: Sequence) -> None:
    """Refuse heads (anything with ``image_size`` and ``model_id``) of different crop sizes: a
    multi-head scan decodes each file once for all of them, on every engine."""
    if len({h.image_size for h in heads}) > 1:
        raise UsageError("these heads take different crop sizes ("
                         + ", ".join(f"{h.model_id}: {h.image_size} px" for h in heads)
                         + "): a multi-head scan decodes each file once for all heads, so they "
                         "must share a crop size; scan with each head separately")


class Scorer:
    """Heads scored together from one decode per file. ``card``, ``model_id`` and ``prefix`` are
    head 1's (the report's primary columns). ``heads`` may hold ``Head``s or other scorers (whose
    heads are taken in order)."""

    def __init__(self, heads: Sequence[Head | Scorer]):
        self.heads: list[Head] = [h for x in heads for h in (x.heads if isinstance(x, Scorer) else [x])]
        if not self.heads:
            raise ValueError("a scorer needs at least one head")
        check_crop_sizes(self.heads)
        first = self.heads[0]
        self.card, self.model_id, self.prefix = first.card, first.model_id, first.prefix
        # One pass per distinct backbone object; a head that tunes its backbone has its own.
        self.groups: list[tuple[ClipBackbone, list[int]]] = []
        index: dict[int, int] = {}
        for i, h in enumerate(self.heads):
            if id(h.backbone) not in index:
                index[id(h.backbone)] = len(self.groups)
                self.groups.append((h.backbone, []))
            self.groups[index[id(h.backbone)]][1].append(i)

    @property
    def image_size(self) -> int:
        return self.heads[0].image_size

    @property
    def precision(self) -> str:
        return self.heads[0].backbone.precision

    @property
    def runs_as(self) -> str:
        """What ran the backbone(s), e.g. ``"bf16 (openvino)"`` (a report's ``precision``)."""
        return ", ".join(dict.fromkeys(bb.runs_as for bb, _ in self.groups))

    @property
    def passes(self) -> int:
        """Backbone passes per crop."""
        return len(self.groups)

    def _heads_on(self, feats: Sequence[torch.Tensor]) -> np.ndarray:
        """Every head's scores ``[crop, head]`` from each backbone group's features ``[crop, D]``."""
        out = np.zeros((len(feats[0]), len(self.heads)), dtype=np.float32)
        for (_, members), part in zip(self.groups, feats, strict=True):
            for i in members:
                out[:, i] = self.heads[i].net(part).float().cpu().numpy()
        return out

    @torch.inference_mode()
    def score_arrays(self, arrays: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Scores ``[crop, head]`` of preprocessed uint8 crops (HWC), one pass per backbone group:
        also what a Ray scoring actor runs on crops decoded elsewhere."""
        if len(arrays) == 0:
            return np.zeros((0, len(self.heads)), dtype=np.float32)
        return self._heads_on([bb.features(arrays) for bb, _ in self.groups])

    def score_stream(self, jobs: Iterable[DecodeJob], batch_size: int = 64, workers: int | None = None,
                     timeout: float | None = None, skip: Callable[[DecodeResult], bool] | None = None,
                     ) -> Iterator[tuple[DecodeResult, np.ndarray | None]]:
        """Decode in worker processes and score in batches, yielding in input order
        ``(result, scores [variant, head])``; ``(result, None)`` for a file that did not decode,
        or that ``skip`` answered (the caller knows its scores: no backbone pass)."""
        widths: list[int] = []

        def encode(arrays: list[np.ndarray]) -> torch.Tensor:
            feats = [bb.features(arrays) for bb, _ in self.groups]  # float32
            widths[:] = [f.shape[-1] for f in feats]
            return torch.cat(feats, dim=-1)  # side by side: one tensor through the batcher

        batches = feature_batches(encode, jobs, batch_size, workers,
                                  DEFAULT_TIMEOUT if timeout is None else timeout, skip)
        for batch in batches:
            scores: Iterator[np.ndarray] = iter(())
            if batch.features is not None:
                n, v, _ = batch.features.shape
                parts = [p.reshape(n * v, -1) for p in torch.split(batch.features, widths, dim=-1)]
                with torch.inference_mode():
                    scores = iter(self._heads_on(parts).reshape(n, v, len(self.heads)))
            for r, wanted in zip(batch.results, batch.wanted, strict=True):
                yield r, (next(scores) if wanted else None)


class Detector(Scorer):
    """One trained head on its backbone: load once, score PIL images, paths or crops (notebooks,
    the Python API). Any kind of head (``models.kinds``) scores through it; scores: higher = more
    likely AI-generated, for every kind."""

    def __init__(self, backbone: ClipBackbone, head: torch.nn.Module, card: ModelCard, prefix: Path,
                 owned: bool = False):
        super().__init__([Head.bind(backbone, head, card, prefix, owned)])

    @classmethod
    def load(cls, weights: str | Path | None = None, device: str = "auto", clip_weights: str | None = None,
             backbone: str | None = None, quiet: bool = False, precision: str = "auto") -> Detector:
        """Load a head (``None``: the default head) and the backbone its card names
        (``backbone`` overrides the card's path)."""
        head, card, prefix = load_head(weights)
        bb = backbone_for(card, prefix, device, clip_weights, backbone, quiet, precision)
        return cls(bb, head, card, prefix, owned=True)

    @property
    def backbone(self) -> ClipBackbone:
        return self.heads[0].backbone

    @property
    def head(self) -> torch.nn.Module:
        return self.heads[0].net

    @property
    def threshold(self) -> float | None:
        return self.card.threshold_value

    def score_images(self, images: Iterable[Image.Image]) -> np.ndarray:
        """One score per image."""
        return self.score_arrays([prepare(img, self.image_size) for img in images])[:, 0]

    def score_paths(self, paths: Iterable[str | Path], workers: int = 0) -> list[float | None]:
        """Scores in input order; None where a file could not be decoded."""
        jobs = (DecodeJob(str(p), self.image_size) for p in paths)
        return [None if s is None else float(s[0, 0]) for _, s in self.score_stream(jobs, workers=workers)]


def backbone_for(card: ModelCard, prefix: Path, device: str = "auto", clip_weights: str | None = None,
                 backbone: str | None = None, quiet: bool = False, precision: str = "auto") -> ClipBackbone:
    """The backbone a head's card names, built (``backbone`` overrides the card's path)."""
    spec = card.backbone
    tag = spec.pretrained
    if tag == "file":
        if not (clip_weights or os.environ.get(CLIP_WEIGHTS_ENV)):
            raise BackboneError(
                f"head {prefix.name} was trained on CLIP weights from a file "
                f"(sha256 {spec.weights_sha256}); pass --clip-weights FILE")
        tag = "none"
    bb = build_backbone(backbone or spec.source, tag, clip_weights=clip_weights,
                        device=resolve_device(device), quiet=quiet)
    bb.precision = precision
    return bb


def backbone_key(card: ModelCard) -> str:
    return json.dumps(card.backbone.identity(), sort_keys=True)


def backbone_passes(cards: Sequence[ModelCard]) -> int:
    """Backbone passes per crop that ``load_scorer`` gives heads of these cards (``Scorer.passes``
    without building them): one per distinct frozen backbone, one per head that tunes its own."""
    return len({f"own {i}" if kind_spec(c.kind).tunes_backbone else backbone_key(c)
                for i, c in enumerate(cards)})


def load_scorer(heads: str | Sequence[str] | None, run: RunOptions) -> Scorer:
    """What scores in this process for the heads named by ``--weights`` (None: the default head;
    several: a multi-head scorer), each distinct backbone built once. The local engine and each
    Ray scoring actor build the same thing, so both engines score alike."""
    names = [heads] if heads is None or isinstance(heads, (str, Path)) else list(heads)
    built: dict[str, ClipBackbone] = {}
    heads = []
    for w in names:
        net, card, prefix = load_head(w)
        key = backbone_key(card)
        owned = key not in built and len(names) == 1
        if key not in built:
            built[key] = backbone_for(card, prefix, run.device, run.clip_weights, quiet=run.quiet,
                                      precision=run.precision)
        heads.append(Head.bind(built[key], net, card, prefix, owned=owned))
    return Scorer(heads)
