"""A report is untrusted input to the page: every string it shows is escaped visibly
(``textsafe.for_page``), nothing it names is opened unless the user allows it, never over
http(s), and no special file (FIFO, socket, device, folder) blocks or feeds a thumbnail."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import unicodedata
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiiscan.cli import main
from aiiscan.reports import html as page_html
from aiiscan.reports.html import ThumbnailSources, render
from aiiscan.reports.schema import META_KEY, SCHEMA
from aiiscan.textsafe import for_page

from ..conftest import write_photos
from .test_html import _chromium

EVIL = "invoice\u202egpj.exe.jpg"
UNSAFE = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def _report(path: Path, rows: list[dict], meta: dict | None = None) -> Path:
    """A parquet report of ``rows`` (scored unless they say otherwise), as a stranger could write."""
    full = [{"status": "ok", "score": 1.0 - i / 100, "label": "ai", "threshold": 0.0} | r
            for i, r in enumerate(rows)]
    schema = SCHEMA.with_metadata({META_KEY: json.dumps(meta or {}).encode()})
    pq.write_table(pa.Table.from_pylist(full, schema=schema), path)
    return path


def _bad_chars(text: str) -> list[str]:
    return [f"U+{ord(c):04X}" for c in text if c != "\n" and (
        unicodedata.category(c) in UNSAFE or (ord(c) & 0xFFFE) == 0xFFFE or 0xFDD0 <= ord(c) <= 0xFDEF)]


# -- 3. strings shown visibly -------------------------------------------------------------------

def test_chromium_shows_bidi_controls_and_newlines_as_visible_escapes(tmp_path):
    """The adversary's case: ``invoice<U+202E>gpj.exe.jpg`` read "invoiceexe.jpg" and a newline
    rendered as a space. Checked in the rendered text of a real browser."""
    playwright = pytest.importorskip("playwright.sync_api")
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium installed")
    rows = [{"path": f"in/{EVIL}", "gen_prompt": "a cat\u200b\u2066 on\nmat", "exif_make": "Can\u202aon"},
            {"path": "two\nlines.jpg"},
            {"path": "bad\u2028.jpg", "status": "error", "score": None, "label": None,
             "error": "reason\u202e with\nbreak\x1b[2J"}]
    meta = {"model_id": "head\u202e@1234", "command": "aiiscan\nscan"}
    report = _report(tmp_path / "r.parquet", rows, meta)
    res = CliRunner().invoke(main, ["report", str(report), "-o", str(tmp_path / "p.html"), "-q"])
    assert res.exit_code == 0, res.output
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto((tmp_path / "p.html").resolve().as_uri())
        paths = page.locator("#cards .card .path").all_inner_texts()
        body = page.locator("body").inner_text()
        evidence = page.locator("#cards .card ul").first.inner_text()
        errors = page.locator("#error-table tbody tr").first.inner_text()
        meta = page.locator("#meta").inner_text()
        browser.close()
    assert paths == ["in/invoice\\u202egpj.exe.jpg", "two\\x0alines.jpg"]
    assert "cat\\u200b\\u2066 on\\x0amat" in evidence and "Can\\u202aon" in evidence
    assert "reason\\u202e with\\x0abreak\\x1b[2J" in errors and "bad\\u2028.jpg" in errors
    assert "head\\u202e@1234" in meta and "aiiscan\\x0ascan" in meta
    assert not _bad_chars(body.replace("\t", "")), _bad_chars(body)


@given(st.lists(st.integers(0, sys.maxunicode), max_size=30).map(lambda cs: "".join(map(chr, cs))))
@settings(max_examples=300, deadline=None)
def test_any_string_is_shown_escaped_and_valid(text):
    """Any code point, lone surrogates included: what the page holds is valid UTF-8 without one
    invisible, reordering or breaking character, and reads back as ``for_page`` spells it."""
    from html import unescape

    shown = page_html._e(text)
    shown.encode("utf-8")  # strict: no surrogate left
    assert not _bad_chars(shown) and "\n" not in shown
    assert "<" not in shown and ">" not in shown and '"' not in shown
    assert unescape(shown) == for_page(text)
    if text and not _bad_chars(text) and "\n" not in text:
        assert for_page(text) == text  # plain text is left as it is


@given(st.lists(st.text(st.characters(codec="utf-8"), min_size=1, max_size=20), min_size=3, max_size=3))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_page_writer_escapes_every_field(tmp_path_factory, texts):
    """Through the whole writer: a path, an error reason, a prompt and a model id of any text."""
    folder = tmp_path_factory.mktemp("p")
    path, reason, prompt = texts
    report = _report(folder / "r.parquet", [{"path": path, "gen_prompt": prompt},
                                            {"path": path + "x", "status": "error", "error": reason,
                                             "score": None}], {"model_id": reason})
    page = render(report, thumbnails=False)
    assert not _bad_chars(page)
    for text in (path, reason, prompt[:160]):
        assert escape(for_page(text), quote=True) in page


# -- 4. nothing the report names is fetched unless allowed; never http(s) -----------------------

class _Recorder(BaseHTTPRequestHandler):
    seen: list[str] = []

    def _any(self):
        self.seen.append(f"{self.command} {self.path}")
        self.send_response(200)
        self.end_headers()

    do_GET = do_HEAD = do_POST = _any

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture()
def loopback():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", _Recorder.seen
    server.shutdown()


def test_report_never_requests_a_url_it_names(tmp_path, loopback, monkeypatch):
    """The adversary's case: an ``http://127.0.0.1/...`` path got a HEAD and a GET, and s3://
    paths were fetched with the viewer's credentials."""
    from aiiscan.inputs import store

    url, seen = loopback
    fetched = []
    monkeypatch.setattr(store, "read_object", lambda u, *a, **k: fetched.append(u) or pytest.fail(u))
    good = write_photos(tmp_path / "photos", 1, seed=2)[0]
    report = _report(tmp_path / "r.parquet", [
        {"path": f"{url}/admin.png"}, {"path": f"{url.replace('http', 'https')}/x.png"},
        {"path": "s3://private-bucket/secret.png"}, {"path": f"{url}/shard.tar::a.png"},
        {"path": "/etc/passwd"}, {"path": good}])
    for extra in ([], ["--base", str(tmp_path / "photos")], ["--thumbnails-from-roots"],
                  ["--base", str(tmp_path / "photos"), "--thumbnails-from-store"]):
        out = tmp_path / f"p{len(extra)}.html"
        if "--thumbnails-from-store" in extra:  # allowed now: stores yes, http never
            monkeypatch.setattr(store, "read_object", lambda u, *a, **k: fetched.append(u) or
                                (_ for _ in ()).throw(OSError("no credentials")))
        res = CliRunner().invoke(main, ["report", str(report), "-o", str(out), "-q", *extra])
        assert res.exit_code == 0, res.output
        text = out.read_text()
        assert text.count('<img alt="thumbnail"') == (1 if "--base" in extra else 0), extra
        assert "never requests http(s)" in text
    assert seen == [], seen  # zero requests, whatever the options
    assert fetched == ["s3://private-bucket/secret.png"]  # only with --thumbnails-from-store


