"""A report is untrusted input (issue #24): whatever a stranger or a tampered file holds, `aiiscan
report` and `scan --incremental` exit 0 or 2 with one line, never 4 ("a bug"), never a traceback.

Random mutations of a valid report: columns dropped, added (a stray ``score_2``, a duplicate),
retyped (nested, binary, wrong scalar types), values made NaN/inf or huge, the metadata corrupted
(not JSON, not an object, known keys of odd types), in each format."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiiscan.cli import main

from ..conftest import write_photos

NAN = float("nan")
KINDS = ("int", "str", "float", "bool", "list", "struct", "binary", "null", "nonfinite", "huge", "ts",
         "dict", "map")
META = (b"not json {", b"[1, 2]", b"null", b'"text"', b"\xff\xfe\x00", b"NaN", b"",
        json.dumps({"threshold": "high", "heads": [1, "x"], "head_thresholds": ["a", {}], "evidence": 7,
                    "roots": [1, None], "threshold_block": {"validation": 5}, "backbone": [],
                    "started": 5, "combine": 3}).encode(),
        b'{"threshold": NaN, "heads": [{"model_id": 1}], "threshold_block": []}',
        json.dumps({"threshold": 10 ** 400}).encode())


def column(kind: str, n: int) -> pa.Array:
    return {
        "int": lambda: pa.array([2 ** 62 - i for i in range(n)], pa.int64()),
        "str": lambda: pa.array(["x\n\x00,\"y\u202e" for _ in range(n)]),
        "float": lambda: pa.array([1.5 + i for i in range(n)]),
        "bool": lambda: pa.array([i % 2 == 0 for i in range(n)]),
        "list": lambda: pa.array([[1, 2]] * n),
        "struct": lambda: pa.array([{"a": 1, "b": "c"}] * n),
        "binary": lambda: pa.array([b"\xff\x00PAR1\x1b[31m"] * n, pa.binary()),
        "null": lambda: pa.nulls(n),
        "nonfinite": lambda: pa.array([(NAN, math.inf, -math.inf)[i % 3] for i in range(n)]),
        "huge": lambda: pa.array(["h" * 1_000_000] + ["x"] * (n - 1)),
        "ts": lambda: pa.array([0] * n, pa.timestamp("s", tz="Europe/Paris")),
        "dict": lambda: pa.array(["ok"] * n).dictionary_encode(),
        "map": lambda: pa.array([[("k", 1)]] * n, pa.map_(pa.string(), pa.int64())),
    }[kind]()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A valid report of three photos (an evidence-only scan: no head, no model), and the photos."""
    root = tmp_path_factory.mktemp("untrusted")
    write_photos(root / "photos", 3, seed=5)
    out = root / "base.parquet"
    res = CliRunner().invoke(main, ["scan", str(root / "photos"), "-o", str(out), "-q", "--workers", "0"])
    assert res.exit_code == 0, res.output
    table = pq.read_table(out)
    return table, table.schema.metadata[b"aiiscan"], root / "photos"


NAMES = st.sampled_from(["path", "status", "score", "label", "threshold", "model_id", "mtime", "size",
                         "width", "has_exif", "sha256", "gen_prompt", "score_2", "label_2", "verdict",
                         "threshold_2", "model_id_2", "extra"])
OP = st.one_of(st.tuples(st.just("drop"), NAMES),
               st.tuples(st.just("add"), NAMES, st.sampled_from(KINDS)),
               st.tuples(st.just("retype"), NAMES, st.sampled_from(KINDS)),
               st.tuples(st.just("meta"), st.sampled_from(META)))


