"""Issue 28: the trainers that learn from AI images learn pixel-level traces their features carry,
over several kinds of trace (``tasks/traces.py``), and fail when sabotaged.

No AI image and no pretrained CLIP exist here. Each test plants a trace in half of a set of
synthetic pictures (unpaired: every picture used once) at the 64-pixel tiny ViT's pre-crop size,
trains, and scores a held-out set it never saw (AUC >= 0.9). MPFT fine-tunes the tiny ViT with
the suite's fixed DCT first layer (``selftest.texture_checkpoint``) and the suite's tiny options;
the probe reads a frozen backbone whose features are that first layer's log mean absolute
responses (a random-init ViT's final embedding carries almost nothing of a faint trace, as
``benchmarks/mpft_traces.py`` measures). Sabotage: labels shuffled between the classes, the
loss sign flipped, the features zeroed: each must fall below the bar, so the proofs can fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aiiscan.models.backbone import BackboneIdentity, ClipBackbone, build_backbone
from aiiscan.models.headfile import load_head
from aiiscan.models.scorer import Detector
from aiiscan.options import FinetuneOptions
from aiiscan.tasks.finetune import finetune
from aiiscan.tasks.metrics import roc_auc
from aiiscan.tasks.probe import train_probe
from aiiscan.tasks.selftest import TINY64_CONFIG, planted_pairs, texture_checkpoint

SIZE = 73  # the decode stage's pre-crop size for the 64-pixel tiny ViT: no resize blurs the trace
KINDS = ("checkerboard", "resample", "colour-peak")
TINY = {"epochs": 20, "patience": 6, "lr": 1e-3, "batch_size": 8, "views": 2, "workers": 0}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return texture_checkpoint(TINY64_CONFIG, tmp_path_factory.mktemp("clip") / "texture-vit.safetensors")


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("traces")
    return {k: {"train": planted_pairs(root / k / "train", 24, 10 + i, SIZE, trace=k),
                "test": planted_pairs(root / k / "test", 12, 20 + i, SIZE, trace=k)}
            for i, k in enumerate(KINDS)}


def shuffled(train: tuple[list[str], list[str]]) -> tuple[list[str], list[str]]:
    """Half of each class given the other label: nothing left to learn."""
    nat, ai = train
    h = len(nat) // 2
    return nat[:h] + ai[:h], nat[h:] + ai[h:]


def heldout_auc(det: Detector, test: tuple[list[str], list[str]]) -> float:
    s = np.array(det.score_paths(test[0] + test[1]))
    return roc_auc(s[:len(test[0])], s[len(test[0]):])


class FirstLayerEnergies(torch.nn.Module):
    """Log mean |response| of each filter of the texture ViT's frozen patch embedding (or zeros)."""

    def __init__(self, conv: torch.nn.Conv2d, zeroed: bool = False):
        super().__init__()
        self.conv, self.zeroed = conv, zeroed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = torch.log(self.conv(x).abs().mean(dim=(2, 3)) + 1e-6)
        return e * 0 if self.zeroed else e


def energy_backbone(clip, zeroed: bool = False) -> ClipBackbone:
    bb = build_backbone(str(TINY64_CONFIG), "none", clip_weights=str(clip), device="cpu", quiet=True)
    width = bb.visual.conv1.out_channels
    identity = BackboneIdentity(name="first-layer-energies-test", pretrained="none", weights_sha256=None,
                                config_sha256=None, feature_dim=width, image_size=64)
    out = ClipBackbone(FirstLayerEnergies(bb.visual.conv1, zeroed), identity, bb.mean, bb.std,
                       torch.device("cpu"), source="first-layer-energies-test")
    out.precision = "fp32"
    return out


def fit_mpft(clip, train, out, **options) -> Detector:
    bb = build_backbone(str(TINY64_CONFIG), "none", clip_weights=str(clip), device="cpu", quiet=True)
    finetune(bb, *train, out, FinetuneOptions(**{**TINY, **options}), progress=False, own_backbone=True)
    return Detector.load(out, device="cpu", clip_weights=str(clip), quiet=True)


def fit_probe(clip, train, out, zeroed: bool = False, **options) -> Detector:
    bb = energy_backbone(clip, zeroed)
    train_probe(bb, *train, out, FinetuneOptions(method="probe", workers=0, **options), progress=False)
    return Detector(bb, *load_head(out))


@pytest.mark.parametrize("kind", KINDS)
def test_mpft_learns_each_kind_of_trace(clip, sets, kind, tmp_path, one_thread):
    auc = heldout_auc(fit_mpft(clip, sets[kind]["train"], tmp_path / "mpft"), sets[kind]["test"])
    assert auc >= 0.9, f"MPFT on {kind}: held-out AUC {auc:.3f}"


@pytest.mark.parametrize("kind, sabotage", [("checkerboard", "shuffled"), ("resample", "shuffled"),
                                            ("colour-peak", "flipped")])
def test_sabotaged_mpft_fails_the_bar(clip, sets, kind, sabotage, tmp_path, one_thread):
    train = sets[kind]["train"]
    det = fit_mpft(clip, shuffled(train), tmp_path / "m") if sabotage == "shuffled" else \
        fit_mpft(clip, train, tmp_path / "m", loss_sign=-1.0)
    auc = heldout_auc(det, sets[kind]["test"])
    assert auc < 0.9, f"sabotaged MPFT ({sabotage}) on {kind}: held-out AUC {auc:.3f}"


@pytest.mark.parametrize("kind", KINDS)
def test_the_probe_learns_each_kind_of_trace(clip, sets, kind, tmp_path, one_thread):
    det = fit_probe(clip, sets[kind]["train"], tmp_path / "probe")
    auc = heldout_auc(det, sets[kind]["test"])
    assert auc >= 0.9, f"probe on {kind}: held-out AUC {auc:.3f}"


@pytest.mark.parametrize("kind, sabotage", [("checkerboard", "shuffled"), ("resample", "zeroed"),
                                            ("colour-peak", "flipped")])
def test_a_sabotaged_probe_fails_the_bar(clip, sets, kind, sabotage, tmp_path, one_thread):
    train = sets[kind]["train"]
    det = fit_probe(clip, shuffled(train) if sabotage == "shuffled" else train, tmp_path / "p",
                    zeroed=sabotage == "zeroed", loss_sign=-1.0 if sabotage == "flipped" else 1.0)
    auc = heldout_auc(det, sets[kind]["test"])
    assert auc < 0.9, f"sabotaged probe ({sabotage}) on {kind}: held-out AUC {auc:.3f}"
