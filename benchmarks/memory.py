"""Peak RSS of a whole scan against the size of the archive: memory must not grow with it.

    python benchmarks/memory.py                       # the figures of issue 16 (about 30 min)
    python benchmarks/memory.py --files 10000 100000 --rows 10000 100000   # a quick look
    python benchmarks/memory.py --only report --rows 10000 1000000 10000000  # the HTML page

Four scenarios, each run in its own process (tiny random-init backbone: the process starts with
torch and the model loaded, as a real scan does), reporting that process's peak RSS
(``VmHWM``; the decode workers are small processes of their own), the wall time, and when the
first report part appeared:

- ``scan``: N empty files named ``.jpg`` (undecodable: every one is an error row) to a CSV
  report: the crawl, the error path, the parts and the streamed, sorted finish.
- ``incremental``: the 10,000-file tree against an old report of R rows (the tree's 10,000 as
  unchanged, the rest elsewhere in the archive): the old report is indexed on disk, not in dicts.
- ``resume``: the same tree, resumed from parts that hold R rows of an interrupted run.
- ``report``: the HTML page (``aiiscan report``) of an R-row report: the same synthetic rows, with
  labels against a threshold and one row in 97 an error, in row groups of 16,384 as aiiscan writes
  them; no torch in that process.

Ratios are against the first size of each scenario. Synthetic reports are made with pyarrow in
one-million-row slices; the empty-file trees are cached under ``--cache``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command, detector_for  # noqa: E402

TREE = 10_000  # files in the tree that incremental and resume rescan


def make_empty_files(folder: Path, n: int) -> None:
    """``n`` empty ``.jpg`` files, 1,000 per folder (created once, then cached)."""
    done = folder / ".complete"
    if done.exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    for d in range((n + 999) // 1000):
        sub = folder / f"{d:05d}"
        sub.mkdir(exist_ok=True)
        for i in range(d * 1000, min(n, (d + 1) * 1000)):
            open(sub / f"img_{i:08d}.jpg", "wb").close()  # noqa: SIM115
    done.touch()


def _hex(rng: np.random.Generator, n: int) -> pa.Array:
    digits = np.frombuffer(b"0123456789abcdef", np.uint8)
    raw = digits[rng.integers(0, 16, size=(n, 64), dtype=np.uint8)]
    return pa.array(raw.view("S64").ravel()).cast(pa.string())


def synthetic_rows(tree: Path, total: int, model_id: str, seed: int = 0):
    """Tables of ``total`` report rows: the tree's files as they are on disk (size, mtime), then
    rows for files elsewhere in the archive, in one-million-row slices."""
    from aiiscan.reports.schema import SCHEMA

    rng = np.random.default_rng(seed)
    real = sorted(str(p) for p in tree.rglob("*.jpg"))
    mtimes = [os.stat(p).st_mtime_ns // 1000 for p in real]
    made = 0
    while made < total:
        n = min(1_000_000, total - made)
        k = max(0, min(n, len(real) - made))
        paths = real[made:made + k] + [f"/archive/{(made + i) // 1000:06d}/photo_{made + i:09d}.jpg"
                                       for i in range(k, n)]
        cols = {
            "path": pa.array(paths, pa.string()),
            "status": pa.array(["ok"] * n, pa.string()),
            "size": pa.array([0] * k + list(rng.integers(50_000, 9_000_000, n - k)), pa.int64()),
            "mtime": pa.array(mtimes[made:made + k] + [1_700_000_000_000_000 + i for i in range(n - k)],
                              pa.int64()).cast(pa.timestamp("us")),
            "sha256": _hex(rng, n),
            "format": pa.array(["JPEG"] * n, pa.string()),
            "width": pa.array(np.full(n, 4000, np.int32)),
            "height": pa.array(np.full(n, 3000, np.int32)),
            "mode": pa.array(["RGB"] * n, pa.string()),
            "score": pa.array(rng.normal(size=n)),
            "model_id": pa.array([model_id] * n, pa.string()),
            "has_exif": pa.array(rng.random(n) < 0.5),
            "exif_make": pa.array(["Canon"] * n, pa.string()),
            "exif_model": pa.array(["Canon EOS R5"] * n, pa.string()),
        }
        yield pa.table({f.name: cols.get(f.name, pa.nulls(n, f.type)) for f in SCHEMA}, schema=SCHEMA)
        made += n


def synthetic_report(tree: Path, total: int):
    """``synthetic_rows`` as a finished report: labels against a threshold of 0.5, one error in 97."""
    import pyarrow.compute as pc

    made = 0
    for t in synthetic_rows(tree, total, "synthetic"):
        n = len(t)
        bad = pa.array((np.arange(made, made + n) % 97) == 96)
        score = pc.if_else(bad, pa.scalar(None, pa.float64()), t.column("score"))
        cols = {"status": pc.if_else(bad, "error", t.column("status")),
                "error": pc.if_else(bad, "UnidentifiedImageError: cannot identify image file",
                                    pa.scalar(None, pa.string())),
                "score": score,
                "label": pc.if_else(pc.greater_equal(score, 0.5), "ai", "natural"),
                "threshold": pc.if_else(bad, pa.scalar(None, pa.float64()), 0.5)}
        for name, col in cols.items():
            t = t.set_column(t.schema.get_field_index(name), name, col)
        yield t
        made += n


def _watch_parts(parts: Path, t0: float, box: dict) -> None:
    while "first_part" not in box and not box.get("stop"):
        if parts.is_dir() and any(parts.glob("part-*.parquet")):
            box["first_part"] = time.perf_counter() - t0
        time.sleep(0.05)


def scan_metadata(det) -> dict:
    """What a scan with ``det`` and the default options records of how it ran (its run identity
    and evidence settings): the old report and the interrupted run carry it, or the scan would
    (rightly) reuse nothing of them."""
    from aiiscan.api import scan_options
    from aiiscan.decode.evidence import load_evidence
    from aiiscan.scanner.identity import run_identity
    from aiiscan.scanner.rows import Rows

    opts, _ = scan_options(detector=det, quiet=True)
    rows, evidence = Rows(det, opts), load_evidence(opts.evidence)
    return {"run_identity": run_identity(det, rows.thresholds, rows.combine, opts, evidence),
            "evidence": evidence.metadata()}


def prepare(kind: str, tree: Path, rows: int, cache: Path, model_id: str,
            meta: dict | None = None) -> Path:
    """The old report (incremental) or the interrupted run's parts (resume), made once per
    ``scan_metadata``."""
    from aiiscan.reports.parts import RUN_FILE
    from aiiscan.reports.schema import META_KEY, SCHEMA

    digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:8]
    tag = "" if meta is None else f"-{digest}"
    target = cache / {"incremental": f"old-{rows}{tag}.parquet",
                      "report": f"report-{rows}.parquet"}.get(kind, f"parts-{rows}{tag}")
    if target.exists():
        return target
    tmp = target.with_name(target.name + ".tmp")
    if kind == "report":
        with pq.ParquetWriter(tmp, SCHEMA) as w:  # row groups as aiiscan writes them (FINISH_BATCH)
            for t in synthetic_report(tree, rows):
                w.write_table(t, row_group_size=16384)
    elif kind == "incremental":
        with pq.ParquetWriter(tmp, SCHEMA.with_metadata({META_KEY: json.dumps(meta).encode()})) as w:
            for t in synthetic_rows(tree, rows, model_id):
                w.write_table(t)
    else:  # parts of 100,000 rows (a scan writes --part-rows, 1,024 by default: fewer files here)
        tmp.mkdir(parents=True, exist_ok=True)
        number = 0
        for t in synthetic_rows(tree, rows, model_id):
            for part in t.to_batches(100_000):
                pq.write_table(pa.Table.from_batches([part]), tmp / f"part-{number:05d}.parquet")
                number += 1
        (tmp / RUN_FILE).write_text(json.dumps((meta or {}).get("run_identity")))
    os.replace(tmp, target)
    return target


def inner_report(args) -> None:
    from aiiscan.reports.html import render

    t0 = time.perf_counter()
    page = render(args.source)
    seconds = time.perf_counter() - t0
    print("RESULT " + json.dumps({"rows": pq.ParquetFile(args.source).metadata.num_rows, "seconds": seconds,
                                  "rss": peak_rss_mib(), "first_part": None, "page_bytes": len(page)}))


def inner(args) -> None:
    if args.inner == "report":
        inner_report(args)
        return
    from aiiscan.api import scan_options
    from aiiscan.scanner.driver import run_scan

    det = detector_for("tiny")
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        out = Path(tmp) / ("r.csv" if args.inner == "scan" else "r.parquet")
        kw = {"detector": det, "workers": args.workers, "quiet": True}
        if args.inner == "incremental":
            kw["incremental"] = args.source
        elif args.inner == "resume":
            shutil.copytree(args.source, out.with_name(out.name + ".parts"))
            kw["resume"] = True
        box: dict = {}
        t0 = time.perf_counter()
        threading.Thread(target=_watch_parts, args=(out.with_name(out.name + ".parts"), t0, box),
                         daemon=True).start()
        s = run_scan([args.folder], out, *scan_options(**kw))
        box["stop"] = True
        seconds = time.perf_counter() - t0
        if out.suffix == ".csv":
            rows = sum(1 for _ in open(out)) - 1
        else:
            rows = pq.ParquetFile(out).metadata.num_rows
    me = peak_rss_mib()
    print("RESULT " + json.dumps({"rows": rows, "seconds": seconds, "rss": me,
                                  "first_part": box.get("first_part"), "reused": s.reused,
                                  "resumed": s.resumed}))


def peak_rss_mib() -> float:
    """This process's own peak RSS (VmHWM). Not ``ru_maxrss``: Linux carries that across fork and
    exec, so a child started by a big parent would report the parent's size."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def run_inner(kind: str, folder: Path, source: Path | None, args) -> dict:
    out = subprocess.run([sys.executable, __file__, "--inner", kind, "--folder", str(folder),
                          "--source", str(source), "--workers", str(args.workers),
                          *(["--tmp", args.tmp] if args.tmp else [])],
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{kind} {source} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.split("RESULT ")[1])


