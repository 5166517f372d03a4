"""The page for triage: copies collapsed by content, errors counted by reason, every head's
histogram and ranking, the verdict's ranking, a grid that uses the width, a label kept inside its
histogram. Reports are written as Parquet files and the page is parsed back."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aiiscan.reports import html as htmlreport
from aiiscan.reports.html import CSS, histogram_svg_counts, render
from aiiscan.reports.schema import SCHEMA, report_schema
from aiiscan.reports.triage import (
    COPY_PATHS,
    MAX_REASONS,
    OTHER_REASON,
    Ranking,
    ReasonCounts,
    normalise_reason,
)


class _Page(HTMLParser):
    """Elements by id, the text of each card of each card grid, and each table's rows."""

    def __init__(self, page: str):
        super().__init__()
        self.ids: dict[str, dict] = {}
        self.grids: dict[str, list[str]] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self._grid = self._table = None
        self._depth = 0
        self._card: list[str] | None = None
        self._cell: list[str] | None = None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids[attrs["id"]] = {"tag": tag, **attrs}
        if tag == "div" and attrs.get("class") == "cards":
            self._grid, self._depth = attrs["id"], 0
            self.grids[self._grid] = []
        elif self._grid and tag == "div":
            self._depth += 1
            if attrs.get("class") == "card":
                self._card = []
        if tag == "table" and "id" in attrs:
            self._table = attrs["id"]
            self.tables[self._table] = []
        elif self._table and tag == "tr":
            self.tables[self._table].append([])
        elif self._table and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if self._grid and tag == "div":
            if self._depth == 0:
                self._grid = None
            else:
                self._depth -= 1
                if self._depth == 0 and self._card is not None:
                    self.grids[self._grid].append(" | ".join(self._card))
                    self._card = None
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        if tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._card is not None and data.strip():
            self._card.append(data.strip())
        if self._cell is not None:
            self._cell.append(data)


def _write(path, rows, heads=1):
    schema = report_schema(heads)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def _ok(path, score, sha, **extra):
    return {"path": path, "status": "ok", "score": score, "label": "ai" if score >= 0.5 else "natural",
            "threshold": 0.5, "sha256": sha, **extra}


def test_copies_of_one_photo_share_one_card(tmp_path, monkeypatch):
    """38 copies of the top photo (a junk folder of duplicates) are one card saying so, with a few
    of their paths; the other cards are the next distinct photos, in score order."""
    monkeypatch.setattr(htmlreport, "BATCH_ROWS", 7)  # copies spread over many batches
    rows = [_ok(f"dups/copy{i:02d}.jpg", 3.0, "a" * 64) for i in range(38)]
    rows += [_ok(f"photos/p{i}.jpg", 2.0 - i / 10, f"{i:064x}") for i in range(8)]
    rows += [_ok("photos/p0-again.jpg", 2.0, f"{0:064x}")]  # a copy in another folder, same score
    rows += [_ok(f"nohash/{i}.jpg", 0.1, None) for i in range(3)]  # no sha256: each its own card
    report = _write(tmp_path / "r.parquet", sorted(rows, key=lambda r: r["path"]))
    page = _Page(render(report, top=5, thumbnails=False))
    cards = page.grids["cards"]
    assert len(cards) == 5
    assert "×38 copies (same sha256)" in cards[0] and "dups/copy00.jpg" in cards[0]
    listed = re.search(r"also: (.*)", cards[0]).group(1)
    assert listed == "dups/copy01.jpg · dups/copy02.jpg · dups/copy03.jpg …"  # 34 more not listed
    assert COPY_PATHS == 3
    assert "×2 copies" in cards[1] and "photos/p0.jpg" in cards[1] and "photos/p0-again.jpg" in cards[1]
    assert [re.search(r"p\d", c).group(0) for c in cards[2:]] == ["p1", "p2", "p3"]
    assert "copies" not in "".join(cards[2:])
    heading = render(report, top=5, thumbnails=False)
    assert "The 5 highest scores" in heading and "these 5 cards stand for 43 files" in heading
    assert "×" not in "".join(_Page(render(report, top=60, thumbnails=False)).grids["cards"][-3:])


