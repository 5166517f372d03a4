"""Recall and false positives of aiiscan.decode.watermark on natural photos.

Embeds each known message with the reference encoder (invisible-watermark, the oracle: see
tests/decode/test_watermark.py for the install) into natural photos, the way each generator's code does:

    sdxl u8-rgb      the uint8 RGB array handed over as if BGR (the recipe of the design notes)
    sdxl float-rgb   diffusers < 0.27: a float32 RGB array (the VAE's continuous output, here the
                     photo plus uniform +-0.5 dither) handed over as BGR, rounded to uint8 after
    sdxl float-bgr   diffusers >= 0.27 and generative-models: the same, turned BGR first
    sd1, sd2         CompVis / Stability-AI txt2img.py: uint8, cv2.COLOR_RGB2BGR, encode, back

and saves lossless PNG copies and JPEG q90/q95 copies in a temporary folder. Reports, per set:
how many images ``detect`` finds (and as what), the full-decode bit errors against the message
(min / 5th percentile / median / max), and the share within each candidate threshold. Then the
originals of the train-natural photos and the eval-dev real images (their bit errors against
every known message, in each channel order it is checked in), and what the eval-dev fake images
give. ``misses`` counts images that detect's first pass (a subset of blocks) turned away while
the full decode alone is within the threshold.

Photos under 256x256 pixels are left out (the encoder refuses them). Every random draw is seeded.

    python benchmarks/watermark_recall.py                 # all 940 train-natural + eval-dev
    python benchmarks/watermark_recall.py --limit 100     # every 9th photo, quicker
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import EVAL_DEV, TRAIN_NATURAL, command  # noqa: E402

from aiiscan.decode.watermark import MESSAGES, MIN_PIXELS, SCREEN_CONTRAST, decode_bits, detect, screen  # noqa: E402

VARIANTS = ("sdxl u8-rgb", "sdxl float-rgb", "sdxl float-bgr", "sd1", "sd2")
COPIES = (("lossless", "copy.png", {}), ("jpeg q90", "copy.jpg", {"quality": 90}),
          ("jpeg q95", "copy.jpg", {"quality": 95}))
CANDIDATES = {"sdxl": (6, 8, 10, 12, 14), "sd1": (24, 32, 40, 48), "sd2": (2, 3, 4, 5)}


def encoder(variant: str):
    from imwatermark import WatermarkEncoder

    enc = WatermarkEncoder()
    if variant.startswith("sdxl"):
        enc.set_watermark("bits", list(MESSAGES[0].bits))
    else:
        enc.set_watermark("bytes", b"StableDiffusionV1" if variant == "sd1" else b"SDV2")
    return enc


def embed(rgb: np.ndarray, variant: str, enc, rng: np.random.Generator) -> np.ndarray:
    """The picture as the generator's code would have saved it (uint8 RGB)."""
    if variant in ("sd1", "sd2", "sdxl u8-rgb"):
        bgr = variant != "sdxl u8-rgb"
        out = enc.encode(np.ascontiguousarray(rgb[..., ::-1]) if bgr else rgb.copy(), "dwtDct")
        return np.ascontiguousarray(out[..., ::-1] if bgr else out)
    x = np.clip(rgb.astype(np.float32) + rng.uniform(-0.5, 0.5, rgb.shape).astype(np.float32), 0, 255)
    if variant == "sdxl float-bgr":
        out = enc.encode(np.ascontiguousarray(x[..., ::-1]), "dwtDct")[..., ::-1]
    else:
        out = enc.encode(x, "dwtDct")
    return np.ascontiguousarray(np.round(np.clip(out, 0, 255)).astype(np.uint8))


def check_of(variant: str) -> str:
    order = "rgb" if variant in ("sdxl u8-rgb", "sdxl float-rgb") else "bgr"
    return f"{variant.split()[0]}/{order}"


def measure(img: Image.Image) -> dict[str, tuple[int, float]]:
    """Per known message and channel order: the full decode's bit errors and the vote contrast of
    detect's first pass."""
    first = {f"{s.message.name}/{s.message.order}": s.contrast for s in screen(img)}
    out = {}
    for m in MESSAGES:
        key = f"{m.name}/{m.order}"
        out[key] = (int((decode_bits(img, len(m.bits), m.order) != np.array(m.bits, bool)).sum()), first[key])
    return out


def reload(rgb: np.ndarray, path: Path, **save) -> Image.Image:
    Image.fromarray(rgb).save(path, **save)
    with Image.open(path) as im:
        return im.convert("RGB")


