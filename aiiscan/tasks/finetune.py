"""Fine-tuning an MPFT head on natural photos and a few hundred AI images (``aiiscan finetune``).

MPFT as we read arXiv 2601.03586 (README, "MPFT, as we read it"): the last ``tune_blocks`` blocks
of the CLIP ViT (and its final norm and projection) plus a linear classifier are trained with
binary cross-entropy (label 1 = AI), and in every training step the most-textured fraction of
each crop's ViT patches is masked (``masking.py``), so that the model cannot lean on the
high-frequency textures where one generator's fingerprints sit. Nothing is masked at evaluation
or scan time.

Since issue 28 (docs/mpft.md, with the measured table) three defaults let it learn pixel-level
traces that the frozen first layer carries: the classifier also reads that layer's log mean
absolute response per filter over the unmasked patches (``trace_features``, ``mpft_net``); it
starts from a linear probe on the frozen features, its penalty chosen by held-out AUC (LP-FT,
``lp_init``; the probe is "epoch 0" and may be the one kept); and random training crops sit
``crop_step`` (8) pixels apart from the centre crop, so a JPEG or upsampling grid keeps the
phase the scan's centre crop gives it.

Data: the same decode stage as scans (``pipeline.decode_stream`` of ``DecodeJob``s: random crop
and flip per seed while training, centre crop for the held-out split). ``views=0`` decodes fresh
augmented crops every epoch; ``views=K`` decodes K views once and each epoch picks one per photo
(cheaper on a CPU). Crops are held in memory (150 KB each at 224x224): a few thousand images
need a few hundred MB.

Held-out split: ``val_fraction`` of each class, drawn with the seed, never trained on. After
every epoch the held-out AUC is measured, the best epoch is kept, and training stops after
``patience`` epochs without improvement. The AUC printed is the kept epoch's: it chose that
epoch, so it is slightly optimistic; score a separate labelled set (``aiiscan evaluate``) for an
unbiased figure. A checkpoint (safetensors + JSON, no pickle) is written after each epoch;
``resume=True`` continues from it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..card import ModelCard
from ..files import now_iso
from ..models.backbone import ClipBackbone, normalize
from ..models.headfile import save_head
from ..models.kinds.mpft import KIND, MpftConfig
from ..models.kinds.mpft_net import FirstLayerEnergy, MpftHead, trace_width, tuned_names
from ..options import FinetuneOptions, MaskSpec
from ..progress import bar
from .checkpoint import Checkpoint
from .labelled import LOGIT_THRESHOLD, Crops, FinetuneError, decode_crops, split, training_block
from .masking import TokenDrop, keep_indices, most_textured, texture_energy, zero_patches
from .metrics import roc_auc
from .probe import best_probe, train_probe


def _classifier(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("classifier."):]: v for k, v in state.items() if k.startswith("classifier.")}


class _Model:
    """The trainable pieces: the backbone's image tower (last blocks tuned, ``TokenDrop`` in
    place of its patch dropout; with ``trace_features``, wrapped in ``FirstLayerEnergy``) and the
    classifier."""

    def __init__(self, backbone: ClipBackbone, cfg: FinetuneOptions, own: bool):
        visual = backbone.visual if own else copy.deepcopy(backbone.visual)
        try:
            self.names = tuned_names(visual, cfg.tune_blocks, cfg.tune_patch_embed)
        except ValueError as exc:
            raise FinetuneError(str(exc)) from None
        ps = visual.patch_size
        self.patch = int(ps[0] if isinstance(ps, (tuple, list)) else ps)
        if backbone.image_size % self.patch:
            raise FinetuneError(f"crop {backbone.image_size} is not a multiple of the patch size "
                                f"{self.patch}")
        self.visual = visual.eval().requires_grad_(False)
        self._saved_dropout = visual.patch_dropout
        self.drop = TokenDrop()
        visual.patch_dropout = self.drop
        params = dict(visual.named_parameters())
        self.tuned = [params[n].requires_grad_(True) for n in self.names]
        self.tower = FirstLayerEnergy(visual) if cfg.trace_features else visual
        self.trace_dim = trace_width(visual) if cfg.trace_features else 0
        width = backbone.identity.feature_dim + self.trace_dim
        self.classifier = torch.nn.Linear(width, 1).to(backbone.device)
        self.backbone = backbone

    def parameters(self) -> list[torch.nn.Parameter]:
        return [*self.tuned, *self.classifier.parameters()]

    def state(self) -> dict[str, torch.Tensor]:
        out = {f"visual.{n}": p.detach().cpu().clone() for n, p in zip(self.names, self.tuned, strict=True)}
        head = self.classifier.state_dict()
        out.update({f"classifier.{k}": v.detach().cpu().clone() for k, v in head.items()})
        return out

    def load(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for n, p in zip(self.names, self.tuned, strict=True):
                p.copy_(state[f"visual.{n}"].to(p.device, p.dtype))
            self.classifier.load_state_dict(_classifier(state))

    def features(self, crops: np.ndarray, mask: MaskSpec | None) -> torch.Tensor:
        """What the classifier reads from uint8 HWC crops; ``mask`` (training steps only) masks
        textured patches (from the transformer and from the first-layer energies alike)."""
        bb = self.backbone
        x = normalize(crops, bb.mean, bb.std, bb.device)
        if mask is not None and mask.ratio > 0:
            energy = texture_energy(torch.as_tensor(crops).to(bb.device), self.patch, mask.texture)
            masked = most_textured(energy, mask.ratio)
            if mask.mode == "drop":
                self.drop.keep = keep_indices(masked)
            else:
                x = zero_patches(x, masked, self.patch)
            if isinstance(self.tower, FirstLayerEnergy):
                self.tower.keep = ~masked
        dtype = bb.autocast_dtype
        with torch.autocast(bb.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            return self.tower(x).float()

    def logits(self, crops: np.ndarray, mask: MaskSpec | None) -> torch.Tensor:
        return self.classifier(self.features(crops, mask)).squeeze(-1)

    def probe_start(self, train: Crops, val: Crops, cfg: FinetuneOptions,
                    echo: Callable[[str], None] | None) -> float:
        """LP-FT: the classifier becomes a linear probe on the unmasked features of the tower as it
        starts (``tasks/probe.py``, its penalty chosen by held-out AUC); that AUC."""
        @torch.no_grad()
        def feats(crops: Crops) -> torch.Tensor:
            return torch.cat([self.features(np.stack(crops.arrays[i:i + cfg.batch_size]), None).cpu()
                              for i in range(0, len(crops.arrays), cfg.batch_size)])

        y = torch.tensor(train.labels, dtype=torch.float32)
        try:
            auc, l2, w, b, _ = best_probe(feats(train), y, feats(val), val.labels, cfg.loss_sign)
        except ValueError as exc:
            raise FinetuneError(str(exc)) from None
        with torch.no_grad():
            self.classifier.weight.copy_(w[None].to(self.classifier.weight.device))
            self.classifier.bias.copy_(b.reshape(1).to(self.classifier.bias.device))
        if echo:
            echo(f"linear probe start (LP-FT): l2 {l2:g}, held-out AUC {auc:.4f}")
        return auc

    @torch.inference_mode()
    def scores(self, crops: list[np.ndarray], batch_size: int) -> np.ndarray:
        out = [self.logits(np.stack(crops[i:i + batch_size]), None).float().cpu().numpy()
               for i in range(0, len(crops), batch_size)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def restore(self) -> None:
        self.visual.patch_dropout = self._saved_dropout
        self.visual.requires_grad_(False)


def _steps(model: _Model, opt: torch.optim.Optimizer, batches: Iterator[tuple[np.ndarray, torch.Tensor]],
           cfg: FinetuneOptions, epoch: int, n: int, progress: bool) -> list[float]:
    """One epoch of optimiser steps (masking in every step); the losses."""
    losses: list[float] = []
    device = model.backbone.device
    with bar(total=(n + cfg.batch_size - 1) // cfg.batch_size, desc=f"epoch {epoch + 1}/{cfg.epochs}",
             unit="step", show=progress) as steps:
        for batch, y in batches:
            logits = model.logits(batch, cfg.mask)
            loss = cfg.loss_sign * F.binary_cross_entropy_with_logits(logits, y.to(device))
            if not torch.isfinite(loss):
                raise FinetuneError(f"non-finite loss at epoch {epoch + 1}: lower --lr / --head-lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            losses.append(loss.item())
            steps.update(1)
            steps.set_postfix(loss=f"{losses[-1]:.4g}")
    return losses


def finetune(backbone: ClipBackbone, natural: Sequence[str], ai: Sequence[str], out: str | Path,
             cfg: FinetuneOptions, resume: bool = False, backbone_source: str | None = None,
             progress: bool = True, own_backbone: bool = False,
             on_epoch: Callable[[dict], None] | None = None,
             echo: Callable[[str], None] | None = None) -> ModelCard:
    """Fine-tune an MPFT head (``cfg.method="probe"``: fit a linear probe, ``tasks/probe.py``) and
    write ``out.safetensors`` + ``out.json``; returns the card.

    ``own_backbone``: the backbone was built for this run and may be changed in place (the CLI);
    otherwise its image tower is copied first and the caller's backbone stays as it was.
    """
    if cfg.method == "probe":
        return train_probe(backbone, natural, ai, out, cfg, progress, echo, backbone_source)
    out = Path(out)
    tr_paths, tr_labels, va_paths, va_labels = split(natural, ai, cfg.val_fraction, cfg.seed)
    torch.manual_seed(cfg.seed)
    model = _Model(backbone, cfg, own_backbone)
    opt = torch.optim.AdamW([{"params": model.tuned, "lr": cfg.lr},
                             {"params": list(model.classifier.parameters()), "lr": cfg.head_lr}],
                            weight_decay=cfg.weight_decay)
    ckpt = Checkpoint(out, "fine-tuning", FinetuneError)
    fingerprint = hashlib.sha256(json.dumps(
        [cfg.to_dict(), backbone.identity.to_dict(), sorted(natural), sorted(ai)], sort_keys=True).encode()
    ).hexdigest()
    start, history, bad = 0, [], 0
    best_state, best_epoch, best_auc = model.state(), None, -math.inf
    resumed = ckpt.start(resume, fingerprint, opt, echo)
    if resumed:
        meta, state, best_state = resumed
        model.load(state)
        start, history, bad = meta["epoch"], meta["history"], meta["bad_epochs"]
        best_epoch = meta["best_epoch"]
        best_auc = -math.inf if meta["best_auc"] is None else meta["best_auc"]

    size, fast = backbone.image_size, not cfg.exact_decode
    try:
        val = decode_crops(va_paths, va_labels, size, None, cfg.workers, fast,
                           desc="held-out images" if progress else None)
        views = [decode_crops(tr_paths, tr_labels, size, (cfg.seed, 1_000_000 + v), cfg.workers, fast,
                              desc=f"view {v + 1}/{cfg.views}" if progress else None, step=cfg.crop_step)
                 for v in range(cfg.views)]
        for what, label in (("natural photos", 0), ("AI images", 1)):
            if val.labels.count(label) < 1:
                raise FinetuneError(f"none of the held-out {what} could be decoded: "
                                    + "; ".join(f"{p}: {e}" for p, e in val.failed[:3]))
        if cfg.lp_init and not resumed:
            first = views[0] if views else decode_crops(tr_paths, tr_labels, size, (cfg.seed, 0), cfg.workers,
                                                        fast, step=cfg.crop_step)
            best_auc, best_epoch, best_state = model.probe_start(first, val, cfg, echo), 0, model.state()
            history.append({"epoch": 0, "loss": None, "heldout_auc": best_auc})
        crops = views[0] if views else None
        stopped_early = False
        for epoch in range(start, cfg.epochs):
            if not views:
                crops = decode_crops(tr_paths, tr_labels, size, (cfg.seed, epoch), cfg.workers, fast,
                                     desc=f"epoch {epoch + 1} images" if progress else None,
                                     step=cfg.crop_step)
            gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
            n = len(crops.paths)
            if len(set(crops.labels)) < 2:
                raise FinetuneError("the training split lost a whole class to unreadable files: "
                                    + "; ".join(f"{p}: {e}" for p, e in crops.failed[:3]))
            pick = torch.randint(len(views), (n,), generator=gen).tolist() if views else [0] * n
            source = views or [crops]
            order = torch.randperm(n, generator=gen).tolist()
            batches = (np.stack([source[pick[i]].arrays[i] for i in order[at:at + cfg.batch_size]])
                       for at in range(0, n, cfg.batch_size))
            ys = (torch.tensor([crops.labels[i] for i in order[at:at + cfg.batch_size]], dtype=torch.float32)
                  for at in range(0, n, cfg.batch_size))
            losses = _steps(model, opt, zip(batches, ys, strict=True), cfg, epoch, n, progress)
            s = model.scores(val.arrays, cfg.batch_size)
            lab = np.asarray(val.labels)
            auc = roc_auc(s[lab == 0], s[lab == 1]) if np.isfinite(s).all() else float("nan")
            record = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "heldout_auc": auc}
            history.append(record)
            if auc == auc and auc > best_auc:
                best_auc, best_epoch, bad = auc, epoch + 1, 0
                best_state = model.state()
            else:
                bad += 1
            if echo:
                echo(f"epoch {epoch + 1}/{cfg.epochs}  loss {record['loss']:.5g}  held-out AUC {auc:.4f}")
            ckpt.save(model.state(), best_state, opt, {
                "epoch": epoch + 1, "history": history, "best_epoch": best_epoch, "bad_epochs": bad,
                "best_auc": None if best_auc == -math.inf else best_auc, "fingerprint": fingerprint})
            if on_epoch:
                on_epoch(record)
            if bad >= cfg.patience and epoch + 1 < cfg.epochs:
                stopped_early = True
                if echo:
                    echo(f"no held-out improvement for {bad} epochs: stopping early")
                break
        model.load(best_state)
        head = MpftHead(MpftConfig(backbone.identity.feature_dim, cfg.tune_blocks,
                                   {n: list(p.shape) for n, p in zip(model.names, model.tuned, strict=True)},
                                   "embedding+first-layer" if model.trace_dim else "embedding",
                                   model.trace_dim))
        head.classifier.load_state_dict(_classifier(best_state))
        head.tuned = {k[7:]: v for k, v in best_state.items() if k.startswith("visual.")}
    finally:
        model.restore()
    seen = crops if crops is not None else val
    card = ModelCard(
        kind=KIND.name,
        created=now_iso(),
        backbone={**backbone.identity.to_dict(), "source": backbone_source or backbone.source},
        head=head.config,
        training={**training_block(cfg.to_dict(), natural, ai, seen, val, history), "kept_epoch": best_epoch,
                  "kept_by": "held-out AUC", "stopped_early": stopped_early},
        threshold=dict(LOGIT_THRESHOLD),
        metrics={"heldout_auc": None if best_auc == -math.inf else best_auc},
    )
    card = save_head(out, head, card)
    ckpt.remove()
    return card
