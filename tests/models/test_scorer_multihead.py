"""Issue 18, item 4: multi-head scans. One decode per file, one backbone pass per distinct frozen
backbone, one score column per head, a combined verdict; every report format, --resume,
--incremental and evaluate with several heads. Random-init tiny backbones: plumbing only.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from aiiscan.api import scan_options
from aiiscan.cli import main
from aiiscan.decode import pool as pipeline
from aiiscan.errors import ReportError, UsageError
from aiiscan.models.headfile import load_head
from aiiscan.models.scorer import Detector, Scorer
from aiiscan.reports.html import render
from aiiscan.reports.parts import ReportWriter
from aiiscan.reports.read import read_report, report_metadata
from aiiscan.reports.schema import report_schema
from aiiscan.scanner.driver import run_scan
from aiiscan.scanner.verdict import combine
from aiiscan.tasks.datasets import from_folders
from aiiscan.tasks.evaluate import evaluate, evaluate_heads, to_markdown_heads

from ..conftest import write_photos


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scan")
    paths = write_photos(root, 6, seed=41)
    shutil.copy(paths[0], root / "copy_of_0.png")  # a duplicate: scored once, reused
    return root


def _det(backbone, prefix) -> Detector:
    return Detector(backbone, *load_head(prefix))


def _calibrated(prefix: Path, value: float, dst: Path) -> Path:
    """A copy of a head whose card carries ``value`` as its threshold."""
    card = json.loads(Path(str(prefix) + ".json").read_text())
    card["threshold"] = {"value": value, "policy": "test"}
    Path(str(dst) + ".json").write_text(json.dumps(card))
    shutil.copy(str(prefix) + ".safetensors", str(dst) + ".safetensors")
    return dst


def _scan(out, scorer, root, **kw):
    return run_scan([str(root)], out, *scan_options(detector=scorer, workers=0, quiet=True, **kw))


def _rows(report) -> dict[str, dict]:
    return {Path(r["path"]).name: r for r in read_report(report).to_pylist()}


class Encodes:
    """Counts the crops each backbone encodes (one per backbone pass over a file)."""

    def __init__(self, monkeypatch, *backbones):
        self.n = [0] * len(backbones)
        for i, bb in enumerate(backbones):
            encode = bb.encode

            def counted(batch, i=i, encode=encode):
                self.n[i] += len(batch)
                return encode(batch)

            monkeypatch.setattr(bb, "encode", counted)


class Decodes:
    """Counts the files the in-process pipeline decodes (``workers=0``)."""

    def __init__(self, monkeypatch):
        self.n = 0
        decode = pipeline.decode_job

        def counted(job):
            self.n += 1
            return decode(job)

        monkeypatch.setattr(pipeline, "decode_job", counted)


# -- the report: one score column per head, each equal to that head's own scan ---------------------
def test_two_heads_one_decode_one_backbone_pass(backbone, head_prefix, head2_prefix, folder, tmp_path,
                                                monkeypatch):
    monkeypatch.setattr(backbone, "precision", "fp32")  # scores compared at 1e-6: the exact reference
    d1, d2 = _det(backbone, head_prefix), _det(backbone, head2_prefix)
    _scan(tmp_path / "one.parquet", d1, folder)
    _scan(tmp_path / "two.parquet", d2, folder)
    multi = Scorer([d1, d2])
    assert multi.passes == 1  # two CLIP-Flow heads on one frozen backbone share its pass

    decodes = Decodes(monkeypatch)
    passes = Encodes(monkeypatch, backbone)
    summary = _scan(tmp_path / "both.parquet", multi, folder)
    assert summary.exit_code == 0
    assert decodes.n == 7  # one decode per file, for both heads
    assert passes.n == [6]  # the backbone once per distinct content (the copy is reused)

    table = read_report(tmp_path / "both.parquet")
    assert table.schema == report_schema(2)
    at = table.column_names.index("score")
    assert table.column_names[at:at + 15] == ["score", "label", "threshold", "model_id", "score_2", "label_2",
                                              "threshold_2", "model_id_2", "score_min", "score_max",
                                              "score_min_2", "score_max_2", "verdict", "verdict_reasons",
                                              "reused"]
    one, two, both = (_rows(tmp_path / f"{n}.parquet") for n in ("one", "two", "both"))
    assert set(both) == set(one) and len(both) == 7
    for name, row in both.items():
        assert row["score"] == pytest.approx(one[name]["score"], abs=1e-6)
        assert row["score_2"] == pytest.approx(two[name]["score"], abs=1e-6)
        assert row["model_id"] == d1.model_id and row["model_id_2"] == d2.model_id
        assert row["reused"] == one[name]["reused"]
    dup = [n for n, r in both.items() if r["reused"] == "duplicate"]
    assert len(dup) == 1 and dup[0] in ("copy_of_0.png", "img_000.png")
    assert both["copy_of_0.png"]["score_2"] == both["img_000.png"]["score_2"]  # every head's score reused
    meta = report_metadata(tmp_path / "both.parquet")
    assert [h["model_id"] for h in meta["heads"]] == [d1.model_id, d2.model_id]
    assert meta["backbone_passes"] == 1 and meta["combine"] == "any"
    assert "combine" not in report_metadata(tmp_path / "one.parquet")["options"]  # one head: as before
    assert any(re.match(r"head 2: +\S", line) for line in summary.lines())


def test_clip_flow_and_mpft_heads_take_two_passes(backbone, head_prefix, mpft_prefix, folder, tmp_path,
                                                  monkeypatch):
    monkeypatch.setattr(backbone, "precision", "fp32")  # scores compared at 1e-6: the exact reference
    d1, d2 = _det(backbone, head_prefix), _det(backbone, mpft_prefix)
    assert d2.backbone is not backbone  # MPFT binds its tuned copy of the image tower
    _scan(tmp_path / "flow.parquet", d1, folder)
    _scan(tmp_path / "mpft.parquet", d2, folder)
    multi = Scorer([d1, d2])
    assert multi.passes == 2
    passes = Encodes(monkeypatch, backbone, d2.backbone)
    assert _scan(tmp_path / "both.parquet", multi, folder).exit_code == 0
    assert passes.n == [6, 6]
    flow, mpft, both = (_rows(tmp_path / f"{n}.parquet") for n in ("flow", "mpft", "both"))
    for name, row in both.items():
        assert row["score"] == pytest.approx(flow[name]["score"], abs=1e-6)
        assert row["score_2"] == pytest.approx(mpft[name]["score"], abs=1e-6)


def test_the_cli_loads_the_backbone_once_for_two_heads(head_prefix, head2_prefix, folder, tmp_path):
    out = tmp_path / "cli.parquet"
    res = CliRunner().invoke(main, ["scan", str(folder), "-o", str(out), "--weights", str(head_prefix),
                                    "--weights", str(head2_prefix), "--workers", "0", "--device", "cpu",
                                    "--threshold", "0", "--combine", "all", "-q"])
    assert res.exit_code == 0, res.output
    meta = report_metadata(out)
    assert meta["backbone_passes"] == 1 and meta["options"]["combine"] == "all"
    assert meta["options"]["weights"] == [str(head_prefix), str(head2_prefix)]
    assert re.search(r"^verdict \(--combine all\): +", res.output, re.M)
    one = CliRunner().invoke(main, ["scan", str(folder), "-o", str(tmp_path / "one.parquet"),
                                    "--weights", str(head_prefix), "--workers", "0", "--device", "cpu", "-q"])
    assert one.exit_code == 0
    assert read_report(tmp_path / "one.parquet").column_names == list(report_schema(1).names)


def test_heads_of_different_crop_sizes_are_refused():
    heads = [SimpleNamespace(image_size=s, model_id=f"h{s}", kind=None) for s in (224, 64)]
    with pytest.raises(UsageError, match="crop size"):
        Scorer(heads)


# -- the verdict ------------------------------------------------------------------------------------
def test_combine_rules():
    assert combine(["ai", "natural"], "any") == "ai" and combine(["ai", "natural"], "all") == "natural"
    assert combine(["natural", "natural"], "any") == "natural" and combine(["ai", "ai"], "all") == "ai"
    assert combine(["natural", None], "any") is None and combine(["ai", None], "all") is None
    assert combine(["ai", None], "any") == "ai" and combine(["natural", None], "all") == "natural"


@pytest.mark.parametrize("how", ["any", "all", "agree"])
def test_verdict_any_and_all(backbone, head_prefix, head2_prefix, folder, tmp_path, how):
    d1 = _det(backbone, head_prefix)
    _scan(tmp_path / "two.parquet", _det(backbone, head2_prefix), folder)
    s1 = sorted(r["score"] for r in _rows(_scan(tmp_path / "one.parquet", d1, folder).report).values())
    s2 = sorted(r["score"] for r in _rows(tmp_path / "two.parquet").values())
    d2 = _det(backbone, _calibrated(head2_prefix, float(np.median(s2)), tmp_path / "cal2"))
    out = tmp_path / f"{how}.parquet"
    _scan(out, Scorer([d1, d2]), folder, threshold=float(np.median(s1)), combine=how)
    rows = _rows(out).values()
    for r in rows:
        assert r["label"] is not None and r["label_2"] is not None
        assert r["threshold_2"] == d2.card.threshold_value
        differ = r["label"] != r["label_2"]
        want = {"any": "ai" if "ai" in (r["label"], r["label_2"]) else "natural",
                "all": "ai" if r["label"] == r["label_2"] == "ai" else "natural",
                "agree": "uncertain" if differ else r["label"]}[how]
        assert r["verdict"] == want and ("heads-disagree" in r["verdict_reasons"]) == differ
    assert {r["verdict"] for r in rows} == {"ai", "natural"} | ({"uncertain"} if how == "agree" else set())
    page = render(out, thumbnails=False)  # the HTML report: each card's further head and the verdicts
    assert "head 2: score" in page and 'id="count-verdict"' in page and d2.model_id in page


# -- formats, resume, incremental -------------------------------------------------------------------
def test_csv_and_jsonl_round_trip(backbone, head_prefix, head2_prefix, folder, tmp_path):
    multi = Scorer([_det(backbone, head_prefix), _det(backbone, head2_prefix)])
    ref = read_report(_scan(tmp_path / "r.parquet", multi, folder, threshold=0.0).report)
    for ext in ("csv", "jsonl"):
        got = read_report(_scan(tmp_path / f"r.{ext}", multi, folder, threshold=0.0).report)
        assert got.schema == ref.schema
        assert got.drop_columns(["mtime"]).to_pylist() == ref.drop_columns(["mtime"]).to_pylist(), ext


def test_resume_with_two_heads(backbone, head_prefix, head2_prefix, folder, tmp_path, monkeypatch):
    multi = Scorer([_det(backbone, head_prefix), _det(backbone, head2_prefix)])
    clean = _rows(_scan(tmp_path / "clean.parquet", multi, folder).report)
    finish = ReportWriter.finish

    def interrupted(self, *a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(ReportWriter, "finish", interrupted)
    out = tmp_path / "r.parquet"
    assert _scan(out, multi, folder, part_rows=2).interrupted
    monkeypatch.setattr(ReportWriter, "finish", finish)
    assert not _scan(out, multi, folder, part_rows=2, resume=True).interrupted
    assert report_metadata(out)["resumed_rows"] == 7
    monkeypatch.setattr(ReportWriter, "finish", interrupted)
    assert _scan(tmp_path / "h.parquet", multi, folder).interrupted
    with pytest.raises(ReportError, match="used 2 heads, this one 1"):  # resumed with other heads: refused
        _scan(tmp_path / "h.parquet", Scorer(multi.heads[:1]), folder, resume=True)
    monkeypatch.setattr(ReportWriter, "finish", finish)
    assert _rows(out) == clean | {k: v | {"mtime": _rows(out)[k]["mtime"]} for k, v in clean.items()}


def test_incremental_reuses_only_rows_of_the_same_heads(backbone, head_prefix, head2_prefix, folder,
                                                        tmp_path):
    d1, d2 = _det(backbone, head_prefix), _det(backbone, head2_prefix)
    multi = Scorer([d1, d2])
    old = _scan(tmp_path / "old.parquet", multi, folder).report
    s = _scan(tmp_path / "new.parquet", multi, folder, incremental=str(old))
    assert s.reused == 7 and s.scored == 0
    new, before = _rows(tmp_path / "new.parquet"), _rows(old)
    assert all(new[n]["score_2"] == before[n]["score_2"] and new[n]["reused"] == "unchanged" for n in new)
    assert s.other_heads == report_metadata(tmp_path / "new.parquet")["incremental_other_heads_rows"] == 0
    assert not [line for line in s.lines() if line.startswith("note:")]
    single = _scan(tmp_path / "single.parquet", d1, folder).report
    s = _scan(tmp_path / "again.parquet", multi, folder, incremental=str(single))
    assert s.reused == 0 and s.same_content == 0 and s.scored == 6  # other heads: rescored
    note = (f"note: 7 rows of the --incremental report were made by other heads (model_id {d1.model_id}): "
            "not reused")
    assert note in s.lines()  # another number of heads
    assert report_metadata(tmp_path / "again.parquet")["incremental_other_heads_rows"] == 7
    swapped = _scan(tmp_path / "swapped.parquet", Scorer([d2, d1]), folder, incremental=str(old))
    assert swapped.reused == 0 and swapped.scored == 6
    assert (f"note: 7 rows of the --incremental report were made by other heads (model_id {d1.model_id} + "
            f"{d2.model_id}): not reused") in swapped.lines()  # the same heads in another order
    assert report_metadata(swapped.report)["incremental_other_heads_rows"] == 7


def test_incremental_made_by_another_head_says_why_nothing_is_reused(head_prefix, head2_prefix, folder,
                                                                    tmp_path):
    """`scan --incremental OLD` where OLD was made by another head rescores every file, and says
    so in the summary and the metadata instead of a silent "reused 0"."""
    base = [str(folder), "--workers", "0", "--quiet"]
    old, new = tmp_path / "old.parquet", tmp_path / "new.parquet"
    first = CliRunner().invoke(main, ["scan", *base, "-o", str(old), "--weights", str(head_prefix)])
    assert first.exit_code == 0, first.output
    res = CliRunner().invoke(main, ["scan", *base, "-o", str(new), "--weights", str(head2_prefix),
                                    "--incremental", str(old)])
    assert res.exit_code == 0, res.output
    old_id = read_report(old).column("model_id")[0].as_py()
    assert read_report(new).column("model_id")[0].as_py() != old_id
    assert re.search(r"reused: +0 unchanged, 0 moved or copied", res.output)
    assert (f"note: 7 rows of the --incremental report were made by other heads (model_id {old_id}): "
            "not reused\n") in res.output
    assert report_metadata(new)["incremental_other_heads_rows"] == 7
    assert report_metadata(new)["reused_rows"] == 0


# -- evaluate ------------------------------------------------------------------------------------------
def test_evaluate_prints_heads_side_by_side(backbone, head_prefix, head2_prefix, tmp_path, monkeypatch):
    real = write_photos(tmp_path / "real", 4, seed=51)
    write_photos(tmp_path / "fake" / "gen_a", 4, seed=52)
    evalset = from_folders([str(Path(real[0]).parent)], [str(tmp_path / "fake" / "gen_a")])
    d1, d2 = _det(backbone, head_prefix), _det(backbone, head2_prefix)
    decodes = Decodes(monkeypatch)
    per_head = evaluate_heads(Scorer([d1, d2]), evalset, workers=0, progress=False)
    assert decodes.n == 8
    for det, tables in zip((d1, d2), per_head, strict=True):
        alone = evaluate(det, evalset, workers=0, progress=False)
        assert tables[0].rows[0].auc == pytest.approx(alone[0].rows[0].auc)
    text = to_markdown_heads(per_head, [d1.model_id, d2.model_id], "t")
    assert "| AP h1 | AP h2 | AUC h1 | AUC h2 |" in text and "gen_a" in text

    res = CliRunner().invoke(main, ["evaluate", "--real", str(Path(real[0]).parent), "--fake",
                                    str(tmp_path / "fake" / "gen_a"), "--weights", str(head_prefix),
                                    "--weights", str(head2_prefix), "--workers", "0", "--device", "cpu",
                                    "-q", "-o", str(tmp_path / "t.csv")])
    assert res.exit_code == 0, res.output
    assert "AUC h1 | AUC h2" in res.output and f"h2 = {d2.model_id}" in res.output
    csv_lines = (tmp_path / "t.csv").read_text().splitlines()
    assert csv_lines[0].startswith("head,condition") and len(csv_lines) == 5  # 2 heads x (gen_a + mean)
