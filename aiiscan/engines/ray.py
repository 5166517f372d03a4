"""The distributed engine: the same work on Ray Data (``aiiscan[ray]``), across machines.

CPU tasks run the scan's own ``decode_job`` on each job as it was built (variants, laundering
condition and seed included, so calibrate and evaluate run here too); actors hold what the local
engine would build for the heads (``models.scorer.load_scorer``, loaded once per actor, on a
GPU when asked) and score every variant's crop with every head.
Only crops and the decode results' small facts travel, never file bytes. The driver keeps the
crawl, resume and incremental logic and writes the report, exactly as with the local engine; it
reads the heads' cards, never their models.

Differences from the local engine: per-file time-outs and the replacement of a crashed worker
are the local pool's. On Ray a decode task that crashes is retried by Ray; one that keeps
crashing stops the run with an error, and ``--resume`` continues a scan.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..decode.job import DecodeJob, DecodeResult, decode_job
from ..decode.preprocess import CROP
from ..errors import UsageError
from ..options import RunOptions, opt

CHUNK = 16384  # jobs per Ray dataset: the driver's share of the listing at any time
DECODE_MEMORY = 768 * 1024 * 1024  # RGB at the default pixel cap (~537 MB) plus working copies


def _decode_batch(batch: dict) -> dict:
    """CPU task: decode each job; a failure is a result with its reason, never an exception."""
    results, crops = [], []
    for job in batch["job"]:
        res = decode_job(job)
        size, n = job.crop_size, len(job.variants)  # no variant: an evidence-only scan
        crops.append(np.stack(res.arrays) if res.status == "ok" and n
                     else np.zeros((n, size, size, 3), np.uint8))
        res.arrays = []
        results.append(res)
    out = np.empty(len(results), dtype=object)
    out[:] = results
    return {"result": out, "crop": np.stack(crops) if crops else np.zeros((0, 1, 1, 1, 3), np.uint8)}


class _Scorer:
    """Actor: one model per actor, loaded once; scores ``[row, variant, head]`` of the rows that
    decoded."""

    def __init__(self, heads: str | tuple[str, ...], run: RunOptions):
        from ..models.scorer import load_scorer

        self.model = load_scorer(heads, replace(run, quiet=True))

    def __call__(self, batch: dict) -> dict:
        ok = np.array([r.status == "ok" for r in batch["result"]], dtype=bool)
        crops = batch["crop"]
        scores = np.full((*crops.shape[:2], len(self.model.heads)), np.nan)
        if ok.any():
            good = crops[ok]
            n, v = good.shape[:2]
            flat = self.model.score_arrays(good.reshape(n * v, *good.shape[2:]))
            scores[ok] = flat.astype(np.float64).reshape(n, v, -1)
        return {"result": batch["result"], "score": scores}


@dataclass(frozen=True)
class Head:
    """A head as the driver knows it: its card, not its model (that lives in the actors)."""

    card: Any  # card.ModelCard
    prefix: Path
    model_id: str

    @property
    def image_size(self) -> int:
        return self.card.image_size


@dataclass
class RayEngine:
    """``ray_address``: a cluster to join (None: start a local one); ``scorers`` actors with
    ``gpus_per_worker`` GPUs each; ``cpu_workers`` concurrent decode tasks (None: Ray's choice)."""

    name: ClassVar[str] = "ray"
    ray_address: str | None = opt(None, "Ray cluster to join: auto, or ray://HOST:PORT [default: start a "
                                        "local one].")
    gpus_per_worker: float = opt(0.0, "GPUs per scoring actor (ray engine).", min=0)
    cpu_workers: int | None = opt(None, "Concurrent decode tasks (ray engine) [default: as many as Ray "
                                        "schedules].",
                                  min=1)
    scorers: int = opt(1, "Scoring actors, each holding one copy of the model (ray engine).", min=1)

    def open(self, heads: str | tuple[str, ...] | None, run: RunOptions) -> RayScorer:
        return RayScorer(heads, run, self)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "ray_address": self.ray_address, "gpus_per_worker": self.gpus_per_worker,
                "cpu_workers": self.cpu_workers, "scorers": self.scorers}


