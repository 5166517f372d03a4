"""``aiiscan selftest``: the whole pipeline, offline, on a tiny random backbone, in seconds.

It proves the installation works (decode workers, backbone, head training, report writing,
error rows), and that the MPFT fine-tuner learns: it plants a faint checkerboard in half of a set
of generated pictures, fine-tunes a tiny ViT (with a fixed DCT patch embedding,
``texture_checkpoint``) and checks held-out and fresh-pair AUC >= 0.9. It proves nothing about
detecting real AI images, because no backbone here has learnt weights.
"""

from __future__ import annotations

import logging
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


TINY64_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "tiny-vit-64.json"


def planted_pairs(root: Path, n: int, seed: int, size: int, sources: list[str] | None = None,
                  trace: str = "checkerboard") -> tuple[list[str], list[str]]:
    """``n`` natural PNGs and ``n`` others with ``trace`` planted (``traces.TRACES``), ``size`` x
    ``size`` (the decode stage's pre-crop size, so that no resize blurs the trace away), unpaired:
    each picture is used once. From ``sources`` (photos: a centre crop of each, downscaled to
    three times ``size`` first) when given, else from ``synthetic_photo``. Returns (natural,
    planted)."""
    from .traces import plant

    rng = np.random.default_rng(seed)
    out: tuple[list[str], list[str]] = ([], [])
    for kind in ("natural", "planted"):
        (root / kind).mkdir(parents=True, exist_ok=True)
    for i in range(2 * n):
        if sources:
            with Image.open(sources[i % len(sources)]) as src:
                img = src.convert("RGB")
            scale = 3 * size / min(img.size)  # a centre crop of the photo at a third of its width
            img = img.resize((max(size, round(img.width * scale)), max(size, round(img.height * scale))),
                             Image.BILINEAR)
            left, top = (img.width - size) // 2, (img.height - size) // 2
            img = img.crop((left, top, left + size, top + size))
        else:
            img = synthetic_photo(rng, (size, size))
        kind, paths = ("natural", out[0]) if i % 2 == 0 else ("planted", out[1])
        if kind == "planted":
            img = plant(img, trace, rng)
        path = root / kind / f"{kind}_{i // 2:03d}.png"
        img.save(path)
        paths.append(str(path))
    return out


