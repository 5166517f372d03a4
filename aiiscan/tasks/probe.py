"""A linear probe on frozen backbone features (``aiiscan finetune --method probe``), and the
logistic regression that MPFT's LP-FT start shares with it.

The probe is UnivFD's baseline (a logistic regression on the frozen CLIP embedding), the cheapest
detector for users who hold AI images; it reads the final image embedding, the features every
CLIP-Flow head on the same backbone reads, so a multi-head scan computes them once for both.

Fitting: features are standardised on the training split, the regression (mean binary
cross-entropy + ``l2``/2 (||w||^2 + b^2); the bias is penalised too, so that even a flipped loss
stays bounded) is solved by L-BFGS, and the standardisation is folded
into the weights, so the head file holds one plain linear layer. ``l2`` is chosen from ``L2_GRID``
by the AUC on a seeded held-out split of each class (ties: the stronger penalty); that AUC is the
one printed and recorded, and it chose ``l2``, so it is slightly optimistic. Training crops are
``views`` seeded random crops + flips per photo (each a sample; at least one), held-out crops are
centre crops, as a scan sees them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..card import ModelCard
from ..files import now_iso
from ..models.backbone import ClipBackbone
from ..models.headfile import save_head
from ..models.kinds.probe import KIND, ProbeConfig
from ..models.kinds.probe_net import ProbeHead
from ..options import FinetuneOptions
from .labelled import LOGIT_THRESHOLD, FinetuneError, decode_crops, split, training_block
from .metrics import roc_auc

L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)  # on standardised features: from nearly none to strong


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float, sign: float = 1.0
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights ``[D]`` and bias ``[]`` of an L2-regularised logistic regression of ``y`` (0/1) on
    ``x`` ``[N, D]``, fitted on standardised features and returned for the raw ones. ``sign``:
    -1 flips the loss (tests: it must fail to learn)."""
    x = x.double()
    mu, sd = x.mean(dim=0), x.std(dim=0).clamp(min=1e-8) if len(x) > 1 else torch.ones(x.shape[1])
    z, yd = (x - mu) / sd, y.double()
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=300, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = sign * F.binary_cross_entropy_with_logits(z @ w + b, yd) + 0.5 * l2 * (w.pow(2).sum() + b * b)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w_raw = (w / sd).detach()
    return w_raw.float(), (b - (w_raw * mu).sum()).detach().float()


@torch.inference_mode()
def frozen_features(backbone: ClipBackbone, arrays: Sequence[np.ndarray], batch_size: int) -> torch.Tensor:
    """The backbone's features of uint8 HWC crops, on the CPU (what every frozen head reads)."""
    out = [backbone.features(np.stack(arrays[i:i + batch_size])).float().cpu()
           for i in range(0, len(arrays), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, backbone.identity.feature_dim)


def _auc(scores: torch.Tensor, labels: Sequence[int]) -> float:
    s, lab = scores.numpy(), np.asarray(labels)
    return roc_auc(s[lab == 0], s[lab == 1]) if np.isfinite(s).all() else float("nan")


def best_probe(x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor, val_labels: Sequence[int],
               sign: float = 1.0, echo: Callable[[str], None] | None = None
               ) -> tuple[float, float, torch.Tensor, torch.Tensor, list[dict]]:
    """A probe per ``L2_GRID`` penalty on ``x``/``y``; the one with the best held-out AUC on ``xv``:
    (AUC, l2, weights, bias, every penalty's AUC)."""
    history, best = [], None
    for l2 in sorted(L2_GRID, reverse=True):  # strongest first: a tie keeps the stronger penalty
        w, b = fit_logistic(x, y, l2, sign)
        auc = _auc(xv @ w + b, val_labels)
        history.append({"l2": l2, "heldout_auc": auc})
        if echo:
            echo(f"probe l2 {l2:g}  held-out AUC {auc:.4f}")
        if auc == auc and (best is None or auc > best[0]):
            best = (auc, l2, w, b)
    if best is None:
        raise ValueError("the probe's held-out scores are not finite for any l2: the features are not "
                         "finite on these images")
    return (*best, history)


def train_probe(backbone: ClipBackbone, natural: Sequence[str], ai: Sequence[str], out: str | Path,
                cfg: FinetuneOptions, progress: bool = True,
                echo: Callable[[str], None] | None = None, backbone_source: str | None = None) -> ModelCard:
    """Fit a probe and write ``out.safetensors`` + ``out.json``; returns the card."""
    tr_paths, tr_labels, va_paths, va_labels = split(natural, ai, cfg.val_fraction, cfg.seed)
    size, fast = backbone.image_size, not cfg.exact_decode
    val = decode_crops(va_paths, va_labels, size, None, cfg.workers, fast,
                       desc="held-out images" if progress else None)
    views = [decode_crops(tr_paths, tr_labels, size, (cfg.seed, 1_000_000 + v), cfg.workers, fast,
                          desc=f"view {v + 1}/{max(1, cfg.views)}" if progress else None, step=cfg.crop_step)
             for v in range(max(1, cfg.views))]
    for what, label in (("natural photos", 0), ("AI images", 1)):
        if val.labels.count(label) < 1 or views[0].labels.count(label) < 1:
            raise FinetuneError(f"none of the training or held-out {what} could be decoded: "
                                + "; ".join(f"{p}: {e}" for p, e in [*val.failed, *views[0].failed][:3]))
    x = torch.cat([frozen_features(backbone, v.arrays, cfg.batch_size) for v in views])
    y = torch.tensor([lab for v in views for lab in v.labels], dtype=torch.float32)
    xv = frozen_features(backbone, val.arrays, cfg.batch_size)
    try:
        auc, l2, w, b, history = best_probe(x, y, xv, val.labels, cfg.loss_sign, echo)
    except ValueError as exc:
        raise FinetuneError(str(exc)) from None
    head = ProbeHead(ProbeConfig(backbone.identity.feature_dim, "embedding", l2))
    with torch.no_grad():
        head.classifier.weight.copy_(w[None])
        head.classifier.bias.copy_(b.reshape(1))
    settings = {"method": "probe", "features": "embedding", "l2_grid": list(L2_GRID), "views": cfg.views,
                "crop_step": cfg.crop_step,
                "val_fraction": cfg.val_fraction, "seed": cfg.seed, "exact_decode": cfg.exact_decode}
    if cfg.loss_sign != 1.0:
        settings["loss_sign"] = cfg.loss_sign
    card = ModelCard(
        kind=KIND.name, created=now_iso(),
        backbone={**backbone.identity.to_dict(), "source": backbone_source or backbone.source},
        head=head.config,
        training={**training_block(settings, natural, ai, views[0], val, history), "kept_by": "held-out AUC"},
        threshold=dict(LOGIT_THRESHOLD),
        metrics={"heldout_auc": auc},
    )
    return save_head(out, head, card)
