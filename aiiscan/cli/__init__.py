"""The ``aiiscan`` command line: a thin click layer over the Python API.

Conventions every command shares: ``-o/--output`` for what it writes (checked before any work
by ``outputs.check_output``; an existing file needs ``--overwrite``), ``-q/--quiet``, progress
bars only on a terminal (``--progress/--no-progress``), results on stdout and everything else on
stderr, and the exit codes of ``errors.EXIT_CODES``. Heavy modules (torch, the model) are imported
inside the commands that need them, so ``aiiscan --help`` starts fast.
"""

from __future__ import annotations

import os
import shlex
import sys
import traceback
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import click

from .. import progress as progress_bars
from .. import signals
from ..decode.job import DEFAULT_MAX_BYTES
from ..decode.preprocess import DEFAULT_MAX_PIXELS
from ..decode.proxies import BANDS, PROXY_KINDS
from ..engines import ENGINES, make_engine
from ..errors import (
    EXIT_CHECK_FAILED,
    EXIT_CODES,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    AiiscanError,
)
from ..options import (
    DEFAULT_BACKBONE,
    DEFAULT_PRETRAINED,
    MASK_MODES,
    MODES,
    TEXTURES,
    RunOptions,
    ScanOptions,
)
from ..reports.formats import FORMATS, SUFFIXES
from ..scanner.verdict import COMBINE
from ..tasks.metrics import check_threshold
from ..textsafe import for_terminal
from ..version import __version__

PRECISIONS = ("auto", "fp32", "bf16")
ENGINE_FLAGS = ("ray_address", "gpus_per_worker", "cpu_workers", "scorers")
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100, "show_default": True}

EXIT_TABLE = "\n".join(f"  {code:<4} {text}" for code, text in EXIT_CODES)


def _debug() -> bool:
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx else None
    return bool(os.environ.get("AIISCAN_DEBUG")) or bool(root and (root.obj or {}).get("debug"))