def table(title: str, size_name: str, results: list[tuple[int, dict]]) -> None:
    print(f"\n### {title}\n")
    print(f"| {size_name} | report rows | seconds | first part (s) | peak RSS (MiB) | vs first |")
    print("|---:|---:|---:|---:|---:|---:|")
    first = results[0][1]["rss"]
    for n, r in results:
        fp = "-" if r["first_part"] is None else f"{r['first_part']:.1f}"
        print(f"| {n:,} | {r['rows']:,} | {r['seconds']:.1f} | {fp} | {r['rss']:.0f} | "
              f"{r['rss'] / first:.3f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--files", type=int, nargs="+", default=[10_000, 100_000, 1_000_000],
                    help="scan: numbers of empty files")
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 1_000_000, 10_000_000],
                    help="incremental, resume and report: rows of the old report / interrupted run / "
                         "report rendered as an HTML page")
    ap.add_argument("--only", choices=("scan", "incremental", "resume", "report"), nargs="+",
                    default=("scan", "incremental", "resume", "report"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache", default="/tmp/aiiscan-bench")
    ap.add_argument("--tmp", default=None, help="where reports and parts go (default: the system's)")
    ap.add_argument("--inner", help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    ap.add_argument("--source", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        inner(args)
        return
    print(f"command: {command()}")
    if "scan" in args.only:
        results = []
        for n in args.files:
            folder = Path(args.cache) / f"empty{n}"
            make_empty_files(folder, n)
            results.append((n, run_inner("scan", folder, None, args)))
        table("scan: empty (undecodable) files to CSV", "files", results)
    tree = Path(args.cache) / f"empty{TREE}"
    make_empty_files(tree, TREE)
    if {"incremental", "resume"} & set(args.only):
        det = detector_for("tiny")
        model_id, meta = det.model_id, scan_metadata(det)
    for kind, title in (("incremental", f"--incremental: the {TREE:,}-file tree against an old report"),
                        ("resume", f"--resume: the {TREE:,}-file tree after an interrupted run")):
        if kind in args.only:
            made = [(r, prepare(kind, tree, r, Path(args.cache), model_id, meta)) for r in args.rows]
            table(title, "rows", [(r, run_inner(kind, tree, source, args)) for r, source in made])
    if "report" in args.only:
        made = [(r, prepare("report", tree, r, Path(args.cache), "")) for r in args.rows]
        table("report: the HTML page of a report (`aiiscan report`)", "rows",
              [(r, run_inner("report", tree, source, args)) for r, source in made])


if __name__ == "__main__":
    main()
