"""Does the JPEG fast path (DCT-domain downscaling) change what the detector sees?

Scores every file twice, exact and fast decode, through the same head, and reports the mean and
max |score difference|, the label flips at a threshold, and the pixel difference of the 224x224
crops. Also times both decodes on camera-sized JPEGs. Optionally the same for bf16 arithmetic.

    python benchmarks/decode_fidelity.py                         # tiny random backbone, eval-dev
    python benchmarks/decode_fidelity.py --weights W             # your head; its card's threshold

Without --weights a head is trained for 3 epochs on 200 train-natural photos over the random-init
backbone, and the threshold is the balanced-accuracy cut of the exact scores between the set's
real and fake images: the figures measure how far the arithmetic moves scores relative to their
spread, not detection quality.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import EVAL_DEV, camera_jpegs, command, eval_dev, trained_detector  # noqa: E402


def decode_all(paths, crop: int, fast: bool):
    from aiiscan.decode.job import DecodeJob
    from aiiscan.decode.pool import decode_stream

    return [r.arrays[0] if r.status == "ok" else None
            for r in decode_stream((DecodeJob(p, crop, fast_decode=fast) for p in paths), None)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--weights", help="a trained head (default: random head on the tiny backbone)")
    ap.add_argument("--backbone", default="tiny")
    ap.add_argument("--camera-files", type=int, default=24)
    ap.add_argument("--cache", default="/tmp/aiiscan-bench")
    args = ap.parse_args()
    from aiiscan.models.scorer import Detector
    from aiiscan.tasks.datasets import load_dataset
    from aiiscan.tasks.metrics import balanced_threshold

    det = (Detector.load(args.weights, device="cpu") if args.weights
           else trained_detector(args.backbone, Path(args.cache) / f"fidelity-head-{args.backbone}"))
    paths = eval_dev()
    if not paths:
        raise SystemExit(f"{EVAL_DEV} is not present")
    es = load_dataset(EVAL_DEV)
    fakes = {p for _, _, f in es.groups() for p in f}
    crop = det.backbone.image_size
    exact, fast = decode_all(paths, crop, False), decode_all(paths, crop, True)
    keep = [i for i in range(len(paths)) if exact[i] is not None and fast[i] is not None]
    is_jpeg = np.array([Path(paths[i]).suffix.lower() in (".jpg", ".jpeg") for i in keep])
    changed = np.array([not np.array_equal(exact[i], fast[i]) for i in keep])
    s_exact = det.score_arrays([exact[i] for i in keep])[:, 0].astype(np.float64)
    s_fast = det.score_arrays([fast[i] for i in keep])[:, 0].astype(np.float64)
    det.backbone.precision = "bf16"
    s_bf16 = det.score_arrays([exact[i] for i in keep])[:, 0].astype(np.float64)
    det.backbone.precision = "auto"
    label = np.array([paths[i] in fakes for i in keep])
    thr = det.threshold
    thr_source = "the head's card"
    if thr is None:
        thr = balanced_threshold(s_exact[~label], s_exact[label]).threshold
        thr_source = "balanced cut of the exact scores"
    spread = float(np.std(s_exact))
    mae = [float(np.abs(exact[i].astype(int) - fast[i].astype(int)).mean()) for i in keep]

    print(f"command: {command()}")
    print(f"model {det.model_id}, {len(keep)} eval-dev files ({int(is_jpeg.sum())} JPEG), threshold "
          f"{thr:.4g} from {thr_source}; score std {spread:.4g}\n")
    print("| comparison with exact fp32 | files changed | mean abs score diff | max abs score diff | "
          "max diff / score std | label flips | crop mean abs pixel diff |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, other, px in (("fast JPEG decode", s_fast, mae), ("bf16 backbone", s_bf16, None)):
        d = np.abs(other - s_exact)
        flips = int(np.sum((other >= thr) != (s_exact >= thr)))
        n_changed = int(changed.sum()) if px is not None else len(keep)
        px_txt = f"{np.mean([m for m, c in zip(px, changed, strict=True) if c] or [0]):.3f}" if px else "–"
        print(f"| {name} | {n_changed} | {d.mean():.3g} | {d.max():.3g} | {d.max() / spread:.3g} | "
              f"{flips} | {px_txt} |")

    cams = camera_jpegs(Path(args.cache) / "camera", args.camera_files)
    from aiiscan.decode.job import DecodeJob, decode_job

    timing = {}
    for fast_flag in (False, True):
        decode_job(DecodeJob(cams[0], crop, fast_decode=fast_flag))
        t = time.perf_counter()
        for p in cams:
            decode_job(DecodeJob(p, crop, fast_decode=fast_flag))
        timing[fast_flag] = (time.perf_counter() - t) / len(cams) * 1000
    print(f"\nDecode + preprocess of a 4000x3000 q92 JPEG, one core, {len(cams)} files: exact "
          f"{timing[False]:.1f} ms, fast {timing[True]:.1f} ms (x{timing[False] / timing[True]:.2f}).")


if __name__ == "__main__":
    main()
