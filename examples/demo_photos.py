"""A folder of pictures to try aiiscan on, made from scratch (no download, no real photo).

    python examples/demo_photos.py photos
    aiiscan scan ./photos -o report.parquet      # with no head installed: an evidence-only scan

Most are plain photo-like pictures; a few carry the evidence a scan reads without any model:
generator parameters in a PNG text chunk (as Stable Diffusion WebUI writes them), an IPTC
digital source type in XMP (as many generators and editors declare AI-generated media), a
ComfyUI workflow, and camera EXIF (shown, never a verdict: it is trivially copied).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from aiiscan.tasks.selftest import synthetic_photo

XMP = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       '<rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
       'Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/'
       'trainedAlgorithmicMedia"/></rdf:RDF></x:xmpmeta>')


def _png(img: Image.Image, path: Path, chunks: dict[str, str]) -> None:
    """A PNG with text chunks; XMP goes in an iTXt chunk, as the XMP specification puts it."""
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        if key == "XML:com.adobe.xmp":
            info.add_itxt(key, value)
        else:
            info.add_text(key, value)
    img.save(path, pnginfo=info)


def make(folder: Path, photos: int = 8, seed: int = 0) -> list[Path]:
    """Write the demo pictures into ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = []
    for i in range(photos):
        path = folder / f"photo_{i:02d}.jpg"
        synthetic_photo(rng).save(path, quality=90)
        written.append(path)
    a1111 = folder / "generated_a1111.png"
    _png(synthetic_photo(rng), a1111, {"parameters": "a lighthouse at dawn\nSteps: 30, Sampler: DPM++ 2M, "
                                                     "CFG scale: 7, Seed: 42, Size: 320x240, Model: sdxl"})
    comfy = folder / "generated_comfyui.png"
    workflow = {"3": {"class_type": "KSampler", "inputs": {"seed": 1}}}
    _png(synthetic_photo(rng), comfy, {"prompt": json.dumps(workflow)})
    declared = folder / "declared_ai.png"
    _png(synthetic_photo(rng), declared, {"XML:com.adobe.xmp": XMP})
    camera = folder / "camera.jpg"
    exif = Image.Exif()
    exif.update({0x010F: "ExampleCam", 0x0110: "Model 1"})  # Make, Model
    exif.get_ifd(0x8769)[0x9003] = "2024:05:01 10:20:30"  # DateTimeOriginal
    synthetic_photo(rng).save(camera, quality=90, exif=exif)
    return [*written, a1111, comfy, declared, camera]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python examples/demo_photos.py FOLDER")
    paths = make(Path(sys.argv[1]))
    print(f"wrote {len(paths)} pictures into {sys.argv[1]}")
