"""Issue 28: the linear-probe head kind (``aiiscan finetune --method probe``) through the real CLI:
its card, a multi-head scan beside a CLIP-Flow head on the same frozen backbone (one backbone pass
per file, counted; one score column each), calibrate and evaluate. Random-init tiny backbone:
plumbing only; the learning proofs are in test_traces.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from safetensors import safe_open

from aiiscan.card import read_card
from aiiscan.cli import main
from aiiscan.models.backbone import ClipBackbone
from aiiscan.models.headfile import load_head
from aiiscan.reports.read import read_report, report_metadata
from aiiscan.tasks.selftest import planted_pairs

from ..conftest import TINY_CONFIG


@pytest.fixture(scope="module")
def probe(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("probe")
    nat, ai = planted_pairs(root / "train", 10, 5, 256)
    out = root / "probe"
    res = CliRunner().invoke(main, [
        "finetune", "--method", "probe", "--natural", str(Path(nat[0]).parent),
        "--ai", str(Path(ai[0]).parent), "-o", str(out), "--backbone", str(TINY_CONFIG),
        "--pretrained", "none", "--views", "1", "--workers", "0", "--threads", "1", "-q"])
    assert res.exit_code == 0, res.output
    return {"prefix": out, "output": res.output, "test": planted_pairs(root / "test", 4, 6, 256)}


def test_finetune_method_probe_writes_a_probe_head(probe):
    assert "probe" in probe["output"] and "held-out AUC" in probe["output"]
    card = read_card(probe["prefix"])
    assert card.kind == "probe" and card.head.features == "embedding"
    assert card.training["method"] == "probe"
    assert card.head.l2 in card.training["l2_grid"]
    assert len(card.training["ai_fingerprints"]) == len(card.training["natural_fingerprints"]) == 10
    assert card.threshold_policy == "logit:0"
    with safe_open(str(probe["prefix"]) + ".safetensors", framework="pt") as f:
        assert set(f.keys()) == {"classifier.weight", "classifier.bias"}  # no backbone tensor
    head, loaded, _ = load_head(probe["prefix"])
    assert loaded.kind == "probe" and tuple(head.classifier.weight.shape) == (1, card.backbone.feature_dim)


def test_a_probe_scans_beside_a_clip_flow_head_in_one_backbone_pass(probe, head_prefix, tmp_path,
                                                                     monkeypatch):
    nat, ai = probe["test"]
    encoded: list[int] = []
    encode = ClipBackbone.encode

    def counted(self, batch):
        encoded.append(len(batch))
        return encode(self, batch)

    monkeypatch.setattr(ClipBackbone, "encode", counted)
    report = tmp_path / "both.parquet"
    res = CliRunner().invoke(main, ["scan", str(Path(nat[0]).parents[1]), "-o", str(report), "--weights",
                                    str(head_prefix), "--weights", str(probe["prefix"]), "--workers", "0",
                                    "-q"])
    assert res.exit_code == 0, res.output
    rows = read_report(report).to_pylist()
    assert len(rows) == 8 and all(r["status"] == "ok" for r in rows)
    assert sum(encoded) == 8  # the backbone once per file, for both heads
    assert all(r["score"] is not None and r["score_2"] is not None for r in rows)
    assert len({r["model_id"] for r in rows}) == len({r["model_id_2"] for r in rows}) == 1
    assert rows[0]["model_id"] != rows[0]["model_id_2"]
    assert report_metadata(report)["backbone_passes"] == 1


def test_calibrate_and_evaluate_take_a_probe(probe, tmp_path):
    nat, ai = probe["test"]
    head = tmp_path / "cal"
    for suffix in (".safetensors", ".json"):
        head.with_suffix(suffix).write_bytes(Path(str(probe["prefix"]) + suffix).read_bytes())
    common = ["--weights", str(head), "--workers", "0", "-q"]
    nat_dir, ai_dir = str(Path(nat[0]).parent), str(Path(ai[0]).parent)
    runner = CliRunner()
    res = runner.invoke(main, ["calibrate", "--natural", nat_dir, *common])  # balanced needs AI images
    assert res.exit_code == 2 and "pass --ai DIR" in res.output and "Traceback" not in res.output
    res = runner.invoke(main, ["calibrate", "--natural", nat_dir, "--ai", ai_dir, *common])
    assert res.exit_code == 0, res.output
    block = read_card(head).threshold
    assert block["validation"]["positives"] == "ai images" and block["policy"] == "balanced"
    res = runner.invoke(main, ["evaluate", "--real", nat_dir, "--fake", ai_dir, *common[:-1]])
    assert res.exit_code == 0 and "planted" in res.output, res.output


def test_a_probe_card_with_unknown_features_is_refused(probe, tmp_path):
    from aiiscan.errors import WeightsError

    raw = json.loads(Path(str(probe["prefix"]) + ".json").read_text())
    raw["head"]["features"] = "patch-tokens"
    bad = tmp_path / "bad"
    bad.with_suffix(".json").write_text(json.dumps(raw))
    bad.with_suffix(".safetensors").write_bytes(Path(str(probe["prefix"]) + ".safetensors").read_bytes())
    with pytest.raises(WeightsError, match="head.features"):
        load_head(bad)
