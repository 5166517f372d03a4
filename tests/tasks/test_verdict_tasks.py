"""Issue 26 in evaluate and calibrate: per condition, the verdicts' coverage, accuracy on decided
files and flip rate beside AP (tables, CSV and JSON); calibrate --stability counts the natural
photos whose label flips at the chosen threshold. Random-init tiny backbone: plumbing only."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from aiiscan.cli import main
from aiiscan.decode.launder import Condition
from aiiscan.models.headfile import load_head
from aiiscan.models.scorer import Detector
from aiiscan.tasks.datasets import from_folders
from aiiscan.tasks.evaluate import evaluate

from ..conftest import write_photos

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> tuple[Path, Path, str]:
    """real/ (5 photos) and fake/gen/ (4 photos and an A1111 PNG: evidence that decides)."""
    root = tmp_path_factory.mktemp("labelled")
    write_photos(root / "real", 5, seed=61, size=(160, 120))
    write_photos(root / "fake" / "gen", 4, seed=62, size=(160, 120))
    sys.path.insert(0, str(ROOT / "examples"))
    from demo_photos import make

    make(root / "demo", photos=0)
    shutil.copy(root / "demo" / "generated_a1111.png", root / "fake" / "gen" / "a1111.png")
    return root / "real", root / "fake" / "gen", str(root / "fake" / "gen" / "a1111.png")


def test_evaluate_reports_coverage_decided_accuracy_and_flips(backbone, head_prefix, labelled, tmp_path):
    real, fake, a1111 = labelled
    det = Detector(backbone, *load_head(head_prefix))
    es = from_folders([str(real)], [str(fake)])
    (plain,) = evaluate(det, es, workers=0, progress=False)  # no threshold: only the evidence decides
    assert plain.rows[0].coverage == pytest.approx(1 / 10) and plain.rows[0].decided_acc == 1.0
    thr = float(np.median(list(plain.scores.values())))
    tables = evaluate(det, es, [None, Condition.parse("jpeg:75")], threshold=thr, workers=0, progress=False)
    asis, jpeg = (t.rows[0] for t in tables)

    def verdict(path: str, scores: dict) -> str:
        return "ai" if path == a1111 or scores[path] >= thr else "natural"

    fakes = {p for p in tables[0].scores if Path(p).parent == fake}
    for row, t in ((asis, tables[0]), (jpeg, tables[1])):
        assert row.coverage == 1.0  # a threshold: every file decided
        right = sum((verdict(p, t.scores) == "ai") == (p in fakes) for p in t.scores)
        assert row.decided_acc == pytest.approx(right / 10)
    flipped = sum(verdict(p, tables[0].scores) != verdict(p, tables[1].scores) for p in tables[0].scores)
    assert asis.flip_rate is None and jpeg.flip_rate == pytest.approx(flipped / 10)

    out = tmp_path / "t.json"
    res = CliRunner().invoke(main, ["evaluate", "--weights", str(head_prefix), "--real", str(real), "--fake",
                                    str(fake.parent), "--threshold", str(thr), "--perturb", "jpeg:75",
                                    "--workers", "0", "-q", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "| Decided | Decided Acc | Flipped |" in res.output
    got = json.loads(out.read_text())
    assert [t["condition"] for t in got] == ["none", "jpeg:75"]
    assert got[1]["mean"]["flip_rate"] is not None and got[0]["rows"][0]["coverage"] == 1.0


def test_calibrate_stability_counts_unstable_photos(head_copy, labelled):
    real, _, _ = labelled
    res = CliRunner().invoke(main, ["calibrate", "--weights", str(head_copy), "--natural", str(real),
                                    "--policy", "fpr:0.5", "--stability", "jpeg:75,resize:0.5",
                                    "--workers", "0", "-q"])
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if x.startswith("stability: "))
    assert "of 5 natural photos change label at this threshold under jpeg:75 (" in line
    assert ", resize:0.5 (" in line
    bad = CliRunner().invoke(main, ["calibrate", "--weights", str(head_copy), "--natural", str(real),
                                    "--stability", "gamma:2"])
    assert bad.exit_code == 2 and "unknown perturbation 'gamma:2'" in bad.output
