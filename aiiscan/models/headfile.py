"""Head weights on disk: ``X.safetensors`` (head tensors only) + ``X.json`` (the model card).

Never pickle: a downloaded head is data, it cannot run code. The card is size-capped and
validated before any tensor is built; the tensors are checked against the card's config.
Writes are atomic (temp file + rename), so a killed process never leaves half a head.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..errors import WeightsError
from ..files import atomic_write_bytes, file_mode, now_iso  # noqa: F401 (re-exported)
from ..version import __version__
from .kinds import DEFAULT_KIND, KINDS, MAX_CLAMP  # noqa: F401 (MAX_CLAMP re-exported)
from .kinds.flow import HeadConfig
from .kinds.mpft import MpftConfig

CARD_FORMAT = "aiiscan-head/1"
MAX_CARD_BYTES = 16 * 1024 * 1024
WEIGHTS_DIR_ENV = "AIISCAN_WEIGHTS_DIR"
DEFAULT_HEAD_ENV = "AIISCAN_WEIGHTS"
DEFAULT_NAME = "default"
_ST_DTYPES = {torch.float32: "F32", torch.int64: "I64"}  # the dtypes a head holds, as safetensors names them
REPO_WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"


def _paths(prefix: str | Path) -> tuple[Path, Path]:
    p = Path(prefix)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def user_weights_dir() -> Path:
    """Where installed heads live: ``$AIISCAN_WEIGHTS_DIR``, else the per-user data folder
    (``$XDG_DATA_HOME/aiiscan/weights``, by default ``~/.local/share/aiiscan/weights``)."""
    if os.environ.get(WEIGHTS_DIR_ENV):
        return Path(os.environ[WEIGHTS_DIR_ENV])
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "aiiscan" / "weights"


def _search_dirs() -> list[Path]:
    """Each folder once (run from the repository, ./weights is the repository's)."""
    found: list[Path] = []
    for d in (user_weights_dir(), Path.cwd() / "weights", REPO_WEIGHTS_DIR):
        if all(os.path.realpath(d) != os.path.realpath(f) for f in found):
            found.append(d)
    return found


NO_HEAD = """no head to score with, and none is installed.
aiiscan ships no trained head: a CLIP-Flow head is learned from the CLIP features of authentic
photos, and a useful one needs the real CLIP weights (ViT-L-14/openai, ~1.7 GB, downloaded once
by `aiiscan train`), which cannot be bundled. Make one from photos you trust:

    aiiscan train --natural ~/photos/authentic -o mine --install-default
    aiiscan calibrate --natural ~/photos/calibration
    aiiscan scan ./photos -o report.parquet

or name a head with --weights W or $AIISCAN_WEIGHTS=W. Looked for a default head in: {looked}"""


def default_head() -> Path:
    """The head used when no ``--weights`` is given: ``$AIISCAN_WEIGHTS``, then ``default`` in
    the per-user weights folder, then ``./weights/default``."""
    if os.environ.get(DEFAULT_HEAD_ENV):
        return resolve(os.environ[DEFAULT_HEAD_ENV])
    places = [user_weights_dir() / DEFAULT_NAME, Path.cwd() / "weights" / DEFAULT_NAME]
    for prefix in places:
        st, card = _paths(prefix)
        if st.is_file() and card.is_file():
            return prefix
    raise WeightsError(NO_HEAD.format(looked=", ".join(str(p) for p in places)))


def resolve_head(weights: str | Path | None) -> Path:
    """``--weights`` if given, else the default head."""
    return default_head() if weights is None else resolve(weights)


def install_default(prefix: str | Path) -> Path:
    """Copy a head to ``default`` in the per-user weights folder (tensors first, then the card,
    each atomically), so that commands find it without ``--weights``."""
    src_st, src_card = _paths(prefix)
    dest = user_weights_dir() / DEFAULT_NAME
    dst_st, dst_card = _paths(dest)
    try:
        atomic_write_bytes(dst_st, src_st.read_bytes())
        atomic_write_bytes(dst_card, src_card.read_bytes())
    except OSError as exc:
        raise WeightsError(f"cannot install the head as {dest}: {exc.strerror or exc}") from None
    return dest


def resolve(weights: str | Path) -> Path:
    """A head prefix from a path prefix or a name found in the weights directories."""
    st, card = _paths(weights)
    if st.is_file() and card.is_file():
        return st.with_suffix("")
    candidates = _search_dirs()
    for folder in candidates:
        st2, card2 = _paths(folder / str(weights))
        if st2.is_file() and card2.is_file():
            return st2.with_suffix("")
    looked = ", ".join(str(c) for c in candidates)
    raise WeightsError(
        f"no head named {weights!r}: expected {st.name} and {card.name} next to each other "
        f"(also looked in {looked}). Train one with `aiiscan train --natural DIR -o {weights}`."
    )


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
        KINDS[kind].check_card(card)
    except ValueError as exc:
        raise WeightsError(f"model card {exc}") from None
    threshold = card.get("threshold")
    if threshold is not None:
        if not isinstance(threshold, dict):
            raise WeightsError("model card threshold must be an object or null")
        value = _require(threshold, "value", (int, float), "threshold")
        if not math.isfinite(value):
            raise WeightsError(f"model card threshold.value={value} is not a finite number")
        _require(threshold, "policy", str, "threshold")
    return card


@dataclass(frozen=True)
class ModelCard:
    """A head's JSON model card, validated on the way in (``from_dict``) and out (``to_dict``).

    The one place that knows the card's layout: what the head is (``head``), what it was trained
    on (``backbone``, ``training``), where its threshold sits (``threshold``, the calibration
    block with ``value`` and ``policy``) and what came before (``calibration_history``).
    Immutable: ``with_threshold`` returns a new card.
    """

    backbone: dict
    head: HeadConfig | MpftConfig  # the kind's config: flow.HeadConfig or mpft.MpftConfig
    training: dict
    threshold: dict | None = None
    calibration_history: tuple[dict, ...] = ()
    metrics: dict = field(default_factory=dict)
    created: str = ""
    aiiscan_version: str = __version__
    tensors_sha256: str | None = None
    extra: dict = field(default_factory=dict)  # fields of newer cards, kept as they are
    kind: str = DEFAULT_KIND  # heads.KINDS: "clip-flow" (cards without the field) or "mpft"

    @classmethod
    def from_dict(cls, raw: Any) -> ModelCard:
        card = dict(validate_card(raw))
        known = {f.name for f in fields(cls)} - {"extra"}
        kind = card.get("kind", DEFAULT_KIND)
        return cls(
            kind=kind, backbone=card["backbone"], training=card["training"], threshold=card.get("threshold"),
            head=KINDS[kind].config_from_dict(card["head"]),
            calibration_history=tuple(card.get("calibration_history") or ()),
            metrics=card.get("metrics") or {}, created=card.get("created", ""),
            aiiscan_version=card.get("aiiscan_version", __version__),
            tensors_sha256=card.get("tensors_sha256"),
            extra={k: v for k, v in card.items() if k not in known and k != "format"})

    def trained_on(self) -> dict[str, str]:
        """Short content fingerprints (sha256[:16]) of the images the head was trained on, each
        with the card field that lists it: calibrate refuses them, evaluate warns about them."""
        out = {fp: "natural_fingerprints" for fp in self.training.get("natural_fingerprints") or ()}
        return out | {fp: "ai_fingerprints" for fp in self.training.get("ai_fingerprints") or ()}

    def to_dict(self) -> dict:
        out = {**self.extra, "format": CARD_FORMAT, "kind": self.kind,
               "aiiscan_version": self.aiiscan_version, "created": self.created,
               "backbone": self.backbone, "head": self.head.to_dict(),
               "training": self.training, "threshold": self.threshold,
               "calibration_history": list(self.calibration_history), "metrics": self.metrics}
        if self.tensors_sha256 is not None:
            out["tensors_sha256"] = self.tensors_sha256
        return validate_card(out)

    @property
    def threshold_value(self) -> float | None:
        """The calibrated threshold, or None before `aiiscan calibrate`."""
        return None if not self.threshold else float(self.threshold["value"])

    @property
    def threshold_policy(self) -> str | None:
        return None if not self.threshold else self.threshold.get("policy")

    @property
    def random_init(self) -> bool:
        """Trained on a randomly initialised backbone: its scores say nothing about AI images."""
        return self.backbone.get("pretrained") == "none"

    def with_threshold(self, block: dict) -> ModelCard:
        """A copy with ``block`` as the threshold; the current one moves to the history."""
        history = (*self.calibration_history, self.threshold) if self.threshold else self.calibration_history
        return replace(self, threshold=block, calibration_history=history)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def read_card(prefix: str | Path) -> ModelCard:
    _, card_path = _paths(prefix)
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
    _, card_path = _paths(prefix)
    atomic_write_bytes(card_path, (json.dumps(card.to_dict(), indent=2, sort_keys=True) + "\n").encode())


def save_head(prefix: str | Path, head: torch.nn.Module, card: ModelCard) -> ModelCard:
    """Write tensors (those the card's kind keeps) then card, both atomically; the card records
    the tensors' digest."""
    st_path, _ = _paths(prefix)
    st_path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in KINDS[card.kind].tensors(head).items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{st_path.name}.", dir=st_path.parent)
    os.close(fd)
    os.chmod(tmp, file_mode())
    try:
        save_file(tensors, tmp, metadata={"format": CARD_FORMAT})
        os.chmod(tmp, file_mode())  # save_file recreates the file with mkstemp's 0600
        digest = hashlib.sha256(Path(tmp).read_bytes()).hexdigest()
        os.replace(tmp, st_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    card = replace(card, tensors_sha256=digest)
    write_card(prefix, card)
    return card


def _expected_tensors(card: ModelCard) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Names, shapes and dtypes of a head's tensors, from its card alone (no memory): the
    card's sizes are known before one byte is allocated."""
    return KINDS[card.kind].expected(card.head)


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
    prefix = resolve_head(weights)
    card = read_card(prefix)
    st_path, _ = _paths(prefix)
    _check_header(st_path, _expected_tensors(card))
    expected = card.tensors_sha256
    if expected:
        with open(st_path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        if digest != expected:
            raise WeightsError(
                f"{st_path} does not match the digest in its model card (modified or truncated)")
    try:
        tensors = load_file(str(st_path), device=map_location)
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{st_path} is not a readable safetensors file: {exc}") from None
    head = KINDS[card.kind].from_tensors(card.head, tensors)
    return head.eval(), card, prefix


def model_id(card: ModelCard, prefix: Path) -> str:
    """Short, stable id for reports: head name and its tensors' digest."""
    return f"{prefix.name}@{(card.tensors_sha256 or 'unknown')[:12]}"


def check_backbone(card: ModelCard, identity: dict) -> None:
    """Refuse a head trained on a different backbone (features would be meaningless to it)."""
    from .backbone import BackboneIdentity

    mine = BackboneIdentity(**{k: identity[k] for k in BackboneIdentity.__dataclass_fields__})
    diffs = mine.mismatch(card.backbone)
    if diffs:
        raise WeightsError("this head does not belong to the backbone in use:\n  " + "\n  ".join(diffs))
