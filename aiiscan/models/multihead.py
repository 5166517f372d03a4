"""Multi-head scans: several heads scored from one decode per file, behind the ``Scorer`` interface.

``aiiscan scan --weights A --weights B`` (``scan(..., weights=[A, B])``) opens a ``MultiHead``:

- each file is decoded once (one ``DecodeJob`` per file, as for one head);
- heads whose kind does not tune the backbone (``heads.HeadKind.tunes_backbone`` False: CLIP-Flow)
  and whose cards name the same backbone identity share one backbone object, hence one frozen
  backbone pass per crop; a head that tunes the backbone (MPFT) binds its own copy of the image
  tower and gets its own pass over the same decoded crops;
- ``score_stream`` yields, per file, an array ``[variant, head]`` (a one-head scorer yields
  ``[variant]``); the scan writes head 1 into ``score``/``label``/``threshold``/``model_id`` and
  head k into ``score_k``/``label_k``/``threshold_k``/``model_id_k``, plus ``verdict``
  (``combine``).

All heads must take the same crop size: the crop is decoded once for all of them. Heads of
different crop sizes are refused (a usage error) rather than decoded twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UsageError

if TYPE_CHECKING:
    from ..decode.job import DecodeJob, DecodeResult
    from ..engines import Engine, Scorer
    from ..options import RunOptions
    from .scorer import Detector, Reuse

COMBINE = ("any", "all")


def combine(labels: Sequence[str | None], how: str = "any") -> str | None:
    """The combined verdict of the heads' labels.

    ``any`` (default): ``ai`` if any head says ``ai``; ``natural`` if every head says ``natural``;
    else null (a head without a threshold, and no head said ``ai``).
    ``all``: ``ai`` only if every head says ``ai``; ``natural`` if any head says ``natural``; else null.
    """
    if how == "any":
        if "ai" in labels:
            return "ai"
        return "natural" if labels and all(x == "natural" for x in labels) else None
    if how == "all":
        if "natural" in labels:
            return "natural"
        return "ai" if labels and all(x == "ai" for x in labels) else None
    raise UsageError(f"unknown --combine {how!r}: choose one of {', '.join(COMBINE)}")


def as_weights(weights: str | Path | Sequence[str | Path] | None) -> str | tuple[str, ...] | None:
    """``--weights`` as given once or several times: None, one head (a str, as before multi-head
    scans), or a tuple of two or more heads."""
    if weights is None or isinstance(weights, (str, Path)):
        return None if weights is None else str(weights)
    items = tuple(str(w) for w in weights)
    if not items:
        return None
    return items[0] if len(items) == 1 else items


def heads_of(model: Scorer) -> list[Any]:
    """The heads a scorer scores, in report order (a one-head scorer is its own head)."""
    return list(getattr(model, "heads", None) or [model])


def check_crop_sizes(heads: Sequence[Any]) -> None:
    """Refuse heads (anything with ``image_size`` and ``model_id``) of different crop sizes: a
    multi-head scan decodes each file once for all of them, on every engine."""
    if len({h.image_size for h in heads}) > 1:
        raise UsageError("these heads take different crop sizes ("
                         + ", ".join(f"{h.model_id}: {h.image_size} px" for h in heads)
                         + "): a multi-head scan decodes each file once for all heads, so they "
                         "must share a crop size; scan with each head separately")


class MultiHead:
    """Several loaded ``Detector`` heads scored together; a ``Scorer``.

    Its ``card``, ``model_id`` and ``prefix`` are head 1's (the report's primary columns)."""

    def __init__(self, heads: Sequence[Detector]):
        if len(heads) < 2:
            raise ValueError("a multi-head scorer needs at least two heads")
        check_crop_sizes(heads)
        self.heads = list(heads)
        first = self.heads[0]
        self.card, self.model_id, self.prefix = first.card, first.model_id, first.prefix
        # One pass per distinct frozen backbone; a head that tunes its backbone has its own.
        self.groups: list[tuple[Any, list[int]]] = []
        index: dict[int, int] = {}
        for i, h in enumerate(self.heads):
            key = id(h) if h.kind.tunes_backbone else id(h.backbone)
            if key not in index:
                index[key] = len(self.groups)
                self.groups.append((h.backbone, []))
            self.groups[index[key]][1].append(i)

    @property
    def image_size(self) -> int:
        return self.heads[0].image_size

    @property
    def precision(self) -> str:
        return self.heads[0].precision

    @property
    def passes(self) -> int:
        """Backbone passes per crop."""
        return len(self.groups)

    def score_arrays(self, arrays: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Scores of preprocessed uint8 crops (HWC), ``[crop, head]``, one pass per backbone
        group: what a Ray scoring actor runs on the crops decoded elsewhere."""
        import torch

        from .scorer import features

        if len(arrays) == 0:
            return np.zeros((0, len(self.heads)), dtype=np.float32)
        with torch.inference_mode():
            return self._heads_on([features(bb, arrays) for bb, _ in self.groups])

    def _heads_on(self, feats: Sequence[Any]) -> np.ndarray:
        """Every head's scores ``[crop, head]`` from each backbone group's features ``[crop, D]``."""
        out = np.zeros((len(feats[0]), len(self.heads)), dtype=np.float32)
        for (_, members), part in zip(self.groups, feats, strict=True):
            for i in members:
                out[:, i] = self.heads[i].head(part).float().cpu().numpy()
        return out

    def score_stream(self, jobs: Iterable[DecodeJob], batch_size: int = 64, workers: int | None = None,
                     timeout: float | None = None, reuse: Reuse | None = None
                     ) -> Iterator[tuple[DecodeResult, np.ndarray | None]]:
        """As ``Detector.score_stream``, with one score per head: ``(result, [variant, head])``.
        ``reuse(result)`` answers with ``[variant, head]`` scores for content already scored."""
        import torch

        from ..decode.pool import DEFAULT_TIMEOUT
        from .scorer import feature_batches, features

        widths: list[int] = []

        def encode(arrays: list[np.ndarray]) -> torch.Tensor:
            feats = [features(bb, arrays) for bb, _ in self.groups]  # float32 (backbone.encode)
            widths[:] = [f.shape[-1] for f in feats]
            return torch.cat(feats, dim=-1)  # side by side: one tensor through the batcher

        first = self.heads[0].backbone
        stream = feature_batches(first, jobs, batch_size, workers,
                                 DEFAULT_TIMEOUT if timeout is None else timeout, reuse, encode=encode)
        for results, feats in stream:
            scores: Iterator[np.ndarray] = iter(())
            if feats is not None:
                n, v, _ = feats.shape
                parts = [part.reshape(n * v, -1) for part in torch.split(feats, widths, dim=-1)]
                with torch.inference_mode():
                    scores = iter(self._heads_on(parts).reshape(n, v, len(self.heads)))
            for r in results:
                if r.status != "ok":
                    yield r, None
                else:
                    yield r, (r.reused if r.reused is not None else next(scores))


