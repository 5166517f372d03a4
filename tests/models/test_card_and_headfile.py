import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiiscan.card import ModelCard, read_card
from aiiscan.errors import WeightsError
from aiiscan.models.headfile import load_head
from aiiscan.models.scorer import Detector


def _copy(prefix: Path, dest: Path) -> Path:
    for ext in (".safetensors", ".json"):
        dest.with_name(dest.name + ext).write_bytes(prefix.with_name(prefix.name + ext).read_bytes())
    return dest


def test_card_records_what_the_head_needs(head_prefix):
    card = read_card(head_prefix)
    assert card.backbone["pretrained"] == "none" and card.random_init
    assert card.head.dim == 128 and card.training["mode"] == "N+P"
    assert card.training["natural_count"] == 24
    assert len(card.training["natural_fingerprints"]) == 24
    assert card.threshold is None and card.threshold_value is None


def test_reload_gives_bit_identical_scores(backbone, head_prefix, photos, tmp_path):
    a = Detector(backbone, *load_head(head_prefix)).score_paths(photos[:6])
    copy = _copy(head_prefix, tmp_path / "copy")
    b = Detector(backbone, *load_head(copy)).score_paths(photos[:6])
    assert a == b and all(np.isfinite(a))


def test_tampered_tensors_are_refused(head_prefix, tmp_path):
    copy = _copy(head_prefix, tmp_path / "t")
    st = copy.with_name("t.safetensors")
    data = bytearray(st.read_bytes())
    data[-10] ^= 0xFF
    st.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="digest"):
        load_head(copy)


def test_truncated_safetensors_gives_clear_error(head_prefix, tmp_path):
    copy = _copy(head_prefix, tmp_path / "t")
    card = json.loads(copy.with_name("t.json").read_text())
    card.pop("tensors_sha256")  # without the digest the safetensors parser must catch it
    copy.with_name("t.json").write_text(json.dumps(card))
    st = copy.with_name("t.safetensors")
    st.write_bytes(st.read_bytes()[:100])
    with pytest.raises(WeightsError, match="safetensors"):
        load_head(copy)


@pytest.mark.parametrize("mutate,match", [
    (lambda c: c.update(format="other/9"), "format"),
    (lambda c: c["head"].update(hidden=10**9), "outside"),
    (lambda c: c["head"].update(dim="128"), "wrong type"),
    (lambda c: c.pop("backbone"), "missing"),
    (lambda c: c["training"].update(mode="Q"), "mode"),
])
def test_bad_cards_are_refused_before_tensors(head_prefix, tmp_path, mutate, match):
    copy = _copy(head_prefix, tmp_path / "t")
    card = json.loads(copy.with_name("t.json").read_text())
    mutate(card)
    copy.with_name("t.json").write_text(json.dumps(card))
    with pytest.raises(WeightsError, match=match):
        load_head(copy)


def test_corrupt_and_oversized_cards(head_prefix, tmp_path):
    copy = _copy(head_prefix, tmp_path / "t")
    copy.with_name("t.json").write_text("{not json")
    with pytest.raises(WeightsError, match="not valid JSON"):
        load_head(copy)
    copy.with_name("t.json").write_bytes(b" " * (17 * 1024 * 1024))
    with pytest.raises(WeightsError, match="cap"):
        load_head(copy)


def test_missing_head_names_the_files(tmp_path):
    with pytest.raises(WeightsError, match="nothere.safetensors"):
        load_head(tmp_path / "nothere")


def test_head_of_another_backbone_is_refused(head_prefix, tmp_path, backbone):
    copy = _copy(head_prefix, tmp_path / "t")
    card = json.loads(copy.with_name("t.json").read_text())
    card["backbone"]["config_sha256"] = "0" * 64
    copy.with_name("t.json").write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="does not belong"):
        Detector(backbone, *load_head(copy))


def test_no_pickle_loading_anywhere_in_the_package():
    pkg = Path(__file__).resolve().parents[2] / "aiiscan"
    pattern = re.compile(r"import pickle|pickle\.loads?\(|torch\.load\(|cloudpickle|joblib\.load|dill\.")
    hits = [f"{p.name}:{i}" for p in pkg.rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert hits == []


def test_default_backbone_offline_fails_fast_with_a_message(tmp_path):
    env = {"HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin",
           "HF_HUB_OFFLINE": "1"}
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "aiiscan", "train", "--natural", str(tmp_path), "--out",
         str(tmp_path / "x")], capture_output=True, text=True, env=env, timeout=60)
    assert time.perf_counter() - t < 30
    assert proc.returncode == 2
    assert "CLIP weights for ViT-L-14/openai are not on this machine" in proc.stderr
    assert "--clip-weights" in proc.stderr and "Traceback" not in proc.stderr


def test_model_card_round_trips_and_keeps_one_threshold(head_prefix):
    card = read_card(head_prefix)
    assert ModelCard.from_dict(card.to_dict()) == card
    first = card.with_threshold({"value": 0.25, "policy": "balanced"})
    second = first.with_threshold({"value": 0.5, "policy": "fpr:0.01"})
    assert card.threshold is None and first.threshold_value == 0.25  # with_threshold copies
    assert second.threshold_value == 0.5 and second.threshold_policy == "fpr:0.01"
    assert [b["value"] for b in second.calibration_history] == [0.25]
    assert second.digest() != first.digest() and first.digest() == first.digest()
    raw = card.to_dict() | {"future_field": {"kept": True}}
    assert ModelCard.from_dict(raw).to_dict()["future_field"] == {"kept": True}


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=8)
                     | st.floats(allow_nan=False, allow_infinity=False),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                 max_size=3), max_leaves=6)
_BLOCKS = ("backbone", "training", "threshold", "metrics")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extra=st.dictionaries(st.sampled_from(["future", "origin", "notes"]), _JSON, max_size=3),
       nested=st.dictionaries(st.sampled_from(_BLOCKS), st.dictionaries(
           st.sampled_from(["future", "note", "limit", "seed", "decode"]), _JSON, max_size=3), max_size=4),
       drop=st.sets(st.sampled_from(["auc", "tpr", "caution", "validation", "created"]), max_size=5),
       history=st.integers(0, 2))
def test_cards_round_trip_byte_for_byte(head_prefix, extra, nested, drop, history):
    """Typed blocks keep what they do not know and leave absent what was absent: a card read and
    written back is the same bytes, so an existing head's model_card_sha256 never changes."""
    raw = read_card(head_prefix).to_dict()
    calibrated = {"value": 0.5, "policy": "balanced", "created": "x", "auc": 0.6, "tpr": 0.5,
                  "caution": "c", "validation": {"natural_count": 3, "positives": "ai images"}}
    raw["threshold"] = {k: v for k, v in calibrated.items() if k not in drop}
    raw["calibration_history"] = [dict(raw["threshold"], value=float(i)) for i in range(history)]
    raw |= extra
    for block, fields in nested.items():
        raw[block] = {**raw[block], **fields}
    raw["threshold"] |= {"value": 0.5, "policy": "balanced"}  # what validation demands
    if not isinstance(raw["threshold"].get("validation", {}), dict):
        raw["threshold"]["validation"] = {}
    text = json.dumps(raw, indent=2, sort_keys=True)
    assert json.dumps(ModelCard.from_dict(json.loads(text)).to_dict(), indent=2, sort_keys=True) == text
