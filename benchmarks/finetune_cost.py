"""What one MPFT fine-tuning step and one MPFT scoring pass cost, per image, on this machine.

Random-init weights (no download; the cost is the same as with pretrained ones). Crops are made
in memory, so decoding is left out: see speed.py for the decode side.

    python benchmarks/finetune_cost.py --backbone ViT-B-32 --batch-size 8 --steps 3
    python benchmarks/finetune_cost.py --backbone ViT-L-14 --batch-size 4 --steps 2 --tune-blocks 2

Prints seconds per image for a training step (forward, backward, AdamW; with and without
texture-aware masking) and for scoring (forward only, no masking).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from aiiscan.models.backbone import build_backbone  # noqa: E402
from aiiscan.options import FinetuneOptions, MaskSpec  # noqa: E402
from aiiscan.tasks.finetune import _Model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="ViT-B-32")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--tune-blocks", type=int, default=2)
    ap.add_argument("--mask-ratio", type=float, default=0.25)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t = time.perf_counter()
    bb = build_backbone(args.backbone, "none", device="cpu", quiet=True)
    print(f"{args.backbone}: built in {time.perf_counter() - t:.1f}s, {torch.get_num_threads()} threads, "
          f"batch {args.batch_size}, tune-blocks {args.tune_blocks}")
    model = _Model(bb, FinetuneOptions(tune_blocks=args.tune_blocks), own=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    size = bb.image_size
    crops = np.random.default_rng(0).integers(0, 256, (args.batch_size, size, size, 3), dtype=np.uint8)
    y = torch.ones(args.batch_size)

    def step(mask):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model.logits(crops, mask), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    masked = MaskSpec(args.mask_ratio)
    for label, fn in (("train step, masking off", lambda: step(None)),
                      (f"train step, masking {args.mask_ratio} (drop)", lambda: step(masked)),
                      ("scoring (no grad)", lambda: model.scores(list(crops), args.batch_size))):
        fn()  # warm-up
        t = time.perf_counter()
        for _ in range(args.steps):
            fn()
        per = (time.perf_counter() - t) / (args.steps * args.batch_size)
        print(f"  {label:<34} {per:7.3f} s/image")


if __name__ == "__main__":
    main()
