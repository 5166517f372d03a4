import json

import numpy as np
import pytest
from click.testing import CliRunner

from aiiscan.cli import main
from aiiscan.models.headfile import load_head
from aiiscan.models.scorer import Detector
from aiiscan.options import TrainOptions
from aiiscan.tasks.train import train

from ..conftest import TRAIN_NATURAL, natural_photos


def test_help_documents_every_option():
    runner = CliRunner()
    out = runner.invoke(main, ["train", "--help"]).output
    for opt in ("--natural", "--natural-list", "--out", "--mode", "--backbone", "--pretrained",
                "--clip-weights", "--proxy", "--band", "--ratio", "--epochs", "--batch-size",
                "--lr", "--views", "--seed", "--device", "--resume", "--val-natural"):
        assert opt in out
    assert "selftest" in runner.invoke(main, ["--help"]).output


def test_train_cli_writes_a_head_that_reloads_identically(tmp_path, tiny_config, photos, backbone):
    out = tmp_path / "h"
    res = CliRunner().invoke(main, [
        "train", "--backbone", tiny_config, "--pretrained", "none", "--natural",
        photos[0].rsplit("/", 1)[0],
        "--out", str(out), "--mode", "P", "--epochs", "2", "--views", "1", "--batch-size", "8",
        "--workers", "0", "--quiet"])
    assert res.exit_code == 0, res.output
    assert out.with_suffix(".safetensors").is_file() and out.with_suffix(".json").is_file()
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["training"]["mode"] == "P" and card["training"]["proxy"]["ratio"] == 1.0
    assert card["training"]["epochs"] == 2
    det = Detector.load(out, device="cpu", quiet=True)
    a = det.score_paths(photos[:4])
    b = Detector(backbone, *load_head(out)).score_paths(photos[:4])
    assert a == b and np.isfinite(a).all()


def test_training_refuses_too_few_photos(backbone, tmp_path):
    from aiiscan.tasks.train import TrainingError

    with pytest.raises(TrainingError, match="at least 2"):
        train(backbone, ["one.png"], tmp_path / "x", TrainOptions(), progress=False)


@pytest.mark.parametrize("mode", ["P", "N+P"])
def test_validation_auc_picks_the_kept_epoch_on_real_photos(backbone, tmp_path, mode):
    """Real held-out photos: the band-(30,100) AUC is measured each epoch and the best is kept.

    The AUC value itself is not asserted: with a random backbone it is near chance (see
    the README); what is tested is that the measurement and the selection work."""
    nat = natural_photos(TRAIN_NATURAL)
    rng = np.random.default_rng(0)
    pick = rng.permutation(len(nat))
    train_set = [nat[i] for i in pick[:48]]
    val_set = [nat[i] for i in pick[48:72]]
    cfg = TrainOptions(mode=mode, epochs=3, batch_size=16, lr=1e-3, views=1, workers=2)
    card = train(backbone, train_set, tmp_path / "v", cfg, validation=val_set, progress=False)
    hist = card.training["history"]
    aucs = [h["val_auc"] for h in hist]
    assert all(0.0 <= a <= 1.0 for a in aucs)
    assert card.training["kept_epoch"] == int(np.argmax(aucs)) + 1
    assert card.metrics["validation_band_auc"] == max(aucs)


@pytest.mark.parametrize("mode", ["P", "N+P", "N"])
def test_the_cli_and_the_api_train_the_same_head(tmp_path, tiny_config, photos, mode):
    """One source of truth for defaults: epochs and the proxy's ratio default by mode in both."""
    from aiiscan import api

    folder = photos[0].rsplit("/", 1)[0]
    res = CliRunner().invoke(main, ["train", "--backbone", tiny_config, "--pretrained", "none", "--natural",
                                    folder, "-o", str(tmp_path / "cli"), "--mode", mode, "--views", "1",
                                    "--workers", "0", "-q"])
    assert res.exit_code == 0, res.output
    api.train([folder], tmp_path / "api", backbone=tiny_config, pretrained="none", mode=mode, views=1,
              workers=0)
    cli, via_api = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("cli", "api"))
    for card in (cli, via_api):
        card.pop("created")
        card["backbone"].pop("source")  # the config's path as each was given
    assert cli == via_api
    ratio, epochs = {"P": (1.0, 30), "N+P": (0.1, 10), "N": (0.1, 10)}[mode]
    assert cli["training"]["proxy"]["ratio"] == ratio and cli["training"]["epochs"] == epochs


def test_an_unusable_validation_set_is_refused_not_ignored(tmp_path, tiny_config, photos):
    """`--val-natural` names held-out photos to pick the epoch kept: a folder with none (empty,
    links not followed) or with fewer than 2 readable is refused (exit 2), never silently turned
    into "last epoch"."""
    empty, broken = tmp_path / "empty", tmp_path / "broken"
    empty.mkdir()
    broken.mkdir()
    for i in range(3):
        (broken / f"b{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)  # an image's head, no image
    base = ["train", "--backbone", tiny_config, "--pretrained", "none", "--natural",
            photos[0].rsplit("/", 1)[0], "--epochs", "1", "--views", "1", "--workers", "0", "--quiet"]
    for folder, said in ((empty, "--val-natural needs at least 2 photos, found 0"),
                         (broken, "only 0 of the 3 validation photos could be read")):
        res = CliRunner().invoke(main, [*base, "--out", str(tmp_path / folder.name),
                                        "--val-natural", str(folder)])
        assert res.exit_code == 2, res.output
        assert said in res.output and "Traceback" not in res.output
        assert not (tmp_path / f"{folder.name}.json").exists()
