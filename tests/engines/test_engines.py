"""Engines: each declares its own options, and a new engine needs no change in the scan driver."""


def test_engine_options_belong_to_their_engine(tmp_path, head_prefix):
    import pytest
    from click.testing import CliRunner

    from aiiscan.cli import main
    from aiiscan.engines import make_engine
    from aiiscan.errors import UsageError

    with pytest.raises(UsageError, match="--scorers only applies to --engine ray"):
        make_engine("local", scorers=2)
    with pytest.raises(UsageError, match="unknown engine"):
        make_engine("spark")
    res = CliRunner().invoke(main, ["scan", str(tmp_path), "-o", str(tmp_path / "r.parquet"), "--weights",
                                    str(head_prefix), "--gpus-per-worker", "1"])
    assert res.exit_code == 2 and "only applies to --engine ray" in res.stderr


def test_a_new_engine_needs_no_change_in_the_scan_driver(tmp_path, head_prefix, monkeypatch):
    """An engine is a class with ``open``; registering it is all a scan needs."""
    from dataclasses import dataclass
    from typing import ClassVar

    import numpy as np

    from aiiscan import engines
    from aiiscan.api import scan_options
    from aiiscan.card import model_id
    from aiiscan.decode.job import decode_job
    from aiiscan.models.headfile import load_head
    from aiiscan.reports.read import read_report
    from aiiscan.scanner.driver import run_scan

    from ..conftest import write_photos

    class ConstantScorer:  # decodes in this process and gives every variant the score 0.5
        def __init__(self, weights):
            _, self.card, self.prefix = load_head(weights)
            self.model_id = model_id(self.card, self.prefix)
            self.image_size, self.precision = int(self.card.backbone["image_size"]), "fp32"
            self.heads, self.passes = [self], 1

        def score_stream(self, jobs, batch_size=64, workers=None, timeout=None, skip=None):
            for job in jobs:
                res = decode_job(job)
                yield res, (np.full((len(job.variants), 1), 0.5) if res.status == "ok" else None)

    @dataclass
    class ToyEngine:
        name: ClassVar[str] = "toy"

        def open(self, weights, run):
            return ConstantScorer(weights)

        def describe(self):
            return {"name": self.name}

    monkeypatch.setitem(engines.ENGINES, "toy", ToyEngine)
    write_photos(tmp_path / "in", 3, seed=9)
    (tmp_path / "in" / "bad.png").write_bytes(b"")
    s = run_scan([str(tmp_path / "in")], tmp_path / "r.parquet",
                 *scan_options(weights=str(head_prefix), engine="toy", threshold=0.4))
    rows = read_report(s.report).to_pylist()
    assert s.exit_code == 3 and len(rows) == 4
    assert [r["score"] for r in rows if r["status"] == "ok"] == [0.5] * 3
    assert {r["label"] for r in rows if r["status"] == "ok"} == {"ai"}
