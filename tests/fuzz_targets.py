"""The decode + metadata path as a fuzz target, shared by the hypothesis test and atheris.

    python tests/fuzz_targets.py [atheris options]     # long coverage-guided run (pip install atheris)
"""

from __future__ import annotations

import io
import os
import struct
import sys
import tempfile
import zlib

import numpy as np
from PIL import Image, PngImagePlugin

from aiiscan.decode.job import DecodeJob, decode_job
from aiiscan.decode.provenance import COLUMNS

CROP = 32
MAX_PIXELS = 4_000_000  # mutated headers may claim anything; keep each example cheap


def seeds() -> list[bytes]:
    """Small valid files carrying metadata, in every container the decoder and parsers walk."""
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "EOS"
    exif.get_ifd(0x8769)[0x9003] = "2020:01:01 00:00:00"
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "cat\nSteps: 2, Sampler: Euler")
    info.add_itxt("XML:com.adobe.xmp", '<x:xmpmeta><rdf:Description xmp:CreatorTool="t" '
                  'Iptc4xmpExt:DigitalSourceType="x/trainedAlgorithmicMedia"/></x:xmpmeta>', zip=True)
    out = []
    for fmt, kw in (("JPEG", {"exif": exif}), ("PNG", {"pnginfo": info, "exif": exif}),
                    ("WEBP", {"exif": exif}), ("GIF", {}), ("TIFF", {}), ("BMP", {})):
        buf = io.BytesIO()
        img.save(buf, fmt, **kw)
        out.append(buf.getvalue())
    cabx = b"jumb" + b"c2pa" + b"trainedAlgorithmicMedia"
    png = out[1]
    iend = png.rindex(b"IEND") - 4
    chunk = struct.pack(">I", len(cabx)) + b"caBX" + cabx + struct.pack(">I", zlib.crc32(b"caBX" + cabx))
    out.append(png[:iend] + chunk + png[iend:])
    return out


def check(data: bytes, folder: str) -> None:
    """One file through the worker's whole path; the contract every input must keep."""
    fd, path = tempfile.mkstemp(dir=folder, suffix=".img")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    try:
        res = decode_job(DecodeJob(path, CROP, max_pixels=MAX_PIXELS, provenance=True))
    finally:
        os.unlink(path)
    assert res.status in ("ok", "error"), res.status
    if res.status == "error":
        assert res.error and "\n" not in res.error and len(res.error) <= 400
    else:
        assert len(res.arrays) == 1 and res.arrays[0].shape == (CROP, CROP, 3)
        assert res.arrays[0].dtype == np.uint8
    prov = res.info.get("provenance")
    if prov is not None:
        assert set(prov) == set(COLUMNS)


def _atheris_main() -> None:  # pragma: no cover - long runs by hand
    import atheris

    folder = tempfile.mkdtemp(prefix="aiiscan-fuzz-")
    corpus = seeds()

    def one(buf: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(buf)
        base = corpus[fdp.ConsumeIntInRange(0, len(corpus) - 1)]
        tail = fdp.ConsumeBytes(fdp.remaining_bytes())
        pos = int.from_bytes(tail[:4] or b"\0", "little") % max(len(base), 1)
        check(base[:pos] + tail[4:] + base[pos + len(tail[4:]):], folder)

    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    _atheris_main()
