"""OpenVINO on a CPU: the frozen tower in native bf16 (AMX, AVX512-BF16), about 4x torch float32.

The graph is derived data. On first use it is exported from the tower in memory
(``torch.onnx.export(dynamo=True)``, a dynamic batch dimension), read by OpenVINO, checked
against the torch tower in float32 on a probe batch (an exporter can mistranslate an operator
without an error), and cached as an IR with float32 weights under
``$XDG_CACHE_HOME/aiiscan/runtimes/openvino/<fingerprint>/``. The fingerprint covers what the
features depend on (see ``fingerprint``); bf16 and fp32 are compile hints on the same IR. A
cache entry is read once, its bytes checked against the sha256 in its manifest, and those
checked bytes handed to OpenVINO; a missing, partial, stale or edited entry is rebuilt. Nothing
is ever loaded from elsewhere, and nothing is pickled.

OpenVINO's model-conversion tool sends a usage event (and writes ``~/intel``) unless opted out;
it is never imported here: the telemetry package and ``openvino.tools.ovc`` are held off while
``openvino`` is imported, and the ONNX graph is read by the runtime's own reader.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import importlib.metadata
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ...files import atomic_write_bytes, replace_folder
from . import Encoder

NATIVE_BF16_ENV = "AIISCAN_NATIVE_BF16"  # 0: behave as on a CPU without native bf16
PROBE_TOLERANCE = 1e-3  # exported vs torch float32, relative to the features' largest magnitude
FORMAT = 1  # of a cache entry; part of the fingerprint
_BLOCKED = ("openvino_telemetry", "openvino.tools.ovc")


class ExportError(RuntimeError):
    """The tower cannot be exported, or the export does not reproduce it."""


@functools.lru_cache(maxsize=1)
def _ov():
    """``openvino``, imported with its telemetry and model-conversion tool held off."""
    held = {name: sys.modules.get(name) for name in _BLOCKED}
    for name in _BLOCKED:
        sys.modules[name] = None  # type: ignore[assignment]  # an import of it raises ImportError
    try:
        import openvino
    finally:
        for name, before in held.items():
            if before is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = before
    return openvino


@functools.lru_cache(maxsize=1)
def _core():
    return _ov().Core()


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """OpenVINO and the ONNX exporter's dependencies are installed (a base install has them)."""
    try:
        _ov()
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


def native_bf16() -> bool:
    """This CPU computes bf16 natively (AMX or AVX512-BF16), as OpenVINO itself reports it."""
    env = os.environ.get(NATIVE_BF16_ENV, "").strip().lower()
    if env in ("0", "false", "no", "off"):
        return False
    return available() and _cpu_bf16()


@functools.lru_cache(maxsize=1)
def _cpu_bf16() -> bool:
    try:
        return "BF16" in _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # noqa: BLE001 - an unknown device or property: no native bf16
        return False


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aiiscan" / "runtimes" / "openvino"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def fingerprint(visual: torch.nn.Module, image_size: int, identity: dict | None = None) -> str:
    """sha256 of what the exported graph depends on: the backbone's identity (name, open_clip
    config file sha256, weights file sha256), the tower's class, every tensor in memory (so
    MPFT's tuned blocks and any weights file are covered), the input shape, and the exporter's
    and runtime's versions."""
    dists = ("openvino", "torch", "onnxscript", "onnx", "open_clip_torch")
    h = hashlib.sha256()
    meta = {"format": FORMAT, "identity": identity, "image_size": image_size,
            "class": f"{type(visual).__module__}.{type(visual).__qualname__}",
            "versions": {d: _version(d) for d in dists}}
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    for name, t in sorted(visual.state_dict(keep_vars=False).items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _load(entry: Path, key: str):
    """The cached model, from bytes read once and checked; None when absent, partial or stale."""
    try:
        manifest = json.loads((entry / "manifest.json").read_text())
        xml = (entry / "model.xml").read_bytes()
        weights = (entry / "model.bin").read_bytes()
    except (OSError, ValueError):
        return None
    if (manifest.get("fingerprint") != key or manifest.get("xml_sha256") != _sha(xml)
            or manifest.get("bin_sha256") != _sha(weights)):
        return None
    ov = _ov()
    return _core().read_model(model=xml.decode("utf-8"),
                              weights=ov.Tensor(np.frombuffer(weights, dtype=np.uint8).copy()))


def _export(visual: torch.nn.Module, image_size: int, folder: Path):
    """ONNX (dynamo exporter, dynamic batch) -> OpenVINO model, read from ``folder``."""
    import warnings

    onnx_path = folder / "tower.onnx"
    example = torch.zeros(2, 3, image_size, image_size)
    batch = torch.export.Dim("batch", min=1, max=65536)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(visual, (example,), str(onnx_path), dynamo=True, external_data=True,
                              input_names=["pixels"], output_names=["features"],
                              dynamic_shapes=({0: batch},), optimize=True, verbose=False)
        except Exception as exc:  # noqa: BLE001 - any exporter failure means: stay on torch
            raise ExportError(f"ONNX export failed: {type(exc).__name__}: {str(exc)[:300]}") from exc
    try:
        return _core().read_model(str(onnx_path))
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"OpenVINO cannot read the exported graph: {exc}") from exc


