"""``aiiscan finetune``: an MPFT head from natural photos and AI images you hold."""

from __future__ import annotations

import sys

import click

from ..errors import EXIT_INTERRUPTED
from ..options import FinetuneOptions
from ..textsafe import for_terminal
from . import common
from .params import options_for


@click.command("finetune", context_settings=common.CONTEXT,
               short_help="Fine-tune an MPFT detector (or fit a linear probe) on natural photos and AI "
                          "images you hold.",
               epilog=common.examples(
                   "aiiscan finetune --natural ~/photos/authentic --ai ~/moderation/ai-flagged -o mpft",
                   "aiiscan finetune --natural-list real.txt --ai-list ai.txt -o mpft --tune-blocks 4",
                   "aiiscan finetune --natural real/ --ai ai/ -o mpft --views 2 --device cpu   # CPU",
                   "aiiscan finetune --method probe --natural real/ --ai ai/ -o probe   # a linear probe",
                   "aiiscan finetune --natural real/ --ai ai/ -o mpft --resume   # after an interruption"))
@common.image_sets("natural photos (label 0)", "AI-generated images (label 1)")
@common.output_option(True, "Output prefix W: writes W.safetensors + W.json (folders are created).")
@common.backbone_options
@options_for(FinetuneOptions)
@click.option("--threads", type=click.IntRange(1), default=None, show_default=False,
              help="Torch CPU threads [default: torch's, one per core].")
@click.option("--resume", is_flag=True, help="Continue from W.ckpt.* after an interruption.")
@common.overwrite
@common.common
def command(natural, natural_list, ai, ai_list, output, backbone, pretrained, clip_weights, device, threads,
            resume, overwrite, quiet, progress, **options) -> None:
    """Fine-tune an MPFT detector (our reading of Niu et al., arXiv 2601.03586): the last blocks of a
    CLIP ViT and a binary head, trained on natural photos and AI images with texture-aware
    masking (the most-textured patches of each crop are masked while training, never at scan time).
    With --method probe: a logistic regression on the frozen embedding instead (UnivFD's linear
    probe), which shares the backbone pass with CLIP-Flow heads in a multi-head scan.

    Holds out --val-fraction of each class, keeps the epoch with the best held-out AUC and prints
    it. Writes W.safetensors (tuned tensors and head only) and W.json (its model card); scan,
    calibrate and evaluate take it like any head. Scores are logits: higher = more likely AI.
    """
    from .. import api
    from ..progress import wanted

    if not natural and not natural_list:
        raise click.UsageError("give --natural DIR and/or --natural-list FILE")
    if not ai and not ai_list:
        raise click.UsageError("give --ai DIR and/or --ai-list FILE (AI-generated images you hold); "
                               "with no AI image at all, train a CLIP-Flow head: aiiscan train")
    common.one_stdin(natural_list, ai_list)
    try:
        card = api.finetune(natural, ai, output, natural_list=natural_list, ai_list=ai_list,
                            backbone=backbone,
                            pretrained=pretrained, clip_weights=clip_weights, device=device, threads=threads,
                            resume=resume, overwrite=overwrite, quiet=quiet, progress=wanted(quiet, progress),
                            echo=common.info(quiet), **options)
    except KeyboardInterrupt:
        click.echo(f"interrupted: the last finished epoch is kept in {output}.ckpt.*; continue with the "
                   "same command plus --resume", err=True)
        sys.exit(EXIT_INTERRUPTED)
    t, auc = card.training, card.metrics.heldout_auc
    start = " (the linear-probe start)" if t.kept_epoch == 0 else ""
    chosen, value = (("l2", f"{card.head.l2:g}") if card.kind == "probe"
                     else ("kept epoch", f"{t.kept_epoch}{start}"))
    click.echo(f"wrote {for_terminal(output)}.safetensors and {for_terminal(output)}.json: {card.kind}, "
               f"{t.natural_count} natural + {t.ai_count} AI images, {chosen} {value}")
    click.echo(f"held-out AUC {auc:.4f} ({t['heldout_natural']} natural + {t['heldout_ai']} AI images "
               f"held out; it chose the {chosen}, so it is slightly optimistic)")
    if card.random_init:
        click.echo("random-init backbone: this AUC is about the images given, not about real AI images")
