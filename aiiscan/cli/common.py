"""What every command shares: the conventions' options (``-o``, ``-q``, ``--progress``,
``--overwrite``), image sets, the backbone and head options, and small helpers.

Settings come from the typed options (``cli.params``); what is here is how a command names its
inputs and outputs. Nothing here imports torch: ``--help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from .. import progress as progress_bars
from ..engines import ENGINES, make_engine
from ..errors import UsageError
from ..options import DEFAULT_BACKBONE, DEFAULT_PRETRAINED, RunOptions, build
from ..textsafe import for_terminal
from .params import options_for

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100, "show_default": True}


def examples(*lines: str) -> str:
    """A help epilog that click prints verbatim."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def output_option(required: bool, help: str, aliases: tuple[str, ...] = ()) -> Callable:
    return click.option("-o", "--output", *aliases, "output", required=required, callback=_not_stdout,
                        type=click.Path(), help=help)  # files.check_output judges it


def _not_stdout(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:  # noqa: ARG001
    """``-o -`` is refused rather than written to a file named ``-``: outputs are written
    atomically (and a scan's report resumably, in parts), which a pipe cannot be."""
    if value == "-":
        raise UsageError(f"-o - (standard output) is not supported by `aiiscan {ctx.info_name}`: its output "
                         "is written atomically to a file or an s3://, gs://, az:// object: name a file, "
                         "and `cat` it where a pipe wants it")
    return value


def image_sets(natural: str, ai: str | None = None) -> Callable[[Callable], Callable]:
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
    return _all(opts)


def one_stdin(natural_list: str | None, ai_list: str | None) -> None:
    if natural_list == "-" and ai_list == "-":
        raise click.UsageError("--natural-list and --ai-list cannot both read stdin ('-'): give one a file")


def backbone_options(fn: Callable) -> Callable:
    """--backbone/--pretrained/--clip-weights/--device: the backbone a new head is trained on."""
    return _all([
        click.option("--backbone", default=DEFAULT_BACKBONE,
                     help="open_clip model name (a ViT for finetune), or an open_clip model-config .json."),
        click.option("--pretrained", default=DEFAULT_PRETRAINED,
                     help="open_clip pretrained tag, or 'none' for random init (smoke tests only)."),
        click.option("--clip-weights", type=click.Path(dir_okay=False),
                     help="Local CLIP checkpoint file (also $AIISCAN_CLIP_WEIGHTS)."),
        click.option("--device", default="auto", help="auto, cpu, cuda or cuda:N."),
    ])(fn)


def common(fn: Callable) -> Callable:
    """-q/--quiet and --progress/--no-progress: every command."""
    return _all([
        click.option("-q", "--quiet", is_flag=True,
                     help="No progress bars and no messages on stderr except errors."),
        click.option("--progress/--no-progress", default=None, show_default=False,
                     help="Draw progress bars [default: only when stderr is a terminal]."),
    ])(fn)


def overwrite(fn: Callable) -> Callable:
    return click.option("--overwrite", is_flag=True,
                        help="Replace existing output files (refused otherwise).")(fn)


def heads(many: bool = False, skip: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """What every command that scores with trained heads shares: --weights (repeatable with
    ``many``), how the model runs (``RunOptions``), and where (``--engine`` and each engine's own
    options; those of another engine are refused)."""
    weights_help = ("Head: path prefix W (W.safetensors + W.json) or a name in the weights folders "
                    "[default: $AIISCAN_WEIGHTS, else the installed default head].")
    if many:
        weights_help += (" Repeat for a multi-head run: each file is decoded once and scored by every head "
                         "(heads on the same frozen backbone share its pass).")
    return _all([
        click.option("--weights", default=None, show_default=False, help=weights_help, metavar="W",
                     multiple=many),
        options_for(RunOptions, skip=("progress", "quiet", *skip)),
        click.option("--engine", type=click.Choice(sorted(ENGINES)), default="local",
                     help="local: worker processes on this machine; ray: Ray Data, across a cluster "
                          "(pip install 'aiiscan[ray]')."),
        *(options_for(cls, as_none=True) for cls in ENGINES.values()),
    ])


def settings(params: dict, quiet: bool, progress: bool | None) -> dict:
    """A command's parameters with -q and --progress/--no-progress resolved (bars only on a
    terminal): the keywords its API function takes."""
    return params | {"quiet": quiet, "progress": progress_bars.wanted(quiet, progress)}


def run_options(params: dict, quiet: bool, progress: bool | None) -> RunOptions:
    """How the model runs, from a command's parameters."""
    return build(RunOptions, settings(params, quiet, progress))


def engine_options(params: dict) -> dict:
    """The engine's own options a command was given (the rest are the engines' defaults)."""
    from ..engines import ENGINE_OPTIONS

    return {k: params[k] for k in ENGINE_OPTIONS if params.get(k) is not None}


def engine(params: dict) -> Any:
    return make_engine(params["engine"], **engine_options(params))


def info(quiet: bool) -> Callable[[str], None]:
    """Messages for stderr, silenced by -q."""
    return (lambda _msg: None) if quiet else \
        (lambda msg: click.echo(for_terminal(msg, keep_newlines=True), err=True))


def _all(decorators: list[Callable]) -> Callable[[Callable], Callable]:
    def decorate(fn: Callable) -> Callable:
        for d in reversed(decorators):
            fn = d(fn)
        return fn
    return decorate
