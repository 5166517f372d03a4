"""``aiiscan evaluate``: per-generator tables on a labelled set, the paper's layout."""

from __future__ import annotations

import click

from ..options import EvaluateOptions
from ..textsafe import for_terminal
from . import common
from .params import options_for


@click.command("evaluate", context_settings=common.CONTEXT,
               short_help="Per-generator AP, AUC and accuracies on a labelled set (the paper's tables).",
               epilog=common.examples(
                   "aiiscan evaluate --dataset ~/benchmarks/univfd -o table.md",
                   "aiiscan evaluate --weights mine --real real/ --fake sd15/ --perturb jpeg:90",
                   "aiiscan evaluate --dataset ./eval-dev --plots plots/ -o table.csv",
                   "aiiscan evaluate --dataset ./eval-dev --weights flow --weights mpft   # side by side"))
@common.heads(many=True)
@click.option("--dataset", type=click.Path(exists=True, file_okay=False),
              help="Labelled set: MANIFEST.tsv, real/ + fake/<generator>/, or UnivFD layout.")
@click.option("--real", multiple=True, type=click.Path(exists=True), help="Folder of real images.")
@click.option("--fake", multiple=True, type=click.Path(exists=True),
              help="Folder of fake images, one generator each (repeatable).")
@common.output_option(False, "Also write the tables to TABLE.md or TABLE.csv.")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False),
              help="Folder for score histograms per generator and ROC curves (PNG).")
@options_for(EvaluateOptions)
@common.overwrite
@common.common
def command(weights, dataset, real, fake, output, plots_dir, overwrite, quiet, progress, **params) -> None:
    """Per-generator AP, ROC-AUC and accuracies on a labelled set (the paper's Tables I/II).

    The tables go to stdout (and to -o); unreadable files and written files are listed on stderr.
    With several --weights the heads are scored from one decode per file and printed side by side
    per generator (h1, h2...); --plots then writes one subfolder per head (head1/, head2/...).
    """
    from .. import api

    result = api.evaluate(weights=weights, dataset=dataset, real=real, fake=fake, output=output,
                          plots=plots_dir, overwrite=overwrite, **common.settings(params, quiet, progress))
    click.echo(for_terminal(result.markdown, keep_newlines=True))
    info = common.info(quiet)
    for t in result.tables[0]:
        for path, reason in t.failed[:5]:
            info(f"[{t.condition}] unreadable: {path}: {reason}")
    if output:
        info(f"tables written to {output}")
    if plots_dir:
        info(f"{len(result.plots or ())} plots written to {plots_dir}")
