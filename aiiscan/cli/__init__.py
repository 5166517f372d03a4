"""The ``aiiscan`` command line: a thin click layer over the Python API (``api``).

One module per command; their settings are generated from the typed options (``cli.params``),
so a default is written once, in ``options``. Conventions every command shares (``cli.common``):
``-o/--output`` for what it writes (checked before any work by ``files.check_output``; an existing
file needs ``--overwrite``), ``-q/--quiet``, progress bars only on a terminal
(``--progress/--no-progress``), results on stdout and everything else on stderr, and the exit
codes of ``errors.EXIT_CODES``. Heavy modules (torch, the model) are imported inside the commands
that need them, so ``aiiscan --help`` starts fast.
"""

from __future__ import annotations

import os
import traceback

import click

from .. import signals
from ..errors import EXIT_CODES, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, AiiscanError
from ..textsafe import for_terminal
from ..version import __version__
from . import calibrate, evaluate, evidence, finetune, heads, report, scan, selftest, train
from .common import CONTEXT

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


for _command in (train, finetune, scan, calibrate, evaluate, report, evidence, heads, selftest):
    main.add_command(_command.command)
