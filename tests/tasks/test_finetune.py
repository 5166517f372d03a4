"""MPFT: texture-aware masking, the `aiiscan finetune` command, MPFT heads in scan/calibrate, and the
proof that the trainer learns.

No pretrained CLIP exists here. The learning proof plants an artifact made here (a faint period-2
checkerboard, +-8 grey levels) in half of a set of photos (the shared natural photos when present,
else synthetic ones) and fine-tunes a tiny ViT whose patch embedding holds fixed DCT filters
(``selftest.texture_checkpoint``: a random patch embedding barely sees pixel-level patterns; a
pretrained one does). It proves the trainer, masking, loss and scoring are wired to learn; it says
nothing about real AI images.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open

from aiiscan.card import read_card
from aiiscan.cli import main
from aiiscan.errors import WeightsError
from aiiscan.models.backbone import build_backbone
from aiiscan.models.headfile import load_head
from aiiscan.models.scorer import Detector
from aiiscan.reports.read import read_report
from aiiscan.tasks.masking import (
    TokenDrop,
    count_masked,
    keep_indices,
    most_textured,
    texture_energy,
    zero_patches,
)
from aiiscan.tasks.metrics import balanced_threshold, roc_auc
from aiiscan.tasks.selftest import TINY64_CONFIG, planted_pairs, texture_checkpoint
from aiiscan.tasks.train import training_digest

from ..conftest import TRAIN_NATURAL

ROOT = Path(__file__).resolve().parents[2]
SIZE = 73  # the decode stage's pre-crop size for the 64-pixel tiny ViT: no resize blurs the artifact


# ---- masking maths ----------------------------------------------------------------------------

def _patchy(textured: list[int], grid: int = 4, patch: int = 8, seed: int = 0) -> np.ndarray:
    """A flat grey crop whose listed patches carry noise of growing strength (last = strongest)."""
    rng = np.random.default_rng(seed)
    img = np.full((grid * patch, grid * patch, 3), 120.0)
    for strength, p in enumerate(textured, 1):
        r, c = divmod(p, grid)
        cell = (slice(r * patch, (r + 1) * patch), slice(c * patch, (c + 1) * patch))
        img[cell] += rng.normal(0, 6 * strength, (patch, patch, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("texture", ["highpass", "gradient"])
def test_the_most_textured_patches_are_the_ones_masked(texture):
    crops = torch.as_tensor(np.stack([_patchy([5, 10, 3]), _patchy([0, 15, 2, 8], seed=1)]))
    energy = texture_energy(crops, 8, texture)
    assert energy.shape == (2, 16)
    mask = most_textured(energy, 3 / 16)
    assert sorted(mask[0].nonzero().flatten().tolist()) == [3, 5, 10]
    assert sorted(mask[1].nonzero().flatten().tolist()) == [2, 8, 15]  # the 3 strongest of 4
    assert torch.equal(keep_indices(mask)[0], torch.tensor([i for i in range(16) if i not in (3, 5, 10)]))


@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.25, 0.5, 0.9])
def test_the_mask_ratio_is_respected(ratio):
    energy = torch.rand(5, 49, generator=torch.Generator().manual_seed(1))
    mask = most_textured(energy, ratio)
    assert (mask.sum(dim=1) == count_masked(49, ratio)).all()
    assert count_masked(49, ratio) == round(ratio * 49)
    assert keep_indices(mask).shape == (5, 49 - round(ratio * 49))
    # every masked patch is at least as textured as every kept one
    for e, m in zip(energy, mask, strict=True):
        if m.any():
            assert e[m].min() >= e[~m].max()


def test_zeroing_and_dropping_touch_exactly_the_masked_patches():
    batch = torch.randn(1, 3, 16, 16) + 5
    mask = torch.tensor([[True, False, False, True]])
    out = zero_patches(batch, mask, 8)
    assert (out[..., :8, :8] == 0).all() and (out[..., 8:, 8:] == 0).all()
    assert torch.equal(out[..., :8, 8:], batch[..., :8, 8:])
    assert torch.equal(out[..., 8:, :8], batch[..., 8:, :8])
    drop = TokenDrop()
    tokens = torch.arange(2 * 5 * 1, dtype=torch.float32).reshape(2, 5, 1)  # class token + 4 patches
    assert torch.equal(drop(tokens), tokens)  # nothing set: identity (evaluation, scans)
    drop.keep = torch.tensor([[1, 2], [0, 3]])
    assert drop(tokens)[:, :, 0].tolist() == [[0, 2, 3], [5, 6, 9]]
    assert torch.equal(drop(tokens), tokens)  # used once, then forgotten


# ---- the learning proof through the real CLI ----------------------------------------------------

@pytest.fixture(scope="module")
def planted(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("planted")
    sources = None
    if TRAIN_NATURAL.is_dir():
        found = sorted(str(p) for p in TRAIN_NATURAL.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
        sources = [found[i] for i in np.random.default_rng(0).permutation(len(found))[:120]] or None
    train = planted_pairs(root / "train", 48, 0, SIZE, sources[:96] if sources else None)
    test = planted_pairs(root / "test", 12, 1, SIZE, sources[96:] if sources else None)
    ckpt = texture_checkpoint(TINY64_CONFIG, root / "texture-vit.safetensors")
    return {"root": root, "train": train, "test": test, "clip": str(ckpt)}


def _finetune(planted, out, *extra) -> tuple[object, float | None]:
    nat, ai = planted["train"]
    res = CliRunner().invoke(main, [
        "finetune", "--natural", str(Path(nat[0]).parent), "--ai", str(Path(ai[0]).parent), "-o", str(out),
        "--backbone", str(TINY64_CONFIG), "--pretrained", "none", "--clip-weights", planted["clip"],
        "--epochs", "20", "--patience", "6", "--lr", "1e-3", "--batch-size", "8", "--views", "2",
        "--val-fraction", "0.25", "--workers", "0", "--threads", "1", "-q", *extra])
    m = re.search(r"held-out AUC ([0-9.]+)", res.output)
    return res, float(m.group(1)) if m else None


@pytest.fixture(scope="module")
def mpft_head(planted, tmp_path_factory):
    out = tmp_path_factory.mktemp("mpft") / "mpft"
    t = time.perf_counter()
    res, auc = _finetune(planted, out)
    assert res.exit_code == 0, res.output
    return {"prefix": out, "auc": auc, "output": res.output, "seconds": time.perf_counter() - t}


def test_finetune_learns_a_planted_artifact(mpft_head, planted):
    assert mpft_head["auc"] is not None and mpft_head["auc"] >= 0.9, mpft_head["output"]
    card = read_card(mpft_head["prefix"])
    assert card.kind == "mpft" and card.metrics["heldout_auc"] == mpft_head["auc"]
    assert card.training["mask"] == {"ratio": 0.25, "texture": "highpass", "mode": "drop"}
    assert card.training["heldout_natural"] == card.training["heldout_ai"] == 12
    # every training and held-out image is fingerprinted, so calibrate can refuse it
    assert len(card.training["natural_fingerprints"]) == len(card.training["ai_fingerprints"]) == 48
    # only the tuned tensors (last 2 blocks of 2, ln_post, proj) and the classifier are stored
    with safe_open(str(mpft_head["prefix"]) + ".safetensors", framework="pt") as f:
        keys = set(f.keys())
    assert {"classifier.weight", "classifier.bias", "visual.proj", "visual.ln_post.weight"} <= keys
    frozen = ("visual.conv1", "visual.positional", "visual.class_embedding")
    assert not any(k.startswith(frozen) for k in keys)


def test_mpft_head_reloads_bit_identically_and_ranks_fresh_pairs(mpft_head, planted):
    nat, ai = planted["test"]
    a = Detector.load(mpft_head["prefix"], device="cpu", clip_weights=planted["clip"], quiet=True)
    b = Detector.load(mpft_head["prefix"], device="cpu", clip_weights=planted["clip"], quiet=True)
    sa, sb = a.score_paths(nat + ai), b.score_paths(nat + ai)
    assert sa == sb and np.isfinite(sa).all()
    assert roc_auc(np.array(sa[:len(nat)]), np.array(sa[len(nat):])) >= 0.9  # never seen in training
    assert isinstance(a.backbone.visual.visual.patch_dropout, torch.nn.Identity)  # no masking at scan time


def test_scan_calibrate_and_evaluate_take_an_mpft_head(mpft_head, planted, tmp_path):
    root = planted["root"] / "test"
    report = tmp_path / "r.parquet"
    common = ["--weights", str(mpft_head["prefix"]), "--clip-weights", planted["clip"],
              "--workers", "0", "-q"]
    res = CliRunner().invoke(main, ["scan", str(root), "-o", str(report), *common])
    assert res.exit_code == 0, res.output
    rows = read_report(report).to_pylist()
    assert len(rows) == 24 and all(r["status"] == "ok" for r in rows)
    assert {r["label"] for r in rows} <= {"ai", "natural"} and rows[0]["threshold"] == 0.0  # logit 0
    nat = [r["score"] for r in rows if "/natural/" in r["path"]]
    ai = [r["score"] for r in rows if "/planted/" in r["path"]]
    assert roc_auc(np.array(nat), np.array(ai)) >= 0.9
    res = CliRunner().invoke(main, ["report", str(report), "-o", str(tmp_path / "r.html"), "-q"])
    assert res.exit_code == 0 and (tmp_path / "r.html").stat().st_size > 0, res.output
    res = CliRunner().invoke(main, ["evaluate", "--real", str(root / "natural"),
                                    "--fake", str(root / "planted"), *common])
    assert res.exit_code == 0 and "planted" in res.output, res.output
    copy = tmp_path / "cal"
    for suffix in (".safetensors", ".json"):
        copy.with_suffix(suffix).write_bytes(Path(str(mpft_head["prefix"]) + suffix).read_bytes())
    res = CliRunner().invoke(main, ["calibrate", "--natural", str(root / "natural"), "--policy", "fpr:0.1",
                                    *common[:-1], "--weights", str(copy)])
    assert res.exit_code == 0, res.output
    card = read_card(copy)
    assert card.threshold_policy == "fpr:0.1" and card.calibration_history[0]["policy"] == "logit:0"


def test_calibrate_with_held_out_ai_images_separates_planted_pairs(mpft_head, planted, tmp_path):
    head = tmp_path / "cal"
    for suffix in (".safetensors", ".json"):
        head.with_suffix(suffix).write_bytes(Path(str(mpft_head["prefix"]) + suffix).read_bytes())
    nat, ai = planted["test"]
    nat_dir, ai_dir = str(Path(nat[0]).parent), str(Path(ai[0]).parent)
    common = ["--weights", str(head), "--clip-weights", planted["clip"], "--workers", "0", "-q"]
    runner = CliRunner()
    res = runner.invoke(main, ["calibrate", "--natural", nat_dir, *common])  # balanced, no --ai
    assert res.exit_code == 2 and "pass --ai DIR" in res.output and "--policy fpr:X" in res.output
    assert "Traceback" not in res.output
    trained_ai = str(Path(planted["train"][1][0]).parent)
    res = runner.invoke(main, ["calibrate", "--natural", nat_dir, "--ai", trained_ai, *common])
    assert res.exit_code == 2 and "was used to train this head" in res.output, res.output
    assert "training.ai_fingerprints" in res.output
    assert read_card(head).threshold_policy == "logit:0"  # nothing written on refusal

    res = runner.invoke(main, ["calibrate", "--natural", nat_dir, "--ai", ai_dir, *common])
    assert res.exit_code == 0, res.output
    assert "validation: 12 natural photos + 12 AI images" in res.output
    block = read_card(head).threshold
    v = block["validation"]
    assert (v["positives"], v["natural_count"], v["ai_count"]) == ("ai images", 12, 12)
    assert v["ai_digest"] == training_digest([hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in ai])
    det = Detector.load(head, device="cpu", clip_weights=planted["clip"], quiet=True)
    scores = np.array(det.score_paths(nat + ai))
    sn, sa = scores[:12], scores[12:]
    assert block["value"] == pytest.approx(balanced_threshold(sn, sa).threshold, abs=1e-5)
    assert block["balanced_accuracy"] >= 0.9
    assert np.mean(sn < block["value"]) >= 0.9 and np.mean(sa >= block["value"]) >= 0.9
    assert block["tpr"] == pytest.approx(np.mean(sa >= block["value"]))


def test_a_flipped_loss_sign_fails_to_learn(planted, tmp_path):
    res, auc = _finetune(planted, tmp_path / "flipped", "--loss-sign", "-1")
    assert res.exit_code == 0, res.output
    history = read_card(tmp_path / "flipped").training["history"]
    assert auc < 0.9 and history[-1]["heldout_auc"] < 0.75, res.output


# ---- safety: mismatched backbones, card kinds, resume, the offline default ------------------------

def test_a_mismatched_backbone_is_refused(mpft_head, planted, backbone):
    with pytest.raises(WeightsError, match="does not belong to the backbone"):
        Detector(backbone, *load_head(mpft_head["prefix"]))  # the 224-pixel tiny ViT
    head, card, prefix = load_head(mpft_head["prefix"])
    same_shape = build_backbone(str(TINY64_CONFIG), "none", device="cpu", quiet=True)  # other weights
    with pytest.raises(WeightsError, match="does not belong"):
        Detector(same_shape, head, card, prefix)
    from aiiscan.models.kinds import mpft_net

    head.tuned["proj"] = torch.zeros(3, 3)
    with pytest.raises(WeightsError, match="another base backbone"):
        mpft_net.bind(same_shape, head)


def test_card_kinds_old_cards_and_unknown_kinds(head_prefix, mpft_head, tmp_path):
    raw = json.loads(Path(str(head_prefix) + ".json").read_text())
    raw.pop("kind", None)  # a card written before kinds existed
    old = tmp_path / "old"
    old.with_suffix(".json").write_text(json.dumps(raw))
    old.with_suffix(".safetensors").write_bytes(Path(str(head_prefix) + ".safetensors").read_bytes())
    assert load_head(old)[1].kind == "clip-flow"
    raw["kind"] = "gan-sniffer"
    old.with_suffix(".json").write_text(json.dumps(raw))
    with pytest.raises(WeightsError, match="kind 'gan-sniffer'"):
        load_head(old)
    mp = json.loads(Path(str(mpft_head["prefix"]) + ".json").read_text())
    mp["head"]["tensors"]["proj"] = [64, 65]  # the card no longer describes the file
    bad = tmp_path / "bad"
    bad.with_suffix(".json").write_text(json.dumps(mp))
    bad.with_suffix(".safetensors").write_bytes(Path(str(mpft_head["prefix"]) + ".safetensors").read_bytes())
    with pytest.raises(WeightsError, match="proj"):
        load_head(bad)


def test_finetune_usage_errors_exit_2_without_traceback(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["finetune", "--natural", str(tmp_path), "-o", str(tmp_path / "x")])
    assert res.exit_code == 2 and "--ai" in res.output and "Traceback" not in res.output
    res = runner.invoke(main, ["finetune", "--natural", str(tmp_path), "--ai", str(tmp_path), "-o",
                               str(tmp_path / "x"), "--mask-ratio", "1.5"])
    assert res.exit_code == 2
    out = runner.invoke(main, ["finetune", "--help"]).output
    for opt in ("--natural", "--natural-list", "--ai", "--ai-list", "--output", "--tune-blocks",
                "--mask-ratio", "--texture", "--mask-mode", "--epochs", "--patience", "--val-fraction",
                "--resume", "--seed", "--method", "--crop-step", "--no-trace-features", "--no-lp-init",
                "--overwrite", "--quiet", "--progress", "Examples:"):
        assert opt in out


def test_default_backbone_offline_fails_fast_with_a_message(tmp_path):
    env = {"HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin",
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "aiiscan", "finetune", "--natural", str(tmp_path), "--ai", str(tmp_path),
         "-o", str(tmp_path / "x")], capture_output=True, text=True, env=env, timeout=60)
    assert time.perf_counter() - t < 30
    assert proc.returncode == 2, proc.stderr
    assert "CLIP weights for ViT-L-14/openai are not on this machine" in proc.stderr
    assert "--clip-weights" in proc.stderr and "Traceback" not in proc.stderr
    assert not os.path.exists(tmp_path / "x.json")


def test_mpft_heads_from_before_trace_features_still_load_and_score(planted, mpft_head, tmp_path):
    """Issue 28 widened the classifier (embedding + first-layer energies). A card without
    ``head.features`` is a head from before: it loads and scores as the embedding-only network it
    was; a widened file under such a card is refused with a clear message."""
    from aiiscan.options import FinetuneOptions
    from aiiscan.tasks.finetune import finetune

    assert read_card(mpft_head["prefix"]).head.features == "embedding+first-layer"
    bb = build_backbone(str(TINY64_CONFIG), "none", clip_weights=planted["clip"], device="cpu", quiet=True)
    nat, ai = planted["train"]
    cfg = FinetuneOptions(epochs=1, batch_size=8, views=1, workers=0, trace_features=False, lp_init=False)
    finetune(bb, nat[:8], ai[:8], tmp_path / "old", cfg, progress=False, own_backbone=True)
    raw = json.loads((tmp_path / "old.json").read_text())
    for key in ("features", "trace_dim"):
        raw["head"].pop(key)  # the card as aiiscan wrote it before issue 28
    (tmp_path / "old.json").write_text(json.dumps(raw))
    det = Detector.load(tmp_path / "old", device="cpu", clip_weights=planted["clip"], quiet=True)
    assert det.card.head.features == "embedding" and np.isfinite(det.score_paths(nat[:2])).all()
    widened = json.loads(Path(str(mpft_head["prefix"]) + ".json").read_text())
    for key in ("features", "trace_dim"):
        widened["head"].pop(key)
    (tmp_path / "wide.json").write_text(json.dumps(widened))
    (tmp_path / "wide.safetensors").write_bytes(Path(str(mpft_head["prefix"]) + ".safetensors").read_bytes())
    with pytest.raises(WeightsError, match="classifier.weight"):
        load_head(tmp_path / "wide")
