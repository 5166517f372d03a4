"""Every file aiiscan writes goes through one mechanism (``files.atomic_output``): a temporary
with an unpredictable name, created O_CREAT|O_EXCL|O_NOFOLLOW in the destination folder, written
through its descriptor and renamed over the output. A link planted under any name is never
followed; and every command that writes checks, before any work, that it can."""

from __future__ import annotations

import ast
import errno
import json
import os
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiiscan import files
from aiiscan.cli import main
from aiiscan.reports.parts import ReportWriter

from ..conftest import write_photos

PACKAGE = Path(__file__).resolve().parents[2] / "aiiscan"

# -- every open that creates a file in a watched folder, as the interpreter's audit hook sees it --
_watched: list[Path] = []
_creates: list[tuple[str, int]] = []


def _audit(event: str, args: tuple) -> None:
    if event != "open" or not _watched:
        return
    path, mode, flags = args
    if isinstance(path, int) or path is None:
        return
    p = os.fspath(path)
    p = p.decode(errors="replace") if isinstance(p, bytes) else p
    if any(os.path.dirname(os.path.abspath(p)).startswith(str(w)) for w in _watched):
        writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) or (mode and any(c in mode for c in "wax+"))
        if writing:
            _creates.append((p, flags))


sys.addaudithook(_audit)


def _plant(folder: Path, name: str, victim: Path) -> list[Path]:
    """Links at every name an output's temporary could have had under a guessable scheme."""
    planted = []
    for guess in (f".{name}.tmp", f".{name}.meta.json.tmp", f"{name}.tmp", f".tmp-{name}",
                  f".{name}.meta.json.tmp", f"{name}.meta.json.tmp", f".{name}.png.tmp",
                  f".{name}.ckpt.safetensors.tmp", f".{name}.safetensors.tmp"):
        link = folder / guess
        if not os.path.lexists(link):
            link.symlink_to(victim)
            planted.append(link)
    return planted


def _writers(folder: Path, name: str):
    """Each writer of aiiscan writing an output called ``name`` in ``folder``."""
    from aiiscan.tasks import plots

    def report(fmt):
        def write():
            out = folder / f"{name}.{fmt}"
            with ReportWriter(out) as w:
                w.write({"path": "a.png", "status": "ok"})
                w.finish({"aiiscan_version": "test"})
        return write

    yield "bytes", lambda: files.atomic_write_bytes(folder / name, b"data")
    yield "csv", report("csv")
    yield "jsonl", report("jsonl")
    yield "parquet", report("parquet")
    yield "plot", lambda: plots.histogram(folder / f"{name}.png", [("a", pa.array([0.1, 0.2]).to_numpy())],
                                          0.15, "t")


@pytest.mark.parametrize("kind", ["bytes", "csv", "jsonl", "parquet", "plot"])
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(st.characters(codec="utf-8", exclude_characters="/\x00"), min_size=1, max_size=40)
       .filter(lambda s: s not in (".", "..") and len(s.encode()) < 150))
def test_no_writer_follows_a_planted_link_or_opens_a_temporary_by_name(tmp_path_factory, kind, name):
    folder = tmp_path_factory.mktemp("out")
    victim = folder.parent / f"victim-{folder.name}"
    victim.write_bytes(b"precious")
    planted = _plant(folder, name if kind == "bytes" else f"{name}.{kind}", victim)
    write = dict(_writers(folder, name))[kind]
    _watched.append(folder.resolve())
    _creates.clear()
    try:
        write()
    finally:
        _watched.clear()
    assert victim.read_bytes() == b"precious"
    assert all(p.is_symlink() for p in planted)
    # what Python opened for writing there was never opened through a link, and, but for the
    # parts folder's lock (reopened by --resume), created exclusively
    for path, flags in _creates:
        assert flags & os.O_NOFOLLOW, (path, oct(flags))
        assert flags & os.O_EXCL or path.endswith(".parts/LOCK"), (path, oct(flags))
    left = {p.name for p in folder.iterdir()} - {p.name for p in planted}
    assert not [n for n in left if n.endswith(".tmp")], left  # no temporary left behind


def test_planted_sidecar_temporary_is_not_followed(tmp_path, head_prefix):
    """The adversary's case: a link at ``.r.csv.meta.json.tmp`` made the sidecar overwrite its
    target."""
    root = tmp_path / "in"
    write_photos(root, 2, seed=5)
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    (tmp_path / ".r.csv.meta.json.tmp").symlink_to(victim)
    res = CliRunner().invoke(main, ["scan", str(root), "-o", str(tmp_path / "r.csv"), "--weights",
                                    str(head_prefix), "--workers", "0", "-q"])
    assert res.exit_code in (0, 1), res.output
    assert victim.read_text() == "original"
    assert json.loads((tmp_path / "r.csv.meta.json").read_text())["aiiscan_version"]


