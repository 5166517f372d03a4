"""Per-image cost of the invisible-watermark detector against the scan's decode stage.

On generated 1024x1024 PNGs (``aiiscan.tasks.selftest.synthetic_photo``: gradients, blobs and sensor
noise, ~1.8 MB each), times per file, interleaved so that machine load hits all alike:

    stage      aiiscan.decode.job.decode_job(DecodeJob(path, provenance=True)): read, sha256,
               metadata, PNG decode, resize, crop (the scan's decode stage)
    stage+wm   the same with watermark=True, as the scan runs it (the stage calls detect)
    detect     aiiscan.decode.watermark.detect on the decoded Pillow image (what the decode stage holds)
    full       aiiscan.decode.watermark.decode_bits, one message in one channel order (the whole image)
    reference  imwatermark's EmbedMaxDct.decode on the BGR array (when invisible-watermark is
               installed; its per-block Python loop is slow, so it runs on the first file only)

and prints medians and the ratios. ``detect`` on an unmarked picture reads its first pass only;
the same on a marked copy (SDXL's message embedded by the reference encoder) adds the full decode.

    python benchmarks/watermark_cost.py               # 8 files, 5 rounds
    python benchmarks/watermark_cost.py --files 16 --rounds 9
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command  # noqa: E402

from aiiscan.decode.job import DecodeJob, decode_job  # noqa: E402
from aiiscan.decode.watermark import MESSAGES, decode_bits, detect  # noqa: E402
from aiiscan.tasks.selftest import synthetic_photo  # noqa: E402


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def loaded(path: str) -> Image.Image:
    img = Image.open(path)
    img.load()
    return img


def marked_copy(src: Path, dst: Path) -> bool:
    """``src`` with SDXL's message embedded as diffusers < 0.27 did; False without the oracle."""
    try:
        from imwatermark import WatermarkEncoder
    except ImportError:
        return False
    enc = WatermarkEncoder()
    enc.set_watermark("bits", list(MESSAGES[0].bits))
    Image.fromarray(enc.encode(np.asarray(loaded(str(src))).copy(), "dwtDct")).save(dst)
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--size", type=int, default=1024)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.files):
            p = Path(tmp) / f"photo_{i}.png"
            synthetic_photo(rng, (args.size, args.size)).save(p)
            paths.append(str(p))
        images = [loaded(p) for p in paths]
        marked = Path(tmp) / "marked.png"
        has_oracle = marked_copy(Path(paths[0]), marked)
        times: dict[str, list[float]] = {"stage": [], "stage+wm": [], "detect": [], "full": [],
                                         "detect marked": []}
        for _ in range(args.rounds):
            for p, img in zip(paths, images, strict=True):
                times["stage"].append(timed(lambda p=p: decode_job(DecodeJob(p, provenance=True))))
                times["stage+wm"].append(timed(lambda p=p: decode_job(DecodeJob(p, provenance=True,
                                                                                watermark=True))))
                times["detect"].append(timed(lambda img=img: detect(img)))
                times["full"].append(timed(lambda img=img: decode_bits(img, 48, "rgb")))
            if has_oracle:
                img = loaded(str(marked))
                assert detect(img) is not None
                times["detect marked"].append(timed(lambda img=img: detect(img)))
        if has_oracle:
            from imwatermark.maxDct import EmbedMaxDct

            bgr = np.ascontiguousarray(np.asarray(images[0])[..., ::-1])
            times["reference"] = [timed(lambda: EmbedMaxDct(watermarks=[], wmLen=48).decode(bgr))]
    med = {k: statistics.median(v) * 1000 for k, v in times.items() if v}
    print(f"\n$ {command()}\n")
    print(f"{args.files} generated {args.size}x{args.size} PNGs x {args.rounds} rounds, median ms per image")
    for k, v in med.items():
        print(f"  {k:14} {v:8.2f} ms   {v / med['stage']:7.1%} of the decode stage")
    if "reference" in med:
        print(f"  the reference decoder / full decode (one message, one order): "
              f"{med['reference'] / med['full']:.0f}x")
    else:
        print("  (invisible-watermark not installed: no marked copy, no reference timing)")


if __name__ == "__main__":
    main()
