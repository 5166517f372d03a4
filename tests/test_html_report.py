"""The HTML report: self-contained, escaped, strict CSP; opened in a real headless Chromium."""

import os
import re
import shutil
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from aiiscan.cli import main
from aiiscan.htmlreport import render
from aiiscan.report import read_report

from .conftest import write_photos

ROOT = Path(__file__).resolve().parents[1]
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
    assert page.count('<div class="card">') == 12  # every scored image (top 50 > 12)


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
        assert page.locator("#cards .card").count() == 12
        assert page.locator("#cards .card img").count() == 12  # thumbnails decoded
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