class AiiscanGroup(click.Group):
    """Turns errors into the documented exit codes: a user's mistake is one line and exit 2,
    an interrupt exit 130, and anything else a one-line internal error (exit 4) whose traceback
    ``--debug`` shows."""

    def invoke(self, ctx: click.Context):
        restore = signals.install()
        ctx.call_on_close(restore)
        try:
            return super().invoke(ctx)
        except AiiscanError as exc:
            if _debug():
                traceback.print_exc()
            click.echo(f"aiiscan: error: {for_terminal(str(exc), keep_newlines=True)}", err=True)
            ctx.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            click.echo("aiiscan: interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if signals.received():  # a library's error on the way out of an interruption
                click.echo("aiiscan: interrupted", err=True)
                ctx.exit(EXIT_INTERRUPTED)
            if _debug():
                traceback.print_exc()
                ctx.exit(EXIT_INTERNAL)
            text = " ".join(str(exc).split())[:300]
            click.echo(f"aiiscan: internal error: {type(exc).__name__}: {for_terminal(text)}\n"
                       "This is a bug in aiiscan. Rerun with --debug (aiiscan --debug COMMAND ...) "
                       "for the traceback, and report it.", err=True)
            ctx.exit(EXIT_INTERNAL)


def _examples(*lines: str) -> str:
    """A help epilog that click prints verbatim."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


@click.group(cls=AiiscanGroup, context_settings=CONTEXT,
             epilog="\b\nExit codes:\n" + EXIT_TABLE + "\n\nRun `aiiscan COMMAND --help` for a command's "
                    "options and examples.")
@click.version_option(__version__, prog_name="aiiscan")
@click.option("--debug", is_flag=True, help="Show the traceback of an internal error.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Flag AI-generated images with CLIP-Flow, a normalizing flow trained only on natural photos.

    Start with `aiiscan selftest`. Then train a head on your own authentic photos (`aiiscan
    train`), place its threshold (`aiiscan calibrate`), and scan folders into a Parquet, CSV or
    JSONL report (`aiiscan scan`), one row per file.
    """
    ctx.obj = {"debug": debug}


# ---- options shared by several commands -----------------------------------------------------

def _output_option(required: bool, help: str, aliases: tuple[str, ...] = ()):
    return click.option("-o", "--output", *aliases, "output", required=required,
                        type=click.Path(), help=help)  # outputs.check_output judges it


def _image_sets(natural: str, ai: str | None = None) -> Callable[[Callable], Callable]:
    """--natural/--natural-list and, with ``ai``, --ai/--ai-list: the image sets of train,
    finetune and calibrate, alike in every command (folders or files, repeatable; lists by file
    or '-' for stdin)."""
    opts = [click.option("--natural", multiple=True, type=click.Path(exists=True),
                         help=f"Folder (recursive) or file of {natural}; repeatable."),
            click.option("--natural-list", type=click.Path(exists=True, dir_okay=False, allow_dash=True),
                         help=f"File listing {natural}, one path per line ('-' = stdin).")]
    if ai:
        opts += [click.option("--ai", multiple=True, type=click.Path(exists=True),
                              help=f"Folder (recursive) or file of {ai}; repeatable."),
                 click.option("--ai-list", type=click.Path(exists=True, dir_okay=False, allow_dash=True),
                              help=f"File listing {ai}, one path per line ('-' = stdin).")]

    def decorate(f: Callable) -> Callable:
        for opt in reversed(opts):
            f = opt(f)
        return f
    return decorate


def _one_stdin(natural_list: str | None, ai_list: str | None) -> None:
    if natural_list == "-" and ai_list == "-":
        raise click.UsageError("--natural-list and --ai-list cannot both read stdin ('-'): give one a file")


def _backbone_options(f: Callable) -> Callable:
    """--backbone/--pretrained/--clip-weights: the backbone a new head is trained on."""
    f = click.option("--clip-weights", type=click.Path(dir_okay=False),
                     help="Local CLIP checkpoint file (also $AIISCAN_CLIP_WEIGHTS).")(f)
    f = click.option("--pretrained", default=DEFAULT_PRETRAINED,
                     help="open_clip pretrained tag, or 'none' for random init (smoke tests only).")(f)
    return click.option("--backbone", default=DEFAULT_BACKBONE,
                        help="open_clip model name (a ViT for finetune), or an open_clip model-config "
                             ".json.")(f)


def _common(f: Callable) -> Callable:
    """-q/--quiet and --progress/--no-progress: every command."""
    f = click.option("--progress/--no-progress", default=None, show_default=False,
                     help="Draw progress bars [default: only when stderr is a terminal].")(f)
    return click.option("-q", "--quiet", is_flag=True,
                        help="No progress bars and no messages on stderr except errors.")(f)


def _overwrite(f: Callable) -> Callable:
    return click.option("--overwrite", is_flag=True,
                        help="Replace existing output files (refused otherwise).")(f)


def _model_options(f: Callable, many: bool = False) -> Callable:
    """What every command that loads a trained head shares (``many``: --weights repeatable)."""
    weights_help = ("Head: path prefix W (W.safetensors + W.json) or a name in the weights folders "
                    "[default: $AIISCAN_WEIGHTS, else the installed default head].")
    if many:
        weights_help += (" Repeat for a multi-head run: each file is decoded once and scored by every head "
                         "(heads on the same frozen backbone share its pass).")
    for opt in reversed([
        click.option("--weights", default=None, show_default=False, help=weights_help, metavar="W",
                     multiple=many),
        click.option("--clip-weights", type=click.Path(dir_okay=False),
                     help="Local CLIP checkpoint for the backbone the head's card names "
                          "(also $AIISCAN_CLIP_WEIGHTS)."),
        click.option("--device", default="auto", help="auto, cpu, cuda or cuda:N."),
        click.option("--batch-size", type=click.IntRange(1), default=64,
                     help="Images per backbone batch."),
        click.option("--workers", type=click.IntRange(0), default=None, show_default=False,
                     help="Decode worker processes [default: number of cores; 0 = in-process]."),
        click.option("--exact-decode", is_flag=True,
                     help="Decode JPEGs at full resolution (default: DCT-domain downscaling first)."),
        click.option("--precision", type=click.Choice(PRECISIONS), default="auto",
                     help="Backbone arithmetic: auto = bf16 on GPU, fp32 on CPU."),
        click.option("--engine", type=click.Choice(sorted(ENGINES)), default="local",
                     help="local: worker processes on this machine; ray: Ray Data, across a cluster "
                          "(pip install 'aiiscan[ray]')."),
        click.option("--ray-address", default=None, show_default=False,
                     help="Ray cluster to join: auto, or ray://HOST:PORT [default: start a local one]."),
        click.option("--gpus-per-worker", type=click.FloatRange(0), default=None, show_default=False,
                     help="GPUs per scoring actor (ray engine) [default: 0]."),
        click.option("--cpu-workers", type=click.IntRange(1), default=None, show_default=False,
                     help="Concurrent decode tasks (ray engine) [default: as many as Ray schedules]."),
        click.option("--scorers", type=click.IntRange(1), default=None, show_default=False,
                     help="Scoring actors, each holding one copy of the model (ray engine) [default: 1]."),
    ]):
        f = opt(f)
    return f


def _heads_options(f: Callable) -> Callable:
    """``_model_options`` with a repeatable --weights (scan, evaluate: multi-head runs)."""
    return _model_options(f, many=True)


def _run_and_engine(params: dict, quiet: bool, progress: bool | None) -> tuple[RunOptions, object]:
    """The typed options of a model-using command, built once from its parameters."""
    run_keys = {f.name for f in fields(RunOptions)} - {"progress", "quiet"}
    run = RunOptions(**{k: params[k] for k in run_keys if k in params and params[k] is not None},
                     progress=progress_bars.wanted(quiet, progress), quiet=quiet)
    engine_opts = {k: params[k] for k in ENGINE_FLAGS if params.get(k) is not None}
    return run, make_engine(params["engine"], **engine_opts)


def _info(quiet: bool) -> Callable[[str], None]:
    """Messages for stderr, silenced by -q."""
    return (lambda _msg: None) if quiet else \
        (lambda msg: click.echo(for_terminal(msg, keep_newlines=True), err=True))


class ReportFile(click.ParamType):
    """A report to read: a local file that exists, or an object URL (checked when fetched)."""

    name = "report"

    def convert(self, value, param, ctx):
        from ..inputs import is_remote

        if is_remote(str(value)):
            return str(value)
        return click.Path(exists=True, dir_okay=False).convert(value, param, ctx)


def _check(path: str | None, overwrite: bool, what: str) -> None:
    if path:
        from ..outputs import check_output

        check_output(path, overwrite=overwrite, what=what)


# ---- commands ---------------------------------------------------------------------------------

@main.command(short_help="Train a CLIP-Flow head on your natural photos (no AI image needed).",
              epilog=_examples(
                  "aiiscan train --natural ~/photos/authentic --val-natural ~/photos/held-out -o mine",
                  "aiiscan train --natural-list photos.txt -o weights/mine --views 2 --install-default",
                  "aiiscan train --natural ./photos --backbone ViT-B-32 --pretrained openai -o b32"))
@_image_sets("natural photos")
@_output_option(True, "Output prefix W: writes W.safetensors + W.json (folders are created).",
                aliases=("--out",))
@click.option("--mode", type=click.Choice(MODES), default="N+P",
              help="P: proxies only; N+P: naturals and proxies (best in the paper); N: naturals only.")
@_backbone_options
@click.option("--proxy", type=click.Choice(PROXY_KINDS), default="freq",
              help="How proxy images are made from natural photos.")
@click.option("--band", type=click.Choice(BANDS), default="low",
              help="FFT band for freq/phase proxies (reference geometry; see README).")
@click.option("--ratio", type=click.FloatRange(0, 1), default=None, show_default=False,
              help="Fraction of the band masked [default: 1.0 for P, 0.1 for N+P and N].")
@click.option("--proxy-sigma", type=float, default=None, show_default=False,
              help="Strength of blur/sharpen/noise/jitter proxies [default: 1.0/1.5/5/0.4].")
@click.option("--epochs", type=click.IntRange(1), default=None, show_default=False,
              help="Epochs [default: 30 for P, 10 for N+P and N].")
@click.option("--batch-size", type=click.IntRange(2), default=128, help="Feature vectors per step.")
@click.option("--lr", type=float, default=1e-4, help="Adam learning rate.")
@click.option("--views", type=click.IntRange(0), default=0,
              help="0: fresh augmentation every epoch; K: precompute K views once (CPU-friendly).")
@click.option("--val-natural", type=click.Path(exists=True), multiple=True,
              help="Held-out natural photos: band-(30,100) AUC printed each epoch, best epoch kept.")
@click.option("--proxy-margin", type=float, default=None, show_default=False,
              help="Cap each proxy's score in the loss at this margin (bounded variant) [default: off].")
@click.option("--dim", type=click.IntRange(2), default=128, help="Reduced dimension C.")
@click.option("--blocks", type=click.IntRange(1), default=8, help="Affine coupling blocks.")
@click.option("--hidden", type=click.IntRange(1), default=512, help="Hidden width of each coupling network.")
@click.option("--seed", type=int, default=0, help="Seed for crops, proxies, permutations and order.")
@click.option("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
@click.option("--workers", type=click.IntRange(0), default=None, show_default=False,
              help="Decode worker processes [default: number of cores].")
@click.option("--exact-decode", is_flag=True,
              help="Decode JPEGs at full resolution (default: DCT-domain downscaling first).")
@click.option("--resume", is_flag=True, help="Continue from W.ckpt.* after an interruption.")
@click.option("--install-default", is_flag=True,
              help="Also install the head as the default that scan, calibrate and evaluate use "
                   "without --weights (in $AIISCAN_WEIGHTS_DIR, else $XDG_DATA_HOME/aiiscan/weights, "
                   "by default ~/.local/share/aiiscan/weights).")
@_overwrite
@_common
def train(natural, natural_list, output, mode, backbone, pretrained, clip_weights, proxy, band,
          ratio, proxy_sigma, epochs, batch_size, lr, views, val_natural, proxy_margin, dim,
          blocks, hidden, seed, device, workers, exact_decode, resume, install_default, overwrite,
          quiet, progress) -> None:
    """Train a CLIP-Flow head on natural photos: no AI-generated image is ever needed.

    Writes W.safetensors (the head's tensors) and W.json (its model card). CLIP weights are
    downloaded once into the Hugging Face cache, or given with --clip-weights.
    """
    from ..decode.proxies import ProxySpec
    from ..models.backbone import build_backbone
    from ..models.installed import DEFAULT_NAME, user_weights_dir
    from ..models.installed import install_default as install
    from ..outputs import check_output
    from ..tasks.datasets import list_images
    from ..tasks.train import MODE_DEFAULTS, TrainConfig
    from ..tasks.train import train as run_train

    if not natural and not natural_list:
        raise click.UsageError("give --natural DIR and/or --natural-list FILE")
    for suffix in (".safetensors", ".json"):
        check_output(output + suffix, overwrite=overwrite, companions=(".ckpt",), what="head file")
    if install_default:
        check_output(f"{user_weights_dir() / DEFAULT_NAME}.json", overwrite=overwrite,
                     what="installed default head")
    default_ratio, default_epochs = MODE_DEFAULTS[mode]
    cfg = TrainConfig(
        mode=mode, proxy=ProxySpec(proxy, band, default_ratio if ratio is None else ratio, proxy_sigma),
        epochs=epochs or default_epochs, batch_size=batch_size, lr=lr, views=views,
        seed=seed, proxy_margin=proxy_margin, dim=dim, blocks=blocks, hidden=hidden,
        workers=workers, exact_decode=exact_decode)
    bb = build_backbone(backbone, pretrained, clip_weights, device, quiet=quiet)
    photos = list_images(natural, natural_list)
    held_out = list_images(val_natural) if val_natural else None
    try:
        card = run_train(bb, photos, output, cfg, held_out, resume=resume,
                         progress=progress_bars.wanted(quiet, progress), echo=_info(quiet))
    except KeyboardInterrupt:
        click.echo(f"interrupted: the last finished epoch is kept in {output}.ckpt.*; continue with the "
                   "same command plus --resume", err=True)
        sys.exit(EXIT_INTERRUPTED)
    t = card.training
    click.echo(f"wrote {for_terminal(output)}.safetensors and {for_terminal(output)}.json: mode {mode}, "
               f"{t['natural_count']} photos "
               f"({t['natural_failed']} unreadable), kept epoch {t['kept_epoch']} ({t['kept_by']})")
    if install_default:
        click.echo(f"installed as the default head: {for_terminal(str(install(output)))}")


@main.command(short_help="Fine-tune an MPFT detector on natural photos and some AI images you hold.",
              epilog=_examples(
                  "aiiscan finetune --natural ~/photos/authentic --ai ~/moderation/ai-flagged -o mpft",
                  "aiiscan finetune --natural-list real.txt --ai-list ai.txt -o mpft --tune-blocks 4",
                  "aiiscan finetune --natural real/ --ai ai/ -o mpft --views 2 --device cpu   # CPU",
                  "aiiscan finetune --natural real/ --ai ai/ -o mpft --resume   # after an interruption"))
@_image_sets("natural photos (label 0)", "AI-generated images (label 1)")
@_output_option(True, "Output prefix W: writes W.safetensors + W.json (folders are created).")
@_backbone_options
@click.option("--tune-blocks", type=click.IntRange(1), default=2,
              help="How many of the ViT's last transformer blocks are fine-tuned (with ln_post and proj).")
@click.option("--tune-patch-embed", is_flag=True,
              help="Also fine-tune the patch embedding (conv1), the ViT's pixel-level filters.")
@click.option("--mask-ratio", type=click.FloatRange(0, 1, max_open=True), default=0.25,
              help="Fraction of each crop's ViT patches masked per training step, most textured first "
                   "(0: no masking). Never at scan time.")
@click.option("--texture", type=click.Choice(TEXTURES), default="highpass",
              help="Texture per patch: highpass = energy of image minus 3x3 blur; gradient = Sobel energy.")
@click.option("--mask-mode", type=click.Choice(MASK_MODES), default="drop",
              help="drop: remove the masked patches' tokens; zero: set their pixels to the mean.")
@click.option("--epochs", type=click.IntRange(1), default=10,
              help="Most epochs (early stopping may end sooner).")
@click.option("--patience", type=click.IntRange(1), default=3,
              help="Stop after this many epochs without a better held-out AUC.")
@click.option("--val-fraction", type=click.FloatRange(0, 0.9, min_open=True), default=0.2,
              help="Fraction of each class held out (seeded) for early stopping and the printed AUC.")
@click.option("--batch-size", type=click.IntRange(2), default=32, help="Images per step.")
@click.option("--lr", type=float, default=1e-5, help="AdamW learning rate of the tuned ViT blocks.")
@click.option("--head-lr", type=float, default=1e-3, help="AdamW learning rate of the linear classifier.")
@click.option("--weight-decay", type=click.FloatRange(0), default=0.01, help="AdamW weight decay.")
@click.option("--views", type=click.IntRange(0), default=0,
              help="0: fresh crops every epoch; K: decode K augmented views once (CPU-friendly).")
@click.option("--seed", type=int, default=0, help="Seed for the split, crops, order and initialisation.")
@click.option("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
@click.option("--workers", type=click.IntRange(0), default=None, show_default=False,
              help="Decode worker processes [default: number of cores].")
@click.option("--threads", type=click.IntRange(1), default=None, show_default=False,
              help="Torch CPU threads [default: torch's, one per core].")
@click.option("--exact-decode", is_flag=True,
              help="Decode JPEGs at full resolution (default: DCT-domain downscaling first).")
@click.option("--resume", is_flag=True, help="Continue from W.ckpt.* after an interruption.")
@click.option("--loss-sign", type=float, default=1.0, hidden=True,
              help="Sign of the loss (tests: -1 must fail to learn; never for real use).")
@_overwrite
@_common
def finetune(natural, natural_list, ai, ai_list, output, backbone, pretrained, clip_weights, tune_blocks,
             tune_patch_embed, mask_ratio, texture, mask_mode, epochs, patience, val_fraction, batch_size,
             lr, head_lr, weight_decay, views, seed, device, workers, threads, exact_decode, resume,
             loss_sign, overwrite, quiet, progress) -> None:
    """Fine-tune an MPFT detector (our reading of Niu et al., arXiv 2601.03586): the last blocks of a
    CLIP ViT and a binary head, trained on natural photos and AI images with texture-aware
    masking (the most-textured patches of each crop are masked while training, never at scan time).

    Holds out --val-fraction of each class, keeps the epoch with the best held-out AUC and prints
    it. Writes W.safetensors (tuned tensors and head only) and W.json (its model card); scan,
    calibrate and evaluate take it like any head. Scores are logits: higher = more likely AI.
    """
    import torch

    from ..models.backbone import build_backbone
    from ..outputs import check_output
    from ..tasks.datasets import list_images
    from ..tasks.finetune import FinetuneConfig
    from ..tasks.finetune import finetune as run_finetune
    from ..tasks.masking import MaskSpec

    if not natural and not natural_list:
        raise click.UsageError("give --natural DIR and/or --natural-list FILE")
    if not ai and not ai_list:
        raise click.UsageError("give --ai DIR and/or --ai-list FILE (AI-generated images you hold); "
                               "with no AI image at all, train a CLIP-Flow head: aiiscan train")
    _one_stdin(natural_list, ai_list)
    for suffix in (".safetensors", ".json"):
        check_output(output + suffix, overwrite=overwrite, companions=(".ckpt",), what="head file")
    cfg = FinetuneConfig(
        tune_blocks=tune_blocks, tune_patch_embed=tune_patch_embed,
        mask=MaskSpec(mask_ratio, texture, mask_mode), epochs=epochs, batch_size=batch_size, lr=lr,
        head_lr=head_lr, weight_decay=weight_decay, val_fraction=val_fraction, patience=patience,
        views=views, seed=seed, loss_sign=loss_sign, workers=workers, exact_decode=exact_decode)
    if threads:
        torch.set_num_threads(threads)
    bb = build_backbone(backbone, pretrained, clip_weights, device, quiet=quiet)
    photos = list_images(natural, natural_list)
    fakes = list_images(ai, ai_list)
    try:
        card = run_finetune(bb, photos, fakes, output, cfg, resume=resume, own_backbone=True,
                            progress=progress_bars.wanted(quiet, progress), echo=_info(quiet))
    except KeyboardInterrupt:
        click.echo(f"interrupted: the last finished epoch is kept in {output}.ckpt.*; continue with the "
                   "same command plus --resume", err=True)
        sys.exit(EXIT_INTERRUPTED)
    t, auc = card.training, card.metrics["heldout_auc"]
    click.echo(f"wrote {for_terminal(output)}.safetensors and {for_terminal(output)}.json: MPFT, "
               f"{t['natural_count']} natural + {t['ai_count']} AI images, kept epoch {t['kept_epoch']}")
    click.echo(f"held-out AUC {auc:.4f} ({t['heldout_natural']} natural + {t['heldout_ai']} AI images "
               "held out; it chose the kept epoch, so it is slightly optimistic)")
    if card.random_init:
        click.echo("random-init backbone: this AUC is about the images given, not about real AI images")


@main.command(short_help="Score images in files, folders and lists into a report, one row per file.",
              epilog=_examples(
                  "aiiscan scan ./photos -o report.parquet",
                  "aiiscan scan /archive -o night.parquet --incremental last.parquet --html night.html",
                  "find /srv -name '*.jpg' | aiiscan scan --from-list - -o r.csv --weights mine",
                  "aiiscan scan /archive -o report.parquet --resume      # after an interruption",
                  "aiiscan scan s3://bucket/photos/ -o report.parquet    # pip install 'aiiscan[s3]'",
                  "aiiscan scan shard-0001.tar /exports --archives -o shards.parquet",
                  "aiiscan scan s3://bucket/photos/ -o s3://bucket/reports/night.parquet",
                  "aiiscan scan ./photos -o both.parquet --weights flow --weights mpft --combine any"))
@click.argument("paths", nargs=-1, type=click.Path())
@_output_option(False, "Report file; its format from the extension (.parquet, .csv, .jsonl) "
                "[default: report.parquet].")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None, show_default=False,
              help="Report format, overriding the extension.")
@click.option("--from-list", type=click.Path(exists=True, dir_okay=False, allow_dash=True),
              help="File with one path per line ('-' = stdin; lines starting with # are comments).")
@_heads_options
@click.option("--threshold", type=float, default=None, show_default=False,
              help="Score threshold for label=ai, overriding the card's calibration (with several "
                   "--weights: head 1's only; the other heads use their cards' thresholds).")
@click.option("--combine", type=click.Choice(COMBINE), default="any",
              help="Several --weights: the verdict column. any: ai if any head labels ai, natural if all "
                   "label natural; all: ai only if every head labels ai.")
@click.option("--threads", type=click.IntRange(1), default=None, show_default=False,
              help="Torch threads for scoring (local engine) [default: torch's, one per core]. "
                   "Fewer leaves cores to the decode workers when decoding is the bottleneck.")
@click.option("--resume", is_flag=True, help="Continue an interrupted scan of the same output.")
@click.option("--incremental", type=ReportFile(),
              help="Reuse rows of an older report (a file, or an s3://, gs://, az:// object) for files "
                   "whose size and mtime are unchanged, and its scores for files moved or copied "
                   "since (same sha256); see the reused column.")
@click.option("--include", multiple=True, help="Only files matching this glob (repeatable).")
@click.option("--exclude", multiple=True, help="Skip files matching this glob (repeatable).")
@click.option("--follow-symlinks", is_flag=True, help="Follow symbolic links (loops are cut).")
@click.option("--archives", is_flag=True,
              help="Also scan .tar, .tar.gz and .zip files found in folders or prefixes, member by member "
                   "(path SHARD::MEMBER); archives named as PATHS always are.")
@click.option("--max-pixels", type=click.IntRange(1), default=DEFAULT_MAX_PIXELS,
              help="Refuse images with more pixels (decompression bombs).")
@click.option("--max-bytes", type=click.IntRange(1), default=DEFAULT_MAX_BYTES,
              help="Refuse files larger than this.")
@click.option("--timeout", type=click.FloatRange(1), default=120.0,
              help="Seconds one file may take to decode before its worker is replaced.")
@click.option("--part-rows", type=click.IntRange(1), default=1024,
              help="Rows per checkpointed part: at most this much work is redone after a kill.")
@click.option("--parts-dir", type=click.Path(file_okay=False),
              help="With -o s3://... (or gs://, az://): the local folder where the report's parts wait "
                   "before the upload [default: $AIISCAN_PARTS_DIR, else $XDG_CACHE_HOME/aiiscan/parts].")
@click.option("--html", "html_out", type=click.Path(dir_okay=False),
              help="Also write the self-contained HTML report (see `aiiscan report`); a file, or an "
                   "s3://, gs://, az:// object.")
@click.option("--keep-gps", is_flag=True,
              help="Write GPS coordinates into the report (default: only a has_gps flag).")
@click.option("--no-prompts", is_flag=True, help="Leave generator prompts out of the report.")
@_overwrite
@_common
def scan(paths, output, fmt, from_list, weights, threshold, combine, resume, incremental, include, exclude,
         follow_symlinks, archives, max_pixels, max_bytes, part_rows, parts_dir, html_out, keep_gps,
         no_prompts, overwrite, quiet, progress, **model_params) -> None:
    """Score images in files and folders (recursive) into a report, one row per file.

    Without --weights the default head is used ($AIISCAN_WEIGHTS, else the head installed by
    `aiiscan train --install-default`, else ./weights/default). Labels use the card's calibrated
    threshold or --threshold. The summary goes to stdout; progress and warnings to stderr.

    With several --weights every head scores every file from one decode: the report's score, label,
    threshold and model_id are head 1's, score_2, label_2, ... head 2's, and verdict combines the
    labels (--combine).
    """
    from ..options import as_weights
    from ..scanner.driver import run_scan

    if not paths and not from_list:
        raise click.UsageError("give at least one PATH or --from-list FILE")
    output = output or "report.parquet"
    if not fmt and Path(output).suffix.lower().lstrip(".") not in SUFFIXES:
        if Path(output).is_dir():  # the real mistake, not the suffix
            raise click.UsageError(f"report {output!r} is a folder: name a file in it, e.g. "
                                   f"{Path(output) / 'report.parquet'}")
        raise click.UsageError(f"cannot tell the report format of {Path(output).name!r}: end it in .parquet, "
                               ".csv or .jsonl, or pass --format")
    _check(html_out, overwrite, "HTML report")
    run, engine = _run_and_engine(model_params, quiet, progress)
    options = ScanOptions(
        run=run, weights=as_weights(weights), fmt=fmt, from_list=from_list, threshold=threshold,
        resume=resume, incremental=incremental, include=tuple(include), exclude=tuple(exclude),
        follow_symlinks=follow_symlinks, archives=archives, max_pixels=max_pixels, max_bytes=max_bytes,
        part_rows=part_rows, parts_dir=parts_dir, keep_gps=keep_gps, prompts=not no_prompts,
        overwrite=overwrite, command=shlex.join(["aiiscan", *sys.argv[1:]]), combine=combine)
    summary = run_scan(list(paths), output, options, engine)
    if summary.interrupted:
        kept = output
        if "://" in output:
            from ..scanner.staging import staging_for
            kept = str(staging_for(output, parts_dir))
        click.echo(f"interrupted: the rows written so far are kept in {for_terminal(kept)}.parts; "
                   f"resume with the same command plus --resume", err=True)
        sys.exit(summary.exit_code)
    for line in summary.lines():
        click.echo(for_terminal(line))
    if html_out:
        from ..reports.html import write_html

        click.echo(f"html: {for_terminal(str(write_html(summary.report, html_out)))}")
    sys.exit(summary.exit_code)


@main.command(short_help="Place a head's threshold on held-out photos (and AI images); store it in its card.",
              epilog=_examples(
                  "aiiscan calibrate --natural ~/photos/held-out",
                  "aiiscan calibrate --weights mine --natural ~/photos/held-out --policy fpr:0.01",
                  "aiiscan calibrate --weights mine --natural-list cal.txt --limit 500 --plot cal.png",
                  "aiiscan calibrate --weights mpft --natural ~/photos/held-out --ai ~/moderation/held-out"))
@_model_options
@_image_sets("held-out natural photos, not used in training",
             "AI-generated images not used in training (the positive set instead of the "
             "band-(30,100) copies)")
@click.option("--policy", default="balanced", metavar="balanced|fpr:X",
              help="balanced: maximise balanced accuracy (the paper's); fpr:X: flag at most a fraction "
                   "X of natural photos (e.g. fpr:0.01).")
@click.option("--limit", type=click.IntRange(2), default=None, show_default=False,
              help="Use a random subset of this many files from each set (drawn with --seed).")
@click.option("--seed", type=int, default=0, help="Seed for --limit's draw.")
@click.option("--plot", type=click.Path(dir_okay=False),
              help="Save a PNG histogram of both score sets with the threshold (needs matplotlib).")
@_overwrite
@_common
def calibrate(weights, natural, natural_list, ai, ai_list, policy, limit, seed, plot, overwrite, quiet,
              progress, **model_params) -> None:
    """Pick the head's threshold on natural photos and a positive set; store it in its card.

    The positive set is the --ai images when given, else band-(30,100) copies of the photos (no
    AI image needed). An MPFT head's balanced policy needs --ai; fpr:X uses the photos only.
    The previous calibration moves to the card's calibration_history.
    """
    from ..tasks import plots
    from ..tasks.calibrate import CalibrationError
    from ..tasks.calibrate import calibrate as run_calibrate
    from ..tasks.datasets import FOUND_HOW, list_images
    from ..tasks.metrics import parse_policy

    if not natural and not natural_list:
        raise click.UsageError("give --natural DIR and/or --natural-list FILE (held-out authentic photos)")
    _one_stdin(natural_list, ai_list)
    parse_policy(policy)
    _check(plot, overwrite, "plot")
    photos = list_images(natural, natural_list)
    if len(photos) < 2:
        raise CalibrationError(f"calibration needs at least 2 natural photos, found {len(photos)} "
                               f"in {', '.join(natural) or natural_list}. {FOUND_HOW}")
    fakes = None
    if ai or ai_list:
        fakes = list_images(ai, ai_list)
        if len(fakes) < 2:
            raise CalibrationError(f"calibration needs at least 2 AI images, found {len(fakes)} "
                                   f"in {', '.join(ai) or ai_list}. {FOUND_HOW}")
    run, engine = _run_and_engine(model_params, quiet, progress)
    scorer = engine.open(weights, run)
    result = run_calibrate(scorer, photos, policy, limit=limit, seed=seed, batch_size=run.batch_size,
                           workers=run.workers, plot=plot, progress=run.progress,
                           exact_decode=run.exact_decode, ai=fakes)
    info = _info(quiet)
    for path, reason in result.failed[:5]:
        info(f"unreadable: {path}: {reason}")
    for line in result.lines():
        click.echo(for_terminal(line))
    if result.plot == plots.MISSING:  # a file asked for and not written: said even with -q
        click.echo(f"warning: no plot written to {for_terminal(str(plot))}: {plots.MISSING}", err=True)


@main.command(short_help="Per-generator AP, AUC and accuracies on a labelled set (the paper's tables).",
              epilog=_examples(
                  "aiiscan evaluate --dataset ~/benchmarks/univfd -o table.md",
                  "aiiscan evaluate --weights mine --real real/ --fake sd15/ --perturb jpeg:90",
                  "aiiscan evaluate --dataset ./eval-dev --plots plots/ -o table.csv",
                  "aiiscan evaluate --dataset ./eval-dev --weights flow --weights mpft   # side by side"))
@_heads_options
@click.option("--dataset", type=click.Path(exists=True, file_okay=False),
              help="Labelled set: MANIFEST.tsv, real/ + fake/<generator>/, or UnivFD layout.")
@click.option("--real", multiple=True, type=click.Path(exists=True), help="Folder of real images.")
@click.option("--fake", multiple=True, type=click.Path(exists=True),
              help="Folder of fake images, one generator each (repeatable).")
@_output_option(False, "Also write the tables to TABLE.md or TABLE.csv.")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False),
              help="Folder for score histograms per generator and ROC curves (needs matplotlib).")
