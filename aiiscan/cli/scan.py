"""``aiiscan scan``: files, folders, lists, buckets and shards into a report, one row per file."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from ..errors import EXIT_NOTHING, UsageError
from ..options import ScanOptions
from ..reports.formats import SUFFIXES, unknown_format
from ..textsafe import for_terminal
from . import common
from .params import options_for

NO_DETECTOR = ("note: no pixel detector ran: no head is installed, and none ships with aiiscan (a head is "
               "learnt from the CLIP features of photos you trust, with real CLIP weights); this report "
               "holds evidence only (C2PA, generator metadata, watermarks). Make one: aiiscan train "
               "--natural ~/photos/authentic -o mine --install-default")


@click.command("scan", context_settings=common.CONTEXT,
               short_help="Score images in files, folders and lists into a report, one row per file.",
               epilog=common.examples(
                   "aiiscan scan ./photos -o report.parquet",
                   "aiiscan scan /archive -o night.parquet --incremental last.parquet --html night.html",
                   "find /srv -name '*.jpg' | aiiscan scan --from-list - -o r.csv --weights mine",
                   "aiiscan scan /archive -o report.parquet --resume      # after an interruption",
                   "aiiscan scan s3://bucket/photos/ -o report.parquet    # pip install 'aiiscan[s3]'",
                   "aiiscan scan shard-0001.tar /exports --archives -o shards.parquet",
                   "aiiscan scan s3://bucket/photos/ -o s3://bucket/reports/night.parquet",
                   "aiiscan scan ./photos -o both.parquet --weights flow --weights mpft --combine any",
                   "aiiscan scan ./photos -o report.parquet --stability jpeg:75,resize:0.5"))
@click.argument("paths", nargs=-1, type=click.Path())
@common.output_option(False, "Report file; its format from the extension (.parquet, .csv, .jsonl) "
                      "[default: report.parquet].")
@common.heads(many=True)
@options_for(ScanOptions, skip=("run", "weights"))
@click.option("--html", "html_out", type=click.Path(dir_okay=False),
              help="Also write the self-contained HTML report (see `aiiscan report`); a file, or an "
                   "s3://, gs://, az:// object.")
@common.common
def command(paths, output, html_out, quiet, progress, **params) -> None:
    """Score images in files and folders (recursive) into a report, one row per file.

    Without --weights the default head is used ($AIISCAN_WEIGHTS, else the head installed by
    `aiiscan train --install-default`, else ./weights/default). Labels use the card's calibrated
    threshold or --threshold. The summary goes to stdout; progress and warnings to stderr. A scan
    that finds no image file at all exits 5, "nothing to scan" (--allow-empty: 0).

    With several --weights every head scores every file from one decode: the report's score, label,
    threshold and model_id are head 1's, score_2, label_2, ... head 2's (--combine: how their labels
    enter the verdict).

    Every row's verdict (ai, natural, uncertain) and verdict_reasons come from its evidence and the
    heads' labels by one written rule (docs/verdicts.md); --stability jpeg:75,resize:0.5 also scores
    re-encoded copies and marks a file whose label flips as uncertain.
    """
    from ..files import check_output
    from ..inputs import is_remote
    from ..options import as_weights, build
    from ..reports.html import check_page_name
    from ..scanner.driver import heads_for, run_scan
    from ..scanner.staging import staging_for

    if not paths and not params["from_list"]:
        raise click.UsageError("give at least one PATH or --from-list FILE")
    output = output or "report.parquet"
    if not params["fmt"] and Path(output).suffix.lower().lstrip(".") not in SUFFIXES:
        if Path(output).is_dir():  # the real mistake, not the suffix
            raise click.UsageError(f"report {output!r} is a folder: name a file in it, e.g. "
                                   f"{Path(output) / 'report.parquet'}")
        raise UsageError(unknown_format(output))
    if html_out:
        check_page_name(html_out)
        check_output(html_out, overwrite=params["overwrite"], what="HTML report")
    run = common.run_options(params, quiet, progress)
    options = build(ScanOptions, params | {"run": run, "weights": as_weights(params["weights"]),
                                           "command": shlex.join(["aiiscan", *sys.argv[1:]])})
    if heads_for(options.weights) == () and not quiet:
        click.echo(NO_DETECTOR, err=True)
    summary = run_scan(list(paths), output, options, common.engine(params))
    if summary.interrupted:
        kept = staging_for(output, options.parts_dir) if is_remote(output) else output
        click.echo(f"interrupted: the rows written so far are kept in {for_terminal(str(kept))}.parts; "
                   f"resume with the same command plus --resume", err=True)
        sys.exit(summary.exit_code)
    for line in summary.lines():
        click.echo(for_terminal(line))
    if html_out:
        from ..reports.html import write_html

        page = write_html(summary.report, html_out, warn=common.info(quiet))
        click.echo(f"html: {for_terminal(str(page))}")
    if summary.exit_code == EXIT_NOTHING:
        click.echo(f"aiiscan: {for_terminal(summary.nothing_message())}", err=True)
    elif summary.empty_roots and not quiet:
        click.echo("warning: no image file under " + for_terminal("; ".join(summary.empty_roots)), err=True)
    sys.exit(summary.exit_code)