@given(st.lists(st.sampled_from("abc.-_"), min_size=1, max_size=8).map("".join))
@settings(max_examples=20, deadline=None)
def test_temporary_names_are_fresh_and_never_reused(name):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        seen = set()
        for _ in range(5):
            fd, path = files.create_temp(tmp, name)
            os.close(fd)
            assert path.name not in seen and path.name.startswith(f".{name}.")
            assert len(path.name) == len(name) + files.TEMP_OVERHEAD
            seen.add(path.name)
        link = Path(tmp) / "link"
        link.symlink_to(Path(tmp) / "target")
        with pytest.raises(FileExistsError):  # O_EXCL|O_NOFOLLOW: an existing name, even a link, is refused
            os.open(link, files._CREATE, 0o666)
        assert not (Path(tmp) / "target").exists()


def test_only_files_py_makes_temporaries_or_renames_outputs():
    """The class, in the source: no module but ``files`` makes a temporary beside an output,
    renames one into place or writes a file by name (selftest writes its own fixtures)."""
    banned = {"mkstemp", "replace", "rename", "write_bytes", "write_text", "save_file", "write_table",
              "NamedTemporaryFile"}
    found = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in ("files.py", "tasks/selftest.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr in banned and not (node.func.attr == "replace" and not _is_os(node.func)):
                    if node.func.attr == "write_table" and not (_is_name(node.func.value, "pq") and not
                                                                 _is_name(node.args[1], "f")):
                        continue  # a writer object's method, or pq.write_table into atomic_output's file
                    found.append(f"{rel}:{node.lineno} {node.func.attr}")
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "open" and len(node.args) > 1:
                mode = node.args[1]
                private = rel == "reports/html.py"  # scores.f8, in the page's own mkdtemp folder
                writes = isinstance(mode, ast.Constant) and any(c in str(mode.value) for c in "wax+")
                if writes and not private:
                    found.append(f"{rel}:{node.lineno} open({mode.value!r})")
    assert not found, found


def _is_os(func: ast.Attribute) -> bool:
    return isinstance(func.value, ast.Name) and func.value.id == "os"


def _is_name(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


# -- every command that writes checks, before any work, that it can ---------------------------

def _read_only(monkeypatch, folder: Path) -> None:
    """``folder`` behaves like a read-only mount for new files (tests run as root, which chmod
    does not stop): creating a file in it fails with EACCES, as ``open(2)`` would."""
    real = os.open
    folder = str(folder.resolve())

    def fake(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and os.path.dirname(os.path.abspath(os.fspath(path))) == folder:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake)


def test_calibrate_on_a_head_it_may_not_write_stops_before_scoring(tmp_path, head_copy, monkeypatch):
    """The adversary's case: a head in a read-only install scored every photo, then exit 4."""
    from aiiscan.tasks import calibrate as cal

    photos = write_photos(tmp_path / "cal", 3, seed=8)
    monkeypatch.setattr(cal, "_score", lambda *a, **k: pytest.fail("scored before checking the card"))
    _read_only(monkeypatch, head_copy.parent)
    res = CliRunner().invoke(main, ["calibrate", "--weights", str(head_copy), "--natural", photos[0],
                                    "--natural", photos[1], "--natural", photos[2], "--workers", "0", "-q"])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "cannot write" in lines[0] and "head.json" in lines[0], res.output


@pytest.mark.parametrize("command", ["scan", "scan-html", "report", "train", "finetune", "calibrate-plot",
                                     "evaluate", "evaluate-plots"])
def test_every_writing_command_refuses_an_unwritable_output_before_work(tmp_path, monkeypatch, command,
                                                                      head_prefix):
    import aiiscan.api as api

    photos = write_photos(tmp_path / "in", 2, seed=9)
    ro = tmp_path / "ro"
    ro.mkdir()
    report = tmp_path / "r.csv"
    report.write_text("path,status\na.png,ok\n")
    for work in ("_images", "engine_for"):  # the first step of real work in each command
        monkeypatch.setattr(api, work, lambda *a, **k: pytest.fail("work started before the check"))
    monkeypatch.setattr("aiiscan.scanner.driver.load_evidence",
                        lambda *a, **k: pytest.fail("work started before the check"))
    _read_only(monkeypatch, ro)
    args = {
        "scan": ["scan", photos[0], "-o", str(ro / "r.parquet")],
        "scan-html": ["scan", photos[0], "-o", str(tmp_path / "ok.parquet"), "--html", str(ro / "p.html")],
        "report": ["report", str(report), "-o", str(ro / "p.html")],
        "train": ["train", "--natural", photos[0], "-o", str(ro / "h")],
        "finetune": ["finetune", "--natural", photos[0], "--ai", photos[1], "-o", str(ro / "h")],
        "calibrate-plot": ["calibrate", "--weights", str(head_prefix), "--natural", photos[0], "--plot",
                           str(ro / "c.png")],
        "evaluate": ["evaluate", "--real", photos[0], "--fake", photos[1], "-o", str(ro / "t.md")],
        "evaluate-plots": ["evaluate", "--real", photos[0], "--fake", photos[1], "--plots", str(ro)],
    }[command]
    res = CliRunner().invoke(main, [*args, "-q"])
    assert res.exit_code == 2, res.output
    assert len(res.output.strip().splitlines()) == 1 and "cannot" in res.output, res.output
