"""The ``aiiscan`` command line: a thin click layer over the Python API.

Exit codes: 0 success (every file scored); 3 report written but some files errored;
2 usage or configuration error (no report written); 130 interrupted (resumable).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from . import __version__
from .backbone import DEFAULT_BACKBONE, DEFAULT_PRETRAINED, BackboneError
from .decode import DEFAULT_MAX_BYTES
from .flow import MODES
from .preprocess import DEFAULT_MAX_PIXELS
from .proxies import BANDS, PROXY_KINDS
from .report import FORMATS, ReportError
from .weights import WeightsError

PRECISIONS = ("auto", "fp32", "bf16")
KNOWN_ERRORS = (BackboneError, WeightsError, ReportError, FileNotFoundError, ValueError)


def _fail(exc: BaseException) -> None:
    click.echo(f"aiiscan: error: {exc}", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="aiiscan")
def main() -> None:
    """Flag AI-generated images with CLIP-Flow (a flow trained only on natural photos).

    Start with `aiiscan selftest`; then `aiiscan train` a head on your own authentic photos,
    and `aiiscan scan` folders into a Parquet/CSV/JSONL report.
    """


@main.command()
@click.option("--natural", multiple=True, type=click.Path(exists=True),
              help="Folder (recursive) or file of natural photos; repeatable.")
@click.option("--natural-list", type=click.Path(allow_dash=True),
              help="File listing natural photos, one path per line ('-' = stdin).")
@click.option("--out", required=True, help="Output prefix W: writes W.safetensors + W.json.")
@click.option("--mode", type=click.Choice(MODES), default="N+P", show_default=True,
              help="P: proxies only; N+P: naturals and proxies (best in the paper); N: naturals only.")
@click.option("--backbone", default=DEFAULT_BACKBONE, show_default=True,
              help="open_clip model name, or an open_clip model-config .json.")
@click.option("--pretrained", default=DEFAULT_PRETRAINED, show_default=True,
              help="open_clip pretrained tag, or 'none' for random init (smoke tests only).")
@click.option("--clip-weights", type=click.Path(dir_okay=False),
              help="Local CLIP checkpoint file (also $AIISCAN_CLIP_WEIGHTS).")
@click.option("--proxy", type=click.Choice(PROXY_KINDS), default="freq", show_default=True,
              help="How proxy images are made from natural photos.")
@click.option("--band", type=click.Choice(BANDS), default="low", show_default=True,
              help="FFT band for freq/phase proxies (reference geometry; see README).")
@click.option("--ratio", type=click.FloatRange(0, 1), default=None,
              help="Fraction of the band masked [default: 1.0 for P, 0.1 for N+P and N].")
@click.option("--proxy-sigma", type=float, default=None,
              help="Strength of blur/sharpen/noise/jitter proxies (defaults 1.0/1.5/5/0.4).")
@click.option("--epochs", type=click.IntRange(1), default=None,
              help="Epochs [default: 30 for P, 10 for N+P and N].")
@click.option("--batch-size", type=click.IntRange(2), default=128, show_default=True)
@click.option("--lr", type=float, default=1e-4, show_default=True, help="Adam learning rate.")
@click.option("--views", type=click.IntRange(0), default=0, show_default=True,
              help="0: fresh augmentation every epoch; K: precompute K views once (CPU-friendly).")
@click.option("--val-natural", type=click.Path(exists=True), multiple=True,
              help="Held-out natural photos: band-(30,100) AUC printed each epoch, best epoch kept.")
@click.option("--proxy-margin", type=float, default=None,
              help="Cap each proxy's score in the loss at this margin (bounded variant; off).")
@click.option("--dim", type=click.IntRange(2), default=128, show_default=True,
              help="Reduced dimension C.")
@click.option("--blocks", type=click.IntRange(1), default=8, show_default=True,
              help="Affine coupling blocks.")
@click.option("--hidden", type=click.IntRange(1), default=512, show_default=True,
              help="Hidden width of each coupling network.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--workers", type=click.IntRange(0), default=None,
              help="Decode worker processes [default: number of cores].")
@click.option("--exact-decode", is_flag=True,
              help="Decode JPEGs at full resolution (default: DCT-domain downscaling first).")
@click.option("--resume", is_flag=True, help="Continue from W.ckpt.* after an interruption.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train(natural, natural_list, out, mode, backbone, pretrained, clip_weights, proxy, band,
          ratio, proxy_sigma, epochs, batch_size, lr, views, val_natural, proxy_margin, dim,
          blocks, hidden, seed, device, workers, exact_decode, resume, quiet) -> None:
    """Train a CLIP-Flow head on natural photos (no AI image is ever needed)."""
    from .backbone import build_backbone
    from .proxies import ProxySpec
    from .sources import list_images
    from .train import MODE_DEFAULTS, TrainConfig, TrainingError
    from .train import train as run_train

    if not natural and not natural_list:
        raise click.UsageError("give --natural DIR and/or --natural-list FILE")
    default_ratio, default_epochs = MODE_DEFAULTS[mode]
    try:
        cfg = TrainConfig(
            mode=mode, proxy=ProxySpec(proxy, band, default_ratio if ratio is None else ratio,
                                       proxy_sigma),
            epochs=epochs or default_epochs, batch_size=batch_size, lr=lr, views=views,
            seed=seed, proxy_margin=proxy_margin, dim=dim, blocks=blocks, hidden=hidden,
            workers=workers, exact_decode=exact_decode)
        bb = build_backbone(backbone, pretrained, clip_weights, device)
        photos = list_images(natural, natural_list)
        held_out = list_images(val_natural) if val_natural else None
        source = str(Path(backbone).resolve()) if backbone.endswith(".json") else backbone
        card = run_train(bb, photos, out, cfg, held_out, resume=resume, backbone_source=source,
                         progress=not quiet)
    except (*KNOWN_ERRORS, TrainingError) as exc:
        _fail(exc)
    t = card["training"]
    click.echo(f"wrote {out}.safetensors and {out}.json: mode {mode}, {t['natural_count']} photos "
               f"({t['natural_failed']} unreadable), kept epoch {t['kept_epoch']} ({t['kept_by']})")


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("-o", "--output", default="report.parquet", show_default=True,
              help="Report file; format from the extension (.parquet, .csv, .jsonl).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Report format, overriding the extension.")
@click.option("--from-list", type=click.Path(allow_dash=True),
              help="File with one path per line ('-' = stdin).")
@click.option("--weights", required=True,
              help="Head: path prefix W (W.safetensors + W.json) or a name in weights/.")
@click.option("--clip-weights", type=click.Path(dir_okay=False),
              help="Local CLIP checkpoint for the backbone the head's card names.")
@click.option("--threshold", type=float, default=None,
              help="Score threshold for label=ai, overriding the card's calibration.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--workers", type=click.IntRange(0), default=None,
              help="Decode worker processes [default: number of cores; 0 = in-process].")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="Torch threads for scoring (local engine) [default: torch's, one per core]. "
                   "Fewer leaves cores to the decode workers when decoding is the bottleneck.")
@click.option("--resume", is_flag=True, help="Continue an interrupted scan of the same output.")
@click.option("--incremental", type=click.Path(exists=True, dir_okay=False),
              help="Reuse rows of an older report for files whose size and mtime are unchanged.")
@click.option("--include", multiple=True, help="Only files matching this glob (repeatable).")
@click.option("--exclude", multiple=True, help="Skip files matching this glob (repeatable).")
@click.option("--follow-symlinks", is_flag=True, help="Follow symbolic links (loops are cut).")
@click.option("--max-pixels", type=click.IntRange(1), default=DEFAULT_MAX_PIXELS,
              show_default=True, help="Refuse images with more pixels (decompression bombs).")
@click.option("--max-bytes", type=click.IntRange(1), default=DEFAULT_MAX_BYTES,
              show_default=True, help="Refuse files larger than this.")
@click.option("--timeout", type=click.FloatRange(1), default=120.0, show_default=True,
              help="Seconds one file may take to decode before its worker is replaced.")
@click.option("--part-rows", type=click.IntRange(1), default=1024, show_default=True,
              help="Rows per checkpointed part: at most this much work is redone after a kill.")
@click.option("--exact-decode", is_flag=True,
              help="Decode JPEGs at full resolution (default: DCT-domain downscaling first).")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
              help="Backbone arithmetic: auto = bf16 on GPU, fp32 on CPU.")
@click.option("--html", "html_out", type=click.Path(dir_okay=False),
              help="Also write the self-contained HTML report (see `aiiscan report`).")
@click.option("--keep-gps", is_flag=True,
              help="Write GPS coordinates into the report (default: only a has_gps flag).")
@click.option("--no-prompts", is_flag=True, help="Leave generator prompts out of the report.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: worker processes on this machine; ray: Ray Data, across a cluster "
                   "(pip install 'aiiscan[ray]').")
@click.option("--ray-address", default=None,
              help="Ray cluster to join: auto, or ray://HOST:PORT [default: start a local one].")
@click.option("--gpus-per-worker", type=click.FloatRange(0), default=0.0, show_default=True,
              help="GPUs per scoring actor (ray engine).")
@click.option("--cpu-workers", type=click.IntRange(1), default=None,
              help="Concurrent decode tasks (ray engine) [default: as many as Ray schedules].")
@click.option("--scorers", type=click.IntRange(1), default=1, show_default=True,
              help="Scoring actors, each holding one copy of the model (ray engine).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def scan(paths, output, fmt, from_list, weights, clip_weights, threshold, device, batch_size,
         workers, threads, resume, incremental, include, exclude, follow_symlinks, max_pixels,
         max_bytes, timeout, part_rows, exact_decode, precision, html_out, keep_gps, no_prompts, engine,
         ray_address, gpus_per_worker, cpu_workers, scorers, quiet) -> None:
    """Score images in files and folders (recursive) into a report, one row per file."""
    from .scanner import run_scan

    if not paths and not from_list:
        raise click.UsageError("give at least one PATH or --from-list FILE")
    try:
        summary = run_scan(
            list(paths), output, weights=weights, from_list=from_list, fmt=fmt,
            threshold=threshold, device=device, batch_size=batch_size, workers=workers,
            resume=resume, incremental=incremental, include=include, exclude=exclude,
            follow_symlinks=follow_symlinks, max_pixels=max_pixels, max_bytes=max_bytes,
            timeout=timeout, clip_weights=clip_weights, part_rows=part_rows, keep_gps=keep_gps,
            prompts=not no_prompts, exact_decode=exact_decode, precision=precision, engine=engine,
            ray_address=ray_address, gpus_per_worker=gpus_per_worker, cpu_workers=cpu_workers,
            scorers=scorers, threads=threads, quiet=quiet,
            command=shlex.join(["aiiscan", *sys.argv[1:]]))
    except KNOWN_ERRORS as exc:
        _fail(exc)
    if summary.interrupted:
        click.echo(f"interrupted: the rows written so far are kept in {output}.parts; "
                   f"resume with the same command plus --resume", err=True)
        sys.exit(summary.exit_code)
    for line in summary.lines():
        click.echo(line, err=True)
    if html_out:
        from .htmlreport import write_html

        try:
            click.echo(f"html: {write_html(summary.report, html_out)}", err=True)
        except (OSError, ReportError) as exc:
            _fail(exc)
    sys.exit(summary.exit_code)


def _weights_options(f):
    """Options every command that loads a trained head shares."""
    for opt in reversed([
        click.option("--weights", required=True,
                     help="Head: path prefix W (W.safetensors + W.json) or a name in weights/."),
        click.option("--clip-weights", type=click.Path(dir_okay=False),
                     help="Local CLIP checkpoint for the backbone the head's card names."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True),
        click.option("--workers", type=click.IntRange(0), default=None,
                     help="Decode worker processes [default: number of cores; 0 = in-process]."),
        click.option("--quiet", is_flag=True, help="No progress bar."),
        click.option("--exact-decode", is_flag=True,
                     help="Decode JPEGs at full resolution (default: DCT-domain downscaling first)."),
        click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
                     help="Backbone arithmetic: auto = bf16 on GPU, fp32 on CPU."),
    ]):
        f = opt(f)
    return f


@main.command()
@_weights_options
@click.option("--natural", multiple=True, type=click.Path(exists=True),
              help="Held-out natural photos (folder or file; repeatable), not used in training.")
@click.option("--natural-list", type=click.Path(allow_dash=True),
              help="File listing held-out natural photos ('-' = stdin).")
@click.option("--policy", default="balanced", show_default=True,
              help="balanced: maximise balanced accuracy (paper); fpr:X: flag at most a fraction X "
                   "of natural photos (e.g. fpr:0.01).")
@click.option("--limit", type=click.IntRange(2), default=None,
              help="Use a random subset of this many photos (drawn with --seed).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--plot", type=click.Path(dir_okay=False),
              help="Save a PNG histogram of both score sets with the threshold (needs matplotlib).")
def calibrate(weights, clip_weights, device, batch_size, workers, quiet, exact_decode, precision,
              natural, natural_list, policy, limit, seed, plot) -> None:
    """Pick the head's threshold on natural photos and band-(30,100) copies; store it in its card."""
    from .calibrate import CalibrationError
    from .calibrate import calibrate as run_calibrate
    from .detector import Detector
    from .metrics import parse_policy
    from .sources import list_images

    if not natural and not natural_list:
        raise click.UsageError("give --natural DIR and/or --natural-list FILE (held-out authentic photos)")
    try:
        parse_policy(policy)
        photos = list_images(natural, natural_list)
        if len(photos) < 2:
            raise CalibrationError(f"calibration needs at least 2 natural photos, found {len(photos)} "
                                   f"in {', '.join(natural) or natural_list}")
        det = Detector.load(weights, device=device, clip_weights=clip_weights, quiet=quiet,
                            precision=precision)
        result = run_calibrate(det, photos, policy, limit=limit, seed=seed, batch_size=batch_size,
                               workers=workers, plot=plot, progress=not quiet, exact_decode=exact_decode)
    except (*KNOWN_ERRORS, CalibrationError) as exc:
        _fail(exc)
    for path, reason in result.failed[:5]:
        click.echo(f"unreadable: {path}: {reason}", err=True)
    for line in result.lines():
        click.echo(line)


