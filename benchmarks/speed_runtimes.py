"""`speed.py --runtimes`: export cost, model-only per runtime, end to end against a bare torch
float32 forward, and fidelity against fp32 (see speed.py's docstring)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
from common import command, trained_detector


def _crops(paths: list[str], size: int) -> np.ndarray:
    from aiiscan.decode.job import DecodeJob, decode_job

    return np.stack([decode_job(DecodeJob(p, size)).arrays[0] for p in paths])


def _rate(fn, n: int, runs: int = 1) -> float:
    best = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best.append(n / (time.perf_counter() - t))
    return float(np.median(best))


def _model_only(bb, crops: np.ndarray, batch: int, runs: int) -> list[tuple[str, float]]:
    from aiiscan.models.backbone import normalize
    from aiiscan.models.runtimes import runtime

    x = [normalize(crops[i:i + batch], bb.mean, bb.std) for i in range(0, len(crops), batch)]
    rows = []
    for name, precision in (("torch", "fp32"), ("torch", "bf16"), ("openvino", "fp32"), ("openvino", "bf16")):
        if name == "openvino" and not runtime("openvino").available():
            continue
        kw = {"identity": bb.identity.to_dict()} if name == "openvino" else {}
        enc = runtime(name).compile(bb.visual, bb.device, precision, **kw)
        enc(x[0])  # warm-up

        def run(enc=enc):
            for b in x:
                enc(b)

        rows.append((f"{name} {precision}", _rate(run, len(crops), runs)))
    return rows


def _bare_torch(bb, crops: np.ndarray, batch: int) -> float:
    """What a script does with a loaded open_clip tower: float32 forward, batch by batch."""
    import torch

    from aiiscan.models.backbone import normalize

    def run():
        with torch.inference_mode():
            for i in range(0, len(crops), batch):
                bb.visual(normalize(crops[i:i + batch], bb.mean, bb.std))

    return _rate(run, len(crops))


def _scan(det, paths: list[str], precision: str, batch: int, workers: int, out: Path) -> float:
    from aiiscan.api import scan_options
    from aiiscan.scanner.driver import run_scan

    det.backbone.precision = precision  # a fresh encoder: each scan pays its own start-up
    listing = out.with_suffix(".txt")
    listing.write_text("\n".join(paths) + "\n")
    if out.exists():
        out.unlink()
    t = time.perf_counter()
    run_scan([], out, *scan_options(detector=det, from_list=str(listing), workers=workers, batch_size=batch,
                                    precision=precision, quiet=True))
    return time.perf_counter() - t


def _scores(report: Path) -> dict[str, float]:
    import pyarrow.parquet as pq

    t = pq.read_table(report, columns=["path", "score"]).to_pydict()
    return {p: s for p, s in zip(t["path"], t["score"], strict=True) if s is not None}


def report(args, paths: list[str]) -> None:
    import torch

    from aiiscan.models.runtimes import compile_encoder

    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="aiiscan-bench-cache-")  # fresh: a first run
    from aiiscan.models.backbone import TINY_CONFIG, build_backbone

    # First-run export, in a fresh cache; the head's training below finds it there (same tensors).
    name = str(TINY_CONFIG) if args.backbone == "tiny" else args.backbone
    bb = build_backbone(name, "none", device="cpu", quiet=True)
    kw = {"identity": bb.identity.to_dict(), "image_size": bb.image_size}
    t = time.perf_counter()
    _, ran = compile_encoder(bb.visual, bb.device, "auto", **kw)
    export_s = time.perf_counter() - t
    t = time.perf_counter()
    compile_encoder(bb.visual, bb.device, "auto", **kw)
    load_s = time.perf_counter() - t
    del bb
    # A head trained briefly on photos (random-init backbone): scores that vary, so label flips
    # at a median threshold mean something. Its training runs the backbone through auto too.
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    head = Path(args.cache) / f"head-{Path(args.backbone).stem}-{args.train_photos}"
    det = trained_detector(args.backbone, head, n_photos=args.train_photos)
    bb = det.backbone

    crops = _crops(paths, bb.image_size)
    model = _model_only(bb, crops[: args.batch_size * 2], args.batch_size, args.runs)
    bare = _bare_torch(bb, crops, args.batch_size)
    del crops

    e2e, scores = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        _scan(det, paths[:1], "fp32", args.batch_size, args.workers, Path(tmp) / "warm.parquet")  # imports
        for precision in ("auto", "fp32"):
            one = _scan(det, paths[:1], precision, args.batch_size, args.workers, Path(tmp) / "one.parquet")
            out = Path(tmp) / f"{precision}.parquet"
            full = _scan(det, paths, precision, args.batch_size, args.workers, out)
            e2e[precision] = (len(paths) - 1) / max(full - one, 1e-9)
            scores[precision] = _scores(out)
            e2e[precision + " runs as"] = bb.runs_as
    ref, got = scores["fp32"], scores["auto"]
    common = sorted(set(ref) & set(got))
    a, b = np.array([ref[p] for p in common]), np.array([got[p] for p in common])
    thr = float(np.median(a))
    flips = int(np.sum((a >= thr) != (b >= thr)))

    print(f"command: {command()}")
    print(f"backbone {args.backbone} (random init), {len(paths)} unique photos, batch {args.batch_size}, "
          f"{args.workers} decode workers, torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs\n")
    print(f"auto runs as: {ran}; first-run export {export_s:.1f} s, cached load {load_s:.1f} s\n")
    print("| model only | img/s | / torch fp32 |")
    print("|---|---:|---:|")
    for name, rate in model:
        print(f"| {name} | {rate:.1f} | {rate / model[0][1]:.2f} |")
    print("\n| end to end (past start-up) | img/s | / bare torch fp32 forward |")
    print("|---|---:|---:|")
    print(f"| bare torch fp32 forward (crops pre-decoded) | {bare:.1f} | 1.00 |")
    for precision in ("auto", "fp32"):
        ran_as = e2e[precision + " runs as"]
        rate = e2e[precision]
        print(f"| aiiscan scan --precision {precision} ({ran_as}) | {rate:.1f} | {rate / bare:.2f} |")
    print(f"\nfidelity auto vs fp32 over {len(common)} files: max |score diff| {np.max(np.abs(a - b)):.3g} "
          f"(fp32 score spread, std {np.std(a):.3g}); label flips at the fp32 median {flips} "
          f"({100 * (1 - flips / max(len(common), 1)):.1f} % agree)")
