"""Runtimes: the choice per machine and --precision, the torch fallback (bit-exact float32), and
the OpenVINO graph as derived data (checked against torch, cached per fingerprint, rebuilt when
edited or stale, never a telemetry event). On a CPU without native bf16 the OpenVINO tests that
need it are skipped and the fallback ones still run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from aiiscan.models.runtimes import choose, compile_encoder, runtime

ov = runtime("openvino")
CPU = torch.device("cpu")
needs_ov = pytest.mark.skipif(not ov.available(), reason="OpenVINO is not installed")
needs_native = pytest.mark.skipif(not ov.native_bf16(), reason="this CPU has no native bf16 (or OpenVINO)")


@pytest.fixture(scope="module")
def batch():
    return torch.randn(5, 3, 224, 224, generator=torch.Generator().manual_seed(1))


def test_choice_per_precision_device_and_cpu():
    assert choose(CPU, "fp32") == ("torch", "fp32")
    assert choose(torch.device("cuda"), "auto") == ("torch", "bf16")
    assert choose(torch.device("cuda"), "fp32") == ("torch", "fp32")
    assert choose(CPU, "auto", native_bf16=False) == ("torch", "fp32")
    assert choose(CPU, "bf16", native_bf16=False)[1] == "bf16"  # asked for: the fastest bf16 present
    if ov.available():
        assert choose(CPU, "auto", native_bf16=True) == ("openvino", "bf16")


def test_environment_forces_the_fallback(monkeypatch):
    monkeypatch.setenv(ov.NATIVE_BF16_ENV, "0")
    assert not ov.native_bf16()
    assert choose(CPU, "auto") == ("torch", "fp32")


def test_fallback_is_bit_exact_torch_float32(backbone, batch):
    enc, ran = compile_encoder(backbone.visual, CPU, "auto", native_bf16=False)
    with torch.inference_mode():
        want = backbone.visual(batch)
    assert ran == "fp32 (torch)"
    assert torch.equal(enc(batch), want)


@needs_native
def test_auto_runs_native_bf16_close_to_float32(backbone, batch):
    enc, ran = compile_encoder(backbone.visual, CPU, "auto", identity=backbone.identity.to_dict())
    ref, _ = compile_encoder(backbone.visual, CPU, "fp32")
    got, want = enc(batch), ref(batch)
    assert ran == "bf16 (openvino)" and got.dtype == torch.float32 and got.shape == want.shape
    assert torch.nn.functional.cosine_similarity(got, want).min() > 0.999
    # Dynamic batch: a crop's features do not depend on the batch it travels in.
    assert torch.equal(enc(batch[:2])[1], got[1])


@needs_ov
def test_float32_hint_reproduces_torch(backbone, batch):
    enc = ov.compile(backbone.visual, CPU, "fp32", identity=backbone.identity.to_dict())
    with torch.inference_mode():
        want = backbone.visual(batch)
    assert float((enc(batch) - want).abs().max() / want.abs().max()) <= 1e-4


def _entries(root):
    return sorted(p for p in root.iterdir() if not p.name.startswith("."))


@needs_ov
def test_cache_entry_is_checked_rebuilt_when_edited_and_keyed_by_tensors(backbone, tmp_path, monkeypatch,
                                                                         capfd, batch):
    import copy

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    ov.compile(backbone.visual, CPU, "bf16")
    assert "built the OpenVINO graph" in capfd.readouterr().err  # build time, reported once
    (entry,) = _entries(ov.cache_root())
    manifest = json.loads((entry / "manifest.json").read_text())
    assert manifest["probe_relative_error"] <= ov.PROBE_TOLERANCE
    ov.compile(backbone.visual, CPU, "fp32")  # the same IR under another hint: no rebuild
    assert "built" not in capfd.readouterr().err
    data = bytearray((entry / "model.bin").read_bytes())
    data[len(data) // 2] ^= 0xFF  # an edited entry is never used: rebuilt
    (entry / "model.bin").write_bytes(bytes(data))
    enc = ov.compile(backbone.visual, CPU, "fp32")
    assert "built the OpenVINO graph" in capfd.readouterr().err
    with torch.inference_mode():
        want = backbone.visual(batch)
    assert float((enc(batch) - want).abs().max() / want.abs().max()) <= 1e-4
    tuned = copy.deepcopy(backbone.visual)  # other tensors (an MPFT head's tuned blocks): another entry
    with torch.no_grad():
        next(tuned.parameters()).add_(0.01)
    assert ov.fingerprint(tuned, 224) != ov.fingerprint(backbone.visual, 224)


@needs_ov
def test_a_mistranslated_graph_falls_back_to_torch_with_one_warning(backbone, batch, tmp_path, monkeypatch,
                                                                    capfd):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(ov, "_probe", lambda *a: 0.075)  # what the exporter once did to torch.fft
    enc, ran = compile_encoder(backbone.visual, CPU, "auto", native_bf16=True)
    err = capfd.readouterr().err
    assert ran == "fp32 (torch)" and err.count("WARNING") == 1 and "does not reproduce" in err
    with torch.inference_mode():
        assert torch.equal(enc(batch), backbone.visual(batch))
    assert not _entries(ov.cache_root())  # nothing cached


@needs_ov
def test_no_telemetry(tmp_path):
    """OpenVINO's conversion tool sends an event and writes ~/intel: it is never loaded."""
    code = ("import sys, torch; from aiiscan.models.runtimes import openvino as ov; "
            "from aiiscan.models.backbone import TINY_CONFIG, build_backbone; "
            "bb = build_backbone(str(TINY_CONFIG), 'none', device='cpu', quiet=True); bb.precision = 'bf16'; "
            "bb.encode(torch.zeros(1, 3, 224, 224)); "
            "print(bb.runs_as, 'openvino_telemetry' in sys.modules, 'openvino.tools.ovc' in sys.modules)")
    env = dict(os.environ, HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["bf16", "(openvino)", "False", "False"], out.stderr
    assert not (tmp_path / "intel").exists()
