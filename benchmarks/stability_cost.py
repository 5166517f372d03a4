"""What ``scan --stability`` costs: backbone passes and wall time per file, with and without it.

Scans the same generated JPEGs (distinct 640x480 pictures: a copy would reuse its twin's
scores and pass nothing through the backbone) with a random head on a
random-init backbone (speed only: the scores mean nothing), through ``run_scan`` as the CLI runs
it, alternately without and with ``--stability SPEC`` so that machine load hits both alike.
Backbone passes are counted at the backbone's ``encode`` (one per crop); the wall time includes
the decode (exact when --stability is given: its conditions act on the full-resolution picture).

    python benchmarks/stability_cost.py                                   # ViT-B-32, 64 files
    python benchmarks/stability_cost.py --backbone tiny --files 32 --rounds 3
    python benchmarks/stability_cost.py --spec jpeg:75 --workers 2

Prints per-file passes and seconds for both, their ratios, and the command.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np  # noqa: E402
from common import command, detector_for  # noqa: E402

from aiiscan.api import scan_options  # noqa: E402
from aiiscan.scanner.driver import run_scan  # noqa: E402
from aiiscan.tasks.selftest import synthetic_photo  # noqa: E402


def distinct_jpegs(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        synthetic_photo(rng, (640, 480)).save(folder / f"img_{i:04d}.jpg", quality=90)


def one_scan(det, root: Path, out: Path, spec: str | None, workers: int, batch: int) -> tuple[int, float]:
    """(backbone passes, seconds) of one scan of ``root``."""
    passes = 0
    encode = det.backbone.encode

    def counted(crops):
        nonlocal passes
        passes += len(crops)
        return encode(crops)

    det.backbone.encode = counted
    try:
        opts, engine = scan_options(detector=det, workers=workers, quiet=True, overwrite=True,
                                    stability=spec, batch_size=batch)
        t = time.perf_counter()
        summary = run_scan([str(root)], out, opts, engine)
        seconds = time.perf_counter() - t
    finally:
        det.backbone.encode = encode
    assert summary.exit_code == 0, summary.lines()
    return passes, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backbone", default="ViT-B-32", help="an open_clip name, or 'tiny'")
    ap.add_argument("--files", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--spec", default="jpeg:75,resize:0.5")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    det = detector_for(args.backbone)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "photos"
        distinct_jpegs(root, args.files)
        one_scan(det, root, Path(tmp) / "warm.parquet", None, args.workers, args.batch_size)  # graph, caches
        runs: dict[str | None, list[tuple[int, float]]] = {None: [], args.spec: []}
        for _ in range(args.rounds):
            for spec in runs:
                runs[spec].append(one_scan(det, root, Path(tmp) / "r.parquet", spec, args.workers,
                                           args.batch_size))
    per_file = {spec: (statistics.median(p for p, _ in r) / args.files,
                       statistics.median(s for _, s in r) / args.files) for spec, r in runs.items()}
    (p0, s0), (p1, s1) = per_file[None], per_file[args.spec]
    print(f"{args.backbone} ({det.runs_as}), {args.files} JPEGs of 640x480, {args.workers} decode workers, "
          f"batch {args.batch_size}, median of {args.rounds} rounds")
    print(f"without --stability:           {p0:.2f} backbone passes/file, {1000 * s0:.1f} ms/file")
    print(f"with --stability {args.spec}: {p1:.2f} backbone passes/file, {1000 * s1:.1f} ms/file")
    print(f"ratio: passes x{p1 / p0:.2f}, wall time x{s1 / s0:.2f}")
    print(f"command: {command()}")


if __name__ == "__main__":
    main()