@click.option("--perturb", multiple=True,
              help="Also evaluate under a laundering condition: jpeg:Q, webp:Q, resize:S, blur:SIGMA, "
                   "crop:F (repeatable; one table each).")
@click.option("--threshold", type=float, default=None, show_default=False,
              help="Threshold for the accuracies, overriding the card's calibration (with several "
                   "--weights: head 1's only).")
@_overwrite
@_common
def evaluate(weights, dataset, real, fake, output, plots_dir, perturb, threshold, overwrite, quiet, progress,
             **model_params) -> None:
    """Per-generator AP, ROC-AUC and accuracies on a labelled set (the paper's Tables I/II).

    The tables go to stdout (and to -o); unreadable files and written files are listed on stderr.
    With several --weights the heads are scored from one decode per file and printed side by side
    per generator (h1, h2...); --plots then writes one subfolder per head (head1/, head2/...).
    """
    from ..decode.launder import Condition
    from ..files import atomic_write_bytes
    from ..options import as_weights
    from ..outputs import OutputError
    from ..tasks import plots
    from ..tasks.datasets import from_folders, load_dataset
    from ..tasks.evaluate import evaluate as run_evaluate
    from ..tasks.evaluate import (
        evaluate_heads,
        to_csv,
        to_csv_heads,
        to_markdown,
        to_markdown_heads,
        write_plots,
    )

    if bool(dataset) == bool(real or fake) or (not dataset and not (real and fake)):
        raise click.UsageError("give either --dataset ROOT or --real DIR with --fake DIR [--fake DIR...]")
    if output and Path(output).suffix.lower() not in (".md", ".csv"):
        raise click.UsageError("-o must end in .md or .csv")
    check_threshold(threshold)
    _check(output, overwrite, "table")
    if plots_dir and Path(plots_dir).is_dir() and any(Path(plots_dir).iterdir()) and not overwrite:
        raise OutputError(f"plots folder {plots_dir} is not empty: pass --overwrite to write into it")
    conditions = [None, *(Condition.parse(p) for p in perturb)]
    evalset = load_dataset(dataset) if dataset else from_folders(real, fake)
    run, engine = _run_and_engine(model_params, quiet, progress)
    weights = as_weights(weights)
    det = engine.open(weights, run)
    heads = det.heads
    args = dict(batch_size=run.batch_size, workers=run.workers, progress=run.progress,
                exact_decode=run.exact_decode)
    caveat = ("random-init backbone: these numbers say nothing about detection quality"
              if any(h.card.random_init for h in heads) else None)
    names = [h.model_id for h in heads]
    if len(heads) == 1:
        per_head = [run_evaluate(det, evalset, conditions, threshold, **args)]
        title = f"aiiscan evaluate: {det.model_id} on {evalset.root} ({evalset.layout})"
        text = to_markdown(per_head[0], title, caveat)
    else:
        per_head = evaluate_heads(det, evalset, conditions, threshold, **args)
        text = to_markdown_heads(per_head, names, f"aiiscan evaluate: {len(heads)} heads on {evalset.root} "
                                 f"({evalset.layout})", caveat)
    tables = per_head[0]
    click.echo(for_terminal(text, keep_newlines=True))
    info = _info(quiet)
    for t in tables:
        for path, reason in t.failed[:5]:
            info(f"[{t.condition}] unreadable: {path}: {reason}")
    if output:
        csv_body = to_csv(tables) if len(heads) == 1 else to_csv_heads(per_head, names)
        body = csv_body if output.lower().endswith(".csv") else text
        atomic_write_bytes(Path(output), body.encode("utf-8"))
        info(f"tables written to {output}")
    if plots_dir:
        if plots.available():
            written = []
            for k, head_tables in enumerate(per_head, start=1):
                folder = Path(plots_dir) if len(heads) == 1 else Path(plots_dir) / f"head{k}"
                written += write_plots(head_tables, evalset, folder)
            info(f"{len(written)} plots written to {plots_dir}")
        else:  # files asked for and not written: said even with -q
            click.echo(f"warning: no plots written to {for_terminal(str(plots_dir))}: {plots.MISSING}",
                       err=True)


