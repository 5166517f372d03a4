"""Training a CLIP-Flow head on natural photos and their proxies (docs/method.md).

The frozen backbone dominates the cost, so features are extracted through the scan's own
decode stage and scorer, then the head trains on them. ``views=0`` draws a fresh crop and a
fresh proxy for every image every epoch (the paper's way, good on a GPU); ``views=K`` extracts
K augmented views once and each epoch picks one per image (K backbone passes in total instead
of one per epoch: what makes CPU training possible).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..card import ModelCard
from ..decode.job import RADIAL, DecodeJob, Variant
from ..errors import AiiscanError
from ..files import now_iso
from ..models.backbone import ClipBackbone
from ..models.batcher import feature_batches
from ..models.headfile import save_head
from ..models.kinds.flow import FlowConfig
from ..models.kinds.flow_net import FlowHead, clip_flow_loss
from ..options import TrainOptions
from ..progress import bar
from .checkpoint import Checkpoint
from .datasets import FOUND_HOW
from .metrics import roc_auc


class TrainingError(AiiscanError):
    """Training cannot go on; the message says why and what to change."""


@dataclass
class FeatureSet:
    """Features of the files that decoded, per variant, aligned row by row."""

    paths: list[str]
    sha256: list[str]
    by_variant: list[torch.Tensor]
    failed: list[tuple[str, str]]


def extract(backbone: ClipBackbone, paths: Sequence[str], variants: tuple[Variant, ...],
            seed: tuple[int, ...] | None, workers: int | None, batch_size: int = 64,
            desc: str | None = None, fast_decode: bool = True) -> FeatureSet:
    """Decode each file once into its variants and run the frozen backbone over them."""
    jobs = (DecodeJob(p, backbone.image_size, variants, None if seed is None else (*seed, i),
                      fast_decode=fast_decode) for i, p in enumerate(paths))
    ok_paths, shas, failed = [], [], []
    chunks: list[torch.Tensor] = []
    with bar(total=len(paths), desc=desc, show=desc is not None) as progress:
        for batch in feature_batches(backbone.features, jobs, batch_size, workers):
            for res in batch.results:
                if res.status != "ok":
                    failed.append((res.path, res.error or "unknown error"))
                else:
                    ok_paths.append(res.path)
                    shas.append(res.info["sha256"])
            if batch.features is not None:
                chunks.append(batch.features.cpu())
            progress.update(len(batch.results))
    dim = backbone.identity.feature_dim
    stacked = torch.cat(chunks) if chunks else torch.zeros(0, len(variants), dim)
    return FeatureSet(ok_paths, shas, [stacked[:, v] for v in range(len(variants))], failed)


def _variants(cfg: TrainOptions) -> tuple[Variant, ...]:
    return {"N": (None,), "P": (cfg.proxy,), "N+P": (None, cfg.proxy)}[cfg.mode]


def _split(cfg: TrainOptions, fs_feats: list[torch.Tensor]) -> tuple[torch.Tensor | None, ...]:
    if cfg.mode == "N":
        return fs_feats[0], None
    if cfg.mode == "P":
        return None, fs_feats[0]
    return fs_feats[0], fs_feats[1]


def training_digest(shas: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(shas)).encode()).hexdigest()


@torch.no_grad()
def validation_auc(head: FlowHead, val: FeatureSet | None) -> float | None:
    """Separation of band-(30,100) copies from their originals: a sanity signal, not quality."""
    if val is None or len(val.paths) < 1:
        return None
    head.eval()
    s_orig = head(val.by_variant[0]).numpy()
    s_pert = head(val.by_variant[1]).numpy()
    head.train()
    if not (np.isfinite(s_orig).all() and np.isfinite(s_pert).all()):
        return float("nan")
    return roc_auc(s_orig, s_pert)


def _steps(head: FlowHead, opt: torch.optim.Optimizer, nat: torch.Tensor | None, prox: torch.Tensor | None,
           order: torch.Tensor, cfg: TrainOptions, epoch: int, progress: bool) -> list[float]:
    """One epoch of optimiser steps over ``order``; the losses. A non-finite loss stops training
    with what to change (the proxy term is unbounded below)."""
    dev = next(head.parameters()).device
    losses: list[float] = []
    steps = bar(range(0, len(order), cfg.batch_size), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                unit="step", show=progress)
    for step, start in enumerate(steps):
        idx = order[start:start + cfg.batch_size]
        s_nat = head(nat[idx].to(dev)) if nat is not None else None
        s_prox = head(prox[idx].to(dev)) if prox is not None else None
        loss = clip_flow_loss(s_nat, s_prox, cfg.mode, cfg.proxy_margin)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"non-finite loss at epoch {epoch + 1}, step {step + 1}: the proxy term is "
                "unbounded. Lower --lr, use --proxy-margin, or keep an earlier checkpoint.")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), cfg.grad_clip)
        opt.step()
        losses.append(loss.item())
        steps.set_postfix(loss=f"{losses[-1]:.4g}")
    return losses


def _training(cfg: TrainOptions, fs: FeatureSet, val: FeatureSet | None, best_epoch: int | None,
              history: list[dict]) -> dict:
    """The card's training block: the settings, and what the head learnt from."""
    return {
        **cfg.to_dict(),
        "natural_count": len(fs.paths),
        "natural_failed": len(fs.failed),
        "natural_digest": training_digest(fs.sha256),
        # Short content fingerprints let `calibrate` refuse photos used in training.
        "natural_fingerprints": sorted(s[:16] for s in fs.sha256),
        "validation_count": 0 if val is None else len(val.paths),
        "kept_epoch": best_epoch,
        "kept_by": "validation band-(30,100) AUC" if val is not None else "last epoch",
        "history": history,
    }


