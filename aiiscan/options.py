"""Typed options: built once (by the CLI, or by the Python API from keywords) and passed whole.

``RunOptions`` is what every command that runs the model shares; ``ScanOptions`` what a scan
adds. The scan report's metadata records the whole objects, so a report says exactly how it
was made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .decode.job import DEFAULT_MAX_BYTES
from .decode.pool import DEFAULT_TIMEOUT
from .decode.preprocess import DEFAULT_MAX_PIXELS

# Names and defaults the CLI shows and the model code uses.
MODES = ("P", "N+P", "N")  # CLIP-Flow training modes (DESIGN §1)
DEFAULT_BACKBONE = "ViT-L-14"  # the paper's backbone
DEFAULT_PRETRAINED = "openai"
TEXTURES = ("highpass", "gradient")  # MPFT texture measures per ViT patch (masking.py)
MASK_MODES = ("drop", "zero")  # MPFT: drop masked patch tokens, or zero their pixels


@dataclass(frozen=True)
class RunOptions:
    """How the model runs: where, how fast, how decoded, how loud."""

    device: str = "auto"  # auto, cpu, cuda or cuda:N
    precision: str = "auto"  # auto (bf16 on GPU), fp32, bf16
    clip_weights: str | None = None  # a local CLIP checkpoint for the card's backbone
    batch_size: int = 64
    workers: int | None = None  # decode processes; None = one per core, 0 = in-process
    timeout: float = DEFAULT_TIMEOUT  # seconds one file may take to decode
    exact_decode: bool = False  # full-resolution JPEG decoding (off: DCT-domain downscaling)
    threads: int | None = None  # torch threads for scoring
    progress: bool = False  # draw progress bars
    quiet: bool = False  # no messages on stderr

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ScanOptions:
    """What to scan and how to write it, beyond ``RunOptions``."""

    run: RunOptions = field(default_factory=RunOptions)
    # head prefix or name; None: the default head; a tuple of two or more: a multi-head scan
    weights: str | tuple[str, ...] | None = None
    fmt: str | None = None  # report format; None: from the output's extension
    from_list: str | None = None
    threshold: float | None = None  # overrides the card's calibrated threshold
    resume: bool = False
    incremental: str | None = None  # an older report whose unchanged rows are reused
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    follow_symlinks: bool = False
    archives: bool = False  # expand .tar/.tar.gz/.zip found while crawling into their members
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES
    part_rows: int = 1024
    parts_dir: str | None = None  # where an object-store report's parts wait (-o s3://...)
    keep_gps: bool = False
    prompts: bool = True
    overwrite: bool = False
    command: str | None = None  # the command line, for the report's metadata
    combine: str = "any"  # a multi-head scan's verdict: any or all (scanner.verdict.combine)

    def to_dict(self) -> dict:
        d = asdict(self)
        if not isinstance(self.weights, tuple):
            d.pop("combine")  # one head: no verdict, and the metadata of one-head scans as before
        return d


def as_weights(weights: str | Path | Sequence[str | Path] | None) -> str | tuple[str, ...] | None:
    """``--weights`` as given once or several times: None (the default head), one head (a str),
    or a tuple of two or more heads (a multi-head run)."""
    if weights is None or isinstance(weights, (str, Path)):
        return None if weights is None else str(weights)
    items = tuple(str(w) for w in weights)
    if not items:
        return None
    return items[0] if len(items) == 1 else items
