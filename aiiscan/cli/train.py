"""``aiiscan train``: a CLIP-Flow head from natural photos alone."""

from __future__ import annotations

import sys

import click

from ..errors import EXIT_INTERRUPTED
from ..options import TrainOptions
from ..textsafe import for_terminal
from . import common
from .params import options_for


@click.command("train", context_settings=common.CONTEXT,
               short_help="Train a CLIP-Flow head on your natural photos (no AI image needed).",
               epilog=common.examples(
                   "aiiscan train --natural ~/photos/authentic --val-natural ~/photos/held-out -o mine",
                   "aiiscan train --natural-list photos.txt -o weights/mine --views 2 --install-default",
                   "aiiscan train --natural ./photos --backbone ViT-B-32 --pretrained openai -o b32"))
@common.image_sets("natural photos")
@common.output_option(True, "Output prefix W: writes W.safetensors + W.json (folders are created).",
                      aliases=("--out",))
@common.backbone_options
@options_for(TrainOptions)
@click.option("--val-natural", type=click.Path(exists=True), multiple=True,
              help="Held-out natural photos: band-(30,100) AUC printed each epoch, best epoch kept.")
@click.option("--resume", is_flag=True, help="Continue from W.ckpt.* after an interruption.")
@click.option("--install-default", is_flag=True,
              help="Also make the head the default that scan, calibrate and evaluate use without "
                   "--weights: a pointer (default.link in $AIISCAN_WEIGHTS_DIR, else "
                   "$XDG_DATA_HOME/aiiscan/weights) to W, which keeps its name and its one card.")
@common.overwrite
@common.common
def command(natural, natural_list, output, backbone, pretrained, clip_weights, device, val_natural, resume,
            install_default, overwrite, quiet, progress, **options) -> None:
    """Train a CLIP-Flow head on natural photos: no AI-generated image is ever needed.

    Writes W.safetensors (the head's tensors) and W.json (its model card). CLIP weights are
    downloaded once into the Hugging Face cache, or given with --clip-weights.
    """
    from .. import api
    from ..progress import wanted

    if not natural and not natural_list:
        raise click.UsageError("give --natural DIR and/or --natural-list FILE")
    try:
        card = api.train(natural, output, natural_list=natural_list, validation=val_natural,
                         backbone=backbone,
                         pretrained=pretrained, clip_weights=clip_weights, device=device, resume=resume,
                         install_default=install_default, overwrite=overwrite, quiet=quiet,
                         progress=wanted(quiet, progress), echo=common.info(quiet), **options)
    except KeyboardInterrupt:
        click.echo(f"interrupted: the last finished epoch is kept in {output}.ckpt.*; continue with the "
                   "same command plus --resume", err=True)
        sys.exit(EXIT_INTERRUPTED)
    t = card.training
    click.echo(f"wrote {for_terminal(output)}.safetensors and {for_terminal(output)}.json: mode {t.mode}, "
               f"{t.natural_count} photos ({t.natural_failed} unreadable), kept epoch {t.kept_epoch} "
               f"({t.kept_by})")
    if install_default:
        click.echo(f"installed as the default head (see `aiiscan heads`): {for_terminal(str(output))}")
