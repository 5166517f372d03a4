"""Texture-aware masking for MPFT fine-tuning (our reading of arXiv 2601.03586; README).

The abstract says MPFT masks "the textured areas that carry generator-specific patterns" while
fine-tuning, so that the model learns how an image departs from real photos instead of one
generator's textures. How texture is measured and how much is masked is not given; our reading:

- **Texture per ViT patch** = mean squared high-pass residual of the patch's grey levels, the
  residual being the image minus its 3x3 box blur (a cheap, rotation-free high-frequency energy;
  ``texture="gradient"`` uses the squared Sobel gradient magnitude instead). Measured on the crop
  the model sees, on the ViT's own patch grid.
- **Masking**: the ``ratio`` most-textured patches of each image (ties: lower index first) are
  **dropped** from the token sequence (``mode="drop"``, default: the transformer never sees them,
  and the step is cheaper) or **zeroed** in the pixels (``mode="zero"``: set to the normalisation
  mean, i.e. 0 after normalising; the token count is unchanged).
- **Training only.** At evaluation and scan time nothing is masked: ``TokenDrop`` passes tokens
  through unless ``keep`` was set for the current batch, and the trainer sets it only in training
  steps.

Pure torch, no model weights: the maths is tested directly (``tests/test_finetune.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _grey(images: torch.Tensor) -> torch.Tensor:
    """[B, H, W, 3] uint8 (the decoded crops) or [B, 3, H, W] float -> [B, 1, H, W] float grey."""
    x = images.permute(0, 3, 1, 2) if images.dtype == torch.uint8 else images
    return x.float().mean(dim=1, keepdim=True)


def texture_energy(images: torch.Tensor, patch: int, texture: str = "highpass") -> torch.Tensor:
    """High-frequency energy of each ``patch`` x ``patch`` cell: ``[B, (H/patch) * (W/patch)]``,
    row-major like the ViT's token order."""
    g = _grey(images)
    if texture == "highpass":
        blur = F.avg_pool2d(F.pad(g, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        energy = (g - blur) ** 2
    elif texture == "gradient":
        kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=g.device)
        k = torch.stack([kx, kx.T])[:, None]
        grad = F.conv2d(F.pad(g, (1, 1, 1, 1), mode="replicate"), k)
        energy = (grad ** 2).sum(dim=1, keepdim=True)
    else:
        raise ValueError(f"unknown texture measure {texture!r}")
    return F.avg_pool2d(energy, patch, stride=patch).flatten(1)


def count_masked(n_patches: int, ratio: float) -> int:
    """How many of ``n_patches`` are masked at ``ratio``: rounded, always leaving one."""
    return min(max(0, round(ratio * n_patches)), n_patches - 1)


def most_textured(energy: torch.Tensor, ratio: float) -> torch.Tensor:
    """Boolean ``[B, P]``: True for the ``count_masked(P, ratio)`` most-textured patches."""
    b, p = energy.shape
    k = count_masked(p, ratio)
    mask = torch.zeros(b, p, dtype=torch.bool, device=energy.device)
    if k:
        # A stable sort: equal energies are masked in index order, the same on every run.
        order = torch.sort(energy, dim=1, descending=True, stable=True).indices[:, :k]
        mask.scatter_(1, order, True)
    return mask


def keep_indices(mask: torch.Tensor) -> torch.Tensor:
    """Indices of the unmasked patches per image, ascending: ``[B, P - k]`` (same k per row)."""
    b, p = mask.shape
    idx = torch.arange(p, device=mask.device).expand(b, p)
    return idx[~mask].reshape(b, -1)


def zero_patches(batch: torch.Tensor, mask: torch.Tensor, patch: int) -> torch.Tensor:
    """Set the masked patches of a normalised NCHW batch to 0 (the normalisation mean)."""
    b, _, h, w = batch.shape
    grid = mask.reshape(b, 1, h // patch, w // patch).to(batch.dtype)
    keep = 1.0 - F.interpolate(grid, scale_factor=patch, mode="nearest")
    return batch * keep


class TokenDrop(torch.nn.Module):
    """Stands in for open_clip's ``patch_dropout`` (applied after the positional embedding, before
    ``ln_pre``): keeps the class token and the patch tokens listed in ``keep`` for the current
    batch, then forgets them. With ``keep`` unset it is the identity: nothing is dropped at
    evaluation or scan time."""

    def __init__(self):
        super().__init__()
        self.keep: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep, self.keep = self.keep, None
        if keep is None:
            return x
        cls_tok, patches = x[:, :1], x[:, 1:]
        rows = torch.arange(x.shape[0], device=x.device)[:, None]
        return torch.cat([cls_tok, patches[rows, keep.to(x.device)]], dim=1)
