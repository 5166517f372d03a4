"""What content reuse saves on a re-organised archive: backbone passes and wall time.

    python benchmarks/reuse.py                     # ViT-B-32 (random init), 240 photos
    python benchmarks/reuse.py --backbone tiny --files 2000

An archive of distinct photos is scanned; then it is re-organised as archives are: every folder
renamed (all files moved) and a tenth of the files copied into a new folder. The rescan with
``--incremental`` (the old report) is compared with a full scan of the re-organised tree: the
moved files keep their scores (``reused=same_content``), the copies are scored once
(``reused=duplicate``), and nothing is sent through the backbone twice. Random weights: the
figures are about work saved, not detection.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command, detector_for  # noqa: E402


def make_archive(root: Path, n: int, folders: int = 4) -> None:
    from PIL import Image

    from aiiscan.tasks.selftest import synthetic_photo

    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / f"album_{i % folders}"
        d.mkdir(parents=True, exist_ok=True)
        img = np.asarray(synthetic_photo(rng, (640, 480)), np.float32)
        img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)  # each one distinct
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=90)
        (d / f"photo_{i:05d}.jpg").write_bytes(buf.getvalue())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backbone", default="ViT-B-32", help="open_clip name (random init) or 'tiny'")
    ap.add_argument("--files", type=int, default=240)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    from aiiscan.api import scan_options
    from aiiscan.reports.read import read_report
    from aiiscan.scanner.driver import run_scan

    det = detector_for(args.backbone)
    passes = [0]
    encode = det.backbone.encode

    def counted(batch):
        passes[0] += len(batch)
        return encode(batch)

    det.backbone.encode = counted

    def scan(root: Path, out: Path, **kw) -> tuple[float, int]:
        passes[0] = 0
        t0 = time.perf_counter()
        run_scan([str(root)], out, *scan_options(detector=det, workers=args.workers, quiet=True, **kw))
        return time.perf_counter() - t0, passes[0]

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = tmp / "archive"
        make_archive(root, args.files)
        first_s, first_p = scan(root, tmp / "night1.parquet")
        # re-organise: every album renamed, a tenth of the photos copied into a new folder
        for d in sorted(root.iterdir()):
            os.rename(d, d.with_name(d.name.replace("album", "2026-album")))
        (root / "shared").mkdir()
        for p in sorted(root.rglob("*.jpg"))[:: 10]:
            shutil.copy(p, root / "shared" / p.name)
        total = sum(1 for _ in root.rglob("*.jpg"))
        full_s, full_p = scan(root, tmp / "full.parquet")
        inc_s, inc_p = scan(root, tmp / "night2.parquet", incremental=str(tmp / "night1.parquet"))
        rows = read_report(tmp / "night2.parquet").to_pylist()
        kinds = {k: sum(r["reused"] == k for r in rows) for k in ("same_content", "duplicate", None)}
        old = {Path(r["path"]).name: r["score"] for r in read_report(tmp / "night1.parquet").to_pylist()}
        same = all(r["score"] == old[Path(r["path"]).name] for r in rows)

    print(f"command: {command()}\n")
    print(f"backbone {args.backbone} (random init), {args.files} distinct 640x480 JPEGs, then every folder "
          f"renamed and {total - args.files} copies added ({total} files)\n")
    print("| scan | files | backbone passes | seconds | vs full rescan |")
    print("|---|---:|---:|---:|---:|")
    print(f"| first night | {args.files} | {first_p} | {first_s:.1f} | |")
    print(f"| re-organised, full rescan (no --incremental; copies still scored once) | {total} | {full_p} | "
          f"{full_s:.1f} | 1.00x |")
    print(f"| re-organised, --incremental night1 | {total} | {inc_p} | {inc_s:.1f} | "
          f"{full_s / inc_s:.2f}x faster |")
    print(f"\nrows of the incremental rescan: reused=same_content {kinds['same_content']}, "
          f"duplicate {kinds['duplicate']}, scored now {kinds[None]}; every score equal to the "
          f"first night's: {same}")


if __name__ == "__main__":
    main()
