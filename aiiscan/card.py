"""The model card: a head's JSON description, typed, validated, and written back byte for byte.

``X.json`` beside ``X.safetensors`` says what the head is (``kind`` and ``head``, the kind's
config), what it was trained on (``backbone``, ``training``), where its threshold sits
(``threshold``, with the calibration that placed it) and what came before
(``calibration_history``). A card is untrusted input: it is size-capped and checked (types,
ranges, finite numbers, the kind's own rules) before anything is built from it.

Each block is a typed view of its JSON object (``Block``): the fields this version knows are
attributes, fields it does not know are kept as they were, and a field the file did not have
stays absent. So ``ModelCard.from_dict(raw).to_dict() == raw`` for every valid card, and an
existing head's ``model_card_sha256`` never changes by being read and written. Imports no torch.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

from .errors import WeightsError
from .files import atomic_write_bytes
from .models.kinds import DEFAULT_KIND, KINDS, kind_spec
from .version import __version__

CARD_FORMAT = "aiiscan-head/1"
MAX_CARD_BYTES = 16 * 1024 * 1024


class _Absent:
    """A field the card's JSON does not have: falsy and empty, so ``card.training.ai_fingerprints
    or ()`` reads naturally, and never written back."""

    def __bool__(self) -> bool:
        return False

    def __iter__(self):
        return iter(())

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


@dataclass(frozen=True)
class Block:
    """A typed view of one JSON object of the card (see the module's docstring)."""

    extra: dict = field(default_factory=dict)  # fields this version does not know, as they were
    nested: ClassVar[dict[str, type[Block]]] = {}

    @classmethod
    def from_dict(cls, raw: dict) -> Block:
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: (cls.nested[k].from_dict(v) if k in cls.nested and isinstance(v, dict) else v)
                  for k, v in raw.items() if k in known}
        return cls(**values, extra={k: v for k, v in raw.items() if k not in known})

    def to_dict(self) -> dict:
        out = dict(self.extra)
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "extra" and value is not ABSENT:
                out[f.name] = value.to_dict() if isinstance(value, Block) else value
        return out

    def has(self, name: str) -> bool:
        return getattr(self, name, ABSENT) is not ABSENT or name in self.extra

    # Read access by key as in the JSON (``card.threshold["value"]``): what scripts and the
    # report's metadata see.
    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)

    def __contains__(self, key: str) -> bool:
        return key in self.to_dict()

    def keys(self) -> list[str]:
        return list(self.to_dict())


@dataclass(frozen=True)
class BackboneBlock(Block):
    """The frozen backbone the head was trained on (``models.backbone.BackboneIdentity``) and
    what rebuilds it (``source``: an open_clip name or a config file's path)."""

    name: str = ABSENT
    pretrained: str = ABSENT
    source: str = ABSENT
    feature_dim: int = ABSENT
    image_size: int = ABSENT
    weights_sha256: str | None = ABSENT
    config_sha256: str | None = ABSENT

    def identity(self) -> dict:
        """The fields that make two backbones the same network (a scan shares one pass)."""
        names = ("name", "pretrained", "weights_sha256", "config_sha256", "feature_dim", "image_size")
        return {k: (None if getattr(self, k) is ABSENT else getattr(self, k)) for k in names}


@dataclass(frozen=True)
class ValidationBlock(Block):
    """The sets a threshold was placed on (``aiiscan calibrate``)."""

    natural_count: int = ABSENT
    natural_failed: int = ABSENT
    natural_digest: str = ABSENT
    positives: str = ABSENT  # "band-(30,100) copies" or "ai images"
    perturbation: str = ABSENT
    ai_count: int = ABSENT
    ai_failed: int = ABSENT
    ai_digest: str = ABSENT
    limit: int | None = ABSENT
    decode: str = ABSENT
    precision: str = ABSENT
    seed: int = ABSENT
    overlap_check: str = ABSENT
    ai_overlap_check: str = ABSENT


@dataclass(frozen=True)
class ThresholdBlock(Block):
    """Where labels switch to ``ai``, how it was chosen, and what it was measured on."""

    value: float = ABSENT
    policy: str = ABSENT
    note: str = ABSENT
    created: str = ABSENT
    aiiscan_version: str = ABSENT
    validation: ValidationBlock = ABSENT
    auc: float = ABSENT
    balanced_accuracy: float = ABSENT
    tpr: float = ABSENT
    fpr: float = ABSENT
    natural_score_median: float = ABSENT
    perturbed_score_median: float = ABSENT
    ai_score_median: float = ABSENT
    caution: str = ABSENT
    warning: str = ABSENT  # the calibration set is too small for the policy (tasks.calibrate)
    nested: ClassVar[dict[str, type[Block]]] = {"validation": ValidationBlock}


