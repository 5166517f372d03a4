"""`aiiscan heads`: the installed heads, one head's card in words, and a default that is the head
itself (its name, its one card), never a copy that a calibration can leave behind.

Random-init tiny heads: plumbing only, no detection quality.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from aiiscan.cli import main
from aiiscan.reports.read import read_report

from ..conftest import write_photos


@pytest.fixture()
def weights_dir(tmp_path, monkeypatch) -> Path:
    """An empty per-user weights folder, and a working folder without ./weights."""
    folder = tmp_path / "installed"
    monkeypatch.setenv("AIISCAN_WEIGHTS_DIR", str(folder))
    monkeypatch.chdir(tmp_path)
    return folder


def _ok(*args: str) -> str:
    res = CliRunner().invoke(main, list(args))
    assert res.exit_code == 0, res.output
    return res.stdout


def test_train_install_default_calibrate_default_then_scan_by_name(weights_dir, tmp_path, tiny_config):
    """The sequence of the issue: `train -o mine --install-default`, `calibrate` (the default),
    then `scan --weights mine` is calibrated, and every report names the head `mine`."""
    train = write_photos(tmp_path / "train", 6, seed=3, size=(64, 48))
    held = write_photos(tmp_path / "held", 6, seed=4, size=(64, 48))
    mine = tmp_path / "mine"
    out = _ok("train", "--natural", str(Path(train[0]).parent), "-o", str(mine), "--backbone", tiny_config,
              "--pretrained", "none", "--epochs", "1", "--views", "1", "--batch-size", "4", "--workers", "0",
              "--install-default", "-q")
    assert "installed as the default head" in out
    assert not list(weights_dir.glob("*.safetensors"))  # a pointer, not a second copy of the head
    _ok("calibrate", "--natural", str(Path(held[0]).parent), "--workers", "0", "-q")
    card = json.loads(mine.with_suffix(".json").read_text())
    assert card["threshold"]["policy"] == "balanced"  # the head's own card took the threshold

    listed = _ok("heads").splitlines()
    assert listed[0].split()[:5] == ["name", "default", "kind", "backbone", "threshold"]
    name, star, kind, backbone, threshold = listed[1].split()[:5]
    assert (name, star, kind, backbone) == ("mine", "*", "clip-flow", "tiny-vit/none")
    assert float(threshold) == pytest.approx(card["threshold"]["value"], rel=1e-5)
    assert listed[1].endswith(str(mine)) and len(listed) == 2
    entry = json.loads(_ok("heads", "--json"))[0]
    assert entry["default"] and entry["threshold"] == card["threshold"]["value"]
    assert entry["training_natural_count"] == 6 and entry["calibration_natural_count"] == 6

    for weights in (["--weights", "mine"], []):  # by its name, and as the default
        report = tmp_path / f"r{len(weights)}{weights[-1:]}.parquet"
        res = CliRunner().invoke(main, ["scan", str(Path(held[0]).parent), "-o", str(report),
                                        "--workers", "0", "-q", *weights])
        assert res.exit_code in (0, 3), res.output
        rows = read_report(report).to_pylist()
        assert {r["model_id"].split("@")[0] for r in rows} == {"mine"}
        assert all(r["label"] in ("natural", "ai") for r in rows)  # calibrated: labels, not "none"

    shown = _ok("heads", "show", "mine")
    assert "the default head" in shown and f"mine@{card['tensors_sha256'][:12]}" in shown
    assert "policy balanced" in shown and "on 6 natural photos + 6 band-(30,100) copies" in shown
    assert f"sha256 {card['tensors_sha256']}, matches the card" in shown
    assert "6 natural" in shown and "random-init backbone" in shown
    assert json.loads(_ok("heads", "show", "--json"))["tensors_sha256"] == card["tensors_sha256"]

    # from any other folder, the name `aiiscan heads` lists is the default head's, as listed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.chdir(elsewhere)  # weights_dir's monkeypatch.chdir restores the folder after the test
    assert "the default head" in _ok("heads", "show", "mine")
    _ok("heads", "default", "mine", "--overwrite")


def test_an_earlier_default_copy_is_still_read_and_replaced_only_on_request(weights_dir, head_copy):
    weights_dir.mkdir()
    for ext in (".safetensors", ".json"):
        shutil.copy(str(head_copy) + ext, weights_dir / f"default{ext}")
    listed = _ok("heads").splitlines()
    assert listed[1].split()[:2] == ["default", "*"]
    assert "default@" in _ok("heads", "show")

    res = CliRunner().invoke(main, ["heads", "default", str(head_copy)])
    assert res.exit_code == 2 and "already exists" in res.stderr and "--overwrite" in res.stderr
    assert str(head_copy) in _ok("heads", "default", str(head_copy), "--overwrite")
    assert not (weights_dir / "default.json").exists()  # one card per head: the copy is gone
    assert f"{head_copy.name}@" in _ok("heads", "show", "default")


def test_a_default_whose_head_is_gone_says_so(weights_dir, head_copy):
    _ok("heads", "default", str(head_copy))
    for ext in (".safetensors", ".json"):
        Path(str(head_copy) + ext).unlink()
    listed = _ok("heads")
    assert "whose files are gone" in listed and "*" in listed
    res = CliRunner().invoke(main, ["heads", "show"])
    assert res.exit_code == 2 and "whose files are gone" in res.stderr and "Traceback" not in res.output
    (weights_dir / "default.link").write_text('{"head": "relative"}')
    res = CliRunner().invoke(main, ["heads", "show", "default"])
    assert res.exit_code == 2 and "is not one aiiscan wrote" in res.stderr


def test_no_head_installed(weights_dir):
    assert "no head installed" in _ok("heads")
    assert json.loads(_ok("heads", "--json")) == []


def test_heads_of_another_kind_are_listed_and_shown(weights_dir, mpft_prefix):
    """The kind comes from the card through the kind registry: no command names kinds."""
    weights_dir.mkdir()
    for ext in (".safetensors", ".json"):
        shutil.copy(str(mpft_prefix) + ext, weights_dir / f"tuned{ext}")
    listed = _ok("heads").splitlines()
    assert listed[1].split()[:6] == ["tuned", "mpft", "tiny-vit/none", "0", "logit:0", "-"]
    assert "8 photos + 8 AI" in listed[1]
    shown = _ok("heads", "show", "tuned")
    assert "kind        mpft" in shown and "8 natural photos (0 unreadable) + 8 AI images" in shown
    assert "threshold   0, policy logit:0\n            the classifier's decision boundary" in shown
    assert "fingerprints listed: 8 natural, 8 AI" in shown


def test_a_probe_and_an_mpft_head_say_what_training_kept(weights_dir, mpft_prefix, probe_prefix):
    """No placeholder where a kind records something else: a probe kept an l2, MPFT an epoch; both
    name the digest of the images they learnt from."""
    for prefix, kept in ((probe_prefix, r"l2 [\d.e+-]+ \(held-out AUC\)"), (mpft_prefix, r"kept epoch \d+")):
        shown = _ok("heads", "show", str(prefix))
        assert re.search(kept, shown), shown
        assert "kept epoch ?" not in shown and "training set digest -" not in shown, shown
