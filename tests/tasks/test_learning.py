"""The CLIP-Flow trainer learns, shown without pretrained weights (none can be had here).

A random-init ViT's features carry almost no spectral information, so no head trained on them
can separate band-(30,100) copies from their originals. Here the real ``train`` path runs on a
feature extractor that does carry it: a fixed ring-by-ring log-power spectrum of the crop,
wrapped as a backbone. Trained P and N+P heads must then score held-out band copies above their originals
(AUC >= 0.9); a flipped loss sign, a proxy that damages nothing, or a flipped score direction
must each break that, so the test can fail for the reasons that matter.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aiiscan.decode.job import RADIAL, DecodeJob
from aiiscan.decode.proxies import ProxySpec
from aiiscan.models.backbone import BackboneIdentity, ClipBackbone
from aiiscan.models.headfile import load_head
from aiiscan.models.scorer import Detector
from aiiscan.options import TrainOptions
from aiiscan.tasks.metrics import roc_auc
from aiiscan.tasks.train import train

from ..conftest import write_photos

RINGS = 24


class RingSpectrum(torch.nn.Module):
    """Mean log power of the grey crop's unshifted spectrum in ``RINGS`` rings, each split into the
    quadrant of non-negative frequencies (where the reference's `low` band lies) and the rest;
    the DC ring is dropped (it is overall brightness). No weights at all."""

    def __init__(self, size: int = 224):
        super().__init__()
        f = torch.fft.fftfreq(size) * size
        yy, xx = torch.meshgrid(f, f, indexing="ij")
        ring = (torch.sqrt(xx ** 2 + yy ** 2) / (size / 2) * RINGS).long().clamp(max=RINGS - 1)
        cell = (ring * 2 + ((yy >= 0) & (xx >= 0)).long()).flatten()
        self.register_buffer("cell", cell)
        self.register_buffer("count", torch.bincount(cell, minlength=2 * RINGS).float().clamp(min=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logp = torch.log1p(torch.fft.fft2(x.float().mean(dim=1)).abs().pow(2).flatten(1))
        sums = torch.zeros(x.shape[0], 2 * RINGS, device=x.device).index_add_(1, self.cell, logp)
        return (sums / self.count)[:, 2:]


def spectral_backbone() -> ClipBackbone:
    identity = BackboneIdentity(name="ring-spectrum-test", pretrained="none", weights_sha256=None,
                                config_sha256=None, feature_dim=2 * RINGS - 2, image_size=224)
    return ClipBackbone(RingSpectrum(), identity, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25),
                        torch.device("cpu"), source="ring-spectrum-test")


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("learning")
    return (write_photos(root / "train", 48, seed=101, size=(256, 256)),
            write_photos(root / "val", 16, seed=102, size=(256, 256)),
            write_photos(root / "test", 24, seed=103, size=(256, 256)))


def band_auc(det: Detector, photos: list[str]) -> float:
    """AUC of band-(30,100) copies (positives) against their originals: copies should score higher."""
    jobs = (DecodeJob(p, det.image_size, variants=(None, RADIAL)) for p in photos)
    pairs = np.array([s[:, 0] for _, s in det.score_stream(jobs, workers=0) if s is not None])
    return roc_auc(pairs[:, 0], pairs[:, 1])


def fit(sets, tmp_path, mode: str, ratio: float, sign: float = 1.0, monkeypatch=None) -> Detector:
    train_set, val_set, _ = sets
    if sign != 1.0:
        import aiiscan.tasks.train as trainer

        real_loss = trainer.clip_flow_loss
        monkeypatch.setattr(trainer, "clip_flow_loss", lambda *a, **k: sign * real_loss(*a, **k))
    bb = spectral_backbone()
    cfg = TrainOptions(mode=mode, proxy=ProxySpec("freq", "low", ratio), epochs=4, batch_size=16, lr=1e-4,
                      views=2, workers=0, dim=16, blocks=4, hidden=64, seed=0)
    out = tmp_path / f"{mode}-{ratio}-{sign}"
    train(bb, train_set, out, cfg, validation=val_set, progress=False)
    return Detector(bb, *load_head(out))


@pytest.mark.parametrize("mode, ratio", [("P", 1.0), ("N+P", 0.1)])
def test_trained_heads_rank_band_copies_above_originals(sets, tmp_path, mode, ratio):
    det = fit(sets, tmp_path, mode, ratio)
    auc = band_auc(det, sets[2])
    assert auc >= 0.9, f"{mode}: held-out band-(30,100) AUC {auc:.3f}"


@pytest.mark.parametrize("mode, ratio, sign, direction", [
    ("N+P", 0.1, -1.0, 1),   # the loss sign flipped (Eq. 7's typo)
    ("N+P", 0.0, 1.0, 1),    # a proxy that damages nothing
    ("N+P", 0.1, 1.0, -1),   # higher score read as "more natural"
])
def test_sabotaged_training_fails_the_bar(sets, tmp_path, monkeypatch, mode, ratio, sign, direction):
    det = fit(sets, tmp_path, mode, ratio, sign, monkeypatch)
    auc = band_auc(det, sets[2])
    auc = auc if direction == 1 else 1.0 - auc
    assert auc < 0.9, f"sabotage ({mode}, {ratio}, sign {sign}, direction {direction}) gave {auc:.3f}"
