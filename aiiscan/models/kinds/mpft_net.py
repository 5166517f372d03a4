"""The MPFT head: a partially fine-tuned CLIP-ViT with a binary (logit) head.

MPFT, "Masking-based Pre-trained model Fine-Tuning" (Niu, Chen, Zhang, arXiv 2601.03586), as we
read its abstract (README, "MPFT, as we read it"). Which layers are tuned is not stated; we tune
the **last N transformer blocks** of the image tower plus its final norm and projection
(``ln_post``, ``proj``), and a linear classifier on the image embedding. Why not low-rank adapters
(LoRA, e.g. via peft): open_clip's blocks use ``nn.MultiheadAttention`` with a fused
``in_proj_weight``, which peft's LoRA does not wrap as a plain ``nn.Linear``; adding peft (and its
transformers/accelerate dependencies) to the base install for that is not worth it, while tuning
whole last blocks needs no new code path in open_clip, keeps the early (generic, low-level)
features of the pre-trained model frozen, and is the usual partial fine-tuning recipe for a few
hundred images. The price: the tuned tensors are large (about 50 MB per ViT-L/14 block in
float32), where adapters would be a few MB. ``--tune-blocks`` chooses N.

On disk (``weights.save_head``): safetensors with only the tuned tensors (``visual.<name>``, as
named in open_clip's image tower) and ``classifier.weight`` / ``classifier.bias``; the card lists
every tuned tensor's name and shape, so they are checked against the file's header before anything
is allocated, and against the backbone when the head is bound to it: a head tuned from another
base backbone is refused.

Score: the classifier's logit, so "higher = more likely AI", as for CLIP-Flow; 0 is p = 0.5.

Features (``MpftConfig.features``): ``embedding`` (heads written before issue 28) reads the image
embedding alone; ``embedding+first-layer`` (the default since) also reads, per filter of the
frozen patch embedding, the log mean absolute response over the patches (``FirstLayerEnergy``).
Why: a pixel-level trace spread over the image (a checkerboard, a resampling or JPEG grid)
changes those energies linearly and strongly, but a few hundred images and a few epochs do not
teach the tuned last blocks to recover it through layer norms and attention (docs/mpft.md, the
measured table). Reading the first layer beside the last one is what RINE does with intermediate
blocks; the energies cost one extra patch-embedding convolution per crop.
"""

from __future__ import annotations

import copy
import re

import torch
from torch import nn

from ...errors import WeightsError
from .mpft import MpftConfig


def tuned_names(visual: nn.Module, blocks: int, patch_embed: bool = False) -> list[str]:
    """Names of the image-tower parameters MPFT tunes: the last ``blocks`` transformer blocks,
    ``ln_post`` and ``proj`` (and, with ``patch_embed``, the patch embedding ``conv1``). Refuses
    image towers that are not open_clip ViTs."""
    resblocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if resblocks is None or not hasattr(visual, "conv1"):
        raise ValueError(f"MPFT fine-tunes an open_clip VisionTransformer; this backbone's image "
                         f"tower is a {type(visual).__name__}")
    depth = len(resblocks)
    if not 1 <= blocks <= depth:
        raise ValueError(f"--tune-blocks {blocks}: this ViT has {depth} blocks")
    first = depth - blocks
    keep = []
    for name, _ in visual.named_parameters():
        m = re.match(r"transformer\.resblocks\.(\d+)\.", name)
        if ((m and int(m.group(1)) >= first) or name.startswith("ln_post.") or name == "proj"
                or (patch_embed and name.startswith("conv1."))):
            keep.append(name)
    return keep


class FirstLayerEnergy(nn.Module):
    """The image tower, its embedding followed by log(mean |conv1 response|) per first-layer
    filter. While training, ``keep`` (bool ``[B, P]``, set for one batch, then forgotten) limits
    the mean to the unmasked patches, so texture-aware masking hides the same patches from both."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual
        self.keep: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        emb = self.visual(x)
        response = self.visual.conv1(x.to(self.visual.conv1.weight.dtype)).abs().flatten(2).float()
        keep, self.keep = self.keep, None
        if keep is None:
            energy = response.mean(dim=2)
        else:
            k = keep.to(response.device, response.dtype)[:, None]
            energy = (response * k).sum(dim=2) / k.sum(dim=2)
        return torch.cat([emb.float(), torch.log(energy + 1e-6)], dim=1)


def trace_width(visual: nn.Module) -> int:
    """How many first-layer filters ``FirstLayerEnergy`` reads from this tower."""
    return int(visual.conv1.out_channels)


class MpftHead(nn.Module):
    """The classifier on the (tuned) image embedding, plus the tuned tower tensors it carries.

    ``forward`` maps embeddings to logits; ``tuned`` (name -> tensor) is installed into a copy of
    the backbone by ``bind``, which is what makes the backbone's embedding the tuned one.
    """

    def __init__(self, config: MpftConfig):
        super().__init__()
        self.config = config
        self.classifier = nn.Linear(config.feature_dim + config.trace_dim, 1)
        self.tuned: dict[str, torch.Tensor] = {}

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.classifier(feats.float()).squeeze(-1)


# ---- the head-kind interface (see kinds/__init__.py) -----------------------------------------------------

def expected(config: MpftConfig) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    out = {"classifier.weight": ((1, config.feature_dim + config.trace_dim), torch.float32),
           "classifier.bias": ((1,), torch.float32)}
    out.update({f"visual.{k}": (tuple(v), torch.float32) for k, v in config.tensors.items()})
    return out


def tensors(head: MpftHead) -> dict[str, torch.Tensor]:
    out = {f"classifier.{k}": v for k, v in head.classifier.state_dict().items()}
    out.update({f"visual.{k}": v.float() for k, v in head.tuned.items()})
    return out


def from_tensors(config: MpftConfig, state: dict[str, torch.Tensor]) -> MpftHead:
    head = MpftHead(config)
    head.classifier.load_state_dict({k[11:]: v for k, v in state.items() if k.startswith("classifier.")})
    head.tuned = {k[7:]: v for k, v in state.items() if k.startswith("visual.")}
    return head


def bind(backbone, head: MpftHead, owned: bool = False):
    """A backbone whose image tower carries the head's tuned tensors (a copy, unless ``owned``:
    the caller's backbone is never changed), and the head. Refuses tensors that do not fit."""
    from ..backbone import ClipBackbone

    params = dict(backbone.visual.named_parameters())
    bad = [k for k, v in head.tuned.items() if k not in params or tuple(params[k].shape) != tuple(v.shape)]
    if bad:
        raise WeightsError(f"this MPFT head's tuned tensors do not fit the backbone in use ({bad[:3]}): "
                           "it was tuned from another base backbone")
    if head.config.trace_dim and trace_width(backbone.visual) != head.config.trace_dim:
        raise WeightsError(f"this MPFT head reads {head.config.trace_dim} first-layer filters; the backbone "
                           f"in use has {trace_width(backbone.visual)}: it was tuned from another base "
                           "backbone")
    visual = backbone.visual if owned else copy.deepcopy(backbone.visual)
    with torch.no_grad():
        for name, p in visual.named_parameters():
            if name in head.tuned:
                p.copy_(head.tuned[name].to(p.device, p.dtype))
    if head.config.features != "embedding":
        visual = FirstLayerEnergy(visual)
    bound = ClipBackbone(visual, backbone.identity, backbone.mean, backbone.std, backbone.device,
                         source=backbone.source)
    bound.precision = backbone.precision
    return bound, head