def _backbone_key(card: Any) -> str:
    return json.dumps(card.backbone.identity(), sort_keys=True)


def backbone_passes(cards: Sequence[Any]) -> int:
    """Backbone passes per crop that ``load_heads`` gives heads of these cards (``MultiHead.passes``
    without building them): one per distinct frozen backbone, one per head that tunes its own."""
    from .kinds import kind_spec

    return len({f"own {i}" if kind_spec(c.kind).tunes_backbone else _backbone_key(c)
                for i, c in enumerate(cards)})


def load_heads(weights: Sequence[str], run: RunOptions) -> MultiHead:
    """Load the heads, building each distinct backbone once (heads naming the same backbone
    identity share it; a kind that tunes the backbone binds a copy of it)."""
    from .headfile import load_head
    from .scorer import Detector, backbone_for

    built: dict[str, Any] = {}
    heads = []
    for w in weights:
        head, card, prefix = load_head(w)
        key = _backbone_key(card)
        if key not in built:
            built[key] = backbone_for(card, prefix, run.device, run.clip_weights, quiet=run.quiet,
                                      precision=run.precision)
        heads.append(Detector(built[key], head, card, prefix, owned=False))
    return MultiHead(heads)


def load_scorer(weights: str | tuple[str, ...] | None, run: RunOptions) -> Detector | MultiHead:
    """What scores in this process for ``weights`` (``as_weights``): a ``Detector`` for one head
    (None: the default head), a ``MultiHead`` for several. The local engine and each Ray scoring
    actor build the same thing, so both engines score alike."""
    if isinstance(weights, tuple):
        return load_heads(weights, run)
    from .scorer import Detector

    return Detector.load(weights, device=run.device, clip_weights=run.clip_weights, quiet=run.quiet,
                         precision=run.precision)


def open_scorer(engine: Engine, weights: str | Sequence[str] | None, run: RunOptions) -> Scorer:
    """``engine.open`` with ``--weights`` as given once or several times (a tuple of two or more
    heads: a multi-head scorer, with ``heads``)."""
    return engine.open(as_weights(weights), run)
