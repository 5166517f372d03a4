"""``aiiscan selftest``: the whole pipeline, offline, on a tiny random backbone, in seconds.

It proves the installation works (decode workers, backbone, head training, report writing,
error rows); it proves nothing about detection, because the backbone has random weights.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

NOTICE = ("selftest uses a tiny RANDOMLY initialised backbone: its scores carry no meaning "
          "about AI generation. It checks the installation, not detection quality.")


def synthetic_photo(rng: np.random.Generator, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A photo-like picture made from scratch: smooth gradients, blobs and sensor-like noise."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    for c in range(3):
        a, b, p = rng.uniform(-1, 1, 3)
        img[..., c] = 128 + 60 * np.sin(a * xx / 40 + b * yy / 50 + p)
    for _ in range(6):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(10, 60)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        img += blob[..., None] * rng.uniform(-80, 80, 3)
    img += rng.normal(0, 4, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def make_folder(root: Path, n_good: int = 12, seed: int = 0) -> dict[str, str]:
    """Good photos in several formats plus bad files; returns path -> expected status."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    expected = {}
    formats = [("jpg", "JPEG"), ("png", "PNG"), ("webp", "WEBP"), ("bmp", "BMP")]
    for i in range(n_good):
        ext, fmt = formats[i % len(formats)]
        path = root / f"photo_{i:02d}.{ext}"
        synthetic_photo(rng).save(path, fmt)
        expected[str(path)] = "ok"
    good = (root / "photo_00.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "empty.png").write_bytes(b"")
    (root / "text.jpg").write_bytes(b"this is not an image\n" * 10)
    for name in ("truncated.jpg", "empty.png", "text.jpg"):
        expected[str(root / name)] = "error"
    return expected


def run_selftest(keep: str | None = None, echo: Callable[[str], None] = print) -> bool:
    from .backbone import TINY_CONFIG, build_backbone
    from .calibrate import calibrate as run_calibrate
    from .detector import Detector
    from .proxies import ProxySpec
    from .report import read_report
    from .scanner import options_from, run_scan
    from .train import TrainConfig, train
    from .weights import load_head

    echo(NOTICE)
    ok = True
    tmp = tempfile.TemporaryDirectory(prefix="aiiscan-selftest-") if keep is None else None
    root = Path(keep or tmp.name)

    def stage(name: str, fn: Callable[[], str]) -> bool:
        nonlocal ok
        t = time.perf_counter()
        try:
            detail = fn()
            echo(f"PASS  {name:<28} {time.perf_counter() - t:5.1f}s  {detail}")
            return True
        except Exception as exc:  # report every stage, never a traceback
            echo(f"FAIL  {name:<28} {type(exc).__name__}: {exc}")
            ok = False
            return False

    state: dict = {}

    def build() -> str:
        state["bb"] = build_backbone(str(TINY_CONFIG), "none", device="cpu", quiet=True)
        return f"{state['bb'].identity.name}, feature dim {state['bb'].identity.feature_dim}"

    def photos() -> str:
        state["expected"] = make_folder(root / "scan")
        rng = np.random.default_rng(1)
        train_dir = root / "train"
        train_dir.mkdir(exist_ok=True)
        for i in range(16):
            synthetic_photo(rng).save(train_dir / f"t{i:02d}.png")
        state["train"] = sorted(str(p) for p in train_dir.iterdir())
        cal_dir = root / "calibration"
        cal_dir.mkdir(exist_ok=True)
        for i in range(8):
            synthetic_photo(rng).save(cal_dir / f"c{i:02d}.jpg", quality=92)
        state["calibration"] = sorted(str(p) for p in cal_dir.iterdir())
        return (f"{len(state['train'])} training, {len(state['calibration'])} calibration, "
                f"{len(state['expected'])} scan files in {root}")

    def fit() -> str:
        cfg = TrainConfig(mode="N+P", proxy=ProxySpec(ratio=0.1), epochs=2, batch_size=8,
                          lr=1e-3, views=1, workers=2)
        train(state["bb"], state["train"], root / "head", cfg, progress=False)
        head, card, _ = load_head(root / "head")
        return f"head written and reloaded ({card.training['natural_count']} photos)"

    def calibrate() -> str:
        det = Detector(state["bb"], *load_head(root / "head"))
        result = run_calibrate(det, state["calibration"], "balanced", workers=2, progress=False)
        if load_head(root / "head")[1].threshold_value != result.block["value"]:
            raise AssertionError("the threshold did not reach the model card")
        return f"threshold {result.block['value']:.4g} written into the card"

    def scan() -> str:
        det = Detector(state["bb"], *load_head(root / "head"))
        summary = run_scan([str(root / "scan")], root / "report.parquet",
                           *options_from(detector=det, overwrite=True,
                           workers=2, batch_size=8, quiet=True))
        rows = {r["path"]: r for r in read_report(summary.report).to_pylist()}
        exp = state["expected"]
        if set(rows) != set(exp):
            raise AssertionError(f"report rows {sorted(rows)} != files {sorted(exp)}")
        wrong = [p for p, s in exp.items() if rows[p]["status"] != s]
        if wrong:
            raise AssertionError(f"unexpected status for {wrong}")
        scores = [rows[p]["score"] for p, s in exp.items() if s == "ok"]
        if not all(np.isfinite(scores)):
            raise AssertionError("non-finite score")
        if any(rows[p]["label"] is None for p, s in exp.items() if s == "ok"):
            raise AssertionError("scored rows without a label despite a calibrated threshold")
        n_err = sum(1 for s in exp.values() if s == "error")
        return f"{len(scores)} scored, {n_err} bad files reported as errors"

    for name, fn in (("build tiny backbone", build), ("generate images", photos),
                     ("train head (N+P)", fit), ("calibrate threshold", calibrate),
                     ("scan through workers", scan)):
        if not stage(name, fn):
            break
    echo(("selftest PASSED" if ok else "selftest FAILED") + (f" (files kept in {root})" if keep else ""))
    if tmp is not None:
        tmp.cleanup()
    return ok