class RayScorer:
    """The driver's handle: the heads' cards (head 1's as ``card``, ``model_id``, ``prefix``), and
    a score stream run on Ray. ``heads`` and ``passes`` answer as ``models.scorer.Scorer``'s do."""

    def __init__(self, heads: str | tuple[str, ...] | None, run: RunOptions, engine: RayEngine):
        try:
            import ray
        except ImportError:
            raise UsageError("--engine ray needs Ray: pip install 'aiiscan[ray]'") from None
        # driver only: decode tasks must not import torch
        from ..card import model_id
        from ..models.installed import read_head_card, verify_digest
        from ..models.scorer import backbone_passes, check_crop_sizes

        self.heads: list[Head] = []
        for w in heads if isinstance(heads, tuple) else (heads,):  # an empty tuple: no head
            card, prefix = read_head_card(w)  # the actors load the tensors (and check their shapes)
            verify_digest(card, prefix)  # a tampered head is refused before the cluster starts
            self.heads.append(Head(card, prefix, model_id(card, prefix)))
        check_crop_sizes(self.heads)  # before any actor loads a model
        self.passes = backbone_passes([h.card for h in self.heads])  # as each actor's Scorer
        first = self.heads[0] if self.heads else Head(None, None, None)  # no head: evidence only
        self.card, self.prefix, self.model_id = first.card, first.prefix, first.model_id
        # what each actor loads: the resolved prefixes (the default head named as found here)
        paths = tuple(str(h.prefix) for h in self.heads)
        self.head_paths = paths if len(paths) > 1 else paths[0] if paths else None
        device = "cuda" if engine.gpus_per_worker > 0 and run.device == "auto" else run.device
        self.run = RunOptions(**{**run.to_dict(), "device": device})
        self.engine = engine
        if not ray.is_initialized():
            ray.init(address=engine.ray_address, ignore_reinit_error=True, log_to_driver=False,
                     include_dashboard=False, configure_logging=False)

    @property
    def image_size(self) -> int:
        return self.heads[0].image_size if self.heads else CROP

    @property
    def precision(self) -> str:
        return self.run.precision

    def score_stream(self, jobs: Iterable[DecodeJob], batch_size: int | None = None,
                     workers: int | None = None, timeout: float | None = None,  # noqa: ARG002
                     skip: Callable[[DecodeResult], bool] | None = None,  # noqa: ARG002
                     ) -> Iterator[tuple[DecodeResult, np.ndarray | None]]:
        """Like ``models.scorer.Scorer.score_stream``: scores ``[variant, head]``. ``workers`` and
        ``timeout`` are the local pool's and do not apply (Ray schedules decode tasks itself), nor
        does ``skip``: the actors score every decoded file (the caller's rows are the local
        engine's; the backbone pass is not saved on Ray). Jobs go to Ray ``CHUNK`` at a time, so
        the driver never holds the whole listing."""
        chunk: list[DecodeJob] = []
        for job in jobs:
            chunk.append(job)
            if len(chunk) >= CHUNK:
                yield from self._score_chunk(chunk, batch_size)
                chunk = []
        if chunk:
            yield from self._score_chunk(chunk, batch_size)

    def _score_chunk(self, jobs: list[DecodeJob], batch_size: int | None
                     ) -> Iterator[tuple[DecodeResult, np.ndarray | None]]:
        import ray
        from ray.data import ActorPoolStrategy, TaskPoolStrategy

        ray.data.DataContext.get_current().enable_progress_bars = self.run.progress
        if self.run.quiet:
            logging.getLogger("ray.data").setLevel(logging.WARNING)
        ds = ray.data.from_items([{"job": j} for j in jobs],
                                 override_num_blocks=max(1, min(len(jobs) // 32, 1000)))
        # Decode runs as its own pool of CPU tasks, each reserving the memory a photo at the pixel
        # cap can take. Differing resources also keep Ray from fusing decoding into the scoring
        # actors (which would leave one decode per actor, no parallelism).
        cpu = self.engine.cpu_workers
        ds = ds.map_batches(_decode_batch, batch_size=32, batch_format="numpy", memory=DECODE_MEMORY,
                            compute=TaskPoolStrategy(size=cpu) if cpu else None)
        if self.heads:  # no head: the decode tasks alone
            ds = ds.map_batches(_Scorer, fn_constructor_kwargs={"heads": self.head_paths, "run": self.run},
                                batch_size=batch_size or self.run.batch_size, batch_format="numpy",
                                compute=ActorPoolStrategy(size=self.engine.scorers),
                                num_gpus=self.engine.gpus_per_worker or None)
        for batch in ds.iter_batches(batch_format="numpy", batch_size=256):
            scores = batch["score"] if self.heads else [None] * len(batch["result"])
            for res, score in zip(batch["result"], scores, strict=True):
                yield res, (np.asarray(score) if res.status == "ok" and score is not None else None)
