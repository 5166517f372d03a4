"""End-to-end scan throughput vs the model-only forward rate, and peak RSS vs number of files.

    python benchmarks/scan_throughput.py --backbone tiny --files 1000 --rss-files 1000 10000
    python benchmarks/scan_throughput.py --backbone ViT-B-32 --files 300

Random-init backbones: the figures are about speed and memory, never detection quality.
Photos are generated (camera-like synthetic pictures) so the run needs nothing downloaded.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_files(folder: Path, n: int, size=(640, 480)) -> None:
    from aiiscan.selftest import synthetic_photo

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = [synthetic_photo(rng, size) for _ in range(16)]
    for i in range(n):
        p = folder / f"{i // 1000:03d}" / f"img_{i:06d}.jpg"
        p.parent.mkdir(exist_ok=True)
        if not p.exists():
            base[i % 16].save(p, quality=92)


def detector_for(backbone_name: str):
    import torch

    from aiiscan.backbone import TINY_CONFIG, build_backbone
    from aiiscan.detector import Detector
    from aiiscan.flow import FlowHead, HeadConfig

    name = str(TINY_CONFIG) if backbone_name == "tiny" else backbone_name
    bb = build_backbone(name, "none", device="cpu", quiet=True)
    torch.manual_seed(0)
    head = FlowHead(HeadConfig(bb.identity.feature_dim))
    card = {"backbone": {**bb.identity.to_dict(), "source": name}, "tensors_sha256": "bench"}
    return Detector(bb, head, card, Path("bench"))


def inner(args) -> None:
    """One scan in this process; prints files/s and peak RSS (this process, largest worker)."""
    from aiiscan.scanner import run_scan

    det = detector_for(args.backbone)
    with tempfile.TemporaryDirectory() as tmp:
        s = run_scan([args.folder], Path(tmp) / "r.parquet", detector=det, workers=args.workers,
                     batch_size=args.batch_size, quiet=True)
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"RESULT {s.scored} {s.seconds:.3f} {me:.1f} {kids:.1f}")


def run_inner(args, folder: Path, n_files: int) -> tuple[float, float, float]:
    cmd = [sys.executable, __file__, "--inner", "--folder", str(folder), "--backbone", args.backbone,
           "--batch-size", str(args.batch_size), "--workers", str(args.workers)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    scored, secs, me, kids = out.split("RESULT ")[1].split()
    assert int(scored) == n_files, (scored, n_files)
    return int(scored) / float(secs), float(me), float(kids)


def model_only(args, folder: Path) -> float:
    """Forward rate of backbone+head on pre-decoded crops, same batches and device."""
    from aiiscan.decode import DecodeJob
    from aiiscan.pipeline import decode_stream

    det = detector_for(args.backbone)
    paths = sorted(str(p) for p in folder.rglob("*.jpg"))[: args.batch_size * 4]
    arrays = [r.arrays[0] for r in decode_stream((DecodeJob(p) for p in paths), 0)]
    batches = [np.stack(arrays[i:i + args.batch_size]) for i in range(0, len(arrays), args.batch_size)]
    det.score_arrays(batches[0])  # warm-up
    rates = []
    for _ in range(args.runs):
        t = time.perf_counter()
        for b in batches:
            det.score_arrays(b)
        rates.append(len(arrays) / (time.perf_counter() - t))
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backbone", default="tiny", help="'tiny' or an open_clip model name")
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--rss-files", type=int, nargs="*", default=[])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cache", default="/tmp/aiiscan-bench")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        inner(args)
        return
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    folder = Path(args.cache) / f"n{args.files}"
    make_files(folder, args.files)
    limit = model_only(args, folder)
    e2e = statistics.median(run_inner(args, folder, args.files)[0] for _ in range(args.runs))
    print("\n| backbone | batch | workers | model-only img/s | end-to-end img/s | ratio |")
    print("|---|---|---|---|---|---|")
    print(f"| {args.backbone} | {args.batch_size} | {args.workers} | {limit:.1f} | {e2e:.1f} "
          f"| {e2e / limit:.2f} |")
    if args.rss_files:
        print("\n| files | end-to-end img/s | peak RSS main (MiB) | peak RSS largest worker (MiB) |")
        print("|---|---|---|---|")
        for n in args.rss_files:
            f = Path(args.cache) / f"n{n}"
            make_files(f, n)
            rate, me, kids = run_inner(args, f, n)
            print(f"| {n} | {rate:.1f} | {me:.0f} | {kids:.0f} |")


if __name__ == "__main__":
    main()
