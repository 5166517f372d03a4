"""calibrate with AI images as the positive set (``--ai``): the maths, the bookkeeping, refusals.

Most tests use a scorer stub whose scores are fixed per file name (and a far-off score for the
band-(30,100) copies), so that the threshold, AUC and TPR can be computed by hand and a positive
set that were silently the band copies would show. The end to end run on a fine-tuned MPFT head
with a planted artifact is in test_finetune.py (it reuses that module's head).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from aiiscan.card import read_card
from aiiscan.cli import main
from aiiscan.models.kinds.mpft import MpftConfig
from aiiscan.tasks.calibrate import AI, BAND, CalibrationError, calibrate
from aiiscan.tasks.metrics import balanced_threshold, fpr_threshold, rates_at, roc_auc
from aiiscan.tasks.train import training_digest

from ..conftest import write_photos

# Hand-computed case: the best cut sits between 0.35 and 0.5 (4/5 naturals kept, 3/4 AI flagged).
NATURAL = [0.1, 0.2, 0.3, 0.35, 0.9]
AI_SCORES = [0.25, 0.5, 0.6, 0.95]
BAND_SCORE = 100.0  # what the stub gives a band copy: calibrating on those would look perfect


def test_balanced_and_fpr_thresholds_on_naturals_vs_ai_scores():
    rates = balanced_threshold(np.array(NATURAL), np.array(AI_SCORES))
    assert rates.threshold == pytest.approx(0.425)
    assert (rates.real_accuracy, rates.tpr, rates.balanced_accuracy) == pytest.approx((0.8, 0.75, 0.775))
    # fpr:0.2 of 5 naturals flags at most one: the cut sits just above the second-highest, 0.35
    cut = fpr_threshold(np.array(NATURAL), 0.2)
    assert cut == np.nextafter(0.35, np.inf)
    at = rates_at(np.array(NATURAL), np.array(AI_SCORES), cut)
    assert (at.fpr, at.tpr) == pytest.approx((0.2, 0.75))
    assert roc_auc(np.array(NATURAL), np.array(AI_SCORES)) == pytest.approx(15 / 20)


class StubScorer:
    """The Scorer shape with fixed scores per file name; a file that is not a PNG fails to decode."""

    image_size = 64
    precision = "fp32"
    model_id = "stub"

    def __init__(self, prefix: Path, scores: dict[str, float], **card_changes):
        self.prefix = prefix
        self.card = replace(read_card(prefix), **card_changes)
        self.scores = scores
        self.variants_seen: set = set()

    def score_stream(self, jobs, batch_size=64, workers=None):
        for job in jobs:
            data = Path(job.path).read_bytes()
            if not data.startswith(b"\x89PNG") or len(data) < 100:
                yield SimpleNamespace(path=job.path, error="not a readable image", info={}), None
                continue
            self.variants_seen.update(job.variants)
            sha = hashlib.sha256(data).hexdigest()
            res = SimpleNamespace(path=job.path, error=None, info={"sha256": sha})
            base = self.scores[Path(job.path).name]
            yield res, np.array([[base if v is None else BAND_SCORE] for v in job.variants])  # [var, head]


@pytest.fixture()
def sets(tmp_path) -> dict:
    nat = write_photos(tmp_path / "natural", len(NATURAL), seed=51, size=(40, 30))
    ai = [str(Path(p).rename(Path(p).with_name(f"ai_{i}.png")))
          for i, p in enumerate(write_photos(tmp_path / "ai", len(AI_SCORES), seed=52, size=(40, 30)))]
    scores = {Path(p).name: s for p, s in zip(nat + ai, NATURAL + AI_SCORES, strict=True)}
    return {"natural": nat, "ai": ai, "scores": scores, "root": tmp_path}


def _sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _mpft_card_changes(stub_prefix: Path, **training) -> dict:
    """Card fields that make the tiny CLIP-Flow card an MPFT one (valid enough to be written)."""
    card = read_card(stub_prefix)
    dim = card.backbone["feature_dim"]
    return {"kind": "mpft", "head": MpftConfig(dim, 1, {"proj": [dim, dim]}),
            "training": {**card.training, **training}}


@pytest.mark.parametrize("policy", ["balanced", "fpr:0.2"])
def test_the_ai_images_are_the_positive_set(head_copy, sets, policy, tmp_path):
    stub = StubScorer(head_copy, sets["scores"])
    result = calibrate(stub, sets["natural"], policy, ai=sets["ai"], progress=False,
                       plot=tmp_path / "c.png")
    b, v = result.block, result.block["validation"]
    expected = 0.425 if policy == "balanced" else np.nextafter(0.35, np.inf)
    assert b["value"] == pytest.approx(expected)  # with band copies (score 100) it would be 0.925 / 0.35+
    assert (b["tpr"], b["fpr"], b["auc"]) == pytest.approx((0.75, 0.2, 0.75))
    assert stub.variants_seen == {None}  # no band copy was even decoded
    assert v["positives"] == AI and "perturbation" not in v
    assert (v["natural_count"], v["ai_count"], v["ai_failed"]) == (5, 4, 0)
    assert v["ai_digest"] == training_digest([_sha(p) for p in sets["ai"]])
    assert b["ai_score_median"] == pytest.approx(0.55) and "perturbed_score_median" not in b
    assert "AI images given" in b["caution"]
    written = json.loads(Path(f"{head_copy}.json").read_text())["threshold"]
    assert written["validation"]["positives"] == AI and written["value"] == b["value"]
    text = "\n".join(result.lines())
    assert "5 natural photos + 4 AI images" in text and "band" not in text
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_ai_images_the_band_copies_stay_the_positive_set(head_copy, sets):
    stub = StubScorer(head_copy, sets["scores"])
    result = calibrate(stub, sets["natural"], progress=False)
    v = result.block["validation"]
    assert v["positives"] == BAND and "ai_count" not in v and "perturbation" in v
    assert result.block["perturbed_score_median"] == BAND_SCORE and result.block["auc"] == 1.0
    assert f"5 natural photos + 5 {BAND}" in "\n".join(result.lines())


def test_unreadable_ai_images_are_counted_and_too_few_refused(head_copy, sets):
    broken = sets["root"] / "ai" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    stub = StubScorer(head_copy, sets["scores"])
    result = calibrate(stub, sets["natural"], ai=[*sets["ai"], str(broken)], progress=False)
    assert result.block["validation"]["ai_failed"] == 1 and result.block["validation"]["ai_count"] == 4
    assert result.failed == [(str(broken), "not a readable image")]
    assert "1 files could not be read" in "\n".join(result.lines())
    before = read_card(head_copy).threshold
    with pytest.raises(CalibrationError, match="at least 2 AI images that decode; 1 of 2 did"):
        calibrate(stub, sets["natural"], ai=[sets["ai"][0], str(broken)], progress=False)
    with pytest.raises(CalibrationError, match="at least 2 AI images, got 1"):
        calibrate(stub, sets["natural"], ai=sets["ai"][:1], progress=False)
    assert read_card(head_copy).threshold == before  # nothing written on refusal


def test_ai_images_used_in_fine_tuning_are_refused(head_copy, sets):
    changes = _mpft_card_changes(head_copy, ai_fingerprints=[_sha(sets["ai"][2])[:16]])
    stub = StubScorer(head_copy, sets["scores"], **changes)
    with pytest.raises(CalibrationError, match=r"ai_2.png was used to train this head .*training\."
                                               r"ai_fingerprints.*AI images the head has not seen"):
        calibrate(stub, sets["natural"], ai=sets["ai"], progress=False)
    assert read_card(head_copy).threshold is None


def test_the_same_image_in_both_sets_is_refused(head_copy, sets):
    twin = sets["root"] / "ai" / "twin.png"
    shutil.copy(sets["natural"][1], twin)
    stub = StubScorer(head_copy, {**sets["scores"], "twin.png": 0.7})
    with pytest.raises(CalibrationError, match="in both the natural and the AI set.*twin.png"):
        calibrate(stub, sets["natural"], ai=[*sets["ai"], str(twin)], progress=False)


def test_mpft_balanced_needs_ai_images_and_old_cards_warn(head_copy, sets):
    stub = StubScorer(head_copy, sets["scores"], **_mpft_card_changes(head_copy))
    with pytest.raises(CalibrationError, match=r"pass --ai DIR or use --policy fpr:X"):
        calibrate(stub, sets["natural"], progress=False)
    assert stub.variants_seen == set()  # refused before anything was scored
    fpr = calibrate(stub, sets["natural"], "fpr:0.2", progress=False)
    assert fpr.block["validation"]["positives"] == BAND
    # an MPFT card written before training.ai_fingerprints existed: calibrated, with a warning
    result = calibrate(stub, sets["natural"], ai=sets["ai"], progress=False)
    assert "ai_overlap_check" in result.block["validation"]
    assert any("AI images used in fine-tuning could not be checked" in line for line in result.lines())


def test_cli_ai_option_end_to_end_on_a_tiny_head(head_copy, held_out_pair, tmp_path):
    nat, ai = held_out_pair
    res = CliRunner().invoke(main, ["calibrate", "--weights", str(head_copy), "--natural", str(nat),
                                    "--ai", str(ai), "--workers", "0", "--plot", str(tmp_path / "p.png"),
                                    "-q"])
    assert res.exit_code == 0, res.output
    assert "validation: 6 natural photos + 5 AI images" in res.output and "plot:" in res.output
    block = read_card(head_copy).threshold
    assert block["validation"]["positives"] == AI and block["validation"]["ai_count"] == 5
    listing = tmp_path / "ai.txt"
    listing.write_text("".join(f"{p}\n" for p in sorted(ai.iterdir())))
    res = CliRunner().invoke(main, ["calibrate", "--weights", str(head_copy), "--natural-list", "-",
                                    "--ai-list", str(listing), "--policy", "fpr:0.2", "--workers", "0", "-q"],
                             input="".join(f"{p}\n" for p in sorted(nat.iterdir())))
    assert res.exit_code == 0, res.output
    assert read_card(head_copy).threshold["validation"]["ai_count"] == 5
    assert read_card(head_copy).calibration_history[-1]["policy"] == "balanced"
    # the HTML report's scan facts say which positive set the threshold was placed on
    common = ["--weights", str(head_copy), "--workers", "0", "-q"]
    report = tmp_path / "r.parquet"
    res = CliRunner().invoke(main, ["scan", str(nat), "-o", str(report), *common])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["report", str(report), "-o", str(tmp_path / "r.html"), "-q"])
    assert res.exit_code == 0, res.output
    assert "6 natural photos + 5 AI images, on" in (tmp_path / "r.html").read_text()


def test_cli_ai_usage_errors(head_copy, held_out_pair, tmp_path):
    nat, ai = held_out_pair
    runner = CliRunner()
    cal = ["calibrate", "--weights", str(head_copy)]
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(next(ai.iterdir()), lone / "one.png")
    res = runner.invoke(main, [*cal, "--natural", str(nat), "--ai", str(lone)])
    assert res.exit_code == 2 and "at least 2 AI images, found 1" in res.output
    res = runner.invoke(main, [*cal, "--natural-list", "-", "--ai-list", "-"])
    assert res.exit_code == 2 and "cannot both read stdin" in res.output
    assert "Traceback" not in res.output and read_card(head_copy).threshold is None


@pytest.fixture(scope="module")
def held_out_pair(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pair")
    write_photos(root / "natural", 6, seed=61, size=(64, 48))
    write_photos(root / "ai", 5, seed=62, size=(64, 48))
    return root / "natural", root / "ai"