@main.command(short_help="Turn a scan report into one self-contained HTML page (offline, no requests).",
              epilog=_examples(
                  "aiiscan report report.parquet -o report.html",
                  "aiiscan report night.csv -o night.html --top 100 --no-thumbnails",
                  "aiiscan report s3://bucket/reports/night.parquet -o s3://bucket/reports/night.html"))
@click.argument("report_file", metavar="REPORT", type=ReportFile())
@_output_option(True, "HTML file to write (folders are created), or an s3://, gs://, az:// object.")
@click.option("--top", type=click.IntRange(0), default=50,
              help="How many of the highest-scoring images to show as cards.")
@click.option("--no-thumbnails", is_flag=True,
              help="Leave images out of the page (sensitive material); cards keep score and path.")
@click.option("--thumb-budget", type=click.IntRange(0), default=4 * 1024 * 1024,
              help="Bytes of thumbnails the page may hold in total.")
@_overwrite
@_common
def report(report_file, output, top, no_thumbnails, thumb_budget, overwrite, quiet, progress) -> None:  # noqa: ARG001
    """Turn a scan report (.parquet, .csv or .jsonl) into one self-contained HTML page.

    The page makes no network request: styles, script and thumbnails are inline, under a strict
    Content-Security-Policy. Thumbnails are re-made from the files the report names: local
    files, objects in a store and members of tar/zip shards alike. REPORT may itself be an
    object (s3://bucket/reports/night.parquet): it is fetched whole into a temporary folder.
    """
    from ..reports.html import write_html

    _check(output, overwrite, "HTML report")
    page = write_html(report_file, output, top=top, thumbnails=not no_thumbnails, thumb_budget=thumb_budget)
    click.echo(f"wrote {for_terminal(str(page))}")


@main.command(short_help="Check this installation offline in seconds (tiny random backbone).",
              epilog=_examples("aiiscan selftest", "aiiscan selftest --keep /tmp/aiiscan-selftest"))
@click.option("--keep", type=click.Path(file_okay=False), default=None, show_default=False,
              help="Keep the generated files and report in this folder.")
@_common
def selftest(keep, quiet, progress) -> None:  # noqa: ARG001
    """Check this installation offline: a tiny random backbone is trained, calibrated and used to
    scan good and broken files through the real worker pipeline, and an MPFT head must learn a
    checkerboard planted in generated pictures. Scores mean nothing about real AI images.

    Prints PASS/FAIL per stage on stdout; exits 0 when every stage passed, 1 otherwise.
    """
    from ..tasks.selftest import run_selftest

    echo = (lambda line: click.echo(line) if line.startswith(("FAIL", "selftest")) else None) \
        if quiet else click.echo
    sys.exit(EXIT_OK if run_selftest(keep, echo=echo) else EXIT_CHECK_FAILED)
