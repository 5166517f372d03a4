"""The distributed engine: the same scan on Ray Data (``aiiscan[ray]``), across machines.

One code path, two distributors: CPU tasks run the scan's own ``decode_job`` per file, actors
hold a ``Detector`` (loaded once per actor, on a GPU when asked) and run its ``score_arrays`` per
batch. Only crops and small row facts travel: files are decoded before the model stage, so blocks
stay small. The driver (``scanner.run_scan``) keeps the crawl, resume and incremental logic and
writes the report parts itself, exactly as with the local engine.

Difference from the local engine: per-file time-outs and the replacement of a crashed worker are
the local pool's. On Ray a decode task that crashes is retried by Ray; one that keeps crashing
stops the scan with an error, and ``--resume`` continues it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Iterator

import numpy as np

from .decode import DecodeJob, DecodeResult, decode_job
from .errors import UsageError

DECODE_MEMORY = 768 * 1024 * 1024  # RGB at the default pixel cap (~537 MB) plus working copies


def _decode_batch(batch: dict, template: DecodeJob) -> dict:
    """CPU task: decode each path; failures become facts in ``meta``, never exceptions."""
    metas, crops = [], []
    blank = np.zeros((template.crop_size, template.crop_size, 3), np.uint8)
    for path, explicit in zip(batch["path"], batch["explicit"], strict=True):
        res = decode_job(dataclasses.replace(template, path=str(path), explicit=bool(explicit)))
        metas.append(json.dumps({"path": res.path, "status": res.status, "error": res.error,
                                 "info": res.info}))
        crops.append(res.arrays[0] if res.status == "ok" else blank)
    return {"meta": np.array(metas, dtype=object), "crop": np.stack(crops) if crops else
            np.zeros((0, template.crop_size, template.crop_size, 3), np.uint8)}


class _Scorer:
    """Actor: one model per actor, loaded once; scores the crops of rows that decoded."""

    def __init__(self, weights: str, device: str, clip_weights: str | None, precision: str):
        from .detector import Detector

        self.detector = Detector.load(weights, device=device, clip_weights=clip_weights, quiet=True,
                                      precision=precision)

    def __call__(self, batch: dict) -> dict:
        ok = np.array([json.loads(m)["status"] == "ok" for m in batch["meta"]], dtype=bool)
        scores = np.full(len(ok), np.nan)
        if ok.any():
            scores[ok] = self.detector.score_arrays(batch["crop"][ok]).astype(np.float64)
        return {"meta": batch["meta"], "score": scores}


class RayScorer:
    """The driver's handle: the head's card for the report, and a score stream run on Ray."""

    def __init__(self, weights: str, *, device: str = "auto", clip_weights: str | None = None,
                 precision: str = "auto", batch_size: int = 64, address: str | None = None,
                 gpus_per_worker: float = 0.0, cpu_workers: int | None = None, scorers: int = 1,
                 quiet: bool = False):
        try:
            import ray
        except ImportError:
            raise UsageError("--engine ray needs Ray: pip install 'aiiscan[ray]'") from None
        from .weights import load_head, model_id  # driver only: decode tasks must not import torch

        _, self.card, prefix = load_head(weights)  # the driver needs the card, not the model
        self.weights = str(prefix)
        self.model_id = model_id(self.card, prefix)
        self.image_size = int(self.card.backbone["image_size"])
        self.precision = precision
        self.device = "cuda" if gpus_per_worker > 0 and device == "auto" else device
        self.clip_weights = clip_weights
        self.batch_size = batch_size
        self.gpus = gpus_per_worker
        self.cpu_workers = cpu_workers
        self.scorers = scorers
        self.quiet = quiet
        if not ray.is_initialized():
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False,
                     include_dashboard=False, configure_logging=False)

    def score_stream(self, jobs: Iterable[DecodeJob]) -> Iterator[tuple[DecodeResult, np.ndarray | None]]:
        import ray
        from ray.data import ActorPoolStrategy, TaskPoolStrategy

        jobs = list(jobs)
        if not jobs:
            return
        ray.data.DataContext.get_current().enable_progress_bars = not self.quiet
        if self.quiet:
            logging.getLogger("ray.data").setLevel(logging.WARNING)
        template = dataclasses.replace(jobs[0], path="", explicit=True)
        items = [{"path": j.path, "explicit": j.explicit} for j in jobs]
        ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items) // 32, 1000)))
        # Decode runs as its own pool of CPU tasks, each reserving the memory a photo at the pixel
        # cap can take. Differing resources also keep Ray from fusing decoding into the scoring
        # actors (which would leave one decode per actor, no parallelism).
        ds = ds.map_batches(_decode_batch, fn_kwargs={"template": template}, batch_size=32,
                            batch_format="numpy", memory=DECODE_MEMORY,
                            compute=TaskPoolStrategy(size=self.cpu_workers) if self.cpu_workers else None)
        ds = ds.map_batches(_Scorer, fn_constructor_kwargs={
            "weights": self.weights, "device": self.device, "clip_weights": self.clip_weights,
            "precision": self.precision}, batch_size=self.batch_size, batch_format="numpy",
            compute=ActorPoolStrategy(size=self.scorers), num_gpus=self.gpus or None)
        for batch in ds.iter_batches(batch_format="numpy", batch_size=256):
            for meta, score in zip(batch["meta"], batch["score"], strict=True):
                m = json.loads(meta)
                res = DecodeResult(path=m["path"], status=m["status"], error=m["error"], info=m["info"])
                yield res, (np.array([score]) if res.status == "ok" else None)
