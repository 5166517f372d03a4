"""Throughput side by side, same model, batch and device, in one run:

  limits     model-only (pre-decoded crops in memory) and decode-only (the scan's decode path,
             all cores);
  baselines  a naive per-file loop (open, preprocess, model at batch 1) and a UnivFD-style
             torch DataLoader loop (workers = cores, batch 128, PIL + torchvision transforms);
  aiiscan    `aiiscan scan` end to end (workers, batching, report writing included).

    python benchmarks/speed.py --backbone ViT-B-32 --set camera --files 96 --runs 3
    python benchmarks/speed.py --backbone tiny --set small --files 1000 --runs 3

Sets: camera (generated 4000x3000 JPEGs, q92), small (generated 640x480 JPEGs), eval-dev
(../shared/data/eval-dev, when present). Prints medians and the ratios.

--runtimes: the backbone's runtimes side by side (issue #27), in one run, with a fresh cache:

  export     first-run export of the OpenVINO graph (ONNX, checked, cached), then a cached load;
  model      model-only img/s per runtime and precision (pre-decoded crops, batch --batch-size);
  end to end aiiscan scan --precision P past start-up ((time of an N-file scan - time of a
             one-file scan) for N-1 files) against a bare torch float32 forward of the same
             backbone on as many images (crops pre-decoded: the forward alone);
  fidelity   max |score - fp32 score| and label flips at the fp32 scores' median, over the N files.

    python benchmarks/speed.py --runtimes --backbone ViT-B-32 --set photos --files 1000
    python benchmarks/speed.py --runtimes --backbone ViT-L-14 --set photos --files 24 --batch-size 8 \\
        --train-photos 16

Set photos: unique photos, ../shared/data/train-natural then eval-dev.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import camera_jpegs, command, detector_for, eval_dev, median_rate, photos, small_jpegs  # noqa: E402


def inputs(kind: str, n: int, cache: Path) -> list[str]:
    if kind == "photos":
        files = photos()
        if len(files) < n:
            raise SystemExit(f"only {len(files)} photos in ../shared/data (train-natural, eval-dev)")
        return files[:n]
    if kind == "camera":
        return camera_jpegs(cache / "camera", n)
    if kind == "small":
        return small_jpegs(cache / "small", n)
    files = eval_dev()
    if not files:
        raise SystemExit("eval-dev is not present (../shared/data/eval-dev)")
    return files[:n] if n else files


def model_only(det, paths: list[str], batch: int, runs: int) -> float:
    from aiiscan.decode.job import DecodeJob, decode_job

    arrays = [decode_job(DecodeJob(p, det.backbone.image_size)).arrays[0] for p in paths[:batch * 2]]
    batches = [np.stack(arrays[i:i + batch]) for i in range(0, len(arrays), batch)]
    det.score_arrays(batches[0])  # warm-up

    def run() -> int:
        for b in batches:
            det.score_arrays(b)
        return len(arrays)

    return median_rate(run, runs)


def decode_only(paths: list[str], crop: int, workers: int, runs: int, fast: bool) -> float:
    from aiiscan.decode.job import DecodeJob
    from aiiscan.decode.pool import decode_stream

    def run() -> int:
        return sum(1 for _ in decode_stream((DecodeJob(p, crop, fast_decode=fast) for p in paths), workers))

    return median_rate(run, runs)


def naive_loop(det, paths: list[str], runs: int) -> float:
    """What a first script does: one file at a time, full decode, model at batch 1."""
    from PIL import Image

    from aiiscan.decode.preprocess import prepare

    def run() -> int:
        for p in paths:
            with Image.open(p) as img:
                det.score_arrays([prepare(img.convert("RGB"), det.backbone.image_size)])
        return len(paths)

    return median_rate(run, runs)


class _Files:
    """A map-style dataset as in UnivFD's validation script."""

    def __init__(self, paths, transform):
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        from PIL import Image

        with Image.open(self.paths[i]) as img:
            return self.transform(img.convert("RGB"))


def dataloader_loop(det, paths: list[str], workers: int, runs: int) -> float:
    import torch
    from torchvision import transforms

    size = det.backbone.image_size
    bb = det.backbone
    tf = transforms.Compose([transforms.Resize((round(size * 256 / 224),) * 2), transforms.CenterCrop(size),
                             transforms.ToTensor(), transforms.Normalize(bb.mean, bb.std)])
    loader = torch.utils.data.DataLoader(_Files(paths, tf), batch_size=128, num_workers=workers)

    def run() -> int:
        n = 0
        with torch.inference_mode():
            for x in loader:
                det.head(det.backbone.encode(x))
                n += len(x)
        return n

    return median_rate(run, runs)


def aiiscan_e2e(det, paths: list[str], batch: int, workers: int, runs: int, fast: bool) -> float:
    from aiiscan.api import scan_options
    from aiiscan.scanner.driver import run_scan

    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "list.txt"
        listing.write_text("\n".join(paths) + "\n")

        def run() -> int:
            out = Path(tmp) / "r.parquet"
            s = run_scan([], out,
                         *scan_options(detector=det, from_list=str(listing), workers=workers,
                                       batch_size=batch, exact_decode=not fast, quiet=True))
            out.unlink()
            return s.scored

        return median_rate(run, runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backbone", default="tiny", help="'tiny' or an open_clip model name (random init)")
    ap.add_argument("--set", dest="kind", choices=["camera", "small", "eval-dev", "photos"], default="camera")
    ap.add_argument("--runtimes", action="store_true", help="runtimes, end to end and fidelity (see above)")
    ap.add_argument("--train-photos", type=int, default=200, help="--runtimes: photos the head trains on")
    ap.add_argument("--files", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--skip", nargs="*", default=[], choices=["naive", "dataloader", "exact"])
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--cache", default="/tmp/aiiscan-bench")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    paths = inputs(args.kind, args.files, Path(args.cache))
    if args.runtimes:
        from speed_runtimes import report

        report(args, paths)
        return
    det = detector_for(args.backbone, args.precision)
    crop = det.backbone.image_size
    rows: list[tuple[str, float]] = []
    rows.append(("model-only (limit)", model_only(det, paths, args.batch_size, args.runs)))
    rows.append(("decode-only, fast path (limit)", decode_only(paths, crop, args.workers, args.runs, True)))
    if "exact" not in args.skip:
        rows.append(("decode-only, exact", decode_only(paths, crop, args.workers, args.runs, False)))
    if "naive" not in args.skip:
        rows.append(("naive per-file loop, batch 1", naive_loop(det, paths, max(1, args.runs - 2))))
    if "dataloader" not in args.skip:
        rows.append(("DataLoader loop, batch 128", dataloader_loop(det, paths, args.workers, args.runs)))
    e2e = aiiscan_e2e(det, paths, args.batch_size, args.workers, args.runs, True)
    rows.append(("aiiscan scan, end to end", e2e))
    if "exact" not in args.skip:
        rows.append(("aiiscan scan --exact-decode", aiiscan_e2e(det, paths, args.batch_size, args.workers,
                                                                 args.runs, False)))
    print(f"command: {command()}")
    print(f"backbone {args.backbone} (random init, {args.precision}), set {args.kind}, {len(paths)} files, "
          f"batch {args.batch_size}, {args.workers} decode workers, torch threads {torch.get_num_threads()}, "
          f"medians of {args.runs} runs\n")
    print("| pipeline | img/s | aiiscan end-to-end / this |")
    print("|---|---:|---:|")
    for name, rate in rows:
        print(f"| {name} | {rate:.1f} | {e2e / rate:.2f} |")


if __name__ == "__main__":
    main()
