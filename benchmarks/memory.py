"""Peak RSS of a whole scan against the number of files: memory must not grow with the listing.

    python benchmarks/memory.py --files 10000 100000

Each scan runs in its own process (tiny random-init backbone, generated 64x48 JPEGs) and reports
its peak RSS (ru_maxrss of the scanning process) and throughput.
"""

from __future__ import annotations

import argparse
import io
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command, detector_for  # noqa: E402


def make_files(folder: Path, n: int, size=(64, 48)) -> None:
    from aiiscan.selftest import synthetic_photo

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = []
    for _ in range(16):
        buf = io.BytesIO()
        synthetic_photo(rng, size).save(buf, "JPEG", quality=92)
        base.append(buf.getvalue())
    for i in range(n):
        p = folder / f"{i // 1000:03d}" / f"img_{i:06d}.jpg"
        if i % 1000 == 0:
            p.parent.mkdir(exist_ok=True)
        if not p.exists():
            p.write_bytes(base[i % 16])


def inner(args) -> None:
    from aiiscan.scanner import options_from, run_scan

    det = detector_for("tiny")
    with tempfile.TemporaryDirectory() as tmp:
        s = run_scan([args.folder], Path(tmp) / "r.parquet", *options_from(detector=det, workers=args.workers,
                     batch_size=args.batch_size, quiet=True))
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"RESULT {s.scored} {s.seconds:.3f} {me:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--files", type=int, nargs="+", default=[10000, 100000])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache", default="/tmp/aiiscan-bench")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        inner(args)
        return
    rows = []
    for n in args.files:
        folder = Path(args.cache) / f"tiny{n}"
        make_files(folder, n)
        out = subprocess.run([sys.executable, __file__, "--inner", "--folder", str(folder), "--batch-size",
                              str(args.batch_size), "--workers", str(args.workers)],
                             capture_output=True, text=True, check=True).stdout
        scored, secs, rss = out.split("RESULT ")[1].split()
        assert int(scored) == n, (scored, n)
        rows.append((n, int(scored) / float(secs), float(rss)))
    print(f"command: {command()}\n")
    print("| files | end-to-end img/s | peak RSS of the scan process (MiB) | vs first row |")
    print("|---:|---:|---:|---:|")
    for n, rate, rss in rows:
        print(f"| {n} | {rate:.1f} | {rss:.0f} | {rss / rows[0][2] - 1:+.1%} |")


if __name__ == "__main__":
    main()