_paths = st.one_of(
    st.builds("{}://{}/{}".format,
              st.sampled_from(["http", "https", "HTTP", "s3", "gs", "az", "file", "ftp"]),
              st.sampled_from(["127.0.0.1", "169.254.169.254", "bucket", "[::1]:80", "localhost"]),
              st.text(st.characters(codec="ascii", exclude_characters="\x00"), max_size=12)),
    st.builds("/{}/{}".format, st.sampled_from(["base", "base/../etc", "etc", "base/sub", "basement"]),
              st.text(st.characters(codec="ascii", exclude_characters="\x00/"), min_size=1, max_size=12)),
)


@given(_paths, st.booleans())
@settings(max_examples=200, deadline=None)
def test_only_allowed_sources_are_opened(path, store):
    """Any name a report may hold: a local file is opened only under a base, a store object only
    with ``store``, an http(s) URL never."""
    from aiiscan import inputs

    sources = ThumbnailSources(bases=("/base",), store=store)
    loc = inputs.parse(path)
    why = sources.refusal(loc)
    while loc.source == "archive":
        loc = loc.container
    if loc.source == "store":
        web = path.split(":", 1)[0].lower() in ("http", "https")
        assert (why is None) == (store and not web), (path, why)
    else:
        real = os.path.realpath(loc.raw)
        assert (why is None) == (real == "/base" or real.startswith("/base/")), (path, why)


# -- 5. special files never block a page ---------------------------------------------------------

def test_special_files_in_place_of_scored_files_never_block(tmp_path):
    """The adversary's case: a scored file (and a shard) replaced by a FIFO hung `aiiscan report`
    for ever. Now a FIFO, a socket, a device and a folder each give a card without a thumbnail."""
    base = tmp_path / "base"
    good = write_photos(base, 1, seed=4)[0]
    os.mkfifo(base / "fifo.png")
    os.mkfifo(base / "shard.tar")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(base / "sock.png"))
    (base / "folder.png").mkdir()
    (base / "zero.png").symlink_to("/dev/zero")
    names = ["fifo.png", "shard.tar::a.png", "sock.png", "folder.png"]
    report = _report(tmp_path / "r.csv.parquet", [{"path": str(base / n)} for n in names]
                     + [{"path": str(base / "zero.png")}, {"path": "/dev/zero"}, {"path": good}])
    run = subprocess.run([sys.executable, "-m", "aiiscan", "report", str(report), "-o",
                          str(tmp_path / "p.html"), "--base", str(base), "--base", "/dev"],
                         capture_output=True, text=True, timeout=120)
    sock.close()
    assert run.returncode == 0, run.stderr
    page = (tmp_path / "p.html").read_text()
    assert page.count('<img alt="thumbnail"') == 1
    import re

    reasons = re.findall(r'class="noimg">no thumbnail: ([^<]*)<', page)
    assert len(reasons) == 6, reasons
    assert sum("not a regular file" in r for r in reasons) == 4 and "is a directory" in reasons, reasons
    assert "No such device or address" in reasons  # the socket: refused by open(2) itself
