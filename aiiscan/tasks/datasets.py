"""Image sets for training, calibration and evaluation (``list_images``), and labelled evaluation
sets on disk: which files are real, which are fake, from which generator.

Three layouts are understood, tried in this order:

* ``ROOT/MANIFEST.tsv`` with ``label`` (real|fake), ``generator`` and ``local_path`` columns
  (paths relative to ROOT). A real row is paired with one generator when its ``generator``
  names it, either exactly or as ``camera (<generator>-paired real set)``.
* flat: ``ROOT/real/...`` and ``ROOT/fake/<generator>/...``; ``real/<generator>/`` pairs reals
  with that generator.
* UnivFD / CNNDetection: ``ROOT/<generator>[/<category>]/{0_real,1_fake}/...``; each
  generator's own ``0_real`` is its paired real set.

Generators without a paired real set are compared with all unpaired reals (the shared pool).
"""

from __future__ import annotations

import csv
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..decode.formats import sniff_format
from ..errors import AiiscanError
from ..files import open_regular
from ..inputs.crawl import iter_inputs
from ..inputs.location import Entry

FOUND_HOW = ("Folders are searched recursively for image files; symbolic links are not followed "
             "(name such files in a list with --natural-list instead).")


def _looks_like_image(entry: Entry) -> bool:
    if entry.explicit:
        return True
    try:
        with open_regular(entry.location.raw) as f:  # a FIFO in a folder is left out, never waited on
            return sniff_format(f.read(16)) is not None
    except OSError:  # not a local file, not a regular one, or not readable: left out, as a non-image
        return False


def list_images(paths: Iterable[str], from_list: str | None = None) -> list[str]:
    """Image files for training, calibration and evaluation: named files are kept as given
    (a bad one becomes a counted failure later); files found in folders must look like images."""
    return [e.location.raw for e in iter_inputs(paths, from_list) if not e.skip and _looks_like_image(e)]

_PAIRED = re.compile(r"\(([^()]+)-paired real set\)")
_LABELS = {"real": 0, "0": 0, "0_real": 0, "natural": 0, "fake": 1, "1": 1, "1_fake": 1, "ai": 1}


class DatasetError(AiiscanError, ValueError):
    """The folder is not an evaluation set we understand; the message says what was expected."""


@dataclass
class EvalSet:
    root: str
    layout: str
    fakes: dict[str, list[str]] = field(default_factory=dict)
    paired_reals: dict[str, list[str]] = field(default_factory=dict)
    shared_reals: list[str] = field(default_factory=list)

    def groups(self) -> list[tuple[str, list[str], list[str]]]:
        """(generator, its real files, its fake files), generators sorted by name."""
        out = []
        for gen in sorted(self.fakes):
            reals = self.paired_reals.get(gen) or self.shared_reals
            out.append((gen, reals, self.fakes[gen]))
        return out

    def files(self) -> list[str]:
        """Every file once (a file can serve several generators but is scored once)."""
        seen: dict[str, None] = {}
        for _, reals, fakes in self.groups():
            seen.update(dict.fromkeys(reals))
            seen.update(dict.fromkeys(fakes))
        return list(seen)

    def check(self) -> EvalSet:
        if not self.fakes:
            raise DatasetError(f"{self.root}: no fake images found ({self.layout} layout)")
        lonely = [g for g, reals, _ in self.groups() if not reals]
        if lonely:
            raise DatasetError(f"{self.root}: no real images to compare generator(s) "
                               f"{', '.join(lonely)} with ({self.layout} layout)")
        return self

    def _pair_or_share(self, reals_by_name: dict[str, list[str]]) -> None:
        for name, files in reals_by_name.items():
            m = _PAIRED.search(name)
            gen = name if name in self.fakes else (m.group(1) if m and m.group(1) in self.fakes else None)
            if gen is None:
                self.shared_reals.extend(files)
            else:
                self.paired_reals.setdefault(gen, []).extend(files)


def _read_manifest(root: Path, manifest: Path) -> EvalSet:
    es = EvalSet(str(root), "MANIFEST.tsv")
    reals: dict[str, list[str]] = defaultdict(list)
    with open(manifest, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = {"label", "generator", "local_path"} - set(reader.fieldnames or ())
        if missing:
            raise DatasetError(f"{manifest} lacks column(s) {', '.join(sorted(missing))}")
        for n, row in enumerate(reader, start=2):
            label = _LABELS.get((row["label"] or "").strip().lower())
            if label is None:
                raise DatasetError(f"{manifest}:{n}: label {row['label']!r} is neither real nor fake")
            path = str(root / row["local_path"])
            gen = (row["generator"] or "").strip() or ("unknown" if label else "")
            (es.fakes.setdefault(gen, []) if label else reals[gen]).append(path)
    es._pair_or_share(reals)
    return es


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir())


def _read_flat(root: Path) -> EvalSet:
    es = EvalSet(str(root), "flat real/ fake/")
    fake = root / "fake"
    loose = [p for p in list_images([str(fake)]) if Path(p).parent == fake]
    if loose:
        es.fakes["fake"] = loose
    for sub in _subfolders(fake):
        files = list_images([str(sub)])
        if files:
            es.fakes[sub.name] = files
    real = root / "real"
    reals: dict[str, list[str]] = {"": [p for p in list_images([str(real)]) if Path(p).parent == real]}
    for sub in _subfolders(real):
        reals[sub.name] = list_images([str(sub)])
    es._pair_or_share(reals)
    return es


def _read_univfd(root: Path) -> EvalSet:
    es = EvalSet(str(root), "UnivFD <generator>/[<category>/]{0_real,1_fake}")
    reals: dict[str, list[str]] = defaultdict(list)
    for dirpath, dirnames, _ in os.walk(root):
        dirnames.sort()
        here = Path(dirpath)
        if here.name not in ("0_real", "1_fake"):
            continue
        dirnames[:] = []  # images below are collected by list_images
        rel = here.parent.relative_to(root).parts
        gen = rel[0] if rel else root.name
        files = list_images([dirpath])
        (reals[gen] if here.name == "0_real" else es.fakes.setdefault(gen, [])).extend(files)
    if not es.fakes and not reals:
        raise DatasetError(
            f"{root} is not an evaluation set: expected MANIFEST.tsv, real/ and fake/ folders, "
            "or the UnivFD layout <generator>/[<category>/]{0_real,1_fake}/")
    es._pair_or_share(reals)
    return es


def load_dataset(root: str | Path) -> EvalSet:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder")
    if (root / "MANIFEST.tsv").is_file():
        return _read_manifest(root, root / "MANIFEST.tsv").check()
    if (root / "real").is_dir() and (root / "fake").is_dir():
        return _read_flat(root).check()
    return _read_univfd(root).check()


def from_folders(real: Sequence[str], fake: Sequence[str]) -> EvalSet:
    """``--real DIR --fake DIR...``: each fake folder is one generator, named after the folder."""
    es = EvalSet(", ".join([*real, *fake]), "--real/--fake folders")
    es.shared_reals = list_images(real)
    for folder in fake:
        name = Path(folder).resolve().name or folder
        unique, k = name, 2
        while unique in es.fakes:
            unique, k = f"{name}-{k}", k + 1
        es.fakes[unique] = list_images([folder])
    return es.check()
