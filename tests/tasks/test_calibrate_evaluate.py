"""calibrate and evaluate: dataset layouts, laundering conditions, card updates, CLI end to end.

Random-init backbones: the numbers in these tables mean nothing; the tests check plumbing,
bookkeeping and refusals, never detection quality.
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from aiiscan.card import read_card
from aiiscan.cli import main
from aiiscan.decode.launder import Condition
from aiiscan.models.scorer import Detector
from aiiscan.reports.read import read_report
from aiiscan.tasks.calibrate import CalibrationError, calibrate, too_few
from aiiscan.tasks.datasets import DatasetError, from_folders, load_dataset
from aiiscan.tasks.evaluate import evaluate, to_csv, to_markdown

from ..conftest import EVAL_DEV, TINY_CONFIG, write_photos


def _touch_images(folder: Path, n: int, seed: int) -> list[str]:
    return write_photos(folder, n, seed, size=(64, 48))


# -- dataset layouts ---------------------------------------------------------------------------

def test_univfd_layout_with_and_without_categories(tmp_path):
    root = tmp_path / "univfd"
    _touch_images(root / "progan" / "car" / "0_real", 2, 1)
    _touch_images(root / "progan" / "car" / "1_fake", 2, 2)
    _touch_images(root / "progan" / "cat" / "0_real", 1, 3)
    _touch_images(root / "progan" / "cat" / "1_fake", 3, 4)
    _touch_images(root / "dalle" / "0_real", 2, 5)
    _touch_images(root / "dalle" / "1_fake", 1, 6)
    (root / "dalle" / "1_fake" / "notes.txt").write_text("not an image")
    es = load_dataset(root)
    groups = {g: (len(r), len(f)) for g, r, f in es.groups()}
    assert groups == {"dalle": (2, 1), "progan": (3, 5)}
    assert es.shared_reals == []  # every generator brings its own paired reals
    assert len(es.files()) == 11


def test_flat_layout_pairs_matching_real_folders(tmp_path):
    root = tmp_path / "flat"
    _touch_images(root / "real", 3, 1)               # shared pool
    _touch_images(root / "real" / "stylegan", 2, 2)  # paired with fake/stylegan
    _touch_images(root / "fake" / "stylegan", 2, 3)
    _touch_images(root / "fake" / "sdxl", 4, 4)
    es = load_dataset(root)
    groups = {g: (len(r), len(f)) for g, r, f in es.groups()}
    assert groups == {"sdxl": (3, 4), "stylegan": (2, 2)}
    assert es.layout.startswith("flat")


def test_manifest_layout_pairs_and_shares(tmp_path):
    root = tmp_path / "m"
    reals = _touch_images(root / "real", 4, 1)
    fakes = _touch_images(root / "fake", 3, 2)
    rows = ["label\tgenerator\tlocal_path",
            f"real\tcamera (biggan-paired real set)\t{Path(reals[0]).relative_to(root)}",
            f"real\tcamera\t{Path(reals[1]).relative_to(root)}",
            f"real\tcamera (stock photo)\t{Path(reals[2]).relative_to(root)}",
            f"real\tcamera (unknown-paired real set)\t{Path(reals[3]).relative_to(root)}",
            f"fake\tbiggan\t{Path(fakes[0]).relative_to(root)}",
            f"fake\tsd | v1\t{Path(fakes[1]).relative_to(root)}",
            f"fake\tsd | v1\t{Path(fakes[2]).relative_to(root)}"]
    (root / "MANIFEST.tsv").write_text("\n".join(rows) + "\n")
    es = load_dataset(root)
    groups = {g: ([Path(p).name for p in r], len(f)) for g, r, f in es.groups()}
    assert groups["biggan"] == ([Path(reals[0]).name], 1)
    assert sorted(groups["sd | v1"][0]) == sorted(Path(p).name for p in reals[1:])
    assert groups["sd | v1"][1] == 2


def test_layout_errors_are_clear(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="not an evaluation set"):
        load_dataset(tmp_path / "empty")
    root = tmp_path / "nofakereal"
    _touch_images(root / "fake" / "g", 1, 1)
    (root / "real").mkdir()
    with pytest.raises(DatasetError, match="no real images to compare generator"):
        load_dataset(root)
    bad = tmp_path / "badmanifest"
    bad.mkdir()
    (bad / "MANIFEST.tsv").write_text("label\tpath\nreal\tx.png\n")
    with pytest.raises(DatasetError, match="lacks column"):
        load_dataset(bad)
    (bad / "MANIFEST.tsv").write_text("label\tgenerator\tlocal_path\nmaybe\tg\tx.png\n")
    with pytest.raises(DatasetError, match="neither real nor fake"):
        load_dataset(bad)


@pytest.mark.skipif(not (EVAL_DEV / "MANIFEST.tsv").is_file(), reason="eval-dev not present")
def test_eval_dev_manifest_is_understood():
    es = load_dataset(EVAL_DEV)
    groups = {g: (len(r), len(f)) for g, r, f in es.groups()}
    assert len(groups) == 22 and sum(f for _, f in groups.values()) == 146
    assert groups["biggan"] == (4, 4)  # the CNNDetection paired real set, not the shared pool
    assert len(es.files()) == 262


# -- laundering conditions ---------------------------------------------------------------------

def test_conditions_parse_apply_and_refuse():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8))
    assert Condition.parse("resize:0.5")(img).size == (40, 30)
    assert Condition.parse("crop:0.5")(img).size == (40, 30)
    jpg = Condition.parse("jpeg:90")(img)
    assert jpg.size == img.size and not np.array_equal(np.asarray(jpg), np.asarray(img))
    assert Condition.parse("webp:80")(img).size == img.size
    assert Condition.parse("blur:1")(img.convert("P")).mode == "RGB"
    assert str(Condition.parse("jpeg:90")) == "jpeg:90"
    for bad, msg in (("jpeg:0", "must be in"), ("gamma:2", "unknown perturbation"),
                     ("resize:x", "needs a number")):
        with pytest.raises(ValueError, match=msg):
            Condition.parse(bad)


# -- calibrate ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def held_out(tmp_path_factory) -> list[str]:
    return write_photos(tmp_path_factory.mktemp("held_out"), 12, seed=99)


def test_calibrate_refuses_empty_and_single_photo_sets(head_copy, tmp_path, held_out):
    (tmp_path / "empty").mkdir()
    runner = CliRunner()
    res = runner.invoke(main, ["calibrate", "--weights", str(head_copy),
                               "--natural", str(tmp_path / "empty")])
    assert res.exit_code == 2 and "at least 2 natural photos, found 0" in res.output
    res = runner.invoke(main, ["calibrate", "--weights", str(head_copy), "--natural", held_out[0]])
    assert res.exit_code == 2 and "at least 2 natural photos, found 1" in res.output
    det = Detector.load(head_copy, device="cpu", quiet=True)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(CalibrationError, match="1 of 2 did"):
        calibrate(det, [held_out[0], str(broken)], workers=0, progress=False)
    assert read_card(head_copy).threshold is None  # nothing written on refusal


def test_calibrate_refuses_training_photos(head_copy, photos, held_out):
    det = Detector.load(head_copy, device="cpu", quiet=True)
    with pytest.raises(CalibrationError, match="was used to train this head"):
        calibrate(det, [*held_out[:3], photos[5]], workers=0, progress=False)
    assert read_card(head_copy).threshold is None


def test_calibrate_policies_history_and_plot(head_copy, held_out, tmp_path):
    det = Detector.load(head_copy, device="cpu", quiet=True)
    first = calibrate(det, held_out, "balanced", workers=0, progress=False, plot=tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = read_card(head_copy)
    assert card.threshold["value"] == first.block["value"]
    assert card.threshold["validation"]["natural_count"] == 12
    assert "not evidence" in card.threshold["caution"]
    assert card.calibration_history == ()

    second = calibrate(det, held_out, "fpr:0.1", workers=0, progress=False)
    card = read_card(head_copy)
    assert card.threshold["policy"] == "fpr:0.1"
    assert card.calibration_history[0]["value"] == first.block["value"]
    # fpr:0.1 of 12 photos allows floor(1.2) = 1 natural photo flagged, at most
    scores = np.array(det.score_paths(held_out))
    assert second.block["fpr"] <= 0.1
    # Rescored in other batches, scores move by ~1e-9 (BLAS order); the cut sits one ulp above a
    # natural score, so compare with the tolerance the README states for resumed scans.
    assert np.sum(scores >= second.block["value"] + 1e-6) <= 1
    assert second.block["fpr"] <= 0.1


def test_too_few_photos_for_an_fpr_target():
    assert too_few(30, 0.01) == ("30 photos cannot resolve an FPR of 1%: use at least 300 held-out natural "
                                 "photos (at least 3 expected false positives)")
    assert too_few(300, 0.01) is None and too_few(29, 0.1) is not None and too_few(30, 0.1) is None
    assert "0.1%" in too_few(2999, 0.001) and too_few(5, 0.0) is None


@pytest.fixture()
def no_matplotlib(monkeypatch):
    """As on the base install: importing matplotlib fails."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError):
        import matplotlib  # noqa: F401


