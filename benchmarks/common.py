"""Shared by the benchmark scripts: inputs and a detector on a random-init backbone.

Random weights: every figure these scripts print is about speed, memory or decode fidelity of
the arithmetic, never about detection quality.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
EVAL_DEV = SHARED / "eval-dev"
TRAIN_NATURAL = SHARED / "train-natural"


def command() -> str:
    return " ".join(["python", *sys.argv])


def camera_jpegs(folder: Path, n: int, size=(4000, 3000), quality: int = 92) -> list[str]:
    """Camera-sized JPEGs (real archives are full of them); a few distinct pictures, copied."""
    from aiiscan.tasks.selftest import synthetic_photo

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = []
    for i in range(min(n, 4)):
        p = folder / f"base_{i}.jpg"
        if not p.exists():
            img = synthetic_photo(rng, (size[0] // 4, size[1] // 4)).resize(size)
            noise = rng.normal(0, 6, (size[1], size[0], 3))
            from PIL import Image
            arr = np.clip(np.asarray(img, np.float32) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(p, quality=quality)
        base.append(p.read_bytes())
    paths = []
    for i in range(n):
        p = folder / f"cam_{i:05d}.jpg"
        if not p.exists():
            p.write_bytes(base[i % len(base)])
        paths.append(str(p))
    return paths


def small_jpegs(folder: Path, n: int, size=(640, 480)) -> list[str]:
    from aiiscan.tasks.selftest import synthetic_photo

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = [synthetic_photo(rng, size) for _ in range(16)]
    paths = []
    for i in range(n):
        p = folder / f"{i // 1000:03d}" / f"img_{i:06d}.jpg"
        p.parent.mkdir(exist_ok=True)
        if not p.exists():
            base[i % 16].save(p, quality=92)
        paths.append(str(p))
    return paths


def eval_dev() -> list[str]:
    if not EVAL_DEV.is_dir():
        return []
    return sorted(str(p) for p in EVAL_DEV.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def photos() -> list[str]:
    """Unique photos from the shared data: train-natural, then eval-dev."""
    out = []
    for root in (TRAIN_NATURAL, EVAL_DEV):
        if root.is_dir():
            out += sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return out


def detector_for(backbone_name: str, precision: str = "auto"):
    """A Detector with a random head on a random-init backbone (no weights needed)."""
    import torch

    from aiiscan.card import ModelCard
    from aiiscan.models.backbone import TINY_CONFIG, build_backbone
    from aiiscan.models.kinds.flow import FlowConfig
    from aiiscan.models.kinds.flow_net import FlowHead
    from aiiscan.models.scorer import Detector

    name = str(TINY_CONFIG) if backbone_name == "tiny" else backbone_name
    bb = build_backbone(name, "none", device="cpu", quiet=True)
    bb.precision = precision
    torch.manual_seed(0)
    head_cfg = FlowConfig(bb.identity.feature_dim)
    head = FlowHead(head_cfg)
    card = ModelCard(backbone={**bb.identity.to_dict(), "source": name}, head=head_cfg,
                     training={"mode": "N+P"}, tensors_sha256="bench")
    return Detector(bb, head, card, Path("bench"))


def median_rate(fn: Callable[[], int], runs: int) -> float:
    """Median of ``runs`` timings of ``fn`` (which returns how many images it did), in img/s."""
    rates = []
    for _ in range(runs):
        t = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - t))
    return statistics.median(rates)


def trained_detector(backbone_name: str, out: Path, n_photos: int = 200):
    """A head trained briefly (N+P) on train-natural photos: random-init backbone, but a head whose
    scores actually vary, so score differences can be compared with their spread."""
    from aiiscan.decode.proxies import ProxySpec
    from aiiscan.models.backbone import TINY_CONFIG, build_backbone
    from aiiscan.models.headfile import load_head
    from aiiscan.models.scorer import Detector
    from aiiscan.options import TrainOptions
    from aiiscan.tasks.train import train

    photos = sorted(str(p) for p in TRAIN_NATURAL.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not photos:
        raise SystemExit(f"{TRAIN_NATURAL} is not present: pass --weights")
    name = str(TINY_CONFIG) if backbone_name == "tiny" else backbone_name
    bb = build_backbone(name, "none", device="cpu", quiet=True)
    if not Path(f"{out}.json").is_file():
        cfg = TrainOptions(mode="N+P", proxy=ProxySpec(ratio=0.1), epochs=3, batch_size=32, lr=1e-3, views=1)
        train(bb, photos[:n_photos], out, cfg, backbone_source=name, progress=False)
    return Detector(bb, *load_head(out))