def photos(limit: int | None) -> list[Path]:
    rows = list(csv.DictReader(open(TRAIN_NATURAL / "MANIFEST.tsv"), delimiter="\t"))
    paths = [TRAIN_NATURAL / r["local_path"] for r in rows]
    return paths[::max(1, len(paths) // limit)][:limit] if limit else paths


def eval_dev(label: str) -> list[tuple[Path, str]]:
    rows = list(csv.DictReader(open(EVAL_DEV / "MANIFEST.tsv"), delimiter="\t"))
    return [(EVAL_DEV / r["local_path"], r["generator"]) for r in rows if r["label"] == label]


def spread(values, fmt: str = "{:.0f}") -> str:
    v = np.array(values)
    return " / ".join(fmt.format(x) for x in (v.min(), np.percentile(v, 5), np.median(v), v.max()))


class Sets:
    """Per set of images: (full-decode errors, first-pass vote contrast, what detect said)."""

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[int, float, str | None]]] = {}
        self.message: dict[str, str] = {}

    def add(self, key: str, check: str, measured: tuple[int, float], found) -> None:
        self.message[key] = check
        label = None if found is None else f"{found.name}/{found.order} ({found.bit_errors})"
        self.rows.setdefault(key, []).append((*measured, label))

    def print(self) -> None:
        print(f"{'set':40} {'images':>6} {'found':>6} {'share':>6} {'misses':>6}  "
              f"{'bit errors min/p5/med/max':26} {'first pass':22} found as")
        for key, rows in self.rows.items():
            m = next(m for m in MESSAGES if f"{m.name}/{m.order}" == self.message[key])
            found = Counter(r[2] for r in rows if r[2])
            misses = sum(r[2] is None and r[0] <= m.max_errors for r in rows)
            top = ", ".join(f"{k} x{v}" for k, v in found.most_common(3))
            print(f"{key:40} {len(rows):6d} {sum(found.values()):6d} {sum(found.values()) / len(rows):6.1%} "
                  f"{misses:6d}  {spread([r[0] for r in rows]):26} "
                  f"{spread([r[1] for r in rows], '{:.2f}'):22} {top}")

    def print_candidates(self) -> None:
        print(f"{'set':40} share within t bit errors (full decode), for candidate thresholds t")
        for key, rows in self.rows.items():
            name = self.message[key].split("/")[0]
            errors = np.array([r[0] for r in rows])
            print(f"{key:40} " + "  ".join(f"t={t}: {np.mean(errors <= t):6.1%}" for t in CANDIDATES[name]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--limit", type=int, help="train-natural photos to embed into (default: all)")
    args = ap.parse_args()
    if not TRAIN_NATURAL.is_dir() or not EVAL_DEV.is_dir():
        raise SystemExit(f"{TRAIN_NATURAL} and {EVAL_DEV} are needed")
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    encoders = {v: encoder(v) for v in VARIANTS}
    sets = Sets()
    small = Counter()
    real = [(p, "train-natural") for p in photos(args.limit)]
    real += [(p, "eval-dev real") for p, _ in eval_dev("real")]
    with tempfile.TemporaryDirectory() as tmp:
        for k, (path, origin) in enumerate(real):
            with Image.open(path) as im:
                img = im.convert("RGB")
            if img.width * img.height < MIN_PIXELS:
                small[origin] += 1
                continue
            found = detect(img)
            for check, measured in measure(img).items():
                sets.add(f"originals {origin}: {check}", check, measured, found)
            if origin != "train-natural":
                continue
            rgb = np.asarray(img)
            for v in VARIANTS:
                marked = embed(rgb, v, encoders[v], rng)
                for kind, name, save in COPIES:
                    copy = reload(marked, Path(tmp) / name, **save)
                    sets.add(f"{kind} {v}", check_of(v), measure(copy)[check_of(v)], detect(copy))
            if k % 50 == 0:
                print(f"  {k}/{len(real)} photos, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    fakes = Counter()
    for path, generator in eval_dev("fake"):
        with Image.open(path) as im:
            fmt, img = im.format, im.convert("RGB")
        if img.width * img.height < MIN_PIXELS:
            small["eval-dev fake"] += 1
            continue
        found = detect(img)
        for check, measured in measure(img).items():
            sets.add(f"eval-dev fake {fmt}: {check}", check, measured, found)
        fakes[(generator, fmt, "none" if found is None else f"{found.name} ({found.bit_errors})")] += 1

    print(f"\n$ {command()}\n")
    print("thresholds: " + ", ".join(f"{m.name}/{m.order} <= {m.max_errors} of {len(m.bits)} "
                                      f"(random bits: {m.false_positive:.1e})" for m in MESSAGES))
    print(f"first pass hands over from a vote contrast of {SCREEN_CONTRAST}; photos under 256x256 left out: "
          f"{dict(small) or 0}\n")
    sets.print()
    print("\nfound: images detect() reported (on originals and eval-dev rows, any message: it repeats on "
          "each row); misses: images within the threshold on a full decode that detect's first pass "
          "turned away; first pass: its vote contrast min/p5/med/max.\n")
    sets.print_candidates()
    print("\neval-dev fake images by generator:")
    for (generator, fmt, found), n in sorted(fakes.items()):
        print(f"  {generator[:60]:60} {fmt:5} {found:12} x{n}")
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
