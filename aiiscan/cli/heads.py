"""``aiiscan heads``: the installed heads (a table or JSON), one head's card in words, the default."""

from __future__ import annotations

import json

import click

from ..textsafe import for_terminal
from . import common

JSON_HELP = "Print JSON instead of text."


@click.group("heads", invoke_without_command=True, context_settings=common.CONTEXT,
             short_help="List the installed heads; show one head's card in words; set the default.",
             epilog=common.examples("aiiscan heads", "aiiscan heads --json", "aiiscan heads show mine",
                                    "aiiscan heads show ./weights/b32", "aiiscan heads default mine"))
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@common.common
@click.pass_context
def command(ctx: click.Context, as_json: bool, quiet: bool, progress: bool | None) -> None:  # noqa: ARG001
    """List the heads in the weights folders and the default head, wherever it lives: name, kind,
    backbone, threshold and policy, calibration and training set sizes, and where each one is
    (* marks the default, which commands use without --weights).

    Folders searched: $AIISCAN_WEIGHTS_DIR (else $XDG_DATA_HOME/aiiscan/weights, by default
    ~/.local/share/aiiscan/weights), ./weights, the repository's weights/.
    """
    if ctx.invoked_subcommand is not None:
        return
    from .. import api
    from ..models.about import row, table

    heads = api.list_heads()
    if as_json:
        click.echo(json.dumps([row(h) for h in heads], indent=2))
        return
    if not heads:
        click.echo("no head installed: train one with "
                   "`aiiscan train --natural DIR -o mine --install-default`")
        return
    for line in table(heads):
        click.echo(for_terminal(line))


@command.command("show", context_settings=common.CONTEXT,
                 epilog=common.examples("aiiscan heads show", "aiiscan heads show mine --json"))
@click.argument("weights", required=False, metavar="[W]")
@click.option("--json", "as_json", is_flag=True, help="Print the model card as it is stored.")
@common.common
def show(weights: str | None, as_json: bool, quiet: bool, progress: bool | None) -> None:  # noqa: ARG001
    """One head's card in words (W: a name in the weights folders or a path prefix; default: the
    default head): what it is, what it was trained and calibrated on, its threshold and policy,
    its fingerprints, and its files with their sha256."""
    from .. import api
    from ..models.about import describe

    head = api.head(weights)
    if as_json:
        click.echo(json.dumps(head.card.to_dict(), indent=2, sort_keys=True))
        return
    for line in describe(head):
        click.echo(for_terminal(line))


@command.command("default", context_settings=common.CONTEXT,
                 epilog=common.examples("aiiscan heads default mine",
                                        "aiiscan heads default ./b32 --overwrite"))
@click.argument("weights", metavar="W")
@common.overwrite
@common.common
def default(weights: str, overwrite: bool, quiet: bool, progress: bool | None) -> None:  # noqa: ARG001
    """Make W the head that commands use without --weights. W keeps its name and its one card:
    `calibrate` without --weights writes W's card, and reports name W. Moving or deleting W's
    files unsets the default (commands then say so)."""
    from .. import api

    prefix = api.set_default(weights, overwrite=overwrite)
    click.echo(f"default head: {for_terminal(str(prefix))}")