def _png(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        assert img.format == "PNG"
        img.load()  # every pixel decodes
        return img.size


# -- evaluate -----------------------------------------------------------------------------------

def test_evaluate_real_fake_folders_table(head_copy, held_out, tmp_path):
    fakes = write_photos(tmp_path / "fake_a", 3, seed=11, ext="jpg")
    (tmp_path / "fake_b").mkdir()
    shutil.copy(held_out[0], tmp_path / "fake_b" / "x.png")
    (tmp_path / "fake_b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nxx")
    es = from_folders([str(Path(held_out[0]).parent)], [str(tmp_path / "fake_a"), str(tmp_path / "fake_b")])
    det = Detector.load(head_copy, device="cpu", quiet=True)
    tables = evaluate(det, es, [None, Condition.parse("resize:0.5")], threshold=0.0, workers=0,
                      progress=False)
    assert [t.condition for t in tables] == ["none", "resize:0.5"]
    t = tables[0]
    assert [r.generator for r in t.rows] == ["fake_a", "fake_b"]
    assert [len(t.failed), t.failed[0][0].endswith("broken.png")] == [1, True]
    assert t.n_real == 12 and t.n_fake == 4
    assert any(tables[1].scores[p] != t.scores[p] for p in fakes)  # the condition took effect
    md = to_markdown(tables, "title")
    assert md.count("| **mean** |") == 2 and "## Condition: resize:0.5" in md
    csv_rows = to_csv(tables).splitlines()
    assert len(csv_rows) == 1 + 2 * 3 and csv_rows[0].startswith("condition,threshold,generator")


def test_evaluate_warns_when_the_head_was_trained_on_some_images(head_copy, photos, held_out, tmp_path):
    """The head's card lists its training photos: used as evaluation reals, they flatter it."""
    (tmp_path / "real").mkdir()
    for p in [*photos[:3], *held_out[:3]]:  # 3 training photos among 6 reals
        shutil.copy(p, tmp_path / "real" / Path(p).name.replace("img", f"{Path(p).parent.name}_img"))
    write_photos(tmp_path / "fake" / "gen", 3, seed=77)
    es = from_folders([str(tmp_path / "real")], [str(tmp_path / "fake" / "gen")])
    det = Detector.load(head_copy, device="cpu", quiet=True)
    (table,) = evaluate(det, es, threshold=0.0, workers=0, progress=False)
    assert table.trained_on == 3
    assert "**warning: 3 of these images were used to train this head" in to_markdown([table], "t")
    assert to_csv([table]).splitlines()[1].endswith(",3")
    res = CliRunner().invoke(main, ["evaluate", "--weights", str(head_copy), "--real", str(tmp_path / "real"),
                                    "--fake", str(tmp_path / "fake"), "--workers", "0", "-q"])
    assert res.exit_code == 0 and "3 of these images were used to train this head" in res.output
    (clean,) = evaluate(det, from_folders([str(Path(held_out[0]).parent)], [str(tmp_path / "fake" / "gen")]),
                        threshold=0.0, workers=0, progress=False)
    assert clean.trained_on == 0 and "warning" not in to_markdown([clean], "t")


def test_evaluate_cli_usage_errors(head_copy, tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["evaluate", "--weights", str(head_copy)])
    assert res.exit_code == 2 and "--dataset ROOT or --real DIR" in res.output
    res = runner.invoke(main, ["evaluate", "--weights", str(head_copy), "--dataset", str(tmp_path),
                               "--perturb", "gamma:1"])
    assert res.exit_code == 2 and "unknown perturbation" in res.output


@pytest.mark.skipif(not (EVAL_DEV / "MANIFEST.tsv").is_file(), reason="eval-dev not present")
def test_eval_dev_train_calibrate_scan_evaluate(tmp_path):
    """The must-show path: a head trained here on eval-dev reals, calibrated on the other reals;
    scan uses the calibrated threshold; evaluate prints the per-generator table."""
    reals = sorted(str(p) for p in (EVAL_DEV / "real").rglob("*") if p.is_file())
    train_list, cal_list = tmp_path / "train.txt", tmp_path / "cal.txt"
    train_list.write_text("\n".join(reals[0::2]) + "\n")
    cal_list.write_text("\n".join(reals[1::2]) + "\n")
    head = tmp_path / "head"
    runner = CliRunner()
    res = runner.invoke(main, ["train", "--natural-list", str(train_list), "--out", str(head),
                               "--backbone", str(TINY_CONFIG), "--pretrained", "none", "--epochs", "1",
                               "--views", "1", "--batch-size", "16", "--quiet"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["calibrate", "--weights", str(head), "--natural-list", str(cal_list),
                               "--quiet"])
    assert res.exit_code == 0, res.output
    assert "written into the model card" in res.output and "not evidence" in res.output
    thr = read_card(head).threshold["value"]
    assert read_card(head).threshold["validation"]["natural_count"] == len(reals[1::2])

    res = runner.invoke(main, ["calibrate", "--weights", str(head), "--natural-list", str(train_list),
                               "--quiet"])
    assert res.exit_code == 2 and "was used to train this head" in res.output

    fake_dir = EVAL_DEV / "fake" / "cnndetection-ranking"
    out = tmp_path / "r.parquet"
    res = runner.invoke(main, ["scan", str(fake_dir), "-o", str(out), "--weights", str(head), "--quiet"])
    assert res.exit_code == 0, res.output
    df = read_report(out).to_pandas()
    assert (df["threshold"] == thr).all()
    assert (df["label"] == np.where(df["score"] >= thr, "ai", "natural")).all()

    res = runner.invoke(main, ["evaluate", "--weights", str(head), "--dataset", str(EVAL_DEV),
                               "--perturb", "jpeg:90", "-o", str(tmp_path / "t.csv"),
                               "--plots", str(tmp_path / "plots"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "random-init backbone" in res.output
    assert "| biggan | 4 | 4 |" in res.output and "## Condition: jpeg:90" in res.output
    table = pd.read_csv(tmp_path / "t.csv")
    assert len(table) == 2 * 23 and set(table["condition"]) == {"none", "jpeg:90"}
    assert table[["ap", "auc", "acc"]].notna().all().all()
    assert (table["threshold"] == thr).all()
    assert len(list((tmp_path / "plots").glob("*.png"))) == 2 * 23
    json.loads((Path(str(head) + ".json")).read_text())  # the card is still valid JSON


def test_calibrate_plot_and_small_set_warning_without_matplotlib(head_copy, held_out, tmp_path,
                                                                 no_matplotlib):
    res = CliRunner().invoke(main, ["calibrate", "--weights", str(head_copy), "--natural",
                                    str(Path(held_out[0]).parent), "--plot", str(tmp_path / "cal.png"),
                                    "--policy", "fpr:0.01", "--workers", "0", "-q"])
    assert res.exit_code == 0, res.output
    assert _png(tmp_path / "cal.png") == (800, 440)
    warning = "12 photos cannot resolve an FPR of 1%: use at least 300"
    assert f"warning: {warning}" in res.stdout and f"plot: {tmp_path / 'cal.png'}" in res.stdout
    card = read_card(head_copy)
    assert card.threshold.warning.startswith(warning)
    listed = CliRunner().invoke(main, ["heads"], env={"AIISCAN_WEIGHTS_DIR": str(tmp_path)}).stdout
    assert "12 photos (too few!)" in listed  # head_copy lives in tmp_path


def test_evaluate_plots_without_matplotlib(head_copy, held_out, tmp_path, no_matplotlib):
    write_photos(tmp_path / "fake" / "gen_a", 3, seed=5, size=(64, 48))
    res = CliRunner().invoke(main, ["evaluate", "--weights", str(head_copy), "--real",
                                    str(Path(held_out[0]).parent), "--fake", str(tmp_path / "fake" / "gen_a"),
                                    "--plots", str(tmp_path / "plots"), "--workers", "0", "-q"])
    assert res.exit_code == 0, res.output
    written = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert written == ["hist_none_gen_a.png", "roc_none.png"]
    assert _png(tmp_path / "plots" / "roc_none.png") == (560, 560)
    assert _png(tmp_path / "plots" / "hist_none_gen_a.png") == (800, 440)


@pytest.mark.parametrize("top", [1.08, 2.16, 3.24, 9.72, 43.2, 1080.0, 21600.0])
def test_plot_count_ticks_are_distinct_whole_numbers(top):
    from aiiscan.tasks.plots import _ticks

    ticks = _ticks(0.0, top, True)
    assert ticks[0] == 0 and ticks[-1] <= top and 2 <= len(ticks) <= 6
    assert all(t == int(t) for t in ticks) and len(set(ticks)) == len(ticks)


def test_a_plot_carries_its_caution_and_keeps_its_text_inside(tmp_path):
    from PIL import Image

    from aiiscan.tasks.plots import CAUTION, histogram

    rng = np.random.default_rng(0)
    groups = [("natural photos", rng.normal(0.0050, 0.0002, 40)),
              ("AI images", rng.normal(0.0054, 0.0002, 40))]
    for note in (None, "random-init backbone: these numbers say nothing about detection quality"):
        path = tmp_path / f"h{note is None}.png"
        histogram(path, groups, 0.0052, "calibration of a-head-with-a-long-name@0123456789ab (fpr:0.01; "
                  "positives: band-(30,100) copies of the held-out photos)", note=note)
        img = np.asarray(Image.open(path).convert("RGB"))
        caution = (img == CAUTION).all(axis=2)
        assert caution[-20:].any() == (note is not None)  # the caution, at the bottom, when given
        assert (img[:, -2:] == 255).all()  # nothing drawn to the right edge: no label cut there
