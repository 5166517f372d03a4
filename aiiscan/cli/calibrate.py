"""``aiiscan calibrate``: a head's threshold placed on held-out photos (and AI images)."""

from __future__ import annotations

import click

from ..options import CalibrateOptions
from ..textsafe import for_terminal
from . import common
from .params import options_for


@click.command("calibrate", context_settings=common.CONTEXT,
               short_help="Place a head's threshold on held-out photos (and AI images); store it in its "
                          "card.",
               epilog=common.examples(
                   "aiiscan calibrate --natural ~/photos/held-out",
                   "aiiscan calibrate --weights mine --natural ~/photos/held-out --policy fpr:0.01",
                   "aiiscan calibrate --weights mine --natural-list cal.txt --limit 500 --plot cal.png",
                   "aiiscan calibrate --weights mpft --natural ~/photos/held-out --ai ~/moderation/held-out"))
@common.heads()
@common.image_sets("held-out natural photos, not used in training",
                   "AI-generated images not used in training (the positive set instead of the "
                   "band-(30,100) copies)")
@options_for(CalibrateOptions)
@click.option("--plot", type=click.Path(dir_okay=False),
              help="Save a PNG histogram of both score sets with the threshold.")
@common.overwrite
@common.common
def command(weights, natural, natural_list, ai, ai_list, plot, overwrite, quiet, progress, **params) -> None:
    """Pick the head's threshold on natural photos and a positive set; store it in its card.

    The positive set is the --ai images when given, else band-(30,100) copies of the photos (no
    AI image needed). An MPFT head's balanced policy needs --ai; fpr:X uses the photos only.
    The previous calibration moves to the card's calibration_history.
    """
    from .. import api

    if not natural and not natural_list:
        raise click.UsageError("give --natural DIR and/or --natural-list FILE (held-out authentic photos)")
    common.one_stdin(natural_list, ai_list)
    result = api.calibrate(natural, weights=weights, natural_list=natural_list, ai=ai, ai_list=ai_list,
                           plot=plot, overwrite=overwrite, **common.settings(params, quiet, progress))
    info = common.info(quiet)
    for path, reason in result.failed[:5]:
        info(f"unreadable: {path}: {reason}")
    for line in result.lines():
        click.echo(for_terminal(line))
