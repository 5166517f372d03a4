"""Typed options: every command's settings and their defaults, written once.

The CLI generates its options from these classes (``cli.params``) and the Python API (``api``)
builds the same objects from keywords, so a default lives here and nowhere else, and a command
and its API function cannot drift apart. Each field's metadata holds what the command line needs
(help text, flag, bounds, choices); none of it imports click. The scan report's metadata records
the whole objects, so a report says exactly how it was made.

- ``RunOptions``: how the model runs (every command that scores);
- ``ScanOptions``: what a scan adds; ``TrainOptions``, ``FinetuneOptions``: how heads are made;
- ``CalibrateOptions``, ``EvaluateOptions``, ``PageOptions``: the other commands' settings.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .decode.proxies import ProxySpec
from .errors import UsageError

MODES = ("P", "N+P", "N")  # CLIP-Flow training modes (README, "Training: modes and costs")
MODE_DEFAULTS = {"P": (1.0, 30), "N+P": (0.1, 10), "N": (0.1, 10)}  # the paper's mask ratio and epochs
DEFAULT_BACKBONE = "ViT-L-14"  # the paper's backbone
DEFAULT_PRETRAINED = "openai"
TEXTURES = ("highpass", "gradient")  # MPFT texture measures per ViT patch (tasks/masking)
MASK_MODES = ("drop", "zero")  # MPFT: drop masked patch tokens, or zero their pixels
METHODS = ("mpft", "probe")  # aiiscan finetune --method: MPFT fine-tuning, or a linear probe
PRECISIONS = ("auto", "fp32", "bf16")
COMBINE = ("any", "all", "agree")  # how several heads' labels enter the verdict (scanner.verdict)
DEFAULT_TIMEOUT = 120.0  # seconds one file may take to decode
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's own decompression-bomb limit x2 (~179 MP)
TRUST_ENV = "AIISCAN_C2PA_TRUST"  # the C2PA trust anchors when --c2pa-trust is not given
EXACT_DECODE = "Decode JPEGs at full resolution (default: DCT-domain downscaling first)."


def opt(default: Any = MISSING, help: str = "", *, factory: Any = None, **cli: Any) -> Any:
    """A field and how the command line shows it: ``help``; ``flag`` (its spelling, default
    ``--field-name``; ``negate``: a flag that sets the field to False); ``min``/``max``/``open``
    (bounds); ``choices``; ``path`` (``click.Path`` arguments); ``metavar``; ``default_text``
    (shown instead of the default); ``hidden``; ``cli=False`` (no option at all); ``nested`` (an
    options class whose fields are options of their own). ``factory`` makes the default per
    instance."""
    meta = {"help": help, **cli}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def param(f: Any) -> str:
    """The keyword (and CLI parameter) of a field: its name, unless its metadata says otherwise
    (a nested class's fields are named for the command: ``--mask-ratio`` is ``mask_ratio``)."""
    return f.metadata.get("param", f.name)


def build(cls: type, values: dict) -> Any:
    """An options object from flat keywords (the CLI's parameters, the API's keywords): each field
    from its own keyword; a nested options class from the same keywords (or given whole). Keywords
    that are no field of it are left for others; ``None`` means "the default"."""
    kwargs = {}
    for f in fields(cls):
        kind = f.metadata.get("nested")
        if values.get(param(f)) is not None:
            kwargs[f.name] = values[param(f)]
        elif kind is not None:
            given = any(values.get(param(g)) is not None for g in fields(kind))
            if given or f.default is MISSING:
                kwargs[f.name] = build(kind, values)
    try:
        return cls(**kwargs)
    except ValueError as exc:  # a value out of its range: the user's to fix
        raise UsageError(str(exc)) from None


@dataclass(frozen=True)
class RunOptions:
    """How the model runs: where, how fast, how decoded, how loud."""

    device: str = opt("auto", "auto, cpu, cuda or cuda:N.")
    precision: str = opt("auto", "Backbone arithmetic: fp32 = the exact torch reference; bf16 = native bf16 "
                               "(OpenVINO on CPU); auto = bf16 on GPU and on CPUs with AMX/AVX512-BF16, "
                               "else fp32.", choices=PRECISIONS)
    clip_weights: str | None = opt(None, "Local CLIP checkpoint for the backbone the head's card names "
                                         "(also $AIISCAN_CLIP_WEIGHTS).", path={"dir_okay": False})
    batch_size: int = opt(64, "Images per backbone batch.", min=1)
    workers: int | None = opt(None, "Decode worker processes [default: number of cores; 0 = in-process].",
                              min=0)
    timeout: float = opt(DEFAULT_TIMEOUT, "Seconds one file may take to decode before its worker is "
                                          "replaced.", min=1)
    exact_decode: bool = opt(False, EXACT_DECODE)
    threads: int | None = opt(None, "Torch threads for scoring (local engine) [default: torch's, one per "
                                    "core]. Fewer leaves cores to the decode workers when decoding is the "
                                    "bottleneck.", min=1)
    progress: bool = opt(False, "Draw progress bars.")  # the CLI's --progress/--no-progress decides it
    quiet: bool = opt(False, "No progress bars and no messages on stderr except errors.")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EvidenceOptions:
    """What the user adds to the evidence every scan collects: files, named, not yet read
    (``decode.evidence.load_evidence`` checks them)."""

    c2pa_trust: str | None = opt(None, "PEM file of the CA certificates whose C2PA signers you trust "
                                       "(c2pa_trust=trusted) [default: $AIISCAN_C2PA_TRUST, else none].",
                                 path={"exists": True, "dir_okay": False})
    rules: str | None = opt(None, "JSON file of generator rules, tried before the built-in ones "
                                  "(README, Evidence).", path={"exists": True, "dir_okay": False})

    def __post_init__(self) -> None:
        if self.c2pa_trust is None and os.environ.get(TRUST_ENV):
            object.__setattr__(self, "c2pa_trust", os.environ[TRUST_ENV])


@dataclass(frozen=True)
class ScanOptions:
    """What to scan and how to write it, beyond ``RunOptions``."""

    run: RunOptions = opt(factory=RunOptions, nested=RunOptions)
    evidence: EvidenceOptions = opt(factory=EvidenceOptions, nested=EvidenceOptions)
    # head prefix or name; None: the default head; a tuple of two or more: a multi-head scan
    weights: str | tuple[str, ...] | None = opt(None, "Head: path prefix W (W.safetensors + W.json) or a "
                                                      "name "
                                                      "in the weights folders [default: $AIISCAN_WEIGHTS, "
                                                      "else the installed default head].")
    fmt: str | None = opt(None, "Report format, for a name with no known extension (one it has must agree).",
                          flag="--format",
                          choices=("parquet", "csv", "jsonl"), default_text="")
    from_list: str | None = opt(None, "File with one path per line ('-' = stdin; lines starting with # are "
                                      "comments).",
                                path={"exists": True, "dir_okay": False, "allow_dash": True})
    threshold: float | None = opt(None, "Score threshold for label=ai, overriding the card's calibration "
                                        "(with several --weights: head 1's only; the other heads use their "
                                        "cards' thresholds).")
    resume: bool = opt(False, "Continue an interrupted scan of the same output.")
    incremental: str | None = opt(None, "Reuse rows of an older report (a file, or an s3://, gs://, az:// "
                                        "object) for files whose size and mtime are unchanged, and its "
                                        "scores "
                                        "for files moved or copied since (same sha256); see the reused "
                                        "column.",
                                  report=True)
    include: tuple[str, ...] = opt((), "Only files matching this glob (repeatable).")
    exclude: tuple[str, ...] = opt((), "Skip files matching this glob (repeatable).")
    follow_symlinks: bool = opt(False, "Follow symbolic links (loops are cut).")
    archives: bool = opt(False, "Also scan .tar, .tar.gz and .zip files found in folders or prefixes, member "
                                "by member (path SHARD::MEMBER); archives named as PATHS always are.")
    max_pixels: int = opt(DEFAULT_MAX_PIXELS, "Refuse images with more pixels (decompression bombs).", min=1)
    max_bytes: int = opt(DEFAULT_MAX_BYTES, "Refuse files larger than this.", min=1)
    part_rows: int = opt(1024, "Rows per checkpointed part: at most this much work is redone after a kill.",
                         min=1)
    parts_dir: str | None = opt(None, "With -o s3://... (or gs://, az://): the local folder where the "
                                      "report's "
                                      "parts wait before the upload [default: $AIISCAN_PARTS_DIR, else "
                                      "$XDG_CACHE_HOME/aiiscan/parts].", path={"file_okay": False})
    keep_gps: bool = opt(False, "Write GPS coordinates into the report (default: only a has_gps flag).")
    prompts: bool = opt(True, "Leave generator prompts out of the report.", negate="--no-prompts")
    overwrite: bool = opt(False, "Replace existing output files (refused otherwise).")
    allow_empty: bool = opt(False, "Exit 0 when no root holds an image file (default: exit 5, 'nothing to "
                                   "scan', so that a job over an unmounted share does not pass).")
    command: str | None = opt(None, cli=False)  # the command line, for the report's metadata
    combine: str = opt("any", "Several --weights: how the heads' labels enter the verdict. any: ai if any "
                              "head labels ai, natural if all label natural; all: ai only if every head "
                              "labels ai; agree: uncertain when heads disagree (docs/verdicts.md).",
                       choices=COMBINE)
    stability: str | None = opt(None, "Also score re-encoded copies of each file, made from its one decode "
                                      "(conditions as evaluate --perturb, comma-separated, e.g. "
                                      "jpeg:75,resize:0.5): score_min/score_max span them, and a label "
                                      "that flips makes the verdict uncertain [default: off].",
                                metavar="COND[,COND...]")

    def to_dict(self) -> dict:
        d = asdict(self)
        if not isinstance(self.weights, tuple):
            d.pop("combine")  # one head: no verdict, and the metadata of one-head scans as before
        return d


@dataclass(frozen=True)
class TrainOptions:
    """How a CLIP-Flow head is trained; recorded in its card's ``training`` block. ``epochs`` and
    the proxy's mask ratio default by mode (``MODE_DEFAULTS``: the paper's), here, for the CLI and
    the Python API alike."""

    mode: str = opt("N+P", "P: proxies only; N+P: naturals and proxies (best in the paper); N: naturals "
                           "only.", choices=MODES)
    proxy: ProxySpec = opt(None, nested=ProxySpec)  # None: the default proxy; its ratio None: the mode's
    epochs: int | None = opt(None, "Epochs [default: 30 for P, 10 for N+P and N].", min=1)
    batch_size: int = opt(128, "Feature vectors per step.", min=2)
    lr: float = opt(1e-4, "Adam learning rate.")
    views: int = opt(0, "0: fresh augmentation every epoch; K: precompute K views once (CPU-friendly).",
                     min=0)
    seed: int = opt(0, "Seed for crops, proxies, permutations and order.")
    proxy_margin: float | None = opt(None, "Cap each proxy's score in the loss at this margin (bounded "
                                           "variant) [default: off].")
    grad_clip: float = opt(10.0, cli=False)
    dim: int = opt(128, "Reduced dimension C.", min=2)
    blocks: int = opt(8, "Affine coupling blocks.", min=1)
    hidden: int = opt(512, "Hidden width of each coupling network.", min=1)
    clamp: float = opt(2.0, cli=False)
    workers: int | None = opt(None, "Decode worker processes [default: number of cores].", min=0)
    exact_decode: bool = opt(False, EXACT_DECODE)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        ratio, epochs = MODE_DEFAULTS[self.mode]
        proxy = self.proxy or ProxySpec()
        if proxy.ratio is None:
            proxy = replace(proxy, ratio=ratio)
        object.__setattr__(self, "proxy", proxy)
        if self.epochs is None:
            object.__setattr__(self, "epochs", epochs)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["proxy"] = self.proxy.to_dict()
        d.pop("workers")
        return d


@dataclass(frozen=True)
class MaskSpec:
    """What is masked in an MPFT training step; recorded in the model card."""

    ratio: float = opt(0.25, "Fraction of each crop's ViT patches masked per training step, most textured "
                             "first (0: no masking). Never at scan time.", param="mask_ratio", min=0, max=1,
                       open="max")
    texture: str = opt("highpass", "Texture per patch: highpass = energy of image minus 3x3 blur; gradient = "
                                   "Sobel energy.", choices=TEXTURES)
    mode: str = opt("drop", "drop: remove the masked patches' tokens; zero: set their pixels to the mean.",
                    param="mask_mode", choices=MASK_MODES)

    def __post_init__(self):
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"mask ratio must be in [0, 1), got {self.ratio}")
        if self.texture not in TEXTURES:
            raise ValueError(f"texture must be one of {TEXTURES}, got {self.texture!r}")
        if self.mode not in MASK_MODES:
            raise ValueError(f"mask mode must be one of {MASK_MODES}, got {self.mode!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FinetuneOptions:
    """How an MPFT head is fine-tuned (or a linear probe fitted); recorded in its card's
    ``training`` block."""

    method: str = opt("mpft", "mpft: fine-tune the last ViT blocks with texture-aware masking; probe: a "
                              "logistic regression on the frozen embedding (UnivFD's linear probe; shares "
                              "the backbone pass with CLIP-Flow heads in a scan).", choices=METHODS)
    tune_blocks: int = opt(2, "How many of the ViT's last transformer blocks are fine-tuned (with ln_post "
                              "and proj).", min=1)
    tune_patch_embed: bool = opt(False, "Also fine-tune the patch embedding (conv1), the ViT's pixel-level "
                                        "filters.")
    mask: MaskSpec = opt(factory=MaskSpec, nested=MaskSpec)
    trace_features: bool = opt(True, "MPFT's classifier reads the tuned embedding only (by default it also "
                                     "reads the frozen first layer's mean absolute response per filter "
                                     "over the unmasked patches: pixel-level traces; docs/mpft.md).",
                               negate="--no-trace-features")
    lp_init: bool = opt(True, "Start MPFT's classifier from random weights (by default it starts from a "
                              "linear probe on the frozen features, LP-FT, then fine-tunes).",
                        negate="--no-lp-init")
    epochs: int = opt(10, "Most epochs (early stopping may end sooner).", min=1)
    batch_size: int = opt(32, "Images per step.", min=2)
    lr: float = opt(1e-5, "AdamW learning rate of the tuned ViT blocks.")
    head_lr: float = opt(1e-3, "AdamW learning rate of the linear classifier.")
    weight_decay: float = opt(0.01, "AdamW weight decay.", min=0)
    val_fraction: float = opt(0.2, "Fraction of each class held out (seeded) for early stopping and the "
                                   "printed AUC.", min=0, max=0.9, open="min")
    patience: int = opt(3, "Stop after this many epochs without a better held-out AUC.", min=1)
    views: int = opt(0, "0: fresh crops every epoch; K: decode K augmented views once (CPU-friendly).", min=0)
    crop_step: int = opt(8, "Random training crops sit a multiple of this many pixels from the centre crop "
                            "a scan takes (1: anywhere), so pixel grids of period 2, 4 or 8 (upsampling, "
                            "JPEG blocks) keep the phase a scan sees.", min=1)
    seed: int = opt(0, "Seed for the split, crops, order and initialisation.")
    grad_clip: float = opt(1.0, cli=False)
    loss_sign: float = opt(1.0, "Sign of the loss (tests: -1 must fail to learn; never for real use).",
                           hidden=True)
    workers: int | None = opt(None, "Decode worker processes [default: number of cores].", min=0)
    exact_decode: bool = opt(False, EXACT_DECODE)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mask"] = self.mask.to_dict()
        d.pop("workers")
        if self.loss_sign == 1.0:
            d.pop("loss_sign")
        return d


@dataclass(frozen=True)
class CalibrateOptions:
    """Where a head's threshold is placed (``aiiscan calibrate``)."""

    policy: str = opt("balanced", "balanced: maximise balanced accuracy (the paper's); fpr:X: flag at most a "
                                  "fraction X of natural photos (e.g. fpr:0.01).", metavar="balanced|fpr:X")
    stability: str | None = opt(None, "Also count the natural photos whose label at the chosen threshold "
                                      "flips under these conditions (as scan --stability, e.g. "
                                      "jpeg:75,resize:0.5) [default: off].", metavar="COND[,COND...]")
    limit: int | None = opt(None, "Use a random subset of this many files from each set (drawn with --seed).",
                            min=2)
    seed: int = opt(0, "Seed for --limit's draw.")


@dataclass(frozen=True)
class EvaluateOptions:
    """What ``aiiscan evaluate`` measures."""

    perturb: tuple[str, ...] = opt((), "Also evaluate under a laundering condition: jpeg:Q, webp:Q, "
                                       "resize:S, "
                                       "blur:SIGMA, crop:F (repeatable; one table each).")
    threshold: float | None = opt(None, "Threshold for the accuracies, overriding the card's calibration "
                                        "(with "
                                        "several --weights: head 1's only).")


@dataclass(frozen=True)
class PageOptions:
    """The HTML page of a report (``aiiscan report``)."""

    top: int = opt(50, "How many of the highest-scoring images to show as cards.", min=0)
    thumbnails: bool = opt(True, "Leave images out of the page (sensitive material); cards keep score and "
                                 "path.", negate="--no-thumbnails")
    thumb_budget: int = opt(4 * 1024 * 1024, "Bytes of thumbnails the page may hold in total.", min=0)
    base: tuple[str, ...] = opt((), "Make thumbnails from local files under this folder only (repeatable); "
                                    "the report's relative paths are resolved under it. A report is "
                                    "untrusted input: no file outside it is opened, through '..' or "
                                    "a symbolic link either.",
                                metavar="DIR", path={"exists": True, "file_okay": False},
                                default_text="the current folder")
    thumbnails_from_roots: bool = opt(False, "Also make thumbnails from local files under the roots the "
                                             "report records (trust the report's own roots).")
    thumbnails_from_store: bool = opt(False, "Also fetch objects in s3://, gs://, az:// for thumbnails, "
                                             "with your credentials (http(s) is never fetched).")


def as_weights(weights: str | Path | Sequence[str | Path] | None) -> str | tuple[str, ...] | None:
    """``--weights`` as given once or several times: None (the default head), one head (a str),
    or a tuple of two or more heads (a multi-head run)."""
    if weights is None or isinstance(weights, (str, Path)):
        return None if weights is None else str(weights)
    items = tuple(str(w) for w in weights)
    if not items:
        return None
    return items[0] if len(items) == 1 else items
