"""The HTML report: self-contained, escaped, strict CSP; opened in a real headless Chromium."""

import os
import re
import shutil
import subprocess
import sys
import zlib
from collections import Counter, defaultdict
from html import escape
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from aiiscan.cli import main
from aiiscan.reports.html import render
from aiiscan.reports.read import read_report, report_metadata
from aiiscan.reports.schema import SCHEMA

from ..conftest import write_photos

ROOT = Path(__file__).resolve().parents[2]
EVIL_NAME = "<img src=x onerror=alert(1)>.png"
EVIL_PROMPT = "a cat</script><script>alert(2)</script>\nSteps: 20, Sampler: Euler"


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + ctype + body + zlib.crc32(ctype + body).to_bytes(4, "big")


@pytest.fixture(scope="module")
def scanned(tmp_path_factory, head_prefix):
    """A mixed folder scanned with --html: good images, bad files, hostile names and prompts."""
    tmp = tmp_path_factory.mktemp("html")
    root = tmp / "case 17"
    good = write_photos(root / "inbox", 6, seed=3)
    write_photos(root / "archive", 3, seed=4, ext="jpg")
    shutil.copy(good[0], root / "inbox" / EVIL_NAME)
    data = Path(good[1]).read_bytes()
    iend = data.rindex(b"IEND") - 4
    (root / "inbox" / "prompted.png").write_bytes(
        data[:iend] + _chunk(b"tEXt", b"parameters\0" + EVIL_PROMPT.encode()) + data[iend:])
    (root / "inbox" / "=cmd|' calc'!A0.png").write_bytes(data)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (root / "empty.png").write_bytes(b"")
    (root / "notes.png").write_text("<b>not an image</b>")
    out, html = tmp / "r.parquet", tmp / "r.html"
    res = CliRunner().invoke(main, ["scan", str(root), "-o", str(out), "--weights", str(head_prefix),
                                    "--threshold", "0", "--html", str(html), "--workers", "2", "--quiet"])
    assert res.exit_code == 3, res.output  # some files errored
    return out, html


def test_page_is_self_contained_with_strict_csp(scanned):
    _, html = scanned
    page = html.read_text(encoding="utf-8")
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "default-src &#x27;none&#x27;" in csp and "img-src data:" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    # nothing that could fetch: no external src/href, no link/iframe/object elements
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert not re.search(r"<(link|iframe|object|embed|base)\b", page)
    assert page.count("<script>") == 1 and page.count("</script>") == 1
    assert 'id="histogram"' in page and 'id="threshold-line"' in page
    # every scored image (top 50 > 12), copies collapsed: the evil name and the '=cmd' name are
    # byte copies of two photos, so 10 cards stand for 12 files
    assert page.count('<div class="card">') == 10
    assert page.count("×2 copies (same sha256)") == 2


def test_hostile_names_and_prompts_render_as_text(scanned):
    _, html = scanned
    page = html.read_text(encoding="utf-8")
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in page
    assert "alert(2)" in page and "&lt;/script&gt;&lt;script&gt;alert(2)" in page
    assert "=cmd|&#x27; calc&#x27;!A0.png" in page  # shown as given, quotes escaped


def test_no_thumbnails_and_budget(scanned, tmp_path):
    out, _ = scanned
    assert "data:image" not in render(out, thumbnails=False)
    assert "thumbnail left out" in render(out, thumbnails=False)
    assert render(out, thumb_budget=0).count("data:image") == 0
    assert "thumbnail budget spent" in render(out, thumb_budget=0)
    limited = render(out, thumb_budget=20_000)
    assert sum(len(m) for m in re.findall(r'src="(data:image[^"]+)"', limited)) <= 20_000
    # a CSV report renders too (read back through the same reader)
    csv = tmp_path / "r.csv"
    rows = read_report(out)
    import pyarrow.csv as pacsv
    pacsv.write_csv(rows, csv)
    res = CliRunner().invoke(main, ["report", str(csv), "-o", str(tmp_path / "c.html")])
    assert res.exit_code == 0 and (tmp_path / "c.html").stat().st_size > 1000


