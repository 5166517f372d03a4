"""``aiiscan report``: a report into one self-contained HTML page."""

from __future__ import annotations

import click

from ..options import PageOptions
from ..textsafe import for_terminal
from . import common
from .params import ReportFile, options_for


@click.command("report", context_settings=common.CONTEXT,
               short_help="Turn a scan report into one self-contained HTML page (offline, no requests).",
               epilog=common.examples(
                   "aiiscan report report.parquet -o report.html --base ~/photos",
                   "aiiscan report night.csv -o night.html --top 100 --no-thumbnails",
                   "aiiscan report mine.parquet -o mine.html --thumbnails-from-roots",
                   "aiiscan report s3://bucket/reports/night.parquet -o s3://bucket/reports/night.html "
                   "--thumbnails-from-store"))
@click.argument("report_file", metavar="REPORT", type=ReportFile())
@common.output_option(True, "HTML file to write (folders are created), or an s3://, gs://, az:// object.")
@options_for(PageOptions)
@common.overwrite
@common.common
def command(report_file, output, overwrite, quiet, progress, **params) -> None:  # noqa: ARG001
    """Turn a scan report (.parquet, .csv or .jsonl) into one self-contained HTML page.

    The page makes no network request: styles, script and thumbnails are inline, under a strict
    Content-Security-Policy. A report is untrusted input, so thumbnails are re-made only from
    what you allow: local files under --base DIR (default: the current folder; the report's
    relative paths are resolved there, never under the folder the report says the scan ran in),
    or under the report's recorded roots with --thumbnails-from-roots; objects in s3/gs/az with
    --thumbnails-from-store (your credentials); http(s) URLs never. Special files (FIFOs,
    devices) are never opened for reading. REPORT may itself be an object
    (s3://bucket/reports/night.parquet): it is fetched whole into a temporary folder.
    """
    from .. import api

    page = api.report(report_file, output, overwrite=overwrite, echo=common.info(quiet), **params)
    click.echo(f"wrote {for_terminal(str(page))}")
