"""Does each trainer learn pixel-level traces that its frozen first layer carries? (issue 28)

    python benchmarks/mpft_traces.py [--traces checkerboard resample jpeg colour-peak]
        [--trainers mpft probe first-layer] [--set mpft-nomask:mask_ratio=0] [--sources DIR]

For each trace kind (``aiiscan/tasks/traces.py``) it makes 35 natural + 35 planted training
pictures and 15 + 15 held-out ones, unpaired (every photo used once), at the 64-pixel tiny ViT's
pre-crop size (73 px), from the shared natural photos when present (else synthetic ones). The
tiny ViT gets the suite's fixed DCT first layer (``selftest.texture_checkpoint``) as
``--clip-weights``. Each trainer is fitted on the training set through ``aiiscan.api.finetune``
with every option at its default except the tiny-model ones the suite uses (``--epochs 20
--patience 6 --lr 1e-3 --batch-size 8 --views 2``), and the table gives the AUC of its scores on
the held-out set (never seen, not used to pick an epoch). Trainers:

- ``mpft``: ``aiiscan finetune`` (MPFT, the defaults);
- ``probe``: ``aiiscan finetune --method probe`` (logistic regression on the frozen final embedding);
- ``first-layer``: the outside check's reference, a logistic regression on the mean absolute
  responses of the frozen first layer (not a product trainer: what the first layer carries);
- ``--set NAME:key=value,key=value`` adds an MPFT variant with those ``FinetuneOptions``
  (e.g. ``mpft-nomask:mask_ratio=0``, ``mpft-embedding:trace_features=false``); the extra key
  ``pool=avg`` (an experiment, not an option) makes the ViT pool its patch tokens' mean instead of
  its class token, in training and scoring alike.

Measured on 2 shared CPU cores: see docs/mpft.md for the table and what it says.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from aiiscan import api  # noqa: E402
from aiiscan.models.backbone import build_backbone  # noqa: E402
from aiiscan.models.scorer import Detector  # noqa: E402
from aiiscan.tasks.metrics import roc_auc  # noqa: E402
from aiiscan.tasks.selftest import TINY64_CONFIG, planted_pairs, texture_checkpoint  # noqa: E402
from aiiscan.tasks.traces import TRACES  # noqa: E402

SIZE = 73  # the decode stage's pre-crop size for the 64-pixel tiny ViT
TINY = {"epochs": 20, "patience": 6, "lr": 1e-3, "batch_size": 8, "views": 2, "workers": 0}
SHARED = Path("/work/shared/data/train-natural")


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def first_layer_auc(clip: Path, train: tuple[list[str], list[str]], test: tuple[list[str], list[str]]
                    ) -> float:
    """Logistic regression (LBFGS, standardised, small L2) on mean |conv1| per channel of centre crops."""
    from aiiscan.decode.job import DecodeJob
    from aiiscan.decode.pool import decode_stream
    from aiiscan.models.backbone import normalize

    bb = build_backbone(str(TINY64_CONFIG), "none", clip_weights=str(clip), device="cpu", quiet=True)

    def feats(paths: list[str]) -> torch.Tensor:
        crops = [r.arrays[0] for r in decode_stream((DecodeJob(p, 64) for p in paths), 0)]
        with torch.no_grad():
            return bb.visual.conv1(normalize(np.stack(crops), bb.mean, bb.std)).abs().mean(dim=(2, 3))

    x, xt = feats(train[0] + train[1]), feats(test[0] + test[1])
    y = torch.tensor([0.0] * len(train[0]) + [1.0] * len(train[1]))
    mu, sd = x.mean(0), x.std(0) + 1e-6
    x, xt = (x - mu) / sd, (xt - mu) / sd
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y) + 1e-2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    s = (xt @ w + b).detach().numpy()
    return roc_auc(s[:len(test[0])], s[len(test[0]):])


@contextlib.contextmanager
def pooling(kind: str):
    """open_clip ViTs pool their class token; ``avg`` pools the mean patch token for a while."""
    from open_clip.transformer import VisionTransformer

    real = VisionTransformer._global_pool
    if kind == "avg":
        VisionTransformer._global_pool = lambda self, x: (x[:, 1:].mean(dim=1), x[:, 1:])
    try:
        yield
    finally:
        VisionTransformer._global_pool = real


def run(trainer: str, options: dict, clip: Path, sets: dict, out: Path) -> float:
    train, test = sets["train"], sets["test"]
    if trainer == "first-layer":
        return first_layer_auc(clip, train, test)
    options = dict(options)
    with pooling(options.pop("pool", "tok")):
        return _finetune_and_score(options, clip, train, test, out)


def _finetune_and_score(options: dict, clip: Path, train: tuple, test: tuple, out: Path) -> float:
    api.finetune(train[0], train[1], out, backbone=str(TINY64_CONFIG), pretrained="none",
                 clip_weights=str(clip), device="cpu", threads=1, **{**TINY, **options})
    det = Detector.load(out, device="cpu", clip_weights=str(clip), quiet=True)
    s = np.array(det.score_paths(test[0] + test[1]))
    return roc_auc(s[:len(test[0])], s[len(test[0]):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--traces", nargs="+", default=list(TRACES), choices=list(TRACES))
    ap.add_argument("--trainers", nargs="+", default=["mpft", "probe", "first-layer"])
    ap.add_argument("--set", action="append", default=[], metavar="NAME:key=value,...",
                    help="an MPFT variant with these FinetuneOptions")
    ap.add_argument("--sources", type=Path, default=SHARED, help="natural photos (default: the shared set)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    trainers = {"mpft": {}, "probe": {"method": "probe"}, "first-layer": {}}
    trainers = {t: trainers[t] for t in args.trainers}
    for spec in args.set:
        name, _, kv = spec.partition(":")
        trainers[name] = {k: _value(v) for k, v in (p.split("=", 1) for p in kv.split(",") if p)}
    found = sorted(str(p) for p in args.sources.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg")) \
        if args.sources.is_dir() else []
    rng = np.random.default_rng(args.seed)
    sources = [found[i] for i in rng.permutation(len(found))[:100]] if len(found) >= 100 else None
    print(f"sources: {'shared natural photos' if sources else 'synthetic pictures'}; trainers: "
          + "; ".join(f"{k} {v or '(defaults)'}" for k, v in trainers.items()))
    table: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="mpft-traces-") as tmp:
        root = Path(tmp)
        clip = texture_checkpoint(TINY64_CONFIG, root / "texture-vit.safetensors")
        for trace in args.traces:
            sets = {"train": planted_pairs(root / trace / "train", 35, args.seed, SIZE,
                                           sources[:70] if sources else None, trace),
                    "test": planted_pairs(root / trace / "test", 15, args.seed + 1, SIZE,
                                          sources[70:] if sources else None, trace)}
            for name, options in trainers.items():
                t = time.perf_counter()
                trainer = "first-layer" if name == "first-layer" else "finetune"
                auc = run(trainer, options, clip, sets, root / trace / name)
                table.setdefault(trace, {})[name] = auc
                print(f"{trace:<13} {name:<16} held-out AUC {auc:.3f}  ({time.perf_counter() - t:.0f} s)",
                      flush=True)
    names = list(trainers)
    print("\n| trace | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    for trace, row in table.items():
        print(f"| {trace} | " + " | ".join(f"{row[n]:.2f}" for n in names) + " |")


if __name__ == "__main__":
    main()
