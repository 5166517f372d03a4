"""The Python API: what every command does, with the command's defaults (``options``).

Each function takes the same keywords as its command's options (``batch_size=``, ``mode=``,
``mask_ratio=``...), builds the same typed options, checks its outputs before any work, and
returns what the command prints from: ``scan`` the report's path, ``train``/``finetune`` the new
head's card, ``calibrate`` the calibration, ``evaluate`` the tables. The CLI (``cli``) is a thin
layer over these functions; a notebook calls them directly. Heavy modules load inside the
functions, so ``import aiiscan`` stays light.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import AiiscanError, UsageError
from .options import (
    DEFAULT_BACKBONE,
    DEFAULT_PRETRAINED,
    CalibrateOptions,
    EvaluateOptions,
    FinetuneOptions,
    PageOptions,
    RunOptions,
    ScanOptions,
    TrainOptions,
    as_weights,
    build,
)

if TYPE_CHECKING:
    from .card import ModelCard
    from .engines import Engine
    from .models.scorer import Detector, Scorer
    from .tasks.calibrate import Calibration
    from .tasks.evaluate import Table

__all__ = ["scan", "load", "train", "finetune", "calibrate", "evaluate", "report", "evidence", "list_heads",
           "head", "set_default"]


def engine_for(name: str = "local", detector: Scorer | None = None, **options: Any) -> Engine:
    """The engine ``name`` with its own options (None: its default); ``detector``: a scorer
    already loaded, for the local engine. An option the engine does not have is refused."""
    from .engines import make_engine

    own = {k: v for k, v in options.items() if v is not None}
    if detector is not None:
        own["detector"] = detector
    return make_engine(name, **own)


def _split_engine(options: dict) -> tuple[dict, dict]:
    """The keywords that belong to the engines, and the rest."""
    from .engines import ENGINE_OPTIONS

    return ({k: options.pop(k) for k in list(options) if k in ENGINE_OPTIONS}, options)


def scan_options(*, detector: Scorer | None = None, engine: str = "local", **options: Any
                 ) -> tuple[ScanOptions, Engine]:
    """``ScanOptions`` (with its ``RunOptions``) and an engine from flat keywords."""
    engine_kw, options = _split_engine(dict(options))
    if "weights" in options:
        options["weights"] = as_weights(options["weights"])
    for key in ("include", "exclude"):
        if key in options:
            options[key] = tuple(options[key])
    unknown = set(options) - _keys(ScanOptions)
    if unknown:
        raise UsageError(f"scan has no option {', '.join(sorted(unknown))}")
    return build(ScanOptions, options), engine_for(engine, detector, **engine_kw)


def _keys(cls: type) -> set[str]:
    from dataclasses import fields

    from .options import param

    out = set()
    for f in fields(cls):
        out.add(param(f))
        if "nested" in f.metadata:
            out |= _keys(f.metadata["nested"])
    return out


def scan(paths: Sequence[str], output: str | Path = "report.parquet", **options: Any) -> Path | str | None:
    """Scan files, folders, lists, URLs and shards into a report; returns its path (None if
    interrupted). Keywords: the fields of ``ScanOptions`` and ``RunOptions`` (the CLI's options),
    ``detector=`` (a loaded ``Detector``, or a ``Scorer`` of several heads), ``weights=[A, B]``
    (several heads; ``combine=``), ``stability="jpeg:75,resize:0.5"``, ``engine=`` ("local" or
    "ray") and the engine's own options. Each row's ``verdict`` and ``verdict_reasons`` are the
    rule's of ``scanner.verdict``, as the CLI writes them. Raises ``NothingToScan`` when no root
    held an image file (the report is written; as the CLI's exit 5), unless ``allow_empty=True``."""
    from .errors import EXIT_NOTHING, NothingToScan
    from .scanner.driver import run_scan

    summary = run_scan(list(paths), output, *scan_options(**options))
    if summary.exit_code == EXIT_NOTHING:
        raise NothingToScan(summary.nothing_message())
    return summary.report


def load(weights: str | Path | None = None, **run: Any) -> Detector:
    """A head and the backbone its card names, ready to score (``None``: the default head)."""
    from .models.scorer import Detector

    opts = build(RunOptions, run)
    return Detector.load(weights, device=opts.device, clip_weights=opts.clip_weights, quiet=opts.quiet,
                         precision=opts.precision)


def _images(paths: Sequence[str], listing: str | None, what: str) -> list[str]:
    from .tasks.datasets import list_images

    if not paths and not listing:
        raise UsageError(f"give {what}: folders or files, or a list file")
    return list_images(paths, listing)


def _head_outputs(output: str | Path, overwrite: bool) -> None:
    from .files import check_output

    for suffix in (".safetensors", ".json"):
        check_output(f"{output}{suffix}", overwrite=overwrite, companions=(".ckpt",), what="head file")


def _card_writable(weights: str | Path | None) -> None:
    """calibrate rewrites the head's card: a card it may not replace (a read-only install) is
    named before a single photo is scored."""
    from .card import head_files
    from .files import check_output
    from .models.installed import resolve_head

    card = head_files(resolve_head(weights))[1]
    check_output(card, overwrite=True, what="model card (calibrate writes the threshold into it)")


def train(natural: Sequence[str] = (), output: str | Path = "head", *, natural_list: str | None = None,
          validation: Sequence[str] = (), backbone: str = DEFAULT_BACKBONE,
          pretrained: str = DEFAULT_PRETRAINED, clip_weights: str | None = None, device: str = "auto",
          resume: bool = False, install_default: bool = False, overwrite: bool = False,
          progress: bool = False, quiet: bool = True, echo: Callable[[str], None] | None = None,
          **options: Any) -> ModelCard:
    """Train a CLIP-Flow head on natural photos (``TrainOptions``' keywords: ``mode=``,
    ``epochs=``, ``proxy_kind=``, ``ratio=``...; mode-dependent defaults as the CLI's) and write
    ``output.safetensors`` + ``output.json``; ``install_default`` also installs it as the default
    head. ``validation``: held-out photos whose band-(30,100) AUC picks the epoch kept."""
    from .files import check_output
    from .models.backbone import build_backbone
    from .models.installed import install_default as install
    from .models.installed import installed_default
    from .tasks.datasets import list_images
    from .tasks.train import train as run_train

    _head_outputs(output, overwrite)
    if install_default:
        for path in installed_default():
            check_output(path, overwrite=overwrite, what="installed default head")
    cfg = build(TrainOptions, options)
    photos = _images(natural, natural_list, "natural photos")
    held_out = list_images(validation) if validation else None
    if held_out is not None and len(held_out) < 2:  # given, yet unusable: never silently "last epoch"
        from .tasks.datasets import FOUND_HOW
        from .tasks.train import TrainingError

        raise TrainingError(f"--val-natural needs at least 2 photos, found {len(held_out)} in "
                            f"{', '.join(validation)}. {FOUND_HOW}")
    bb = build_backbone(backbone, pretrained, clip_weights, device, quiet=quiet)
    card = run_train(bb, photos, output, cfg, held_out, resume=resume, progress=progress, echo=echo)
    if install_default:
        install(output)
    return card


def finetune(natural: Sequence[str] = (), ai: Sequence[str] = (), output: str | Path = "mpft", *,
             natural_list: str | None = None, ai_list: str | None = None, backbone: str = DEFAULT_BACKBONE,
             pretrained: str = DEFAULT_PRETRAINED, clip_weights: str | None = None, device: str = "auto",
             threads: int | None = None, resume: bool = False, overwrite: bool = False,
             progress: bool = False, quiet: bool = True, echo: Callable[[str], None] | None = None,
             **options: Any) -> ModelCard:
    """Fine-tune an MPFT head on natural photos and AI images (``method="probe"``: fit a linear
    probe on the frozen embedding instead; ``FinetuneOptions``' keywords) and write
    ``output.safetensors`` + ``output.json``."""
    from .models.backbone import build_backbone
    from .tasks.finetune import finetune as run_finetune

    if not ai and not ai_list:
        raise UsageError("give AI-generated images you hold (--ai DIR or --ai-list FILE); with no AI image "
                         "at all, train a CLIP-Flow head: aiiscan train")
    _head_outputs(output, overwrite)
    cfg = build(FinetuneOptions, options)
    photos = _images(natural, natural_list, "natural photos")
    fakes = _images(ai, ai_list, "AI images")
    if threads:
        import torch

        torch.set_num_threads(threads)
    bb = build_backbone(backbone, pretrained, clip_weights, device, quiet=quiet)
    return run_finetune(bb, photos, fakes, output, cfg, resume=resume, own_backbone=True, progress=progress,
                        echo=echo)


def calibrate(natural: Sequence[str] = (), *, weights: str | None = None, natural_list: str | None = None,
              ai: Sequence[str] = (), ai_list: str | None = None, plot: str | Path | None = None,
              overwrite: bool = False, engine: str = "local", **options: Any) -> Calibration:
    """Place a head's threshold on held-out natural photos (and AI images it has not seen) and
    write it into its card (``CalibrateOptions``' and ``RunOptions``' keywords)."""
    from .files import check_output
    from .tasks.calibrate import CalibrationError
    from .tasks.calibrate import calibrate as run_calibrate
    from .tasks.datasets import FOUND_HOW
    from .tasks.metrics import parse_policy

    engine_kw, options = _split_engine(dict(options))
    cal = build(CalibrateOptions, options)
    run = build(RunOptions, options)
    parse_policy(cal.policy)
    if cal.stability:
        from .decode.launder import conditions

        conditions(cal.stability)  # a bad condition: refused before a photo is scored
    _card_writable(weights)
    if plot:
        check_output(plot, overwrite=overwrite, what="plot")
    photos = _images(natural, natural_list, "held-out natural photos")
    if len(photos) < 2:
        raise CalibrationError(f"calibration needs at least 2 natural photos, found {len(photos)} "
                               f"in {', '.join(natural) or natural_list}. {FOUND_HOW}")
    fakes = None
    if ai or ai_list:
        fakes = _images(ai, ai_list, "AI images")
        if len(fakes) < 2:
            raise CalibrationError(f"calibration needs at least 2 AI images, found {len(fakes)} "
                                   f"in {', '.join(ai) or ai_list}. {FOUND_HOW}")
    scorer = engine_for(engine, **engine_kw).open(as_weights(weights), run)
    return run_calibrate(scorer, photos, cal.policy, limit=cal.limit, seed=cal.seed,
                         batch_size=run.batch_size,
                         workers=run.workers, plot=plot, progress=run.progress, exact_decode=run.exact_decode,
                         ai=fakes, stability=cal.stability)


@dataclass
class Evaluation:
    """``evaluate``'s result: per head, one table per condition; the Markdown and CSV texts; the
    plots written (None: none asked for)."""

    tables: list[list[Table]]
    markdown: str
    csv: str
    plots: list[Path] | None = None


def evaluate(*, weights: str | Sequence[str] | None = None, dataset: str | None = None,
             real: Sequence[str] = (), fake: Sequence[str] = (), output: str | Path | None = None,
             plots: str | Path | None = None, overwrite: bool = False, engine: str = "local",
             **options: Any) -> Evaluation:
    """Per-generator AP, AUC and accuracies, and the verdicts' coverage, accuracy and flip rate, on a
    labelled set (``dataset``, or ``real`` and ``fake`` folders), for one head or several side by
    side, under each ``perturb`` condition; ``output`` (.md, .csv or .json) and ``plots`` (a
    folder) are written too."""
    from .decode.launder import Condition
    from .files import OutputError, atomic_write_bytes, check_folder_output, check_output
    from .tasks import evaluate as ev
    from .tasks.datasets import from_folders, load_dataset
    from .tasks.metrics import check_threshold

    engine_kw, options = _split_engine(dict(options))
    opts, run = build(EvaluateOptions, options), build(RunOptions, options)
    if bool(dataset) == bool(real or fake) or (not dataset and not (real and fake)):
        raise UsageError("give either --dataset ROOT or --real DIR with --fake DIR [--fake DIR...]")
    if output and Path(output).suffix.lower() not in (".md", ".csv", ".json"):
        raise UsageError("-o must end in .md, .csv or .json")
    check_threshold(opts.threshold)
    if output:
        check_output(output, overwrite=overwrite, what="table")
    if plots and Path(plots).is_dir() and any(Path(plots).iterdir()) and not overwrite:
        raise OutputError(f"plots folder {plots} is not empty: pass --overwrite to write into it")
    if plots:
        check_folder_output(plots, what="plots folder")
    conditions = [None, *(Condition.parse(p) for p in opts.perturb)]
    evalset = load_dataset(dataset) if dataset else from_folders(real, fake)
    scorer = engine_for(engine, **engine_kw).open(as_weights(weights), run)
    per_head = ev.evaluate_heads(scorer, evalset, conditions, opts.threshold, batch_size=run.batch_size,
                                 workers=run.workers, progress=run.progress, exact_decode=run.exact_decode)
    result = Evaluation(per_head, *ev.texts(per_head, [h.model_id for h in scorer.heads], evalset,
                                            any(h.card.random_init for h in scorer.heads)))
    if output:
        kind = Path(output).suffix.lower()
        body = {".csv": result.csv, ".json": ev.to_json(per_head, [h.model_id for h in scorer.heads])
                }.get(kind, result.markdown)
        atomic_write_bytes(Path(output), body.encode("utf-8"))
    if plots:
        result.plots = ev.write_all_plots(per_head, evalset, Path(plots),
                                          any(h.card.random_init for h in scorer.heads))
    return result


def report(source: str | Path, output: str | Path, overwrite: bool = False,
           echo: Callable[[str], None] | None = None, **options: Any) -> str:
    """The self-contained HTML page of a report (``PageOptions``' keywords); returns where it is.
    ``echo`` hears how many thumbnails could not be made, and why."""
    import os

    from .files import check_output
    from .reports.html import ThumbnailSources, check_page_name, write_html

    page = build(PageOptions, options)
    check_page_name(output)
    check_output(output, overwrite=overwrite, what="HTML report")
    # the report is untrusted: thumbnails only from what the user allowed (never http(s)); local
    # files under --base, by default the current folder, where relative names are resolved too
    sources = ThumbnailSources.of(page.base or (os.getcwd(),), store=page.thumbnails_from_store)
    return write_html(source, output, top=page.top, thumbnails=page.thumbnails,
                      thumb_budget=page.thumb_budget, sources=sources,
                      trust_roots=page.thumbnails_from_roots, warn=echo)


def evidence(paths: Sequence[str], *, workers: int | None = 1, **options: Any) -> list[dict]:
    """What a scan would record as evidence for these files (C2PA, generator metadata, invisible
    watermarks, EXIF) and the verdict an evidence-only scan gives it (``verdict``,
    ``verdict_reasons``): one dict of report columns per file, in order, decoded in worker processes
    under the scan's per-file bounds (``EvidenceOptions``' keywords: ``c2pa_trust=``, ``rules=``;
    and ``keep_gps=``, ``prompts=``, ``max_bytes=``, ``max_pixels=``)."""
    from . import inputs
    from .decode.evidence import load_evidence
    from .decode.job import DecodeJob
    from .decode.pool import decode_stream
    from .options import EvidenceOptions, ScanOptions
    from .scanner.driver import check_roots
    from .scanner.rows import facts
    from .scanner.verdict import decide

    check_roots(paths)
    opts = build(ScanOptions, options)
    loaded = load_evidence(build(EvidenceOptions, options))
    jobs = [DecodeJob(inputs.parse(p), variants=(), max_pixels=opts.max_pixels, max_bytes=opts.max_bytes,
                      provenance=True, keep_gps=opts.keep_gps, prompts=opts.prompts, evidence=loaded,
                      watermark=True) for p in paths]
    rows = [{"path": res.location.display(), "status": res.status, "error": res.error} | facts(res)
            for res in decode_stream(jobs, workers)]
    for row in rows:  # as the text reports spell it: ISO 8601, UTC
        row["mtime"] = _iso(row.get("mtime"))
        row["verdict"], row["verdict_reasons"] = decide(row, []) if row["status"] == "ok" else (None, None)
    return rows


def _iso(mtime_us: int | None) -> str | None:
    from datetime import datetime, timedelta, timezone

    if mtime_us is None:
        return None
    try:
        when = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=mtime_us)
    except OverflowError:
        return None
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def list_heads() -> list[Any]:
    """The installed heads and those in the weights folders, the default among them
    (``models.installed.Installed``)."""
    from .models.installed import installed_heads

    return installed_heads()


def head(weights: str | Path | None = None) -> Any:
    """One head (``None``: the default), its card read and checked, its tensors not loaded
    (``models.installed.Installed``)."""
    from .models.installed import Installed, default_head, read_head_card

    card, prefix = read_head_card(weights)
    try:
        is_default = os.path.realpath(default_head()) == os.path.realpath(prefix)
    except AiiscanError:
        is_default = False
    return Installed(prefix.name, prefix, card, default=is_default)


def set_default(weights: str | Path, overwrite: bool = False) -> Path:
    """Make ``weights`` the head that commands use without ``--weights``; it keeps its name and
    its one card (``models.installed.install_default``). Returns its prefix."""
    from .files import check_output
    from .models.installed import install_default, installed_default, read_head_card

    _, prefix = read_head_card(weights)
    for path in installed_default():
        check_output(path, overwrite=overwrite, what="installed default head")
    return install_default(prefix)
