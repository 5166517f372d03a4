"""Frozen feature extractors: the one place that knows how to build and load a backbone.

A backbone is anything with an identity, a preprocessing config and ``encode`` from a
normalised NCHW batch to features. The provider here is open_clip: a model name plus a
pretrained tag (real weights, resolved from a local file, the local caches, or a download),
or a path to an open_clip model-config JSON with ``pretrained="none"`` (random init, for tests
and offline smoke runs only; its scores mean nothing).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import sys
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch

from ..errors import AiiscanError
from ..files import open_regular
from ..options import DEFAULT_BACKBONE, DEFAULT_PRETRAINED
from .runtimes import Encoder, choose, compile_encoder

CLIP_WEIGHTS_ENV = "AIISCAN_CLIP_WEIGHTS"
TINY_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "tiny-vit.json"

log = logging.getLogger(__name__)


class BackboneError(AiiscanError):
    """A backbone cannot be built; the message says what to do about it."""


@dataclass(frozen=True)
class BackboneIdentity:
    """What a feature depends on; travels with every feature and every head card."""

    name: str
    pretrained: str
    weights_sha256: str | None
    config_sha256: str | None
    feature_dim: int
    image_size: int

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def random_init(self) -> bool:
        return self.pretrained == "none"

    def mismatch(self, other: dict) -> list[str]:
        """Fields that differ from a recorded identity (a card's), ignoring unknowns."""
        diffs = []
        for key, mine in self.to_dict().items():
            theirs = other.get(key)
            if theirs is None or mine is None:
                continue
            if theirs != mine:
                diffs.append(f"{key}: head was trained with {theirs!r}, backbone in use has {mine!r}")
        return diffs


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open_regular(path) as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class ClipBackbone:
    """The image tower of an open_clip model, frozen, in inference mode."""

    def __init__(self, visual: torch.nn.Module, identity: BackboneIdentity,
                 mean: tuple[float, ...], std: tuple[float, ...], device: torch.device,
                 source: str | None = None):
        self.visual = visual.eval().requires_grad_(False).to(device)
        self.identity = identity
        # What rebuilds it in another process: the model name, or the config file's full path.
        self.source = source or identity.name
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.device = device
        self.precision = "auto"  # --precision as asked: auto, fp32 or bf16 (runtimes.choose)

    @property
    def precision(self) -> str:
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        self._precision = value
        self._encoder: Encoder | None = None  # compiled on first use, for this precision
        self._ran: str | None = None

    @property
    def runs_as(self) -> str:
        """What runs the tower, e.g. ``"bf16 (openvino)"``, ``"fp32 (torch)"``: what ran, once
        it has run; until then what would be chosen (building nothing)."""
        if self._ran is None:
            name, effective = choose(self.device, self.precision)
            return f"{effective} ({name})"
        return self._ran

    @property
    def image_size(self) -> int:
        return self.identity.image_size

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """What a caller running the tower itself in torch (MPFT's fine-tuning) should autocast
        to: bf16 where torch's bf16 is what the runtimes would run (a GPU, or ``bf16`` asked for
        without OpenVINO), never on a CPU where only OpenVINO makes bf16 fast."""
        return torch.bfloat16 if choose(self.device, self.precision) == ("torch", "bf16") else None

    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        """Features of a normalised NCHW float batch, as float32 (the head always runs in fp32),
        through the runtime ``--precision`` chose (``runtimes``)."""
        if self._encoder is None:
            self._compile()
        return self._encoder(batch)

    def _compile(self) -> None:
        self._encoder, self._ran = compile_encoder(
            self.visual, self.device, self.precision, identity=self.identity.to_dict(),
            image_size=self.image_size)

    def features(self, arrays: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
        """Features of uint8 HWC crops (one batch), float32 on the backbone's device."""
        batch = np.stack(arrays) if not isinstance(arrays, np.ndarray) else arrays
        return self.encode(normalize(batch, self.mean, self.std, self.device))


def normalize(batch: np.ndarray | torch.Tensor, mean: Sequence[float], std: Sequence[float],
              device: torch.device | str = "cpu") -> torch.Tensor:
    """NHWC uint8 -> normalised float32 NCHW, on ``device``.

    One fused affine map over the contiguous channels-last data, returned as an NCHW view in
    channels-last memory: about 40 % less CPU than permute-then-normalise, and convolutions
    (the patch embedding) run faster on that layout."""
    t = torch.as_tensor(batch)
    if t.device.type == "cpu" and torch.device(device).type == "cuda":
        t = t.pin_memory().to(device, non_blocking=True)
    else:
        t = t.to(device)
    std_t = torch.tensor(std, device=t.device)
    scale = 1.0 / (255.0 * std_t)
    bias = -torch.tensor(mean, device=t.device) / std_t
    return t.float().mul_(scale).add_(bias).permute(0, 3, 1, 2)


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackboneError(f"--device {device} asked for, but torch sees no CUDA device here")
    return dev


def _network_reachable(url: str, timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False  # the Hugging Face convention for "never touch the network"
    host = urlparse(url).hostname or url
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _cached_weights(name: str, tag: str) -> str | None:
    """A local copy of (name, tag) in the Hugging Face or open_clip cache, without network."""
    from open_clip import pretrained as oc_pretrained

    cfg = oc_pretrained.get_pretrained_cfg(name, tag)
    hub = cfg.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - huggingface_hub ships with open_clip
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            model_id, filename = os.path.split(hub)
            filename = filename or oc_pretrained.HF_WEIGHTS_NAME
            for candidate in [*oc_pretrained._get_safe_alternatives(filename), filename]:
                hit = try_to_load_from_cache(model_id, candidate)
                if isinstance(hit, str) and os.path.isfile(hit):
                    return hit
    url = cfg.get("url", "")
    if url:
        local = Path("~/.cache/clip").expanduser() / os.path.basename(url)
        if local.is_file():
            return str(local)
    return None


def resolve_clip_weights(name: str, tag: str, clip_weights: str | None = None) -> str:
    """Path of the weights file for (name, tag): explicit file, env var, caches, download.

    Fails fast with an actionable message when offline and nothing is cached, instead of
    letting a download hang or a traceback reach the user.
    """
    from open_clip import pretrained as oc_pretrained

    explicit = clip_weights or os.environ.get(CLIP_WEIGHTS_ENV)
    if explicit:
        if not os.path.isfile(explicit):
            raise BackboneError(f"CLIP weights file not found: {explicit}")
        return explicit
    cfg = oc_pretrained.get_pretrained_cfg(name, tag)
    if not cfg:
        known = ", ".join(oc_pretrained.list_pretrained_tags_by_model(name)) or "none"
        raise BackboneError(f"open_clip has no pretrained tag {tag!r} for {name!r} (known: {known})")
    cached = _cached_weights(name, tag)
    if cached:
        return cached
    # open_clip prefers the Hugging Face hub when a tag has both a hub entry and a URL.
    source = "https://huggingface.co" if cfg.get("hf_hub") or not cfg.get("url") else cfg["url"]
    if not _network_reachable(source):
        raise BackboneError(
            f"CLIP weights for {name}/{tag} are not on this machine and {urlparse(source).hostname} "
            "cannot be reached.\nProvide them in one of these ways:\n"
            f"  --clip-weights FILE (or {CLIP_WEIGHTS_ENV}=FILE): an open_clip checkpoint for {name}\n"
            "  download once on a networked machine (the Hugging Face cache "
            "~/.cache/huggingface or ~/.cache/clip is used if present)\n"
            f"  for an offline smoke run only: --backbone {TINY_CONFIG} --pretrained none "
            "(a tiny random backbone that ships with aiiscan: meaningless scores)"
        )
    log.info("downloading CLIP weights for %s/%s", name, tag)
    path = oc_pretrained.download_pretrained(cfg)
    if not path:
        raise BackboneError(f"download of CLIP weights for {name}/{tag} failed")
    return path


def _config_name(path: Path) -> str:
    import open_clip

    open_clip.add_model_config(path)
    return path.stem


def build_backbone(name: str = DEFAULT_BACKBONE, pretrained: str = DEFAULT_PRETRAINED,
                   clip_weights: str | None = None, device: str | torch.device = "auto",
                   quiet: bool = False) -> ClipBackbone:
    """Build a frozen open_clip image tower.

    ``name`` is an open_clip model name or a path to a model-config JSON. ``pretrained`` is a
    tag, ``"none"`` for random init, or ignored when ``clip_weights`` names a file.
    """
    import open_clip

    dev = device if isinstance(device, torch.device) else resolve_device(device)
    config_sha = None
    model_name = name
    if name.endswith(".json"):
        cfg_path = Path(name)
        if not cfg_path.is_file():
            raise BackboneError(f"backbone config not found: {name}")
        try:
            json.loads(cfg_path.read_text())
        except (OSError, ValueError) as exc:
            raise BackboneError(f"backbone config {name} is not valid JSON: {exc}") from exc
        config_sha = sha256_file(cfg_path)
        model_name = _config_name(cfg_path)
    elif name not in open_clip.list_models():
        raise BackboneError(f"unknown backbone {name!r}: not an open_clip model name nor a .json config")

    weights_path = None
    weights_sha = None
    tag = pretrained or "none"
    if clip_weights or os.environ.get(CLIP_WEIGHTS_ENV) or tag != "none":
        weights_path = resolve_clip_weights(model_name, tag, clip_weights)
        weights_sha = sha256_file(weights_path)
        if tag == "none":
            tag = "file"
    elif not quiet:
        print(
            "WARNING: random-init backbone (--pretrained none): scores carry NO meaning about "
            "whether an image is AI-generated. Use it only for tests and smoke runs.",
            file=sys.stderr,
        )

    root = logging.getLogger()
    level = root.level
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root.setLevel(logging.ERROR)  # open_clip logs its own random-init notice at WARNING
        try:
            # Seeded init: a random-init backbone rebuilt from a card is the same network.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = open_clip.create_model(model_name, pretrained=weights_path, device="cpu")
        except (RuntimeError, ValueError, KeyError, OSError) as exc:
            raise BackboneError(f"could not build {name} with weights {weights_path} (not an open_clip "
                                f"checkpoint for it?): {type(exc).__name__}: {exc}") from exc
        finally:
            root.setLevel(level)
    visual = model.visual
    cfg = getattr(visual, "preprocess_cfg", {}) or {}
    mean = cfg.get("mean") or open_clip.OPENAI_DATASET_MEAN
    std = cfg.get("std") or open_clip.OPENAI_DATASET_STD
    size = visual.image_size
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    del model
    with torch.inference_mode():
        feature_dim = int(visual(torch.zeros(1, 3, size, size)).shape[-1])
    identity = BackboneIdentity(
        name=name if config_sha is None else model_name,
        pretrained=tag,
        weights_sha256=weights_sha,
        config_sha256=config_sha,
        feature_dim=feature_dim,
        image_size=size,
    )
    source = str(Path(name).resolve()) if name.endswith(".json") else name
    return ClipBackbone(visual, identity, mean, std, dev, source=source)
