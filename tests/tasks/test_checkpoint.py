"""A resumed run must end where the uninterrupted run ends: the checkpoint carries the trained
tensors, the best state and the optimizer's moments, so the last epoch's update is the same."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from aiiscan.models.backbone import build_backbone
from aiiscan.options import FinetuneOptions, TrainOptions
from aiiscan.tasks.finetune import FinetuneError, finetune
from aiiscan.tasks.selftest import TINY64_CONFIG, planted_pairs
from aiiscan.tasks.train import TrainingError, train

from .test_finetune import SIZE


def _stop_after_first(record):
    if record["epoch"] == 1:
        raise KeyboardInterrupt


def _same_run(a, b):
    """Same tensors, and the same per-epoch history (losses, AUCs): the kept weights may be an
    early epoch's, so the last epoch's loss is what shows the optimizer's state came back."""
    ha, hb = (json.loads(p.with_suffix(".json").read_text())["training"]["history"] for p in (a, b))
    assert len(ha) == len(hb)
    for ra, rb in zip(ha, hb, strict=True):
        assert ra.keys() == rb.keys()
        for k in ra:
            want = rb[k] if rb[k] is None else pytest.approx(rb[k], rel=1e-5, abs=1e-6)
            assert ra[k] == want, (k, ra, rb)
    ta, tb = load_file(str(a.with_suffix(".safetensors"))), load_file(str(b.with_suffix(".safetensors")))
    assert ta.keys() == tb.keys()
    for k in ta:
        torch.testing.assert_close(ta[k], tb[k], rtol=0, atol=1e-6, msg=k)


def test_resumed_training_equals_the_uninterrupted_run(tmp_path, backbone, photos):
    cfg = TrainOptions(mode="N+P", epochs=3, batch_size=8, lr=1e-3, views=1, workers=0)
    train(backbone, photos, tmp_path / "whole", cfg, progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(backbone, photos, tmp_path / "cut", cfg, progress=False, on_epoch=_stop_after_first)
    meta = json.loads((tmp_path / "cut.ckpt.json").read_text())
    assert meta["epoch"] == 1 and any(s > 0 for s in meta["adam_steps"])  # the moments were saved
    train(backbone, photos, tmp_path / "cut", cfg, resume=True, progress=False)
    assert not (tmp_path / "cut.ckpt.json").exists()
    _same_run(tmp_path / "whole", tmp_path / "cut")


def test_resumed_finetuning_equals_the_uninterrupted_run(tmp_path, one_thread):
    nat, ai = planted_pairs(tmp_path / "d", 6, 5, SIZE)
    bb = build_backbone(str(TINY64_CONFIG), "none", device="cpu", quiet=True)
    before = {k: v.clone() for k, v in bb.visual.state_dict().items()}
    cfg = FinetuneOptions(epochs=2, batch_size=4, lr=1e-3, views=1, workers=0, val_fraction=0.34, patience=5)
    finetune(bb, nat, ai, tmp_path / "whole", cfg, progress=False)
    with pytest.raises(KeyboardInterrupt):
        finetune(bb, nat, ai, tmp_path / "cut", cfg, progress=False, on_epoch=_stop_after_first)
    assert (tmp_path / "cut.ckpt.json").is_file()
    finetune(bb, nat, ai, tmp_path / "cut", cfg, resume=True, progress=False)
    assert not (tmp_path / "cut.ckpt.json").exists()  # a finished run leaves no checkpoint
    _same_run(tmp_path / "whole", tmp_path / "cut")
    after = bb.visual.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the caller's backbone is untouched
    assert isinstance(bb.visual.patch_dropout, torch.nn.Identity)  # masking is off again after training


@pytest.mark.parametrize("kind", ["train", "finetune"])
def test_a_left_checkpoint_is_refused_without_resume_and_a_foreign_one_with_it(tmp_path, backbone, photos,
                                                                                kind, one_thread):
    if kind == "train":
        cfg, error = TrainOptions(mode="N+P", epochs=2, batch_size=8, views=1, workers=0), TrainingError

        def run(out, cfg, **kw):
            return train(backbone, photos, out, cfg, progress=False, **kw)
    else:
        nat, ai = planted_pairs(tmp_path / "d", 6, 5, SIZE)
        bb = build_backbone(str(TINY64_CONFIG), "none", device="cpu", quiet=True)
        cfg = FinetuneOptions(epochs=2, batch_size=4, views=1, workers=0, val_fraction=0.34)
        error = FinetuneError

        def run(out, cfg, **kw):
            return finetune(bb, nat, ai, out, cfg, progress=False, **kw)

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "r", cfg, on_epoch=_stop_after_first)
    with pytest.raises(error, match="interrupted .* add --resume"):
        run(tmp_path / "r", cfg)
    cfg = replace(cfg, seed=99)
    with pytest.raises(error, match="different run"):
        run(tmp_path / "r", cfg, resume=True)
    assert (tmp_path / "r.ckpt.json").is_file()  # a refusal keeps the checkpoint