def _chromium() -> str | None:
    for candidate in (os.environ.get("AIISCAN_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser",
                      shutil.which("chromium") or None):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def test_report_in_headless_chromium(scanned):
    playwright = pytest.importorskip("playwright.sync_api")
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium installed (Debian package chromium; .ci/run installs it)")
    _, html = scanned
    url = html.resolve().as_uri()
    problems, requests, dialogs = [], [], []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("request", lambda r: requests.append(r.url))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(url)
        page.wait_for_load_state("load")
        assert page.locator("#histogram rect.bar").count() == 40
        assert page.locator("#threshold-line").count() == 1
        assert page.locator("#cards .card").count() == 10  # 12 files, two of them copies
        assert page.locator("#cards .card img").count() == 10  # thumbnails decoded
        # the grid uses the width: at 1280 px, no column of cards is left empty on the right
        grid = page.locator("#cards").bounding_box()
        boxes = [c.bounding_box() for c in page.locator("#cards .card").all()]
        right = max(b["x"] + b["width"] for b in boxes)
        assert grid["x"] + grid["width"] - right < 20
        assert page.locator('input[data-table="reason-table"]').count() == 0
        svg, label = page.locator("#histogram").bounding_box(), page.locator("#histogram text.threshold")
        box = label.bounding_box()
        assert svg["x"] <= box["x"] and box["x"] + box["width"] <= svg["x"] + svg["width"]  # not clipped
        errors = page.locator("#error-table tbody tr")
        assert errors.count() == 3
        assert page.get_by_text(EVIL_NAME, exact=False).count() >= 1  # shown as text
        assert page.locator("img[src=x]").count() == 0
        # sorting (inline script allowed by the CSP hash) and filtering work
        paths = page.locator("#error-table tbody tr td:first-child")
        page.click("#error-table thead th:first-child")
        first = paths.all_inner_texts()
        page.click("#error-table thead th:first-child")
        assert paths.all_inner_texts() == list(reversed(first)) and first == sorted(first)
        page.fill('input[data-table="error-table"]', "empty")
        assert page.locator("#error-table tbody tr:not([hidden])").count() == 1
        shot = ROOT / "test-artifacts" / "report.png"
        shot.parent.mkdir(exist_ok=True)
        page.fill('input[data-table="error-table"]', "")
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert problems == [] and dialogs == []
    assert requests == [url]  # the page itself, nothing else
    assert shot.stat().st_size > 10_000


# -- the page's figures streamed (memory set by the batch, not by the report's length) ----------

def _reference(report, top):
    """The page's figures the way render() made them before it streamed: every row in memory."""
    rows = read_report(report).to_pylist()
    ok = [r for r in rows if r["status"] == "ok" and r.get("score") is not None]
    thr = report_metadata(report).get("threshold")
    if thr is None and ok and ok[0].get("threshold") is not None:
        thr = ok[0]["threshold"]
    per_dir = defaultdict(list)
    for r in rows:
        per_dir[os.path.dirname(r["path"]) or "."].append(r)
    dirs = []
    for d, rs in per_dir.items():
        scored = [r for r in rs if r["status"] == "ok" and r.get("score") is not None]
        flagged = sum(1 for r in scored if r.get("label") == "ai")
        rate = flagged / len(scored) if scored and thr is not None else None
        mean = float(np.mean([r["score"] for r in scored])) if scored else None
        dirs.append((d, len(rs), len(scored), flagged, rate, mean,
                     sum(1 for r in rs if r["status"] == "error")))
    dirs.sort(key=lambda t: (-(t[4] or 0), t[0]))
    errors = [(r["path"], r["status"], r.get("error")) for r in rows if r["status"] != "ok"]
    return {"rows": len(rows), "thr": thr, "scores": np.array([r["score"] for r in ok], dtype=np.float64),
            "status": Counter(r["status"] for r in rows),
            "labels": Counter(r.get("label") or "none" for r in rows),
            "hints": Counter(r.get("provenance_hint") or "none" for r in rows),
            "top": sorted(ok, key=lambda r: -r["score"])[:top], "dirs": dirs, "errors": errors}


DIRS = ["", "/", "//", "a", "a//", "a/b", "a/x", "Z", "z", "é", "<b>&\"'", "case 17/inbox", "=cmd",
        "s3://bucket", "s3://bucket/photos", "shard.tar::dir",
        *(f"d{i:03d}" for i in range(12))]


def _mixed_report(path, seed, dyadic, threshold):
    """Good, unscored, failed and skipped rows over awkward directory names (bare names, root
    files, doubled slashes, markup); dyadic scores add exactly in any order and tie often."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(500):
        d = DIRS[rng.integers(len(DIRS))]
        name = f"f{i:04d}.jpg"
        path_ = name if d == "" else d + name if d.endswith("/") else f"{d}/{name}"
        kind = rng.choice(["ok", "ok", "ok", "ok", "unscored", "error", "skipped"])
        row = {"path": path_, "status": "ok" if kind == "unscored" else kind,
               "provenance_hint": rng.choice([None, "", "camera", "generator-params", "<c2pa>"])}
        if kind == "ok":
            score = rng.integers(-16, 17) / 8 if dyadic else float(rng.normal())
            label = "ai" if threshold is not None and score >= threshold else "natural"
            row |= {"score": score, "threshold": threshold,
                    "label": rng.choice([label, label, label, None, ""])}
        elif kind != "unscored":
            row["error"] = f"<{kind}> reason {i}"
        rows.append(row)
    rows.append({"path": "a/b/", "status": "error", "error": "a trailing slash"})
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path)


def _between(page, start, end):
    i = page.index(start)
    return page[i:page.index(end, i) + len(end)]


@pytest.mark.parametrize(("dyadic", "threshold"), [(True, 0.25), (True, None), (False, 0.125)])
def test_streamed_page_has_the_in_memory_figures(tmp_path, monkeypatch, dyadic, threshold):
    from aiiscan.reports import html as htmlreport

    report = tmp_path / "mixed.parquet"
    _mixed_report(report, seed=7, dyadic=dyadic, threshold=threshold)
    monkeypatch.setattr(htmlreport, "BATCH_ROWS", 7)  # many batches: merges of top-N and tables
    monkeypatch.setattr(htmlreport, "MAX_TABLE_ROWS", 5)  # both tables capped
    top = 9
    ref = _reference(report, top)
    page = render(report, top=top, thumbnails=False)

    assert f"<p>{ref['rows']} rows in the report.</p>" in page
    for title, counter in (("status", ref["status"]), ("label", ref["labels"]),
                           ("provenance-hint", ref["hints"])):
        shown = re.findall(r"<tr><td>(.*?)</td><td class=num>(\d+)</td></tr>",
                           _between(page, f'id="count-{title}"', "</table>"))
        assert shown == [(escape(k), str(v)) for k, v in sorted(counter.items())]
    scores = ref["scores"]  # the oracle: np.histogram over every score at once
    lo, hi = htmlreport.histogram_range(float(scores.min()), float(scores.max()), ref["thr"])
    counts, edges = np.histogram(scores, bins=htmlreport.HIST_BINS, range=(lo, hi))
    histogram = htmlreport.histogram_svg_counts(counts, edges, lo, hi, ref["thr"])
    assert _between(page, '<svg id="histogram"', "</svg>") == histogram
    assert f"The {min(top, len(ref['scores']))} highest scores" in page
    assert re.findall(r'<div class="path">(.*?)</div>', page) == [escape(r["path"]) for r in ref["top"]]
    assert re.findall(r"score (\S+) · ", page) == [htmlreport._fmt(r["score"]) for r in ref["top"]]

    assert len(ref["errors"]) > 5 and len(ref["dirs"]) > 5
    assert f"Errors and skipped files ({len(ref['errors'])})" in page
    assert f"The first 5 of {len(ref['dirs'])} directories listed" in page
    errors = htmlreport._table("error-table", [("path", False), ("status", False), ("reason", False)],
                               ref["errors"][:5], "errors")
    assert errors in page
    headers = [("directory", False), ("files", True), ("scored", True), ("flagged ai", True),
               ("ai rate", True), ("mean score", True), ("errors", True)]
    dirs = htmlreport._table("dir-table", headers, ref["dirs"][:5], "directories")
    if dyadic:  # sums of eighths are exact in any order: the table is the same to the byte
        assert dirs in page
    else:  # a mean summed in another order may differ in its last bits, never in what is shown
        shown = _between(page, 'data-table="dir-table"', "</table>")
        dirs = dirs[dirs.index('data-table="dir-table"'):]
        assert re.sub(r'data-v="[^"]*"', "", shown) == re.sub(r'data-v="[^"]*"', "", dirs)
        means = [float(m) for m in re.findall(r'<td class="num" data-v="([^"]*)">[^<]*</td><td class="num" '
                                              r'data-v="[^"]*">[^<]*</td></tr>', shown)]
        assert means == pytest.approx([t[5] for t in ref["dirs"][:5]], rel=1e-12)
    # the names: os.path.dirname's, with '.' for a bare name and '/' or '//' for root files
    names = {t[0] for t in ref["dirs"]}
    assert {".", "/", "//", "a", "a/b", "s3://bucket", "s3://bucket/photos", "shard.tar::dir"} <= names


_PEAK = """
import sys
from aiiscan.reports.html import render
page = render(sys.argv[1])
assert "rows in the report" in page
print([int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")][0])
"""


def _synthetic_report(path, n, per_dir=400):
    """``n`` rows made with pyarrow compute, 250,000 at a time: scores, labels against 0.5, an error
    in every 97th row, ``per_dir`` files per directory (so 1,000,000 rows fill 2,500 of them), in
    row groups of 16,384 rows like aiiscan's own reports. (Row groups of 250,000 add about 50 MiB
    inside pyarrow's reader and its mimalloc pool, whoever reads them.)"""
    rng = np.random.default_rng(0)
    with pq.ParquetWriter(path, SCHEMA) as w:
        for start in range(0, n, 250_000):
            i = pa.array(np.arange(start, min(n, start + 250_000)))
            k = len(i)

            def digits(values, width):
                return pc.utf8_lpad(pc.cast(values, pa.string()), width=width, padding="0")

            bad = pc.equal(pc.subtract(i, pc.multiply(pc.divide(i, 97), 97)), 96)
            score = pc.if_else(bad, pa.scalar(None, pa.float64()), pa.array(rng.normal(size=k)))
            cols = {
                "path": pc.binary_join_element_wise("/archive/", digits(pc.divide(i, per_dir), 6), "/photo_",
                                                    digits(i, 9), ".jpg", ""),
                "status": pc.if_else(bad, "error", "ok"),
                "error": pc.if_else(bad, "UnidentifiedImageError", pa.scalar(None, pa.string())),
                "size": pa.array(rng.integers(50_000, 9_000_000, k)),
                "score": score,
                "label": pc.if_else(pc.greater_equal(score, 0.5), "ai", "natural"),
                "threshold": pc.if_else(bad, pa.scalar(None, pa.float64()), 0.5),
                "exif_make": pa.array(["Canon"] * k, pa.string()),
            }
            w.write_table(pa.table({f.name: cols.get(f.name, pa.nulls(k, f.type)) for f in SCHEMA},
                                   schema=SCHEMA), row_group_size=16384)  # as ReportWriter writes them


def test_page_memory_does_not_grow_with_the_report(tmp_path):
    """The whole process's peak RSS (VmHWM) for the page of 1,000,000 rows stays within 1.25x of
    the page of 10,000 (before streaming: about 3 GB against 0.2 GB)."""
    peaks = {}
    for n in (10_000, 1_000_000):
        report = tmp_path / f"r{n}.parquet"
        _synthetic_report(report, n)
        proc = subprocess.run([sys.executable, "-c", _PEAK, str(report)], capture_output=True, text=True,
                              timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.returncode == 0, proc.stderr[-2000:]
        peaks[n] = int(proc.stdout.split()[-1]) / 1024
    assert peaks[1_000_000] <= 1.25 * peaks[10_000], peaks