def train(backbone: ClipBackbone, natural: Sequence[str], out: str | Path, cfg: TrainOptions,
          validation: Sequence[str] | None = None, resume: bool = False,
          backbone_source: str | None = None, progress: bool = True,
          on_epoch: Callable[[dict], None] | None = None,
          echo: Callable[[str], None] | None = None) -> ModelCard:
    """Train a head and write ``out.safetensors`` + ``out.json``; returns the model card.

    ``progress`` draws bars; ``echo`` receives one line per epoch (the CLI sends it to stderr)."""
    out = Path(out)
    if len(natural) < 2:
        raise TrainingError(f"training needs at least 2 natural photos, got {len(natural)}. {FOUND_HOW}")
    torch.manual_seed(cfg.seed)
    head_cfg = FlowConfig(backbone.identity.feature_dim, cfg.dim, cfg.blocks, cfg.hidden,
                          cfg.clamp, permutation_seed=cfg.seed)
    head = FlowHead(head_cfg).to(backbone.device).train()
    opt = torch.optim.Adam(head.parameters(), lr=cfg.lr)
    ckpt = Checkpoint(out, "training", TrainingError)
    fingerprint = hashlib.sha256(json.dumps(
        [cfg.to_dict(), backbone.identity.to_dict(), sorted(natural)], sort_keys=True).encode()
    ).hexdigest()
    start_epoch, history = 0, []
    best_state = {k: v.detach().cpu().clone() for k, v in head.state_dict().items()}
    best_epoch, best_auc = None, -math.inf
    resumed = ckpt.start(resume, fingerprint, opt, echo)
    if resumed:
        meta, state, best_state = resumed
        head.load_state_dict(state)
        start_epoch, history = meta["epoch"], meta["history"]
        best_epoch, best_auc = meta["best_epoch"], meta["best_auc"]
        best_auc = -math.inf if best_auc is None else best_auc

    variants = _variants(cfg)
    fast = not cfg.exact_decode
    val = None
    if validation:
        val = extract(backbone, validation, (None, RADIAL), None, cfg.workers, fast_decode=fast,
                      desc="validation features" if progress else None)
        if len(val.paths) < 2:
            raise TrainingError(f"only {len(val.paths)} of the {len(validation)} validation photos could be "
                                "read: the epoch kept needs at least 2 (see --val-natural)")
        if echo is not None and len(val.paths) < len(validation):
            echo(f"warning: {len(validation) - len(val.paths)} of the {len(validation)} validation photos "
                 "could not be read and were left out")
    cached: list[FeatureSet] = []
    if cfg.views > 0:
        for v in range(cfg.views):
            cached.append(extract(backbone, natural, variants, (cfg.seed, 1_000_000 + v), cfg.workers,
                                  desc=f"view {v + 1}/{cfg.views}" if progress else None, fast_decode=fast))
    kept = None

    for epoch in range(start_epoch, cfg.epochs):
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        if cached:
            n = len(cached[0].paths)
            pick = torch.randint(len(cached), (n,), generator=gen)
            feats = [torch.stack([c.by_variant[j] for c in cached])[pick, torch.arange(n)]
                     for j in range(len(variants))]
            fs = cached[0]
        else:
            fs = extract(backbone, natural, variants, (cfg.seed, epoch), cfg.workers,
                         desc=f"epoch {epoch + 1} features" if progress else None, fast_decode=fast)
            feats = fs.by_variant
        kept = fs
        if len(fs.paths) < 2:
            raise TrainingError(f"only {len(fs.paths)} natural photos could be decoded: "
                                + "; ".join(f"{p}: {e}" for p, e in fs.failed[:3]))
        nat, prox = _split(cfg, feats)
        order = torch.randperm(len(fs.paths), generator=gen)
        losses = _steps(head, opt, nat, prox, order, cfg, epoch, progress)
        auc = validation_auc(head, val)
        record = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_auc": auc}
        history.append(record)
        if val is None or (auc is not None and auc == auc and auc > best_auc):
            best_auc = auc if auc is not None else best_auc
            best_epoch = epoch + 1
            best_state = {k: v.detach().cpu().clone() for k, v in head.state_dict().items()}
        if echo:
            echo(f"epoch {epoch + 1}/{cfg.epochs}  loss {record['loss']:.5g}"
                + (f"  val band-(30,100) AUC {auc:.4f}" if auc is not None else ""))
        ckpt.save(head.state_dict(), best_state, opt, {
            "epoch": epoch + 1, "history": history, "best_epoch": best_epoch,
            "best_auc": None if best_auc == -math.inf else best_auc, "fingerprint": fingerprint})
        if on_epoch:
            on_epoch(record)

    head.load_state_dict(best_state)
    fs = kept if kept is not None else extract(backbone, natural, (None,), None, cfg.workers,
                                               fast_decode=fast)
    card = ModelCard(
        created=now_iso(),
        backbone={**backbone.identity.to_dict(), "source": backbone_source or backbone.source},
        head=head_cfg, training=_training(cfg, fs, val, best_epoch, history),
        metrics={"validation_band_auc": None if best_auc == -math.inf else best_auc},
    )
    card = save_head(out, head.cpu(), card)
    ckpt.remove()
    return card
