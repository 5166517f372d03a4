"""The report a person reads: one self-contained HTML file from a scan report.

Inline CSS, inline SVG and one small inline script; no network fetch of any kind. A strict
Content-Security-Policy admits exactly that style block and that script (by hash) and data:
images. Everything that comes from the scanned files (paths, errors, metadata, prompts) is
escaped: the material is hostile until proven otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from .. import inputs
from ..decode.preprocess import open_image, to_rgb
from ..decode.provenance import camera_name
from ..errors import ReportError, UsageError
from ..files import atomic_write_bytes, now_iso
from ..inputs import archive
from ..inputs.location import Location, Refused, SourceError
from ..inputs.store import LISTABLE, put_file
from ..inputs.store import scheme as store_scheme
from ..options import DEFAULT_MAX_PIXELS
from ..textsafe import display_path, for_page, path_from_display
from ..version import __version__
from .formats import PAGE_SUFFIXES
from .read import iter_report, local_report, report_metadata
from .schema import heads_in
from .sort import duckdb_connect, duckdb_errors
from .triage import Ranking, ReasonCounts

THUMB_PX = 160
THUMB_BUDGET = 4 * 1024 * 1024  # bytes of thumbnails in one page, all together
THUMB_MAX_FILE = 64 * 1024 * 1024  # don't decode larger originals just for a thumbnail
THUMB_SECONDS = 60.0  # time for all thumbnails of a page; later cards go without
MAX_TABLE_ROWS = 2000  # error and directory rows listed; the counts are always complete
BATCH_ROWS = 8192  # report rows per batch while the page's figures are gathered
HIST_BINS = 40

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%;margin:.5em 0}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top;word-break:break-all}
th{background:#f3f3f3;cursor:pointer;user-select:none}
th.num,td.num{text-align:right;word-break:normal}
.caution{background:#fff4d6;border:1px solid #e0b000;padding:.6em 1em}
.note{color:#555;font-size:.9em}
.counts{display:flex;gap:2em;flex-wrap:wrap;align-items:flex-start}
.counts table{width:auto;min-width:14em}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:12px}
.card{border:1px solid #ccc;border-radius:4px;padding:6px;font-size:12px;min-width:0}
.card img{display:block;max-width:100%;max-height:160px;margin:auto}
.card .copies{font-weight:bold;color:#7a4d00}
.card .also{color:#555;word-break:break-all}
.card .noimg{height:60px;background:#eee;color:#666;padding:4px}
.card .path{word-break:break-all}
.score{font-weight:bold}
.verdict.uncertain{color:#8a5a00}.verdict .reasons{color:#555;font-size:90%}
.ai{color:#b00020}
input.filter{width:40%;margin:.3em 0;padding:3px}
svg text{font-size:11px;fill:#333}
""".strip()

JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, col) {
    th.addEventListener('click', function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var asc = th.getAttribute('data-dir') !== 'asc';
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('data-dir'); });
      th.setAttribute('data-dir', asc ? 'asc' : 'desc');
      var num = th.classList.contains('num');
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute('data-v') || a.cells[col].textContent;
        var y = b.cells[col].getAttribute('data-v') || b.cells[col].textContent;
        var c = num ? (parseFloat(x) || 0) - (parseFloat(y) || 0) : x.localeCompare(y);
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
document.querySelectorAll('input.filter').forEach(function (input) {
  var table = document.getElementById(input.getAttribute('data-table'));
  input.addEventListener('input', function () {
    var q = input.value.toLowerCase();
    Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
      r.hidden = q !== '' && r.textContent.toLowerCase().indexOf(q) < 0;
    });
  });
});
""".strip()


def _csp() -> str:
    def digest(text: str) -> str:
        return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()

    return ("default-src 'none'; img-src data:; "
            f"style-src 'sha256-{digest(CSS)}'; script-src 'sha256-{digest(JS)}'; "
            "base-uri 'none'; form-action 'none'")


def _e(value) -> str:
    """Every string the page shows from a report (paths, reasons, metadata, model ids, prompts):
    invisible and reordering characters as visible escapes (``textsafe.for_page``: a name with
    U+202E reads ``invoice\\u202egpj.exe.jpg``, not ``invoiceexe.jpg``; a newline ``\\x0a``, not a
    space), then HTML-escaped."""
    return escape(for_page("" if value is None else str(value)), quote=True)


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


@dataclass(frozen=True)
class ThumbnailSources:
    """What a page may open to make thumbnails. A report is untrusted input: its ``path`` column
    names whatever its author chose (``/dev/zero``, ``http://127.0.0.1/admin``, a bucket the
    viewer's credentials reach), so nothing is opened unless allowed here: local files whose real
    path lies under one of ``bases``, and objects in s3/gs/az stores only with ``store``. http(s)
    URLs are never fetched. Archive members follow their archive."""

    bases: tuple[str, ...] = ()  # real paths of folders (or single files)
    store: bool = False

    @classmethod
    def of(cls, bases=(), roots=(), store: bool = False) -> ThumbnailSources:
        """From ``--base`` folders and the roots whose local files are trusted (``--thumbnails-
        from-roots``, or a scan's own roots for ``scan --html``)."""
        local = [path_from_display(r) if isinstance(r, str) else str(r) for r in roots]
        local = [r for r in local if inputs.parse(r).source == "local"]
        return cls(tuple(os.path.realpath(b) for b in (*bases, *local)), store)

    def locate(self, shown: str) -> Location:
        """The object a report's ``path`` stands for (``inputs.from_display``: a store key holding
        ``::`` is that object). A relative local name (``../photos/a.jpg``, or an archive at one)
        is taken under each base folder in turn, the first that holds it, never under this
        process's folder: the page is made from where the user said."""
        loc = inputs.from_display(shown)
        if _outer(loc).source != "local" or os.path.isabs(_outer(loc).raw):
            return loc
        tried = [inputs.from_display(os.path.join(display_path(b), shown))
                 for b in self.bases if os.path.isdir(b)]
        found = [c for c in tried if os.path.lexists(_outer(c).raw)]
        return next((c for c in found if self.refusal(c) is None), (found or tried or [loc])[0])

    def refusal(self, loc: Location) -> str | None:
        """Why ``loc`` may not be opened for a thumbnail (None: it may)."""
        if isinstance(loc, archive.ArchiveMember):
            return self.refusal(loc.container)
        if loc.source == "store":
            if store_scheme(loc.raw) not in LISTABLE:
                return "not fetched: the page never requests http(s) URLs"
            return None if self.store else "objects in a store need --thumbnails-from-store"
        if not self.bases:
            return "local files need --base DIR (or --thumbnails-from-roots)"
        real = os.path.realpath(loc.raw)
        if any(real == b or real.startswith(b.rstrip(os.sep) + os.sep) for b in self.bases):
            return None
        return OUTSIDE


def _outer(loc: Location) -> Location:
    """The file an archive member is in (a member of a member: the outermost); else ``loc``."""
    while isinstance(loc, archive.ArchiveMember):
        loc = loc.container
    return loc


NO_SOURCES = ThumbnailSources()
OUTSIDE = "outside the --base folders"
NOT_FOUND = "no thumbnail: file not found"


def thumbnail(path: str, max_pixels: int = DEFAULT_MAX_PIXELS, sources: ThumbnailSources | None = None
              ) -> tuple[str | None, str | None]:
    """(data URI, None) or (None, why not): decoded with the scan's own guards, from a source
    ``sources`` allows (None: any but http(s), for callers that made the report themselves)."""
    # the report's form of the name (escaped bytes, backslashes), read as the scan read it: a
    # local file (opened non-blocking, regular files only: a FIFO or a device never blocks it),
    # an object in a store, an archive member; at most THUMB_MAX_FILE bytes
    loc = sources.locate(path) if sources is not None else inputs.from_display(path)
    why = (sources or ThumbnailSources(bases=(os.sep,), store=True)).refusal(loc)
    if why is not None:
        return None, f"no thumbnail: {why}"
    if loc.source == "local":  # the real path checked above is the one opened
        loc = inputs.parse(os.path.realpath(loc.raw))
    try:
        try:
            data = inputs.read(loc, THUMB_MAX_FILE)[0]
        except (Refused, SourceError) as exc:  # a special file, a shard that is one, a size cap
            return None, f"no thumbnail: {exc}"
        img = open_image(data, max_pixels)
        img = to_rgb(img)
        img.thumbnail((THUMB_PX, THUMB_PX), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=80)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode(), None
    except FileNotFoundError:  # moved or removed since the scan, or a relative name under another base
        return None, NOT_FOUND
    except OSError as exc:  # a socket (ENXIO), no permission
        return None, f"no thumbnail: {exc.strerror or 'the file cannot be read'}"
    except Exception:  # changed or hostile since the scan: the reason in words, never a class name
        return None, "no thumbnail: not readable as an image now (changed since the scan?)"


def missed_thumbnails(missed: Counter, sources: ThumbnailSources | None, meta: dict) -> list[str]:
    """What ``aiiscan report`` says about the thumbnails it could not make: how many, and why,
    in words. The folder the scan ran in (the report's ``cwd``) is only suggested, never
    followed: a report is untrusted input."""
    bases = ", ".join(sources.bases) if sources is not None and sources.bases else "the current folder"
    ran = meta.get("cwd") if isinstance(meta.get("cwd"), str) else None
    where = (f": run from the scan's folder {ran}, or pass --base {ran}" if ran and
             (sources is None or ran not in sources.bases) else ": moved or removed since the scan?")
    out = []
    for why, n in sorted(missed.items(), key=lambda kv: -kv[1]):
        files = f"{n} file{'' if n == 1 else 's'}"
        if why == NOT_FOUND:
            out.append(f"warning: no thumbnail for {files} not found under {bases}{where}")
        elif why.endswith(OUTSIDE):
            ran_in = f" (the scan ran in {ran})" if ran else ""
            out.append(f"warning: no thumbnail for {files} outside the --base folders ({bases}): pass "
                       f"--base DIR for the folder that holds them{ran_in}")
        else:
            out.append(f"warning: no thumbnail for {files}: {why.removeprefix('no thumbnail: ')}")
    return out


def nice_ticks(lo: float, hi: float, target: int = 6) -> list[float]:
    """Round axis values (steps of 1, 2 or 5 x 10^k) inside [lo, hi], about ``target`` of them."""
    raw = (hi - lo) / target
    magnitude = 10 ** np.floor(np.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = np.ceil(lo / step) * step
    ticks = np.arange(first, hi + step * 1e-9, step)
    return [float(round(t / step) * step) for t in ticks]


HIST_LIMIT = 1e300  # no 40 finite bins span +-1.8e308: a foreign report's wilder scores sit at the edge


def histogram_range(lo: float, hi: float, threshold: float | None) -> tuple[float, float]:
    """The histogram's x range: the scores' own, widened to show the threshold, never empty, and
    wide enough for finite bins (scores of 4.6e18 that differ by 1 have none)."""
    if threshold is not None and math.isfinite(threshold):
        lo, hi = min(lo, threshold), max(hi, threshold)
    lo, hi = max(lo, -HIST_LIMIT), min(hi, HIST_LIMIT)
    pad = max(abs(lo), abs(hi)) * 1e-6
    if hi - lo <= pad:
        pad = max(pad, 0.5)
        lo, hi = lo - pad, hi + pad
    return lo, hi


THRESHOLD_LABEL_PX = 120  # room the label takes at the SVG's font size ("threshold -1.234e+05")


def histogram_svg_counts(counts: np.ndarray | None, edges: np.ndarray | None, lo: float, hi: float,
                         threshold: float | None, suffix: str = "") -> str:
    """The score histogram from its bin counts and edges over ``[lo, hi]`` (None: no scores);
    ``suffix`` tells its ids apart from another head's (``histogram-2``, ``threshold-line-2``)."""
    width, height, pad = 760, 220, 36
    if counts is None or edges is None:
        return f'<svg id="histogram{suffix}" width="760" height="40" role="img"><text x="4" y="20">' \
               'no scored images</text></svg>'
    bins = len(counts)
    top = max(int(counts.max()), 1)
    bw = (width - 2 * pad) / bins

    def x(v: float) -> float:
        return pad + (v - lo) / (hi - lo) * (width - 2 * pad)

    parts = [f'<svg id="histogram{suffix}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="score histogram">']
    for i, c in enumerate(counts):
        h = (height - 2 * pad) * c / top
        colour = "#c0392b" if threshold is not None and edges[i] >= threshold else "#4a78b5"
        parts.append(f'<rect class="bar" x="{pad + i * bw:.1f}" y="{height - pad - h:.1f}" '
                     f'width="{max(bw - 1, 1):.1f}" height="{h:.1f}" fill="{colour}">'
                     f'<title>{edges[i]:.4g} to {edges[i + 1]:.4g}: {c}</title></rect>')
    parts.append(f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
                 'stroke="#333"/>')
    for t in nice_ticks(lo, hi):
        parts.append(f'<line class="tick" x1="{x(t):.1f}" y1="{height - pad}" x2="{x(t):.1f}" '
                     f'y2="{height - pad + 4}" stroke="#333"/>'
                     f'<text class="tick" x="{x(t):.1f}" y="{height - pad + 16}" text-anchor="middle">'
                     f'{t:.4g}</text>')
    parts.append(f'<text x="{pad}" y="{pad - 12}">{top} images</text>')
    parts.append(f'<text x="{width / 2}" y="{height - 4}" text-anchor="middle">'
                 'score (higher = less like a natural photo)</text>')
    if threshold is not None:
        tx = x(threshold)
        parts.append(f'<line id="threshold-line{suffix}" x1="{tx:.1f}" y1="{pad - 6}" x2="{tx:.1f}" '
                     f'y2="{height - pad}" stroke="#000" stroke-dasharray="4 3"/>')
        # right of the line, or left of it where the label would run past the SVG's edge
        side = (f'x="{tx + 4:.1f}"' if tx + 4 + THRESHOLD_LABEL_PX <= width
                else f'x="{tx - 4:.1f}" text-anchor="end"')
        parts.append(f'<text class="threshold" {side} y="{pad}">threshold {threshold:.4g}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(table_id: str, headers: Sequence[tuple[str, bool]], rows: Sequence[Sequence], caption: str,
           filterable: bool = True) -> str:
    out = []
    if filterable:
        out.append(f'<input class="filter" type="search" placeholder="filter…" data-table="{table_id}" '
                   f'aria-label="filter {escape(caption)}">')
    out.append(f'<table id="{table_id}" class="sortable"><thead><tr>')
    out += [f'<th{" class=num" if num else ""}>{escape(h)}</th>' for h, num in headers]
    out.append("</tr></thead><tbody>")
    for row in rows:
        cells = []
        for (_, num), value in zip(headers, row, strict=True):
            if num:
                cells.append(f'<td class="num" data-v="{_e(value)}">{_e(_fmt(value))}</td>')
            else:
                cells.append(f"<td>{_e(value)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


# Evidence that needs no model, as the page counts it: (column, what its values are).
EVIDENCE_COLUMNS = (("watermark", "watermark"), ("c2pa_trust", "C2PA"), ("c2pa_ai", "C2PA declares AI"),
                    ("generator_kind", "generator metadata"))


def card_evidence(row: dict) -> list[str]:
    bits = []
    if row.get("watermark"):
        bits.append(f"watermark: {row['watermark']} ({row.get('watermark_bit_errors')} bit errors)")
    if row.get("c2pa_trust") not in (None, "", "none"):
        bits.append(f"C2PA: {row['c2pa_trust']}"
                    + (f", AI {row['c2pa_ai']} ({row.get('c2pa_ai_in')})" if row.get("c2pa_ai") else ""))
    if row.get("generator"):
        bits.append(f"generator: {row['generator']} ({row.get('generator_kind')}; "
                    f"rule {row.get('generator_rule')})")
    if row.get("provenance_hint"):
        bits.append(f"hint: {row['provenance_hint']}")
    if row.get("gen_tool"):
        bits.append(f"generator params: {row['gen_tool']}")
    if row.get("iptc_digital_source_type"):
        bits.append(f"IPTC source: {row['iptc_digital_source_type']}")
    if row.get("c2pa_present"):
        bits.append("C2PA manifest" + (" declaring AI" if row.get("c2pa_declares_ai") else ""))
    camera = camera_name(row.get("exif_make"), row.get("exif_model"))
    if camera:
        bits.append(f"camera: {camera}")
    if row.get("xmp_creator_tool"):
        bits.append(f"creator tool: {row['xmp_creator_tool']}")
    if row.get("gen_prompt"):
        bits.append(f"prompt: {row['gen_prompt'][:160]}")
    return bits


def card_verdict(row: dict) -> str:
    """A card's verdict and its reasons (docs/verdicts.md)."""
    verdict = row.get("verdict") or "none"
    kind = verdict if verdict in ("ai", "natural", "uncertain") else "none"  # a class name: ours only
    reasons = (row.get("verdict_reasons") or "").replace(";", " · ")
    return (f'<div class="verdict {kind}">verdict: {_e(verdict)}'
            + (f' <span class="reasons">({_e(reasons)})</span>' if reasons else "") + "</div>")


def uncertain_section(figures: PageFigures) -> list[str]:
    """The files whose verdict is uncertain, with why: conflicting evidence, heads that disagree,
    or a label that flips under ``--stability``."""
    out = [f'<h2 id="uncertain">Uncertain files ({figures.uncertain_count})</h2>']
    if figures.uncertain_count > MAX_TABLE_ROWS:
        out.append(f'<p class="note">First {MAX_TABLE_ROWS} listed; all are in the report file.</p>')
    rows = [(p, s, (r or "").replace(";", " · ")) for p, s, r in figures.uncertain]
    out.append(_table("uncertain-table", [("path", False), ("score", True), ("reasons", False)], rows,
                      "uncertain files"))
    return out


def _dirname(paths) -> pa.Array:
    """``os.path.dirname`` of every path, vectorised, with ``'.'`` for a bare name: the head up to
    the last ``/``, its trailing slashes dropped unless it is nothing but slashes (``'/'``)."""
    head = pc.replace_substring_regex(paths, pattern="[^/]*$", replacement="")
    trimmed = pc.utf8_rtrim(head, characters="/")
    return pc.if_else(pc.equal(trimmed, ""), pc.if_else(pc.equal(head, ""), ".", head), trimmed)


def _or_none(col):
    """``value or "none"`` for a string column."""
    return pc.if_else(pc.or_kleene(pc.is_null(col), pc.equal(col, "")), "none", col)


def _counts(col) -> Counter:
    return Counter({v["values"]: v["counts"] for v in pc.value_counts(col).to_pylist()})


class ScoreFile:
    """One head's finite scores, 8 bytes each in a temporary file, and their range: binned on a
    second read once the range is known, so the histogram is exactly ``np.histogram`` over all."""

    def __init__(self, path: Path):
        self._file = open(path, "w+b")  # noqa: SIM115 (closed by close())
        self.count = 0
        self.lo = self.hi = None
        self.threshold: float | None = None  # the first scored row's, when finite
        self._seen = False

    def close(self) -> None:
        self._file.close()

    def add(self, values: np.ndarray, threshold: float | None) -> None:
        if not len(values):
            return
        if not self._seen:
            self._seen = True
            self.threshold = threshold if threshold is None or math.isfinite(threshold) else None
        self._file.write(values.astype(np.float64).tobytes())
        lo, hi = float(values.min()), float(values.max())
        self.lo = lo if self.lo is None else min(self.lo, lo)
        self.hi = hi if self.hi is None else max(self.hi, hi)
        self.count += len(values)

    def histogram(self, threshold: float | None, bins: int = HIST_BINS):
        """(counts, edges, lo, hi) over every score, or Nones when there are none."""
        if not self.count:
            return None, None, 0.0, 1.0
        lo, hi = histogram_range(self.lo, self.hi, threshold)
        counts = np.zeros(bins, np.int64)
        edges = None
        self._file.flush()
        self._file.seek(0)
        while chunk := self._file.read(8 << 20):
            values = np.clip(np.frombuffer(chunk, np.float64), lo, hi)
            c, edges = np.histogram(values, bins=bins, range=(lo, hi))
            counts += c
        return counts, edges, lo, hi


def _suffix(k: int) -> str:
    """Head k's column suffix: head 1's columns have none."""
    return "" if k == 1 else f"_{k}"


class PageFigures:
    """Every figure the page shows, gathered from the report one batch at a time.

    Memory is set by the batch size, ``top`` and ``MAX_TABLE_ROWS``, never by the report's length:
    counts are counters of a few status/label/hint values and of at most ``MAX_REASONS`` error
    reasons; each head's scores go to a temporary file (``ScoreFile``); each ranking keeps its top
    ``top`` distinct contents (``triage.Ranking``: copies collapsed by sha256, ties in report
    order, the order of a stable sort); the first error rows are kept and all are counted.
    Directories can be as many as files: each batch's per-directory sums go to an on-disk DuckDB
    table, grouped once at the end within ``AIISCAN_SORT_MEMORY`` (DuckDB spills beyond it), and
    only the first ``MAX_TABLE_ROWS`` of the sorted table are fetched.
    """

    def __init__(self, workdir: Path, top: int):
        self.workdir = workdir
        self.top = max(top, 0)
        self.rows = self.error_count = 0
        self.status: Counter = Counter()
        self.labels: Counter = Counter()
        self.hints: Counter = Counter()
        self.evidence: Counter = Counter()  # by evidence kind and value (``EVIDENCE_COLUMNS``)
        self.reasons = ReasonCounts()
        self.heads = 1  # a multi-head report's heads (``report.heads_in``)
        self.verdicts: Counter = Counter()  # verdicts, their reasons, the uncertain files
        self.verdict_reasons: Counter = Counter()
        self.uncertain: list[tuple] = []
        self.uncertain_count = 0
        self.scores: list[ScoreFile] = []  # per head
        self.rankings: list[Ranking] = []  # per head
        self.by_verdict: Ranking | None = None  # files the verdict calls ai, when there is a verdict
        self.errors: list[tuple] = []
        self.con = duckdb_connect(str(workdir / "dirs.duckdb"), workdir / "spill")
        self.con.execute("CREATE TABLE part (dir VARCHAR, files BIGINT, scored BIGINT, flagged BIGINT, "
                         "errors BIGINT, total DOUBLE)")

    @property
    def ok(self) -> int:
        """Head 1's scored images."""
        return self.scores[0].count if self.scores else 0

    @property
    def first_ok_threshold(self) -> float | None:
        return self.scores[0].threshold if self.scores else None

    def close(self) -> None:
        for scores in self.scores:
            scores.close()
        self.con.close()

    def _start(self, names: list[str]) -> None:
        """The per-head structures, from the first batch's columns."""
        self.heads = heads_in(names)
        for k in range(1, self.heads + 1):
            self.scores.append(ScoreFile(self.workdir / f"scores{k}.f8"))
            self.rankings.append(Ranking(self.top, [(f"score{_suffix(k)}", "descending")]))
        if "verdict" in names:
            self.by_verdict = Ranking(self.top, [("score", "descending")])

    def add(self, batch: pa.Table) -> None:
        n = len(batch)
        if not n:
            return
        if not self.scores:
            self._start(batch.column_names)
        status, score, label = batch.column("status"), batch.column("score"), batch.column("label")
        is_ok = pc.fill_null(pc.equal(status, "ok"), False)
        # scored: ok with a finite score (a foreign or tampered report may hold NaN or inf)
        ok = pc.and_(is_ok, pc.fill_null(pc.is_finite(score), False))
        self.status.update(_counts(status))
        self.labels.update(_counts(_or_none(label)))
        self.hints.update(_counts(_or_none(batch.column("provenance_hint"))))
        for column, kind in EVIDENCE_COLUMNS:
            if column in batch.column_names:
                for value, count in _counts(batch.column(column)).items():
                    if value not in (None, "", "none"):
                        self.evidence[f"{kind}: {value}"] += count
        if "verdict" in batch.column_names:
            self._add_verdicts(batch)
        self._rank(batch, is_ok)

        bad = pc.fill_null(pc.not_equal(status, "ok"), True)
        bad_count = pc.sum(pc.cast(bad, pa.int64())).as_py() or 0
        if bad_count:
            failed = batch.filter(bad)
            self.reasons.add(failed.column("status"), failed.column("error"))
            if len(self.errors) < MAX_TABLE_ROWS:
                listed = failed.slice(0, MAX_TABLE_ROWS - len(self.errors))
                self.errors += zip(*(listed.column(c).to_pylist() for c in ("path", "status", "error")),
                                   strict=True)
        self.error_count += bad_count

        flagged = pc.and_(ok, pc.fill_null(pc.equal(label, "ai"), False))
        part = pa.table({
            "dir": _dirname(batch.column("path")),
            "scored": pc.cast(ok, pa.int64()),
            "flagged": pc.cast(flagged, pa.int64()),
            "errors": pc.cast(pc.fill_null(pc.equal(status, "error"), False), pa.int64()),
            "total": pc.if_else(ok, score, pa.scalar(None, pa.float64())),
        }).group_by("dir").aggregate([("scored", "count"), ("scored", "sum"), ("flagged", "sum"),
                                       ("errors", "sum"), ("total", "sum")])
        part = part.select(["dir", "scored_count", "scored_sum", "flagged_sum", "errors_sum", "total_sum"])
        self.con.from_arrow(part).insert_into("part")
        self.rows += n

    def _add_verdicts(self, batch: pa.Table) -> None:
        """Verdicts and reasons counted; the first ``MAX_TABLE_ROWS`` uncertain files kept."""
        self.verdicts.update(_counts(_or_none(batch.column("verdict"))))
        if "verdict_reasons" in batch.column_names:
            for reasons, count in _counts(batch.column("verdict_reasons")).items():
                for reason in (reasons or "").split(";"):
                    if reason:
                        self.verdict_reasons[reason] += count
        unsure = batch.filter(pc.fill_null(pc.equal(batch.column("verdict"), "uncertain"), False))
        self.uncertain_count += len(unsure)
        if len(unsure) and len(self.uncertain) < MAX_TABLE_ROWS:
            listed = unsure.slice(0, MAX_TABLE_ROWS - len(self.uncertain))
            reasons = (listed.column("verdict_reasons") if "verdict_reasons" in listed.column_names
                       else pa.nulls(len(listed), pa.string()))
            self.uncertain += zip(listed.column("path").to_pylist(), listed.column("score").to_pylist(),
                                  reasons.to_pylist(), strict=True)

    def _rank(self, batch: pa.Table, is_ok) -> None:
        """Each head's scores and ranking, and the verdict's ranking, from one batch."""
        rows = pa.array(np.arange(self.rows, self.rows + len(batch)), pa.int64())
        numbered = batch.append_column("_row", rows)
        for k, (scores, ranking) in enumerate(zip(self.scores, self.rankings, strict=True), start=1):
            column = f"score{_suffix(k)}"
            ok = pc.and_(is_ok, pc.fill_null(pc.is_finite(batch.column(column)), False))
            scored = numbered.filter(ok)
            if len(scored):
                first_threshold = scored.column(f"threshold{_suffix(k)}")[0].as_py()
                scores.add(scored.column(column).to_numpy(), first_threshold)
                ranking.add(scored)
        if self.by_verdict is not None:  # scored or not: evidence alone may call a file ai
            ranking = pc.fill_null(pc.equal(batch.column("verdict"), "ai"), False)
            self.by_verdict.add(numbered.filter(ranking))

    def histograms(self, thresholds: Sequence[float | None]) -> list:
        """Each head's (counts, edges, lo, hi) against its threshold."""
        if not self.scores:
            return [(None, None, 0.0, 1.0)]
        return [s.histogram(t) for s, t in zip(self.scores, thresholds, strict=True)]

    def directories(self, threshold: float | None) -> tuple[int, list[tuple]]:
        """(number of directories, the first ``MAX_TABLE_ROWS`` rows of the table): sorted by ai
        rate (none: 0) descending, then by name (code-point order, as Python sorts)."""
        order = ("CASE WHEN scored > 0 THEN flagged::DOUBLE / scored ELSE 0 END DESC, dir"
                 if threshold is not None else "dir")  # no threshold, no rates: by name
        self.con.execute("CREATE TABLE dirs AS SELECT dir, sum(files)::BIGINT AS files, sum(scored)::BIGINT "
                         "AS scored, sum(flagged)::BIGINT AS flagged, sum(errors)::BIGINT AS errors, "
                         "sum(total) AS total FROM part GROUP BY dir")
        count = self.con.execute("SELECT count(*) FROM dirs").fetchone()[0]
        listed = self.con.execute(f"SELECT dir, files, scored, flagged, errors, total FROM dirs ORDER BY "
                                  f"{order} LIMIT {MAX_TABLE_ROWS}").fetchall()
        rows = []
        for d, files, scored, flagged, errors, total in listed:
            rate_v = flagged / scored if scored and threshold is not None else None
            mean = float(total / scored) if scored else None
            rows.append((d, files, scored, flagged, rate_v, mean, errors))
        return count, rows


def gather(report: str | Path, top: int, workdir: Path, batch_rows: int | None = None) -> PageFigures:
    """One pass over ``report``: the figures of the page (close them when done)."""
    figures = PageFigures(workdir, top)
    pool = pa.default_memory_pool()
    try:
        for batch in iter_report(report, batch_rows or BATCH_ROWS):
            figures.add(batch)
            del batch
            # mimalloc keeps what each batch freed and creeps up over a long report (+42 MiB at
            # 1,000,000 rows); handing it back after every batch halves that at no measurable cost
            pool.release_unused()
    except BaseException:
        figures.close()
        raise
    return figures


@dataclass
class Figures:
    """What the page shows, gathered before any of it is rendered."""

    figures: PageFigures
    thresholds: list[float | None]  # per head
    histograms: list  # per head: (counts, edges, lo, hi)
    dir_count: int
    dir_rows: list[tuple]
    rankings: list[list[dict]]  # per head: the top cards
    by_verdict: list[dict] | None  # files the verdict calls ai (None: no verdict column)


def _head_thresholds(meta: dict, figures: PageFigures) -> list[float | None]:
    """Each head's threshold: the report's recorded one, else its first scored row's."""
    recorded = [meta.get("threshold"), *(meta.get("head_thresholds") or [])[1:]]
    out = []
    for k in range(1, figures.heads + 1):
        thr = recorded[k - 1] if len(recorded) >= k else None
        if not isinstance(thr, (int, float)) or isinstance(thr, bool) or not math.isfinite(thr):
            thr = figures.scores[k - 1].threshold if len(figures.scores) >= k else None
        out.append(thr)
    return out


def _figures(report: str | Path, top: int, meta: dict) -> Figures:
    """The page's figures from one streamed pass over the report, in a private temp folder."""
    with tempfile.TemporaryDirectory(prefix="aiiscan-page-") as tmp:
        figures = gather(report, top, Path(tmp))
        try:
            with duckdb_errors(f"grouping {Path(report).name} by directory", "{fix} and rerun"):
                thresholds = _head_thresholds(meta, figures)
                dir_count, dir_rows = figures.directories(thresholds[0])
                return Figures(figures, thresholds, figures.histograms(thresholds), dir_count, dir_rows,
                               [r.rows() for r in figures.rankings],
                               None if figures.by_verdict is None else figures.by_verdict.rows())
        finally:
            figures.close()


class _Thumbs:
    """Thumbnails for every card of a page within one byte budget and one time budget; a file
    on several cards (one per head) is decoded once."""

    def __init__(self, enabled: bool, budget: int, sources: ThumbnailSources | None,
                 missed: Counter | None = None):
        self.enabled, self.budget, self.sources = enabled, budget, sources
        self.spent, self.deadline = 0, time.monotonic() + THUMB_SECONDS
        self.made: dict[str, str] = {}
        self.missed = Counter() if missed is None else missed  # files without one, by reason

    def html(self, path: str) -> str:
        if not self.enabled:
            return '<div class="noimg">thumbnail left out</div>'
        if path not in self.made:
            uri, why = (thumbnail(path, sources=self.sources) if self.spent < self.budget
                        and time.monotonic() < self.deadline else (None, "thumbnail budget spent"))
            if uri is not None and self.spent + len(uri) <= self.budget:
                self.spent += len(uri)
                self.made[path] = f'<img alt="thumbnail" src="{uri}">'
            else:
                why = why or "thumbnail budget spent"
                self.missed[why] += 1
                self.made[path] = f'<div class="noimg">{_e(why)}</div>'  # one try per file
        return self.made[path]


def _page_head(name: str, meta: dict, fig: Figures) -> list[str]:
    """The document head, the caution and the scan's facts."""
    thr, more = fig.thresholds[0], range(2, fig.figures.heads + 1)
    head_meta = meta.get("heads") or []
    backbone = meta.get("backbone") or {}
    block = meta.get("threshold_block") or {}
    validation = block.get("validation") if isinstance(block.get("validation"), dict) else {}
    with_ai = (f" + {validation.get('ai_count')} AI images" if validation.get("positives") == "ai images"
               else "")
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f'<meta http-equiv="Content-Security-Policy" content="{_e(_csp())}">',
           '<meta name="referrer" content="no-referrer">',
           f"<title>aiiscan report: {_e(name)}</title>",
           f"<style>{CSS}</style></head><body>",
           f"<h1>aiiscan report: {_e(name)}</h1>"]
    if backbone.get("pretrained") == "none":
        out.append('<p class="caution" id="caution">This scan used a randomly initialised backbone: '
                   "its scores carry no meaning about AI generation.</p>")
    out.append('<p class="note">Scores rank images by how unlike a natural photo they look to this '
               "head; the label is the score against the threshold. Metadata columns are evidence "
               "beside the score, never part of it, and their absence means nothing.</p>")
    out.append('<h2 id="scan">Scan</h2><table id="meta"><tbody>')
    facts = [
        ("model", meta.get("model_id")),
        ("backbone", f"{backbone.get('name', '')} / {backbone.get('pretrained', '')}".strip(" /")),
        ("model card sha256", meta.get("model_card_sha256")),
        ("threshold", None if thr is None else f"{thr:.6g} ({meta.get('threshold_source', '')})"),
        ("calibration", (f"policy {block.get('policy')}, {validation.get('natural_count')} "
                         f"natural photos{with_ai}, on {block.get('created')}") if block else "none"),
        *((f"head {k}", f"{_head_name(head_meta, k)} (threshold {_fmt(fig.thresholds[k - 1])})")
          for k in more),
        *((("verdict", f"--combine {meta.get('combine', 'any')}: the heads' labels combined"),)
          if len(more) else ()),
        ("stability", meta.get("stability") or "off"),
        ("roots", ", ".join(meta.get("roots") or [])),
        ("ran in", " on ".join(str(meta[k]) for k in ("cwd", "host") if meta.get(k))),
        ("command", meta.get("command")),
        ("started", meta.get("started")), ("finished", meta.get("finished")),
        ("aiiscan", meta.get("aiiscan_version")),
        ("page made", f"{now_iso()} by aiiscan {__version__}"),
    ]
    out += [f"<tr><th>{escape(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts]
    out.append("</tbody></table>")
    return out


def _head_name(head_meta: list, k: int) -> str:
    entry = head_meta[k - 1] if len(head_meta) >= k and isinstance(head_meta[k - 1], dict) else {}
    return str(entry.get("model_id") or "")


def _head_title(meta: dict, k: int) -> str:
    """``head k: model id`` (escaped), or ``head k`` where the report names none."""
    name = _head_name(meta.get("heads") or [], k)
    return f"head {k}: {_e(name)}" if name else f"head {k}"


def _counts_section(fig: Figures) -> list[str]:
    figures = fig.figures
    out = ['<h2 id="counts">Counts</h2><div class="counts">']
    counters = [("status", figures.status), ("label", figures.labels), ("verdict", figures.verdicts),
                ("verdict reason", figures.verdict_reasons), ("provenance hint", figures.hints),
                ("evidence", figures.evidence)]
    for title, counter in counters:
        body = "".join(f"<tr><td>{_e(k)}</td><td class=num>{v}</td></tr>" for k, v in sorted(counter.items()))
        out.append(f'<table class="count" id="count-{escape(title.replace(" ", "-"))}">'
                   f"<thead><tr><th>{escape(title)}</th><th class=num>files</th></tr></thead>"
                   f"<tbody>{body or '<tr><td>none</td><td class=num>0</td></tr>'}</tbody></table>")
    out.append(f"</div><p>{figures.rows} rows in the report.</p>")
    return out


def _scores_section(meta: dict, fig: Figures) -> list[str]:
    """One histogram per head, head 1's first (ids ``histogram``, then ``histogram-2``, ...)."""
    out = ['<h2 id="scores">Score distribution</h2>']
    for k, (histogram, thr) in enumerate(zip(fig.histograms, fig.thresholds, strict=True), start=1):
        if fig.figures.heads > 1:
            out.append(f'<h3 id="scores-{k}">{_head_title(meta, k)}</h3>')
        out.append(histogram_svg_counts(*histogram, thr, suffix="" if k == 1 else f"-{k}"))
    return out


def _card(r: dict, k: int, heads: int, thumbs: _Thumbs) -> str:
    """One card: head ``k``'s score and label first, the other heads', the verdict, the path, its
    copies (same sha256) and its evidence."""
    def line(j: int) -> str:
        label = r.get(f"label{_suffix(j)}") or "unlabelled"
        return f"score {_fmt(r.get(f'score{_suffix(j)}'))} · {_e(label)}", label

    text, label = line(k)
    main = f'<div class="score{" ai" if label == "ai" else ""}">{"" if k == 1 else f"head {k}: "}{text}</div>'
    others = "".join(f"<div>head {j}: {line(j)[0]}</div>" for j in range(1, heads + 1) if j != k)
    others += card_verdict(r)
    copies = ""
    if r.get("copies", 1) > 1:
        others_at = r.get("other_paths", [])
        more = "" if r["copies"] - 1 <= len(others_at) else " …"
        copies = f'<div class="copies">×{r["copies"]} copies (same sha256)</div>'
        if others_at:
            copies += f'<div class="also">also: {" · ".join(_e(p) for p in others_at)}{more}</div>'
    evidence = "".join(f"<li>{_e(b)}</li>" for b in card_evidence(r))
    return (f'<div class="card">{thumbs.html(r["path"])}{main}{others}'
            f'<div class="path">{_e(r["path"])}</div>{copies}<ul>{evidence}</ul></div>')


def _cards_section(fig: Figures, thumbs: _Thumbs, sources: ThumbnailSources | None, meta: dict) -> list[str]:
    """Head 1's ranking (``#flagged``, ``#cards``), each further head's, and the verdict's."""
    heads = fig.figures.heads
    shown = len(fig.rankings[0]) if fig.rankings else 0
    files = sum(r["copies"] for r in fig.rankings[0]) if fig.rankings else 0
    if not shown:  # an evidence-only or an empty report: no ranking to show, and no "0 highest"
        return ['<h2 id="flagged">Highest scores</h2><p class="note">No file was scored: no head ran, or '
                "no file could be read.</p>", *_verdict_cards(fig, thumbs)]
    out = [f'<h2 id="flagged">The {shown} highest scores</h2>',
           '<p class="note">Ranked by score; each card\'s label follows the threshold, so a high '
           "rank alone is no verdict. Copies of one content (same sha256) share a card"
           + (f": these {shown} cards stand for {files} files." if files > shown else ".") + "</p>"]
    if not thumbs.enabled:
        out.append('<p class="note">Thumbnails left out (--no-thumbnails).</p>')
    elif sources is not None and not sources.bases and not sources.store:
        out.append('<p class="note" id="no-sources">No thumbnails: a report is untrusted input, so the page '
                   "opens no file it names unless you allow it (aiiscan report --base DIR, "
                   "--thumbnails-from-roots, --thumbnails-from-store).</p>")
    ranked = fig.rankings or [[]]
    out += ['<div class="cards" id="cards">', *(_card(r, 1, heads, thumbs) for r in ranked[0]), "</div>"]
    for k in range(2, heads + 1):
        out.append(f'<h2 id="flagged-{k}">The {len(ranked[k - 1])} highest scores of {_head_title(meta, k)}'
                   "</h2>")
        out += [f'<div class="cards" id="cards-{k}">', *(_card(r, k, heads, thumbs) for r in ranked[k - 1]),
                "</div>"]
    # one head's verdict mostly follows its label, already ranked above: the verdict's own ranking
    # is shown where it adds something (several heads, or no score at all: evidence only)
    if heads > 1:
        out += _verdict_cards(fig, thumbs)
    return out


def _verdict_cards(fig: Figures, thumbs: _Thumbs) -> list[str]:
    """The files whose verdict is ai, highest head-1 score first (evidence alone: no score, last)."""
    figures, heads, out = fig.figures, fig.figures.heads, []
    if fig.by_verdict is not None:
        counted = figures.verdicts.get("ai", 0)
        out.append(f'<h2 id="verdict-ai">The verdict says ai: {counted} files</h2>')
        out.append('<p class="note">Files whose combined verdict is ai, highest head-1 score first (a file '
                   "that evidence alone decided, with no score, comes last).</p>")
        if fig.by_verdict:
            out += ['<div class="cards" id="cards-verdict">',
                    *(_card(r, 1, heads, thumbs) for r in fig.by_verdict), "</div>"]
    return out


def _dirs_section(fig: Figures) -> list[str]:
    out = ['<h2 id="dirs">Per directory</h2>']
    if fig.dir_count > MAX_TABLE_ROWS:
        out.append(f'<p class="note">The first {MAX_TABLE_ROWS} of {fig.dir_count} directories listed, by ai '
                   "rate; all are in the report file.</p>")
    out.append(_table("dir-table", [("directory", False), ("files", True), ("scored", True),
                                    ("flagged ai", True), ("ai rate", True), ("mean score", True),
                                    ("errors", True)], fig.dir_rows, "directories",
                      filterable=bool(fig.dir_rows)))
    return out


def _errors_section(fig: Figures) -> list[str]:
    """Errors counted by reason (paths and numbers taken out), then the first ones listed."""
    figures = fig.figures
    out = [f'<h2 id="errors">Errors and skipped files ({figures.error_count})</h2>']
    if not figures.error_count:
        out.append('<p class="note" id="no-errors">Every file was read.</p>')
        return out
    out.append('<h3 id="reasons">By reason</h3>')
    out.append(_table("reason-table", [("reason", False), ("status", False), ("files", True)],
                      figures.reasons.rows(), "reasons", filterable=False))
    if figures.error_count > MAX_TABLE_ROWS:
        out.append(f'<p class="note">First {MAX_TABLE_ROWS} listed; all are in the report file.</p>')
    out.append(_table("error-table", [("path", False), ("status", False), ("reason", False)],
                      figures.errors, "errors"))
    return out


def render(report: str | Path, top: int = 50, thumbnails: bool = True,
           thumb_budget: int = THUMB_BUDGET, name: str | None = None,
           sources: ThumbnailSources | None = None, missed: Counter | None = None) -> str:
    """The page for the local report file ``report``; ``name`` is what the page calls it;
    ``sources``: what thumbnails may be made from (None: local files and store objects, for a
    report this process made; ``aiiscan report`` passes what the user allowed); ``missed``
    counts the files whose thumbnail was not made, by reason."""
    name = name or Path(report).name
    meta = report_metadata(report)
    fig = _figures(report, top, meta)
    thumbs = _Thumbs(thumbnails, thumb_budget, sources, missed)
    out = [*_page_head(name, meta, fig), *_counts_section(fig), *_scores_section(meta, fig),
           *_cards_section(fig, thumbs, sources, meta), *uncertain_section(fig.figures),
           *_dirs_section(fig), *_errors_section(fig)]
    out.append(f'<p class="note">Made by aiiscan {__version__} from {_e(name)}. '
               "Self-contained: no network requests.</p>")
    out.append(f"<script>{JS}</script></body></html>")
    return "\n".join(out)


def check_page_name(output: str | Path) -> None:
    """The page is HTML: a name with another suffix (``.pdf``, ``.png``, ``.parquet``) would hold
    HTML under a name that says otherwise, so it is refused; a name with no suffix is taken as
    meant."""
    suffix = Path(str(output)).suffix.lower().lstrip(".")
    if suffix and not suffix.isdigit() and suffix not in PAGE_SUFFIXES:  # "night-1.2" names no format
        name = Path(str(output)).name
        raise UsageError(f"{name}: the page is HTML only (one self-contained file): name it "
                         f"{Path(name).with_suffix('.html')}; for a PDF, print the page from a browser")


def write_html(report: str | Path, output: str | Path, trust_roots: bool = False,
               warn: Callable[[str], None] | None = None, **kwargs) -> str:
    """Render ``report`` into ``output`` atomically; either may be an object URL (the report is
    fetched, the page uploaded in one put). Returns where the page is. ``trust_roots``: the
    report's recorded roots join ``sources``' folders. ``warn`` hears how many thumbnails could
    not be made, and why."""
    missed: Counter = Counter()
    with local_report(report) as local:
        meta = report_metadata(local)
        if trust_roots:
            given = kwargs.get("sources") or NO_SOURCES
            kwargs["sources"] = ThumbnailSources.of(given.bases, meta.get("roots") or (), given.store)
        try:
            page = render(local, name=str(report).rsplit("/", 1)[-1], missed=missed, **kwargs).encode("utf-8")
        finally:
            archive.close_all()  # shards opened for thumbnails
    for line in missed_thumbnails(missed, kwargs.get("sources"), meta) if warn else ():
        warn(line)
    if not inputs.is_remote(str(output)):
        atomic_write_bytes(Path(output), page)
        return str(output)
    with tempfile.TemporaryDirectory(prefix="aiiscan-page-") as tmp:
        atomic_write_bytes(Path(tmp) / "page.html", page)
        try:
            put_file(Path(tmp) / "page.html", str(output))
        except OSError as exc:
            raise ReportError(f"cannot upload the HTML page to {output}: {exc}") from None
    return str(output)
