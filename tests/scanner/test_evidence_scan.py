"""Evidence that needs no model, through the scan: with no head installed a scan still serves
(every file its row and its evidence, no score), `aiiscan evidence` shows the same columns, and
`--incremental` makes evidence again when the settings that made it change."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from aiiscan.cli import main
from aiiscan.reports.read import read_report, report_metadata

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))
from demo_photos import make  # noqa: E402


@pytest.fixture()
def demo(tmp_path) -> Path:
    make(tmp_path / "photos", photos=3)
    return tmp_path / "photos"


def _rows(report: Path) -> dict[str, dict]:
    return {Path(r["path"]).name: r for r in read_report(report).to_pylist()}


def test_a_scan_with_no_head_installed_collects_evidence_only(demo, tmp_path):
    out = tmp_path / "report.parquet"
    res = CliRunner().invoke(main, ["scan", str(demo), "-o", str(out), "--workers", "0"])
    assert res.exit_code == 0, res.output
    assert "no pixel detector ran" in res.stderr and "aiiscan train" in res.stderr
    assert re.search(r"labels: +none \(no head", res.stdout)
    assert "generator metadata (generated) 3" in res.stdout
    rows = _rows(out)
    assert len(rows) == 7 and {r["status"] for r in rows.values()} == {"ok"}
    assert all(r["score"] is None and r["label"] is None and r["model_id"] is None for r in rows.values())
    assert rows["generated_a1111.png"]["generator_rule"] == "a1111-parameters"
    assert rows["generated_comfyui.png"]["generator"] == "ComfyUI"
    assert rows["declared_ai.png"]["iptc_digital_source_type"] == "trainedAlgorithmicMedia"
    assert rows["camera.jpg"]["generator"] is None and rows["camera.jpg"]["exif_make"] == "ExampleCam"
    meta = report_metadata(out)
    assert meta["model_id"] is None and meta["evidence"]["version"] >= 1
    page = CliRunner().invoke(main, ["report", str(out), "-o", str(tmp_path / "r.html"), "-q"])
    assert page.exit_code == 0, page.output
    html = (tmp_path / "r.html").read_text()
    assert '<table class="count" id="count-evidence">' in html
    assert "<td>generator metadata: generated</td><td class=num>3</td>" in html


def test_a_card_shows_the_evidence_of_its_file():
    from aiiscan.reports.html import card_evidence

    bits = card_evidence({"watermark": "sdxl", "watermark_bit_errors": 2, "c2pa_trust": "trusted",
                          "c2pa_ai": "generated", "c2pa_ai_in": "active", "generator": "ComfyUI",
                          "generator_kind": "generated", "generator_rule": "comfyui-prompt"})
    assert bits[:3] == ["watermark: sdxl (2 bit errors)", "C2PA: trusted, AI generated (active)",
                        "generator: ComfyUI (generated; rule comfyui-prompt)"]
    assert card_evidence({"c2pa_trust": "none"}) == []


def test_an_evidence_only_scan_loads_no_model(demo, tmp_path):
    code = ("import sys; from aiiscan import api\n"
            f"api.scan([{str(demo)!r}], {str(tmp_path / 'r.csv')!r}, workers=0, quiet=True)\n"
            "print('torch' in sys.modules)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIISCAN_")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr


def test_the_evidence_command_shows_what_the_scan_records(demo, tmp_path):
    files = [str(demo / n) for n in ("generated_a1111.png", "camera.jpg")]
    table = CliRunner().invoke(main, ["evidence", *files, "-q"])
    assert table.exit_code == 0, table.output
    assert "a1111-parameters" in table.stdout and "ExampleCam" in table.stdout
    assert "none found (its absence means nothing)" in table.stdout
    shown = json.loads(CliRunner().invoke(main, ["evidence", *files, "--json", "-q"]).stdout)
    report = tmp_path / "r.parquet"
    res = CliRunner().invoke(main, ["scan", str(demo), "-o", str(report), "--workers", "0", "-q"])
    assert res.exit_code == 0, res.output
    scanned = _rows(report)
    for row in shown:
        mine = scanned[Path(row["path"]).name]
        for column in ("generator", "generator_rule", "c2pa_trust", "watermark", "exif_make", "sha256"):
            assert row[column] == mine[column], column
    bad = CliRunner().invoke(main, ["evidence", str(tmp_path / "none.png")])
    assert bad.exit_code == 2 and "no such file" in bad.stderr  # as scan says it


def test_incremental_makes_evidence_again_when_the_rules_change(demo, tmp_path):
    first = tmp_path / "mon.parquet"
    res = CliRunner().invoke(main, ["scan", str(demo), "-o", str(first), "--workers", "0", "-q"])
    assert res.exit_code == 0, res.output
    same = tmp_path / "tue.parquet"
    res = CliRunner().invoke(main, ["scan", str(demo), "-o", str(same), "--incremental", str(first),
                                    "--workers", "0", "-q"])
    assert res.exit_code == 0 and report_metadata(same)["reused_rows"] == 7  # same settings: reused
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"version": 1, "rules": [
        {"id": "examplecam", "field": "exif:Make", "match": "equals", "value": "ExampleCam",
         "generator": "ExampleGen", "kind": "edited"}]}))
    wed = tmp_path / "wed.parquet"
    res = CliRunner().invoke(main, ["scan", str(demo), "-o", str(wed), "--incremental", str(same),
                                    "--rules", str(rules), "--workers", "0", "-q"])
    assert res.exit_code == 0, res.output
    rows = _rows(wed)
    assert (rows["camera.jpg"]["generator"], rows["camera.jpg"]["generator_kind"]) == ("ExampleGen", "edited")
    assert report_metadata(wed)["evidence"]["user_rules"] is True and report_metadata(wed)["reused_rows"] == 0


def test_reports_from_before_the_evidence_columns_still_feed_incremental(demo, tmp_path, head_prefix):
    mon = tmp_path / "mon.parquet"
    args = ["--weights", str(head_prefix), "--workers", "0", "-q"]
    assert CliRunner().invoke(main, ["scan", str(demo), "-o", str(mon), *args]).exit_code == 0
    table = pq.read_table(mon)
    meta = json.loads(table.schema.metadata[b"aiiscan"])
    meta.pop("evidence")
    new = ["c2pa_trust", "c2pa_failures", "c2pa_ai", "c2pa_ai_in", "generator", "generator_kind",
           "generator_rule", "watermark", "watermark_bit_errors"]
    old = table.drop_columns(new).replace_schema_metadata({b"aiiscan": json.dumps(meta).encode()})
    pq.write_table(old, mon)
    tue = tmp_path / "tue.parquet"
    res = CliRunner().invoke(main, ["scan", str(demo), "-o", str(tue), "--incremental", str(mon), *args])
    assert res.exit_code == 0, res.output
    rows = _rows(tue)
    assert rows["generated_comfyui.png"]["generator"] == "ComfyUI"  # the evidence is made again
    assert {r["reused"] for r in rows.values()} == {"unchanged"}  # and the scores reused by content
    assert report_metadata(tue)["reused_rows"] == 7 and re.search(r"scored: +0 files", res.stdout)


def test_c2pa_trust_through_a_scan(tmp_path):
    """Trusted with the CA the tests made as an anchor (option or environment), not without."""
    c2pa_tests = pytest.importorskip("tests.decode.test_c2pa_trust")
    pki = c2pa_tests.pki.__wrapped__()
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "g.jpg").write_bytes(c2pa_tests._sign(pki, [c2pa_tests._action(
        "c2pa.created", "trainedAlgorithmicMedia", "TestGen 2")]))
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki["ca"])
    states = {}
    for name, extra in (("plain", []), ("anchors", ["--c2pa-trust", str(ca)])):
        out = tmp_path / f"{name}.parquet"
        res = CliRunner().invoke(main, ["scan", str(folder), "-o", str(out), "--workers", "0", "-q",
                                        *extra])
        assert res.exit_code == 0, res.output
        states[name] = _rows(out)["g.jpg"]
    assert states["plain"]["c2pa_trust"] == "valid-untrusted"
    assert states["anchors"]["c2pa_trust"] == "trusted" and states["anchors"]["c2pa_ai"] == "generated"
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    res = CliRunner().invoke(main, ["scan", str(folder), "-o", str(tmp_path / "x.parquet"), "--c2pa-trust",
                                    str(bad)])
    assert res.exit_code == 2 and "not a PEM file" in res.stderr and not (tmp_path / "x.parquet").exists()
