"""Issue 24, identity: a report's rows are made by one run. ``--resume`` continues an interrupted
scan only with the identity recorded in its parts folder (RUN.json): another head, threshold,
precision or row option is refused with exit 2 and nothing mixed; the same options complete
every row. ``--incremental`` reuses rows only of the same heads (model id and card) and row
options. Random-init tiny heads: plumbing only."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiiscan.cli import main
from aiiscan.errors import ReportError
from aiiscan.reports.parts import RUN_FILE, ReportWriter
from aiiscan.reports.read import read_report, report_metadata
from aiiscan.scanner.identity import differences, reusable

from ..conftest import write_photos

N = 7


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("identity")
    write_photos(root, N, seed=61, size=(80, 60))
    return root


def _run(*args: str):
    return CliRunner().invoke(main, ["scan", *args, "--workers", "0", "-q", "--precision", "fp32"])


@pytest.fixture()
def interrupted(folder, head_prefix, tmp_path, monkeypatch):
    """An interrupted scan with head A at threshold 0.5: parts on disk, no report."""
    out = tmp_path / "r.parquet"
    finish = ReportWriter.finish

    def stop(self, *a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(ReportWriter, "finish", stop)
    res = _run(str(folder), "-o", str(out), "--weights", str(head_prefix), "--threshold", "0.5",
               "--part-rows", "2")
    assert res.exit_code == 130, res.output
    monkeypatch.setattr(ReportWriter, "finish", finish)
    parts = out.with_name(out.name + ".parts")
    assert json.loads((parts / RUN_FILE).read_text())["heads"][0]["threshold"] == 0.5
    return out, parts


CHANGES = [  # another head, threshold, row option, number of heads; what the message names
    (["--weights", "{head2}", "--threshold", "0.5"], "head 1"),
    (["--weights", "{head}", "--threshold", "0.25"], "threshold 0.25"),
    (["--weights", "{head}", "--threshold", "0.5", "--exact-decode"], "exact_decode=true"),
    (["--weights", "{head}", "--threshold", "0.5", "--no-prompts"], "prompts=false"),
    (["--weights", "{head}", "--weights", "{head2}", "--threshold", "0.5"], "used 1 head, this one 2"),
]


def test_resume_with_other_heads_or_options_is_refused(interrupted, folder, head_prefix, head2_prefix):
    out, parts = interrupted
    before = {p.name: p.read_bytes() for p in parts.glob("part-*.parquet")}
    for change, named in CHANGES:
        args = [a.format(head=head_prefix, head2=head2_prefix) for a in change]
        res = _run(str(folder), "-o", str(out), "--resume", *args)
        assert res.exit_code == 2, res.output
        assert "cannot be continued" in res.stderr and "delete" in res.stderr
        assert named in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and not out.exists()
        assert {p.name: p.read_bytes() for p in parts.glob("part-*.parquet")} == before  # nothing mixed
    done = _run(str(folder), "-o", str(out), "--resume", "--weights", str(head_prefix), "--threshold", "0.5")
    assert done.exit_code == 0, done.output  # the same options: every row, each of this head
    rows = read_report(out).to_pylist()
    assert len(rows) == N and {r["threshold"] for r in rows} == {0.5}
    assert {r["model_id"] for r in rows} == {report_metadata(out)["model_id"]}
    assert report_metadata(out)["resumed_rows"] >= 2


def test_a_resumed_scan_counts_as_a_clean_one(interrupted, folder, head_prefix, tmp_path):
    """The summary and the metadata of a resumed scan count its resumed rows whole (labels,
    verdicts and their reasons, evidence), as a clean scan of the same tree does."""
    out, _ = interrupted
    same = ["--weights", str(head_prefix), "--threshold", "0.5"]
    assert _run(str(folder), "-o", str(out), "--resume", *same).exit_code == 0
    clean = tmp_path / "clean.parquet"
    assert _run(str(folder), "-o", str(clean), *same).exit_code == 0
    resumed, fresh = report_metadata(out), report_metadata(clean)
    assert resumed["resumed_rows"] == N and sum(resumed["verdicts"].values()) == N
    for key in ("counts", "labels", "verdicts", "verdict_reasons", "provenance_hints"):
        assert resumed[key] == fresh[key], key


def test_a_parts_folder_without_a_readable_identity_is_refused(interrupted, folder, head_prefix, tmp_path):
    out, parts = interrupted
    run = parts / RUN_FILE
    recorded = run.read_bytes()
    (tmp_path / "elsewhere.json").write_bytes(recorded)
    for content in (None, b"", b"{not json", b"[1, 2]", b"{}", b"{" * 100_000, b" " * (70 * 1024) + recorded,
                    "link", "fifo"):
        run.unlink(missing_ok=True)
        if content == "link":  # the right identity, behind a link: not followed
            run.symlink_to(tmp_path / "elsewhere.json")
        elif content == "fifo":  # never waited on
            os.mkfifo(run)
        elif content is not None:
            run.write_bytes(content)
        res = _run(str(folder), "-o", str(out), "--resume", "--weights", str(head_prefix),
                   "--threshold", "0.5")
        assert res.exit_code == 2, (content, res.output)
        assert "cannot be continued" in res.stderr and "delete" in res.stderr
    shutil.rmtree(parts)  # as the message says: a fresh scan then runs
    assert _run(str(folder), "-o", str(out), "--weights", str(head_prefix)).exit_code == 0


def test_incremental_reuses_only_the_same_heads_and_row_options(folder, head_prefix, head2_prefix, tmp_path):
    old = tmp_path / "old.parquet"
    assert _run(str(folder), "-o", str(old), "--weights", str(head_prefix)).exit_code == 0

    def again(name: str, *args: str):
        out = tmp_path / f"{name}.parquet"
        res = _run(str(folder), "-o", str(out), "--incremental", str(old), *args)
        assert res.exit_code == 0, res.output
        return {r["reused"] for r in read_report(out).to_pylist()}, report_metadata(out)

    reused, _ = again("same", "--weights", str(head_prefix), "--threshold", "0.1")  # relabelled, reused
    assert reused == {"unchanged"}
    reused, _ = again("gps", "--weights", str(head_prefix), "--keep-gps")  # another row option: the
    assert reused == {"unchanged"}  # scores are reused by content, each row made again
    reused, meta = again("exact", "--weights", str(head_prefix), "--exact-decode")  # other pixels
    assert reused == {None} and "exact_decode" in meta["incremental_refused"]
    reused, meta = again("other", "--weights", str(head2_prefix))
    assert reused == {None} and meta["incremental_other_heads_rows"] == N
    # the same model id (same tensors, same name) on a card that scores otherwise: another head
    edited = tmp_path / "edited" / head_prefix.name
    edited.parent.mkdir()
    card = json.loads(Path(f"{head_prefix}.json").read_text()) | {"note": "edited"}
    shutil.copy(f"{head_prefix}.safetensors", f"{edited}.safetensors")
    Path(f"{edited}.json").write_text(json.dumps(card))
    reused, meta = again("card", "--weights", str(edited))
    assert reused == {None} and "card differs" in meta["incremental_refused"]


def test_a_report_without_a_run_identity_gives_nothing(folder, head_prefix, tmp_path):
    import pyarrow.parquet as pq

    old = tmp_path / "old.parquet"
    assert _run(str(folder), "-o", str(old), "--weights", str(head_prefix)).exit_code == 0
    table = pq.read_table(old)
    meta = json.loads(table.schema.metadata[b"aiiscan"])
    meta.pop("run_identity")
    pq.write_table(table.replace_schema_metadata({b"aiiscan": json.dumps(meta).encode()}), old)
    out = tmp_path / "new.parquet"
    res = _run(str(folder), "-o", str(out), "--incremental", str(old), "--weights", str(head_prefix))
    assert res.exit_code == 0 and "records no run identity" in res.stdout
    assert {r["reused"] for r in read_report(out).to_pylist()} == {None}


JSON = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                  max_size=3),
                    max_leaves=12)
IDENTITY = {"version": 1, "heads": [{"model_id": "a@1", "model_card_sha256": "c", "scores_sha256": "s",
                                     "threshold": 0.5}], "combine": None, "precision": "fp32 (torch)",
            "options": {"exact_decode": False, "prompts": True}, "evidence": {"version": 1}}


def _mutations() -> st.SearchStrategy:
    """RUN.json as a hostile or damaged folder may hold it: any JSON, the identity with any field
    replaced by any JSON value, or any bytes."""
    field = st.sampled_from(["version", "heads", "combine", "precision", "options", "evidence"])
    replaced = st.tuples(field, JSON).map(lambda kv: json.dumps(IDENTITY | {kv[0]: kv[1]}).encode())
    return st.one_of(JSON.map(lambda v: json.dumps(v).encode()), replaced, st.binary(max_size=64))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(content=_mutations())
def test_any_run_file_resumes_only_the_same_identity(tmp_path_factory, content):
    out = tmp_path_factory.mktemp("run") / "r.parquet"
    ReportWriter(out, identity=IDENTITY, explain=differences).close()
    (out.with_name(out.name + ".parts") / RUN_FILE).write_bytes(content)
    try:
        recorded = json.loads(content)
    except ValueError:
        recorded = None
    same = recorded == IDENTITY
    allowed = reusable(recorded, IDENTITY)  # the same record in a report's metadata (--incremental)
    assert allowed.scores >= allowed.rows and (allowed.rows or not same)
    try:
        ReportWriter(out, resume=True, identity=IDENTITY, explain=differences).close()
        assert same
    except ReportError as exc:
        assert not same and "delete" in str(exc) and "\n" not in str(exc)
