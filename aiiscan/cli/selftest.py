"""``aiiscan selftest``: the installation checked offline in seconds."""

from __future__ import annotations

import sys

import click

from ..errors import EXIT_CHECK_FAILED, EXIT_OK
from . import common


@click.command("selftest", context_settings=common.CONTEXT,
               short_help="Check this installation offline in seconds (tiny random backbone).",
               epilog=common.examples("aiiscan selftest", "aiiscan selftest --keep /tmp/aiiscan-selftest"))
@click.option("--keep", type=click.Path(file_okay=False), default=None, show_default=False,
              help="Keep the generated files and report in this folder.")
@common.common
def command(keep, quiet, progress) -> None:  # noqa: ARG001
    """Check this installation offline: a tiny random backbone is trained, calibrated and used to
    scan good and broken files through the real worker pipeline, and an MPFT head must learn a
    checkerboard planted in generated pictures. Scores mean nothing about real AI images.

    Prints PASS/FAIL per stage on stdout; exits 0 when every stage passed, 1 otherwise.
    """
    from ..tasks.selftest import run_selftest

    echo = (lambda line: click.echo(line) if line.startswith(("FAIL", "selftest")) else None) \
        if quiet else click.echo
    sys.exit(EXIT_OK if run_selftest(keep, echo=echo) else EXIT_CHECK_FAILED)
