"""Issue 24, values a file system or a list can carry: a folder ~1,000 levels deep, undecodable
names across several roots, list files with a byte-order mark or CRLF line ends. Each file gets
exactly one row under its own path; nothing is lost at the first line of a list. Evidence-only
scans (no head): fast, and the rows are the same rows."""

from __future__ import annotations

import hashlib
import io
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from aiiscan.cli import main
from aiiscan.inputs.crawl import read_list
from aiiscan.reports.read import read_report
from aiiscan.textsafe import path_from_display
from tests.hostile import plain_png


def _scan(*args: str, stdin: bytes | None = None):
    res = CliRunner().invoke(main, ["scan", *args, "--workers", "0", "-q"], input=stdin)
    assert res.exit_code == 0, res.output
    return res


def _rows(report) -> list[dict]:
    return read_report(report).to_pylist()


def test_a_folder_a_thousand_levels_deep_scans_every_file(tmp_path):
    """The crawl keeps its own stack: 1,000 levels (a path of ~2,100 bytes, under PATH_MAX) are
    no RecursionError, and every file at every depth gets its row."""
    root = tmp_path / "deep"
    deep = Path(root, *["d"] * 1000)
    assert len(os.fsencode(deep)) < os.pathconf("/", "PC_PATH_MAX") - 64
    level = root
    for _ in range(1001):  # one level at a time: pathlib's and os's makedirs recurse
        level.mkdir()
        level = level / "d"
    placed = [Path(root, *["d"] * n, f"at{n}.png") for n in (0, 1, 499, 998, 1000)]
    for i, p in enumerate(placed):
        p.write_bytes(plain_png(i))
    out = tmp_path / "r.parquet"
    try:
        _scan(str(root), "-o", str(out))
    finally:  # bottom up, one level at a time: pytest's clean-up (shutil.rmtree) recurses
        levels = [Path(root, *["d"] * n) for n in range(1001)]
        for level in reversed(levels):
            for f in level.glob("*.png"):
                f.unlink()
            level.rmdir()
    rows = _rows(out)
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in placed)
    assert {r["status"] for r in rows} == {"ok"}


def test_undecodable_names_across_roots_are_one_row_each(tmp_path):
    """Non-UTF-8 names (and a name spelling one's escape) in three roots, one root given twice
    and one file named again in a list: each file exactly one row, each path distinct."""
    names = [b"a\xff.png", b"a\xfe.png", b"a\\xff.png", b"\xe9t\xe9.png", b"ok.png"]
    roots, files = [], {}
    for r in range(3):
        root = tmp_path / f"root{r}"
        root.mkdir()
        roots.append(str(root))
        for i, name in enumerate(names):
            path = os.path.join(os.fsencode(root), name)
            data = plain_png(10 * r + i)
            with open(path, "wb") as f:
                f.write(data)
            files[os.fsdecode(path)] = hashlib.sha256(data).hexdigest()
    listed = tmp_path / "list.txt"
    listed.write_bytes(os.path.join(os.fsencode(roots[1]), names[0]) + b"\n")
    out = tmp_path / "r.parquet"
    _scan(*roots, roots[0], "--from-list", str(listed), "-o", str(out))
    rows = _rows(out)
    assert len(rows) == len({r["path"] for r in rows}) == len(files) == 15
    assert {path_from_display(r["path"]): r["sha256"] for r in rows} == files


def _list_bytes(lines: list[str], bom: bool, crlf: bool) -> bytes:
    end = "\r\n" if crlf else "\n"
    return (b"\xef\xbb\xbf" if bom else b"") + "".join(line + end for line in lines).encode(
        "utf-8", "surrogateescape")


@pytest.mark.parametrize("bom", [False, True])
@pytest.mark.parametrize("crlf", [False, True])
@pytest.mark.parametrize("stdin", [False, True])
def test_list_files_with_a_byte_order_mark_or_crlf_lose_nothing(tmp_path, bom, crlf, stdin):
    files = []
    for i in range(3):
        p = tmp_path / f"p{i}.png"
        p.write_bytes(plain_png(i))
        files.append(str(p))
    data = _list_bytes(files, bom, crlf)
    out = tmp_path / "r.parquet"
    if stdin:
        _scan("--from-list", "-", "-o", str(out), stdin=data)
    else:
        (tmp_path / "list.txt").write_bytes(data)
        _scan("--from-list", str(tmp_path / "list.txt"), "-o", str(out))
    rows = _rows(out)
    assert sorted(r["path"] for r in rows) == files and {r["status"] for r in rows} == {"ok"}


# A list line is any name without a line feed; leading "#" or blank lines are not names.
NAMES = st.text(st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), min_size=1,
                max_size=30).filter(lambda s: s.strip() and not s.lstrip().startswith("#")
                                    and not s.endswith("\r") and not s.startswith("\ufeff"))
UNDECODABLE = st.binary(min_size=1, max_size=4).map(lambda b: os.fsdecode(b"x" + b + b".png"))


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(st.one_of(NAMES, UNDECODABLE), max_size=6), bom=st.booleans(), crlf=st.booleans(),
       noise=st.lists(st.sampled_from(["", "   ", "# a comment", "  #x"]), max_size=3))
def test_read_list_gives_back_exactly_the_names(tmp_path_factory, lines, bom, crlf, noise):
    """Any names (undecodable bytes included), any comments and blank lines, with or without a BOM,
    LF or CRLF, from a file or from standard input: exactly the names, in order."""
    lines = [n for n in lines if "\n" not in n and not n.endswith("\r")]
    want = [n for n in lines if n.strip() and not n.lstrip().startswith("#")]
    data = _list_bytes([*noise, *lines], bom, crlf)
    path = tmp_path_factory.mktemp("lists") / "l.txt"
    path.write_bytes(data)
    assert list(read_list(str(path))) == want
    saved = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(data), encoding="latin-1")  # the locale's is not used
    try:
        assert list(read_list("-")) == want
    finally:
        sys.stdin = saved