def texture_checkpoint(config: str | Path, path: str | Path) -> Path:
    """An open_clip checkpoint (safetensors) for ``config``: its seeded random init, except that
    the patch embedding holds 2-D DCT basis filters (highest frequencies first).

    A pretrained CLIP's patch embedding holds edge and texture filters; a random one barely
    responds to pixel-level patterns (fine-tuning a random tiny ViT on a planted checkerboard stays
    at chance, measured), so the MPFT learning checks give the tiny ViT this fixed, hand-made
    first layer and let fine-tuning learn the rest. Not a trained model: its scores still say
    nothing about real AI images."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    from ..models.backbone import _config_name

    name = _config_name(Path(config))
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # open_clip's random-init notice: the init is the point here
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = open_clip.create_model(name, pretrained=None, device="cpu")
    finally:
        root.setLevel(level)
    conv = model.visual.conv1.weight  # [width, 3, p, p]
    width, _, p, _ = conv.shape
    k = np.arange(p)
    freqs = sorted(((u, v) for u in range(p) for v in range(p)), key=lambda t: (-(t[0] + t[1]), t))
    filters = np.zeros(conv.shape)
    for j in range(width):
        u, v = freqs[j % len(freqs)]
        b = np.outer(np.cos(np.pi * (k + 0.5) * u / p), np.cos(np.pi * (k + 0.5) * v / p))
        filters[j] = b / np.linalg.norm(b) / np.sqrt(3)
    state = {key: t.detach().contiguous() for key, t in model.state_dict().items()}
    state["visual.conv1.weight"] = torch.tensor(filters, dtype=conv.dtype)
    save_file(state, str(path))
    return Path(path)


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


class _Selftest:
    """The stages, in order; each returns a line of detail or raises what went wrong."""

    def __init__(self, root: Path):
        self.root = root

    def build(self) -> str:
        from ..models.backbone import TINY_CONFIG, build_backbone

        self.bb = build_backbone(str(TINY_CONFIG), "none", device="cpu", quiet=True)
        return f"{self.bb.identity.name}, feature dim {self.bb.identity.feature_dim}"

    def photos(self) -> str:
        root = self.root
        self.expected = make_folder(root / "scan")
        rng = np.random.default_rng(1)
        train_dir, cal_dir = root / "train", root / "calibration"
        train_dir.mkdir(exist_ok=True)
        cal_dir.mkdir(exist_ok=True)
        for i in range(16):
            synthetic_photo(rng).save(train_dir / f"t{i:02d}.png")
        for i in range(8):
            synthetic_photo(rng).save(cal_dir / f"c{i:02d}.jpg", quality=92)
        self.train = sorted(str(p) for p in train_dir.iterdir())
        self.calibration = sorted(str(p) for p in cal_dir.iterdir())
        return (f"{len(self.train)} training, {len(self.calibration)} calibration, "
                f"{len(self.expected)} scan files in {root}")

    def fit(self) -> str:
        from ..decode.proxies import ProxySpec
        from ..models.headfile import load_head
        from ..options import TrainOptions
        from .train import train

        cfg = TrainOptions(mode="N+P", proxy=ProxySpec(ratio=0.1), epochs=2, batch_size=8, lr=1e-3, views=1,
                           workers=2)
        train(self.bb, self.train, self.root / "head", cfg, progress=False)
        _, card, _ = load_head(self.root / "head")
        return f"head written and reloaded ({card.training.natural_count} photos)"

    def _detector(self):
        from ..models.headfile import load_head
        from ..models.scorer import Detector

        return Detector(self.bb, *load_head(self.root / "head"))

    def calibrate(self) -> str:
        from ..models.headfile import load_head
        from .calibrate import calibrate

        result = calibrate(self._detector(), self.calibration, "balanced", workers=2, progress=False)
        if load_head(self.root / "head")[1].threshold_value != result.block.value:
            raise AssertionError("the threshold did not reach the model card")
        return f"threshold {result.block.value:.4g} written into the card"

    def scan(self) -> str:
        from ..api import scan_options
        from ..reports.read import read_report
        from ..scanner.driver import run_scan

        summary = run_scan([str(self.root / "scan")], self.root / "report.parquet",
                           *scan_options(detector=self._detector(), overwrite=True, workers=2, batch_size=8,
                                         quiet=True))
        rows = {r["path"]: r for r in read_report(summary.report).to_pylist()}
        exp = self.expected
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

    def mpft(self) -> str:
        import torch

        from ..models.backbone import build_backbone
        from ..models.headfile import load_head
        from ..models.scorer import Detector
        from ..options import FinetuneOptions
        from .finetune import finetune
        from .metrics import roc_auc

        root = self.root
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a tiny model: more threads only spin against the decode side
        try:
            nat, ai = planted_pairs(root / "mpft-train", 48, 2, 73)
            fresh = planted_pairs(root / "mpft-fresh", 12, 3, 73)
            weights = texture_checkpoint(TINY64_CONFIG, root / "texture-vit.safetensors")
            bb = build_backbone(str(TINY64_CONFIG), "none", clip_weights=str(weights), device="cpu",
                                quiet=True)
            cfg = FinetuneOptions(epochs=20, patience=6, batch_size=8, lr=1e-3, views=2, workers=0,
                                  val_fraction=0.25)
            card = finetune(bb, nat, ai, root / "mpft", cfg, progress=False, own_backbone=True)
            auc = card.metrics.heldout_auc
            scores = Detector(bb, *load_head(root / "mpft")).score_paths(fresh[0] + fresh[1])
        finally:
            torch.set_num_threads(threads)
        fresh_auc = roc_auc(np.array(scores[:12]), np.array(scores[12:]))
        if auc < 0.9 or fresh_auc < 0.9:
            raise AssertionError(f"MPFT did not learn a planted checkerboard: held-out AUC {auc:.3f}, "
                                 f"fresh pairs {fresh_auc:.3f} (both should be >= 0.9)")
        return f"planted artifact learnt: held-out AUC {auc:.3f}, fresh pairs {fresh_auc:.3f}"

    STAGES = (("build tiny backbone", "build"), ("generate images", "photos"), ("train head (N+P)", "fit"),
              ("calibrate threshold", "calibrate"), ("scan through workers", "scan"),
              ("fine-tune MPFT (planted)", "mpft"))


def run_selftest(keep: str | None = None, echo: Callable[[str], None] = print) -> bool:
    """Every stage in order, one PASS/FAIL line each (never a traceback); stops at the first
    failure. Whether all passed."""
    echo(NOTICE)
    tmp = tempfile.TemporaryDirectory(prefix="aiiscan-selftest-") if keep is None else None
    root = Path(keep or tmp.name)
    test, ok = _Selftest(root), True
    for name, method in _Selftest.STAGES:
        t = time.perf_counter()
        try:
            detail = getattr(test, method)()
        except Exception as exc:  # report every stage, never a traceback
            echo(f"FAIL  {name:<28} {type(exc).__name__}: {exc}")
            ok = False
            break
        echo(f"PASS  {name:<28} {time.perf_counter() - t:5.1f}s  {detail}")
    echo(("selftest PASSED" if ok else "selftest FAILED") + (f" (files kept in {root})" if keep else ""))
    if tmp is not None:
        tmp.cleanup()
    return ok