@dataclass(frozen=True)
class TrainingBlock(Block):
    """What the head learnt from. The trainer's own settings (epochs, lr, proxy...) are kept as
    written (``extra``); the facts every kind shares are typed."""

    mode: str = ABSENT  # CLIP-Flow: P, N+P or N
    natural_count: int = ABSENT
    natural_failed: int = ABSENT
    natural_digest: str = ABSENT
    natural_fingerprints: list[str] = ABSENT  # sha256[:16] of each image: calibrate refuses them
    ai_count: int = ABSENT
    ai_fingerprints: list[str] = ABSENT
    validation_count: int = ABSENT
    kept_epoch: int | None = ABSENT
    kept_by: str = ABSENT
    history: list[dict] = ABSENT


@dataclass(frozen=True)
class MetricsBlock(Block):
    validation_band_auc: float | None = ABSENT  # CLIP-Flow with --val-natural
    heldout_auc: float | None = ABSENT  # heads trained on AI images


def _require(card: dict, key: str, kind: type | tuple[type, ...], where: str = "card") -> Any:
    if key not in card:
        raise WeightsError(f"model card is missing {where}.{key}")
    value = card[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind in (int, float, (int, float)):
        raise WeightsError(f"model card field {where}.{key} has the wrong type ({type(value).__name__})")
    return value


def validate_card(card: Any) -> dict:
    """Check the card's shape and the values that size tensors, before anything is built."""
    if not isinstance(card, dict):
        raise WeightsError("model card is not a JSON object")
    if card.get("format") != CARD_FORMAT:
        raise WeightsError(f"model card format {card.get('format')!r} is not {CARD_FORMAT!r}")
    backbone = _require(card, "backbone", dict)
    for key in ("name", "pretrained", "source"):
        _require(backbone, key, str, "backbone")
    _require(backbone, "feature_dim", int, "backbone")
    _require(card, "head", dict)
    _require(card, "training", dict)
    kind = card.get("kind", DEFAULT_KIND)
    if not isinstance(kind, str) or kind not in KINDS:
        raise WeightsError(f"model card kind {kind!r} is not one of {', '.join(KINDS)}: "
                           "a head of a kind this aiiscan version does not know")
    try:
        kind_spec(kind).check_card(card)
    except ValueError as exc:
        raise WeightsError(f"model card {exc}") from None
    for name in ("threshold", "metrics"):
        if card.get(name) is not None and not isinstance(card[name], dict):
            raise WeightsError(f"model card {name} must be an object or null")
    threshold = card.get("threshold")
    if threshold is not None:
        value = _require(threshold, "value", (int, float), "threshold")
        if not math.isfinite(value):
            raise WeightsError(f"model card threshold.value={value} is not a finite number")
        _require(threshold, "policy", str, "threshold")
        if not isinstance(threshold.get("validation", {}), dict):
            raise WeightsError("model card threshold.validation must be an object")
    history = card.get("calibration_history") or []
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise WeightsError("model card calibration_history must be a list of objects")
    return card


@dataclass(frozen=True)
class ModelCard:
    """A head's model card, validated on the way in (``from_dict``) and out (``to_dict``).
    Immutable: ``with_threshold`` returns a new card."""

    backbone: BackboneBlock
    head: Any  # the kind's config (models.kinds: FlowConfig, MpftConfig...)
    training: TrainingBlock
    threshold: ThresholdBlock | None = None
    calibration_history: tuple[ThresholdBlock, ...] = ()
    metrics: MetricsBlock = field(default_factory=MetricsBlock)
    created: str = ""
    aiiscan_version: str = __version__
    tensors_sha256: str | None = None
    extra: dict = field(default_factory=dict)  # fields of newer cards, kept as they are
    kind: str = DEFAULT_KIND  # models.kinds.KINDS: "clip-flow" (cards without the field), "mpft"

    def __post_init__(self) -> None:
        # Blocks given in their JSON shape (a dict) are read into their typed view.
        blocks = (("backbone", BackboneBlock), ("training", TrainingBlock), ("metrics", MetricsBlock))
        for name, cls in blocks:
            if isinstance(getattr(self, name), dict):
                object.__setattr__(self, name, cls.from_dict(getattr(self, name)))
        if isinstance(self.threshold, dict):
            object.__setattr__(self, "threshold", ThresholdBlock.from_dict(self.threshold))
        object.__setattr__(self, "calibration_history", tuple(
            ThresholdBlock.from_dict(h) if isinstance(h, dict) else h for h in self.calibration_history))

    @classmethod
    def from_dict(cls, raw: Any) -> ModelCard:
        card = dict(validate_card(raw))
        known = {f.name for f in fields(cls)} - {"extra"}
        kind = card.get("kind", DEFAULT_KIND)
        return cls(
            kind=kind, backbone=card["backbone"], training=card["training"], threshold=card.get("threshold"),
            head=kind_spec(kind).config.from_dict(card["head"]),
            calibration_history=tuple(card.get("calibration_history") or ()),
            metrics=card.get("metrics") or {}, created=card.get("created", ""),
            aiiscan_version=card.get("aiiscan_version", __version__),
            tensors_sha256=card.get("tensors_sha256"),
            extra={k: v for k, v in card.items() if k not in known and k != "format"})

    def to_dict(self) -> dict:
        out = {**self.extra, "format": CARD_FORMAT, "kind": self.kind,
               "aiiscan_version": self.aiiscan_version, "created": self.created,
               "backbone": self.backbone.to_dict(), "head": self.head.to_dict(),
               "training": self.training.to_dict(),
               "threshold": None if self.threshold is None else self.threshold.to_dict(),
               "calibration_history": [h.to_dict() for h in self.calibration_history],
               "metrics": self.metrics.to_dict()}
        if self.tensors_sha256 is not None:
            out["tensors_sha256"] = self.tensors_sha256
        return validate_card(out)

    def trained_on(self) -> dict[str, str]:
        """Short content fingerprints (sha256[:16]) of the images the head was trained on, each
        with the card field that lists it: calibrate refuses them, evaluate warns about them."""
        out = {fp: "natural_fingerprints" for fp in self.training.natural_fingerprints or ()}
        return out | {fp: "ai_fingerprints" for fp in self.training.ai_fingerprints or ()}

    @property
    def threshold_value(self) -> float | None:
        """The calibrated threshold, or None before `aiiscan calibrate`."""
        return None if not self.threshold else float(self.threshold.value)

    @property
    def threshold_policy(self) -> str | None:
        return None if not self.threshold else self.threshold.get("policy")

    @property
    def image_size(self) -> int:
        return int(self.backbone.image_size)

    @property
    def random_init(self) -> bool:
        """Trained on a randomly initialised backbone: its scores say nothing about AI images."""
        return self.backbone.pretrained == "none"

    def with_threshold(self, block: ThresholdBlock | dict) -> ModelCard:
        """A copy with ``block`` as the threshold; the current one moves to the history."""
        history = (*self.calibration_history, self.threshold) if self.threshold else self.calibration_history
        return replace(self, threshold=block, calibration_history=history)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def head_files(prefix: str | Path) -> tuple[Path, Path]:
    """``(X.safetensors, X.json)`` of a head prefix ``X`` (a suffix given by mistake is dropped)."""
    p = Path(prefix)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def read_card(prefix: str | Path) -> ModelCard:
    _, card_path = head_files(prefix)
    try:
        size = card_path.stat().st_size
    except OSError as exc:
        raise WeightsError(f"cannot read model card {card_path}: {exc.strerror}") from None
    if size > MAX_CARD_BYTES:
        raise WeightsError(f"model card {card_path} is {size} bytes, over the {MAX_CARD_BYTES} cap")
    try:
        card = json.loads(card_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"model card {card_path} is not valid JSON: {exc}") from None
    except RecursionError:  # a small file can nest deeper than the parser's stack
        raise WeightsError(f"model card {card_path} is nested too deeply to be a model card") from None
    return ModelCard.from_dict(card)


def write_card(prefix: str | Path, card: ModelCard) -> None:
    _, card_path = head_files(prefix)
    atomic_write_bytes(card_path, (json.dumps(card.to_dict(), indent=2, sort_keys=True) + "\n").encode())


def model_id(card: ModelCard, prefix: Path) -> str:
    """Short, stable id for reports: head name and its tensors' digest."""
    return f"{prefix.name}@{(card.tensors_sha256 or 'unknown')[:12]}"