@main.command()
@_weights_options
@click.option("--dataset", type=click.Path(exists=True, file_okay=False),
              help="Labelled set: MANIFEST.tsv, real/ + fake/<generator>/, or UnivFD layout.")
@click.option("--real", multiple=True, type=click.Path(exists=True), help="Folder of real images.")
@click.option("--fake", multiple=True, type=click.Path(exists=True),
              help="Folder of fake images, one generator each (repeatable).")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Also write the tables to TABLE.md or TABLE.csv.")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False),
              help="Folder for score histograms per generator and ROC curves (needs matplotlib).")
@click.option("--perturb", multiple=True,
              help="Also evaluate under a laundering condition: jpeg:Q, webp:Q, resize:S, blur:SIGMA, "
                   "crop:F (repeatable; one table each).")
@click.option("--threshold", type=float, default=None,
              help="Threshold for the accuracies, overriding the card's calibration.")
def evaluate(weights, clip_weights, device, batch_size, workers, quiet, exact_decode, precision, dataset,
             real, fake, output, plots_dir, perturb, threshold) -> None:
    """Per-generator AP, AUC and accuracies on a labelled set (the paper's Tables I/II)."""
    from . import plots
    from .datasets import DatasetError, from_folders, load_dataset
    from .detector import Detector
    from .evaluate import evaluate as run_evaluate
    from .evaluate import to_csv, to_markdown, write_plots
    from .launder import Condition
    from .weights import atomic_write_bytes

    if bool(dataset) == bool(real or fake) or (not dataset and not (real and fake)):
        raise click.UsageError("give either --dataset ROOT or --real DIR with --fake DIR [--fake DIR...]")
    if output and Path(output).suffix.lower() not in (".md", ".csv"):
        raise click.UsageError("-o must end in .md or .csv")
    try:
        conditions = [None, *(Condition.parse(p) for p in perturb)]
        evalset = load_dataset(dataset) if dataset else from_folders(real, fake)
        det = Detector.load(weights, device=device, clip_weights=clip_weights, quiet=quiet,
                            precision=precision)
        tables = run_evaluate(det, evalset, conditions, threshold, batch_size, workers, not quiet,
                              exact_decode)
    except (*KNOWN_ERRORS, DatasetError) as exc:
        _fail(exc)
    caveat = ("random-init backbone: these numbers say nothing about detection quality"
              if det.card["backbone"]["pretrained"] == "none" else None)
    text = to_markdown(tables, f"aiiscan evaluate: {det.model_id} on {evalset.root} ({evalset.layout})",
                       caveat)
    click.echo(text)
    for t in tables:
        for path, reason in t.failed[:5]:
            click.echo(f"[{t.condition}] unreadable: {path}: {reason}", err=True)
    if output:
        body = to_csv(tables) if output.lower().endswith(".csv") else text
        atomic_write_bytes(Path(output), body.encode("utf-8"))
        click.echo(f"tables written to {output}", err=True)
    if plots_dir:
        if plots.available():
            written = write_plots(tables, evalset, plots_dir)
            click.echo(f"{len(written)} plots written to {plots_dir}", err=True)
        else:
            click.echo(f"no plots: {plots.MISSING}", err=True)


