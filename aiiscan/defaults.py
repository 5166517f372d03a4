"""Names and defaults the CLI shows and the model code uses, importable without torch."""

from __future__ import annotations

MODES = ("P", "N+P", "N")  # CLIP-Flow training modes (DESIGN §1)
DEFAULT_BACKBONE = "ViT-L-14"  # the paper's backbone
DEFAULT_PRETRAINED = "openai"
TEXTURES = ("highpass", "gradient")  # MPFT texture measures per ViT patch (masking.py)
MASK_MODES = ("drop", "zero")  # MPFT: drop masked patch tokens, or zero their pixels