def _compiled(model, precision: str, threads: int | None = None):
    config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
              "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return _core().compile_model(model, "CPU", config)


def _probe(visual: torch.nn.Module, model, image_size: int) -> float:
    """Largest |exported - torch| over the largest |torch|, both float32, on a fixed batch."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 3, image_size, image_size, generator=gen)
    with torch.inference_mode():
        want = visual(x).float()
    got = torch.from_numpy(np.asarray(_compiled(model, "fp32")(x.numpy())[0]))
    if got.shape != want.shape:
        return float("inf")
    return float((got - want).abs().max() / want.abs().max().clamp_min(1e-12))


def _build(visual: torch.nn.Module, image_size: int, entry: Path, key: str):
    entry.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=".build-", dir=entry.parent) as tmp:
        work = Path(tmp)
        (work / "onnx").mkdir()
        model = _export(visual, image_size, work / "onnx")
        err = _probe(visual, model, image_size)
        if not err <= PROBE_TOLERANCE:
            raise ExportError(f"the exported graph does not reproduce the torch tower (relative error "
                              f"{err:.2e} > {PROBE_TOLERANCE:g} in float32)")
        out = work / "entry"
        out.mkdir()
        _ov().save_model(model, str(out / "model.xml"), compress_to_fp16=False)
        manifest = {"fingerprint": key, "format": FORMAT, "probe_relative_error": err,
                    "xml_sha256": _sha((out / "model.xml").read_bytes()),
                    "bin_sha256": _sha((out / "model.bin").read_bytes()),
                    "built_seconds": round(time.monotonic() - start, 1)}
        text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        atomic_write_bytes(out / "manifest.json", text.encode())
        replace_folder(out, entry)
    print(f"aiiscan: built the OpenVINO graph of this backbone once in {time.monotonic() - start:.1f} s "
          f"(probe error {err:.1e}); cached in {entry}", file=sys.stderr)


def load_or_build(visual: torch.nn.Module, image_size: int, identity: dict | None = None):
    """The OpenVINO model of ``visual`` from the cache, built (and checked) when missing or stale."""
    key = fingerprint(visual, image_size, identity)
    entry = cache_root() / key[:32]
    model = _load(entry, key)
    if model is not None:
        return model
    entry.parent.mkdir(parents=True, exist_ok=True)
    lock = os.open(entry.parent / f".{key[:32]}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build per entry, however many processes ask
        model = _load(entry, key)  # another process may have built it while we waited
        if model is None:
            _build(visual, image_size, entry, key)
            model = _load(entry, key)
    finally:
        os.close(lock)
    if model is None:
        raise ExportError(f"the cache entry {entry} could not be read back after building it")
    return model


def compile(visual: torch.nn.Module, device: torch.device, precision: str,
            image_size: int | None = None, identity: dict | None = None) -> Encoder:
    if device.type != "cpu":
        raise ExportError("the OpenVINO runtime serves CPUs only")
    size = image_size or _image_size(visual)
    visual = visual.eval()
    compiled = _compiled(load_or_build(visual, size, identity), precision, torch.get_num_threads())
    request = compiled.create_infer_request()

    def encode(batch: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(batch.detach().to("cpu", torch.float32).numpy())
        request.infer({0: x})
        return torch.from_numpy(np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True))

    return encode


def _image_size(visual: torch.nn.Module) -> int:
    size = getattr(visual, "image_size", 224)
    return int(size[0] if isinstance(size, (tuple, list)) else size)