@main.command()
@click.argument("report_file", metavar="REPORT", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="HTML file to write.")
@click.option("--top", type=click.IntRange(0), default=50, show_default=True,
              help="How many of the highest-scoring images to show as cards.")
@click.option("--no-thumbnails", is_flag=True,
              help="Leave images out of the page (sensitive material); cards keep score and path.")
@click.option("--thumb-budget", type=click.IntRange(0), default=4 * 1024 * 1024, show_default=True,
              help="Bytes of thumbnails the page may hold in total.")
def report(report_file, output, top, no_thumbnails, thumb_budget) -> None:
    """Turn a scan report into one self-contained HTML page (offline, no external requests)."""
    from .htmlreport import write_html

    try:
        path = write_html(report_file, output, top=top, thumbnails=not no_thumbnails,
                          thumb_budget=thumb_budget)
    except (*KNOWN_ERRORS, OSError) as exc:
        _fail(exc)
    click.echo(f"wrote {path}")


@main.command()
@click.option("--keep", type=click.Path(file_okay=False), default=None,
              help="Keep the generated files and report in this folder.")
def selftest(keep) -> None:
    """Check this installation offline: tiny random backbone, train, scan (scores mean nothing)."""
    from .selftest import run_selftest

    sys.exit(0 if run_selftest(keep) else 1)