def mutate(table: pa.Table, meta: bytes, ops) -> tuple[list[str], list[pa.Array], bytes]:
    names, cols = list(table.column_names), [c.combine_chunks() for c in table.columns]
    for op in ops:
        if op[0] == "drop" and op[1] in names:
            i = names.index(op[1])
            del names[i], cols[i]
        elif op[0] == "add":  # an existing name: a duplicate column
            names.append(op[1])
            cols.append(column(op[2], len(table)))
        elif op[0] == "retype" and op[1] in names:
            cols[names.index(op[1])] = column(op[2], len(table))
        elif op[0] == "meta":
            meta = op[1]
    return names, cols, meta


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, (list, dict, tuple)):
        return json.dumps(value, default=str)
    return str(value)


def write(out: Path, fmt: str, names: list[str], cols: list[pa.Array], meta: bytes) -> Path:
    if fmt == "parquet":
        fields = [pa.field(n, c.type) for n, c in zip(names, cols, strict=True)]
        schema = pa.schema(fields, metadata={b"aiiscan": meta})
        pq.write_table(pa.Table.from_arrays(cols, schema=schema), out)
        return out
    rows = list(zip(*(c.to_pylist() for c in cols), strict=True)) if cols else []
    with open(out, "w", encoding="utf-8", newline="") as f:
        if fmt == "csv":
            w = csv.writer(f)
            w.writerow(names)
            w.writerows([_text(v) for v in row] for row in rows)
        else:  # a JSON object per row written by hand: duplicate keys stay duplicates
            for row in rows:
                f.write("{" + ", ".join(f"{json.dumps(n)}: {json.dumps(v, default=_text)}"
                                        for n, v in zip(names, row, strict=True)) + "}\n")
    Path(f"{out}.meta.json").write_bytes(meta)
    return out


def check(res) -> None:
    assert res.exit_code in (0, 2), res.output
    assert "Traceback" not in res.output and "internal error" not in res.output
    if res.exit_code == 2:
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("aiiscan: error: "), res.stderr
        assert len(lines[0]) < 1000


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=st.lists(OP, min_size=1, max_size=3), fmt=st.sampled_from(["parquet", "csv", "jsonl"]))
def test_any_mutated_report_exits_0_or_2(base, tmp_path_factory, ops, fmt):
    table, meta, photos = base
    tmp = tmp_path_factory.mktemp("m")
    report = write(tmp / f"old.{fmt}", fmt, *mutate(table, meta, ops))
    page = ["report", str(report), "-o", str(tmp / "r.html"), "-q", "--no-thumbnails"]
    check(CliRunner().invoke(main, page))
    out = tmp / "new.parquet"
    res = CliRunner().invoke(main, ["scan", str(photos), "-o", str(out), "--incremental", str(report), "-q",
                                    "--workers", "0"])
    check(res)
    assert not Path(f"{out}.parts").exists()  # a refusal leaves nothing behind
    assert out.exists() == (res.exit_code == 0)


FOUND = [  # the adversary's foreign and tampered reports (issue #24)
    [("retype", "score", "list")], [("retype", "path", "struct")], [("add", "score_2", "float")],
    [("meta", META[0])], [("meta", META[1])], [("meta", META[7])], [("meta", META[8])],
    [("retype", "score", "nonfinite")], [("retype", "size", "str")], [("retype", "width", "binary")],
    [("drop", "status")], [("retype", "gen_prompt", "huge")], [("add", "path", "str")],
    [("add", "score", "float")], [("retype", "mtime", "map")], [("retype", "mtime", "bool")],
]


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
@pytest.mark.parametrize("ops", FOUND, ids=lambda ops: "-".join(str(x)[:12] for x in ops[0]))
def test_the_reported_foreign_reports_exit_0_or_2(base, tmp_path, ops, fmt):
    table, meta, photos = base
    report = write(tmp_path / f"old.{fmt}", fmt, *mutate(table, meta, ops))
    check(CliRunner().invoke(main, ["report", str(report), "-o", str(tmp_path / "r.html"), "-q"]))
    out = tmp_path / "new.parquet"
    check(CliRunner().invoke(main, ["scan", str(photos), "-o", str(out), "--incremental", str(report), "-q",
                                    "--workers", "0"]))
    assert not Path(f"{out}.parts").exists()
