"""Issue 26: the verdict rule (scanner.verdict, docs/verdicts.md), one test per rule of its table,
on rows of evidence columns, and on real files where the suite can make them: a watermarked PNG
signed with a trusted C2PA manifest that declares a capture (conflicting evidence), a trusted AI
manifest, and the demo photos' generator metadata and camera EXIF through an evidence-only scan."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from aiiscan import api
from aiiscan.cli import main
from aiiscan.errors import UsageError
from aiiscan.reports.read import read_report
from aiiscan.scanner.verdict import combine, decide

TRUSTED_CAPTURE = {"c2pa_trust": "trusted", "c2pa_ai": None}
SDXL = {"watermark": "sdxl", "watermark_bit_errors": 2}


# -- rule 1: AI evidence and natural evidence together ---------------------------------------------
def test_rule1_conflicting_evidence_is_uncertain_with_both_reasons():
    assert decide(TRUSTED_CAPTURE | SDXL, []) == ("uncertain", "watermark-sdxl;c2pa-trusted-no-ai")
    row = TRUSTED_CAPTURE | {"generator_kind": "generated"}
    assert decide(row, ["ai"]) == ("uncertain", "generator-metadata;c2pa-trusted-no-ai;score>=threshold")


# -- rule 2: AI evidence decides, whatever the heads say ------------------------------------------
@pytest.mark.parametrize("row, tag", [
    ({"c2pa_trust": "trusted", "c2pa_ai": "generated", "c2pa_ai_in": "active"}, "c2pa-trusted-ai"),
    ({"c2pa_trust": "trusted", "c2pa_ai": "edited", "c2pa_ai_in": "active"}, "c2pa-trusted-ai-edited"),
    ({"c2pa_trust": "trusted", "c2pa_ai": "generated", "c2pa_ai_in": "ingredient"},
     "c2pa-trusted-ai-edited"),
    (SDXL, "watermark-sdxl"), ({"watermark": "sd1"}, "watermark-sd1"),
    ({"generator_kind": "generated", "generator": "ComfyUI"}, "generator-metadata"),
    ({"generator_kind": "edited"}, "generator-metadata-edited"),
])
def test_rule2_ai_evidence_decides_even_against_the_heads(row, tag):
    assert decide(row, []) == ("ai", tag)
    assert decide(row, ["natural"]) == ("ai", f"{tag};score<threshold")
    assert decide(row, ["natural", "natural"], "all", ["unstable:jpeg75"]) == (
        "ai", f"{tag};score<threshold;score_2<threshold_2;unstable:jpeg75")


def test_rule2_an_untrusted_or_broken_manifest_is_no_evidence():
    for trust in ("valid-untrusted", "invalid", "unchecked", "none"):
        row = {"c2pa_trust": trust, "c2pa_ai": "generated", "c2pa_ai_in": "active"}
        assert decide(row, []) == (None, None)
        assert decide(row, ["natural"]) == ("natural", "score<threshold")


# -- rule 3: natural evidence, and what it conflicts with -----------------------------------------
def test_rule3_natural_evidence_with_no_head_against_it():
    assert decide(TRUSTED_CAPTURE, []) == ("natural", "c2pa-trusted-no-ai")
    assert decide(TRUSTED_CAPTURE, ["natural"]) == ("natural", "c2pa-trusted-no-ai;score<threshold")
    assert decide(TRUSTED_CAPTURE, [None]) == ("natural", "c2pa-trusted-no-ai")


def test_rule3_natural_evidence_against_a_head_or_a_flip_is_uncertain():
    assert decide(TRUSTED_CAPTURE, ["ai"]) == ("uncertain", "c2pa-trusted-no-ai;score>=threshold")
    assert decide(TRUSTED_CAPTURE, ["natural", "ai"], "all") == (
        "uncertain", "c2pa-trusted-no-ai;heads-disagree;score<threshold;score_2>=threshold_2")
    assert decide(TRUSTED_CAPTURE, ["natural"], "any", ["unstable:resize0.5"]) == (
        "uncertain", "c2pa-trusted-no-ai;score<threshold;unstable:resize0.5")


# -- rule 4: a label that flips under --stability ------------------------------------------------
def test_rule4_a_flip_is_uncertain_and_names_its_conditions():
    flips = ["unstable:jpeg75", "unstable:resize0.5"]
    assert decide({}, ["ai"], "any", flips) == (
        "uncertain", "unstable:jpeg75;unstable:resize0.5;score>=threshold")
    assert decide({}, ["natural", "natural"], "any", flips[:1]) == (
        "uncertain", "unstable:jpeg75;score<threshold;score_2<threshold_2")


# -- rule 5: --combine agree ---------------------------------------------------------------------
def test_rule5_agree_with_heads_that_disagree_is_uncertain():
    assert decide({}, ["ai", "natural"], "agree") == (
        "uncertain", "heads-disagree;score>=threshold;score_2<threshold_2")
    assert decide({}, ["ai", "ai"], "agree") == ("ai", "score>=threshold;score_2>=threshold_2")
    assert decide({}, ["natural", None], "agree") == (None, None)  # head 2 decides nothing: not agreed
    assert combine(["natural", "natural"], "agree") == "natural" and combine([], "agree") is None


# -- rule 6: the heads' labels by --combine (one head: its label) ---------------------------------
def test_rule6_the_heads_decide_and_disagreement_is_a_reason():
    assert decide({}, ["ai"]) == ("ai", "score>=threshold")
    assert decide({}, ["natural"]) == ("natural", "score<threshold")
    assert decide({}, ["ai", "natural"], "any") == (
        "ai", "heads-disagree;score>=threshold;score_2<threshold_2")
    assert decide({}, ["ai", "natural"], "all") == (
        "natural", "heads-disagree;score>=threshold;score_2<threshold_2")
    assert decide({}, [None, "ai"], "any") == ("ai", "score_2>=threshold_2")
    with pytest.raises(UsageError, match="unknown --combine 'most'"):
        decide({}, ["ai", "ai"], "most")


# -- rule 7: nothing decides ---------------------------------------------------------------------
def test_rule7_nothing_decides_camera_exif_and_missing_metadata_included():
    camera = {"has_exif": True, "exif_make": "ExampleCam", "exif_model": "X1",
              "provenance_hint": "camera-exif", "c2pa_trust": "none", "c2pa_present": False}
    assert decide(camera, []) == (None, None)
    assert decide({}, []) == (None, None) and decide({}, [None]) == (None, None)
    assert decide(camera, [None, None], "all") == (None, None)
    assert decide(camera, ["natural"]) == ("natural", "score<threshold")  # the head's, not the EXIF's


# -- the rule on real files (C2PA and watermarks: test_verdict_files.py) -------------------------
def test_demo_photos_through_an_evidence_only_scan(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
    from demo_photos import make

    make(tmp_path / "photos", photos=2)
    out = tmp_path / "r.parquet"
    res = CliRunner().invoke(main, ["scan", str(tmp_path / "photos"), "-o", str(out), "--workers", "0"])
    assert res.exit_code == 0, res.output
    rows = {Path(r["path"]).name: r for r in read_report(out).to_pylist()}
    for name in ("generated_a1111.png", "generated_comfyui.png", "declared_ai.png"):
        assert (rows[name]["verdict"], rows[name]["verdict_reasons"]) == ("ai", "generator-metadata"), name
    for name in ("camera.jpg", "photo_00.jpg", "photo_01.jpg"):  # camera EXIF, or nothing: no verdict
        assert rows[name]["verdict"] is None and rows[name]["verdict_reasons"] is None, name
    assert re.search(r"^verdict: +ai 3; 3 without one", res.stdout, re.M)
    # the Python API's evidence gives the same verdicts, and so does `aiiscan evidence`
    named = [str(tmp_path / "photos" / n) for n in ("generated_a1111.png", "camera.jpg")]
    got = [(r["verdict"], r["verdict_reasons"]) for r in api.evidence(named, workers=0)]
    assert got == [("ai", "generator-metadata"), (None, None)]
    shown = CliRunner().invoke(main, ["evidence", *named])
    assert "verdict         ai (generator-metadata) from evidence alone" in shown.output