def test_the_ranking_stays_bounded_by_top():
    """However many rows and copies pass through, the ranking holds ``top`` rows and at most
    ``COPY_PATHS + 1`` paths for each of them."""
    ranking = Ranking(4, [("score", "descending")])
    for start in range(0, 20_000, 1000):
        n = 1000
        ranking.add(pa.table({
            "path": [f"f{start + i}.jpg" for i in range(n)],
            "score": [float((start + i) % 50) for i in range(n)],
            "sha256": [f"{(start + i) % 50:064x}" for i in range(n)],
            "_row": pa.array(range(start, start + n), pa.int64())}))
        assert len(ranking.best) <= 4 and len(ranking.paths) <= 4
        assert all(len(v) <= COPY_PATHS + 1 for v in ranking.paths.values())
    rows = ranking.rows()
    assert [r["score"] for r in rows] == [49.0, 48.0, 47.0, 46.0]
    assert [r["copies"] for r in rows] == [400] * 4  # 20,000 rows over 50 contents
    assert rows[0]["path"] == "f49.jpg" and rows[0]["other_paths"] == ["f99.jpg", "f149.jpg", "f199.jpg"]


@pytest.mark.parametrize(("text", "reason"), [
    ("no such file: /archive/2026/a.jpg", "no such file: <path>"),
    ("cannot identify image file '/x y/z.png'", "cannot identify image file '…'"),
    ("file of 123456 bytes exceeds the size cap 1000", "file of N bytes exceeds the size cap N"),
    ("store throttled (HTTP 503) at s3://bucket/k.jpg", "store throttled (HTTP N) at <path>"),
    (None, "(no reason given)"),
])
def test_reasons_lose_what_differs_between_files(text, reason):
    assert normalise_reason(text) == reason


def test_errors_are_counted_by_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(htmlreport, "BATCH_ROWS", 5)
    rows = [_ok("a/good.jpg", 0.2, "0" * 64)]
    rows += [{"path": f"a/t{i}.jpg", "status": "error", "error": f"image file is truncated ({i} bytes not "
              f"processed) in a/t{i}.jpg"} for i in range(7)]
    rows += [{"path": f"b/{i}.txt.jpg", "status": "error", "error": "cannot identify image file"}
             for i in range(3)]
    rows += [{"path": "c/link.jpg", "status": "skipped", "error": "symbolic link not followed"}]
    page = _Page(render(_write(tmp_path / "r.parquet", rows), thumbnails=False))
    assert page.tables["reason-table"] == [
        ["reason", "status", "files"],
        ["image file is truncated (N bytes not processed) in <path>", "error", "7"],
        ["cannot identify image file", "error", "3"],
        ["symbolic link not followed", "skipped", "1"]]
    assert "reason-table" not in {v.get("data-table") for v in page.ids.values()}


def test_reasons_are_bounded():
    counts = ReasonCounts()
    texts = pa.chunked_array([[f"unique text {chr(0x4e00 + i)}" for i in range(MAX_REASONS + 50)]])
    counts.add(pa.chunked_array([["error"] * len(texts)]), texts)
    assert len(counts.counts) == MAX_REASONS + 1
    assert counts.counts["error", OTHER_REASON] == 50


def test_a_clean_scan_shows_no_error_table_and_no_filter_box(tmp_path):
    page_text = render(_write(tmp_path / "r.parquet", [_ok("a.jpg", 0.3, "0" * 64)]), thumbnails=False)
    page = _Page(page_text)
    assert "no-errors" in page.ids and "error-table" not in page.ids
    assert 'data-table="error-table"' not in page_text and "Errors and skipped files (0)" in page_text


def test_every_head_has_its_histogram_and_ranking_and_the_verdict_its_own(tmp_path):
    rows = []
    for i in range(6):
        s1, s2 = i / 5, 1 - i / 5
        verdict = "ai" if s1 >= 0.5 or s2 >= 0.8 else "natural"
        rows.append(_ok(f"p{i}.jpg", s1, f"{i:064x}", model_id="flow@1", score_2=s2,
                        label_2="ai" if s2 >= 0.8 else "natural", threshold_2=0.8, model_id_2="mpft@2",
                        verdict=verdict))
    rows.append({"path": "c2pa.jpg", "status": "ok", "sha256": "f" * 64, "verdict": "ai"})  # evidence only
    page_text = render(_write(tmp_path / "r.parquet", rows, heads=2), thumbnails=False)
    page = _Page(page_text)
    assert {"histogram", "histogram-2", "threshold-line", "threshold-line-2"} <= set(page.ids)
    assert page.ids["threshold-line-2"]["x1"] != page.ids["threshold-line"]["x1"]  # 0.8, not 0.5
    head1 = [re.search(r"p\d", c).group(0) for c in page.grids["cards"]]
    head2 = [re.search(r"p\d", c).group(0) for c in page.grids["cards-2"]]
    assert head1 == ["p5", "p4", "p3", "p2", "p1", "p0"] and head2 == list(reversed(head1))
    assert "| head 2: score 1 · ai | head 1: score 0 · natural | verdict: ai |" in page.grids["cards-2"][0]
    verdict = page.grids["cards-verdict"]
    assert [re.search(r"p\d|c2pa", c).group(0) for c in verdict] == ["p5", "p4", "p3", "p1", "p0", "c2pa"]
    assert "The verdict says ai: 6 files" in page_text
    assert "The 6 highest scores of head 2</h2>" in page_text  # a report that names no head model


