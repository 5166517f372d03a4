"""Issue 26: ``scan --stability``. Re-encoded copies of each file come from its one decode and are
scored in the same batches; every row's verdict agrees with its score range at a threshold placed
at the median score; the spec decides what ``--incremental`` may reuse; the new columns round-trip
through every report format and the HTML page. Random-init tiny backbone: plumbing only."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from aiiscan.cli import main
from aiiscan.models.headfile import load_head
from aiiscan.models.scorer import Detector
from aiiscan.reports.read import read_report, report_metadata
from aiiscan.reports.schema import META_KEY

from ..conftest import write_photos
from ..models.test_scorer_multihead import Decodes, Encodes, _rows, _scan

SPEC = "jpeg:75,resize:0.5"
TAGS = {"unstable:jpeg75", "unstable:resize0.5"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stability")
    write_photos(root, 11, seed=26, size=(160, 120))  # PNG: the exact and the fast decode agree
    return root


@pytest.fixture(scope="module")
def plain(tmp_path_factory, backbone, head_prefix, folder) -> tuple[Path, float]:
    """A scan without --stability, and the median of its scores: an odd number of files, so the
    threshold is one file's own score, and a copy scored lower flips its label."""
    out = tmp_path_factory.mktemp("plain") / "plain.parquet"
    _scan(out, Detector(backbone, *load_head(head_prefix)), folder)
    return out, float(np.median([r["score"] for r in _rows(out).values()]))


def _agrees(row: dict) -> None:
    """The verdict a row's score range gives at its threshold."""
    lo, hi, t = row["score_min"], row["score_max"], row["threshold"]
    assert lo <= row["score"] <= hi
    reasons = set(row["verdict_reasons"].split(";"))
    if lo < t <= hi:
        assert row["verdict"] == "uncertain" and reasons & TAGS and reasons <= TAGS | {
            "score>=threshold", "score<threshold"}, row
    else:
        assert row["verdict"] == ("ai" if lo >= t else "natural") and not reasons & TAGS, row


def test_verdicts_agree_with_score_ranges_one_decode_per_file(backbone, head_prefix, folder, plain,
                                                              tmp_path, monkeypatch):
    before, median = plain
    det = Detector(backbone, *load_head(head_prefix))
    decodes, passes = Decodes(monkeypatch), Encodes(monkeypatch, backbone)
    out = tmp_path / "stable.parquet"
    summary = _scan(out, det, folder, threshold=median, stability=SPEC, batch_size=4)
    assert summary.exit_code == 0
    assert decodes.n == 11  # one decode per file, its two copies made from it
    assert passes.n == [33]  # the original and two copies per file, through the same batches
    rows, old = _rows(out), _rows(before)
    for name, row in rows.items():
        _agrees(row)
        assert row["score"] == pytest.approx(old[name]["score"], abs=1e-5)  # copies leave it alone
    assert {r["verdict"] for r in rows.values()} == {"ai", "natural", "uncertain"}
    assert report_metadata(out)["stability"] == SPEC
    assert any(line.startswith("verdict: ") and "uncertain" in line for line in summary.lines())
    flips = sum(r["verdict"] == "uncertain" for r in rows.values())
    assert any(re.match(rf"stability: +{SPEC}: {flips} files? whose label flips", line)
               for line in summary.lines()), summary.lines()

    # --incremental under the same spec reuses every row as it was; another spec reuses none
    again = _scan(tmp_path / "again.parquet", det, folder, threshold=median, stability=SPEC,
                  incremental=str(out))
    assert again.reused == 11 and _rows(tmp_path / "again.parquet") == {
        n: r | {"reused": "unchanged", "reused_from": r["path"]} for n, r in rows.items()}
    other = _scan(tmp_path / "other.parquet", det, folder, threshold=median, stability="resize:0.5",
                  incremental=str(out))
    assert other.reused == 0 and other.scored == 11
    assert any("made under --stability jpeg:75,resize:0.5" in line for line in other.lines())
    # a threshold moved: the reused ranges are judged again, the flips named when still known
    moved = _scan(tmp_path / "moved.parquet", det, folder, threshold=median + 1e-3, stability=SPEC,
                  incremental=str(out))
    assert moved.reused == 11
    for row in _rows(tmp_path / "moved.parquet").values():
        lo, hi, t = row["score_min"], row["score_max"], row["threshold"]
        assert row["verdict"] == ("uncertain" if lo < t <= hi else "ai" if lo >= t else "natural")


def test_an_old_report_without_the_new_columns_feeds_incremental(backbone, head_prefix, folder, plain,
                                                                 tmp_path):
    before, median = plain
    table = pq.read_table(before)
    old = table.drop_columns(["score_min", "score_max", "verdict", "verdict_reasons"])
    meta = dict(table.schema.metadata)
    pq.write_table(old.replace_schema_metadata({META_KEY: meta[META_KEY]}), tmp_path / "old.parquet")
    det = Detector(backbone, *load_head(head_prefix))
    summary = _scan(tmp_path / "new.parquet", det, folder, threshold=median,
                    incremental=str(tmp_path / "old.parquet"))
    assert summary.reused == 11 and summary.scored == 0
    for row in _rows(tmp_path / "new.parquet").values():
        assert row["score_min"] is None and row["verdict"] == row["label"]
        assert row["verdict_reasons"] == ("score>=threshold" if row["label"] == "ai" else "score<threshold")


def test_new_columns_round_trip_in_every_format(backbone, head_prefix, folder, plain, tmp_path):
    before, median = plain
    det = Detector(backbone, *load_head(head_prefix))
    first = tmp_path / "r.parquet"
    _scan(first, det, folder, threshold=median, stability=SPEC)
    want = {n: {c: r[c] for c in ("verdict", "verdict_reasons", "score_min", "score_max")}
            for n, r in _rows(first).items()}
    for fmt in ("parquet", "csv", "jsonl"):
        out = tmp_path / f"copy.{fmt}"
        _scan(out, det, folder, threshold=median, stability=SPEC, incremental=str(first))
        got = {n: {c: r[c] for c in want[n]} for n, r in _rows(out).items()}
        for name, cols in want.items():
            assert got[name] | {"score_min": None, "score_max": None} == cols | {"score_min": None,
                                                                                  "score_max": None}
            assert got[name]["score_min"] == pytest.approx(cols["score_min"], rel=1e-12)
        page = tmp_path / f"{fmt}.html"
        res = CliRunner().invoke(main, ["report", str(out), "-o", str(page), "-q", "--no-thumbnails"])
        assert res.exit_code == 0, res.output
        html = page.read_text()
        assert 'id="count-verdict"' in html and 'id="uncertain"' in html and "unstable:" in html
    assert read_report(tmp_path / "copy.csv").column("verdict").to_pylist() == \
        read_report(tmp_path / "copy.parquet").column("verdict").to_pylist()


def test_a_bad_stability_spec_is_a_usage_error(folder, tmp_path):
    res = CliRunner().invoke(main, ["scan", str(folder), "-o", str(tmp_path / "r.parquet"),
                                    "--stability", "jpeg:75,sharpen:2"])
    assert res.exit_code == 2 and "unknown perturbation 'sharpen:2'" in res.output
    assert "Traceback" not in res.output
