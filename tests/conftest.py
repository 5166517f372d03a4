"""Shared fixtures: a tiny random-init backbone, generated photos, a head trained in the test.

Random weights make plumbing testable offline; no test here says anything about detection.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from aiiscan.models.backbone import TINY_CONFIG, build_backbone
from aiiscan.tasks.selftest import synthetic_photo

# Tests never see the user's installed default head or head folders.
for _var in ("AIISCAN_WEIGHTS", "AIISCAN_WEIGHTS_DIR"):
    os.environ.pop(_var, None)
# ... nor write under the user's own data folder; the folder goes when the test run ends.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="aiiscan-test-data-")
atexit.register(shutil.rmtree, os.environ["XDG_DATA_HOME"], ignore_errors=True)
# ... nor read or fill the user's cache: one cache for the session, so the OpenVINO graph of each
# test backbone is exported once (a few seconds for the tiny one), whatever process scans.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="aiiscan-test-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], ignore_errors=True)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
EVAL_DEV = Path(os.environ.get("AIISCAN_EVAL_DEV", SHARED / "eval-dev"))
TRAIN_NATURAL = Path(os.environ.get("AIISCAN_TRAIN_NATURAL", SHARED / "train-natural"))


@pytest.fixture(scope="session")
def tiny_config() -> str:
    return str(TINY_CONFIG)


@pytest.fixture()
def head_copy(head_prefix, tmp_path) -> Path:
    """A copy of the session's head that a test may calibrate (its card is rewritten)."""
    dst = tmp_path / "head"
    for ext in (".safetensors", ".json"):
        shutil.copy(str(head_prefix) + ext, str(dst) + ext)
    return dst


@pytest.fixture(scope="module")
def one_thread():
    """Two threads on two shared cores spin against other processes (a step took 60x longer)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def backbone(tiny_config):
    return build_backbone(tiny_config, "none", device="cpu", quiet=True)


def write_photos(folder: Path, n: int, seed: int, ext: str = "png", size=(200, 150)) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"img_{i:03d}.{ext}"
        synthetic_photo(rng, size).save(p)
        paths.append(str(p))
    return paths


def write_empty(folder: Path, n: int, ext: str = "png") -> list[str]:
    """``n`` empty files named like images: each must become an error row, never a stall."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"bad_{i:03d}.{ext}" for i in range(n)]
    for p in paths:
        p.write_bytes(b"")
    return [str(p) for p in paths]


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> list[str]:
    return write_photos(tmp_path_factory.mktemp("photos"), 24, seed=7)


@pytest.fixture(scope="session")
def head_prefix(tmp_path_factory, backbone, photos) -> Path:
    from aiiscan.decode.proxies import ProxySpec
    from aiiscan.options import TrainOptions
    from aiiscan.tasks.train import train

    out = tmp_path_factory.mktemp("head") / "tiny"
    cfg = TrainOptions(mode="N+P", proxy=ProxySpec(ratio=0.1), epochs=2, batch_size=8, lr=1e-3,
                      views=1, workers=0)
    train(backbone, photos, out, cfg, progress=False, backbone_source=str(TINY_CONFIG))
    return out


@pytest.fixture(scope="session")
def head2_prefix(tmp_path_factory, backbone, photos) -> Path:
    """A second CLIP-Flow head on the same tiny backbone (P mode, another seed)."""
    from aiiscan.decode.proxies import ProxySpec
    from aiiscan.options import TrainOptions
    from aiiscan.tasks.train import train

    out = tmp_path_factory.mktemp("head2") / "tiny2"
    cfg = TrainOptions(mode="P", proxy=ProxySpec(ratio=0.1), epochs=1, batch_size=8, lr=1e-3,
                      views=1, workers=0, seed=1)
    train(backbone, photos, out, cfg, progress=False, backbone_source=str(TINY_CONFIG))
    return out


@pytest.fixture(scope="session")
def mpft_prefix(tmp_path_factory, backbone) -> Path:
    """An MPFT head tuned (one short epoch) from the same tiny backbone: its own backbone pass."""
    from aiiscan.options import FinetuneOptions
    from aiiscan.tasks.finetune import finetune

    root = tmp_path_factory.mktemp("mpft")
    natural = write_photos(root / "natural", 8, seed=31)
    ai = write_photos(root / "ai", 8, seed=32)
    out = root / "mpft"
    cfg = FinetuneOptions(tune_blocks=1, epochs=1, batch_size=8, val_fraction=0.25, workers=0, patience=1)
    finetune(backbone, natural, ai, out, cfg, backbone_source=str(TINY_CONFIG), progress=False)
    return out


@pytest.fixture(scope="session")
def probe_prefix(tmp_path_factory, backbone) -> Path:
    """A linear probe on the same tiny backbone: it shares the CLIP-Flow heads' backbone pass."""
    from aiiscan.options import FinetuneOptions
    from aiiscan.tasks.finetune import finetune

    root = tmp_path_factory.mktemp("probe")
    natural = write_photos(root / "natural", 8, seed=33)
    ai = write_photos(root / "ai", 8, seed=34)
    cfg = FinetuneOptions(method="probe", val_fraction=0.25, workers=0, views=1)
    finetune(backbone, natural, ai, root / "probe", cfg, backbone_source=str(TINY_CONFIG), progress=False)
    return root / "probe"


def natural_photos(root: Path) -> list[str]:
    if not root.is_dir():
        pytest.skip(f"{root} not present")
    return sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


# The loopback S3-protocol server (moto) and the fault proxy in front of it: tests/s3server.py.
@pytest.fixture(scope="module")
def moto_endpoint():
    pytest.importorskip("s3fs")
    server_mod = pytest.importorskip("moto.server")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def proxy(moto_endpoint):
    from .s3server import FaultProxy
    p = FaultProxy(moto_endpoint)
    yield p
    p.close()