def test_a_single_head_report_has_one_histogram_and_no_verdict_ranking(tmp_path):
    page = _Page(render(_write(tmp_path / "r.parquet", [_ok("a.jpg", 0.3, "0" * 64)]), thumbnails=False))
    assert "histogram" in page.ids and "histogram-2" not in page.ids
    assert set(page.grids) == {"cards"}


def test_the_threshold_label_stays_inside_the_histogram():
    counts, edges = [1] * 4, [0.0, 0.25, 0.5, 0.75, 1.0]
    for threshold in (0.0, 0.5, 0.9, 1.0):
        svg = histogram_svg_counts(np.array(counts), np.array(edges), 0.0, 1.0, threshold)
        label = re.search(r'<text class="threshold" x="([\d.]+)"( text-anchor="end")? ', svg)
        x, end = float(label.group(1)), bool(label.group(2))
        width = 760
        assert (x - htmlreport.THRESHOLD_LABEL_PX if end else x + htmlreport.THRESHOLD_LABEL_PX) <= width
        assert x >= 0 and end == (threshold >= 0.9)


def test_the_card_grid_fills_the_width():
    assert re.search(r"\.cards\{display:grid;grid-template-columns:repeat\(auto-fill,", CSS)
    assert SCHEMA.get_field_index("sha256") >= 0  # what the collapse keys on


def test_in_chromium_the_label_at_the_right_edge_is_whole_and_cards_fill_the_row(tmp_path):
    """A threshold above every score puts its line at the histogram's right edge: its label is
    drawn inside the SVG; seven cards at 1280 px leave no empty column on the right."""
    playwright = pytest.importorskip("playwright.sync_api")
    from .test_html import _chromium

    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium installed (Debian package chromium; .ci/run installs it)")
    rows = [{**_ok(f"p{i}.jpg", i / 10, f"{i:064x}"), "threshold": 2.5} for i in range(7)]
    page_file = tmp_path / "r.html"
    page_file.write_text(render(_write(tmp_path / "r.parquet", rows), thumbnails=False), encoding="utf-8")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(page_file.resolve().as_uri())
        svg = page.locator("#histogram").bounding_box()
        label = page.locator("#histogram text.threshold").bounding_box()
        line = page.locator("#threshold-line").bounding_box()
        grid = page.locator("#cards").bounding_box()
        cards = [c.bounding_box() for c in page.locator("#cards .card").all()]
        browser.close()
    assert line["x"] > svg["x"] + svg["width"] - 40  # the line is at the right edge
    assert svg["x"] <= label["x"] and label["x"] + label["width"] <= svg["x"] + svg["width"]
    assert grid["x"] + grid["width"] - max(c["x"] + c["width"] for c in cards) < 20
    assert len({round(c["y"]) for c in cards}) == 2  # two rows of cards: the first one is full


def test_an_evidence_only_page_says_nothing_was_scored_and_ranks_the_verdicts(tmp_path):
    """No head ran: no "0 highest scores" heading over an empty grid; the files that evidence
    alone calls ai are the cards."""
    rows = [{"path": "g/a1111.png", "status": "ok", "sha256": "a" * 64, "verdict": "ai",
             "verdict_reasons": "generator-metadata"},
            {"path": "g/camera.jpg", "status": "ok", "sha256": "b" * 64}]
    page = render(_write(tmp_path / "e.parquet", rows), thumbnails=False)
    assert "No file was scored" in page and "The 0 highest scores" not in page
    assert 'id="cards-verdict"' in page and page.count('<div class="card">') == 1
    assert "g/a1111.png" in page.split('id="cards-verdict"')[1]
