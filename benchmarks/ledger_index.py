"""The --incremental index: the on-disk SQLite ledger against the dict of rows it replaced.

    python benchmarks/ledger_index.py                  # 1,000,000 old rows
    python benchmarks/ledger_index.py --rows 100000 1000000

For an old report of R rows (synthetic, as ``benchmarks/memory.py`` makes them), each way runs in
its own process without torch: load the report's reusable rows, then look up 10,000 paths (half
present). Printed: load seconds, lookup microseconds, and the process's peak RSS above what it
held before loading (VmHWM).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command  # noqa: E402
from memory import TREE, make_empty_files, peak_rss_mib, prepare  # noqa: E402

MODEL = "bench-model"


def inner(way: str, report: str) -> None:
    from aiiscan.reports.read import read_report
    from aiiscan.reports.schema import COLUMNS, SCHEMA

    base = peak_rss_mib()
    t0 = time.perf_counter()
    if way == "dict":  # what scanner._old_rows did before: every reusable row a Python dict
        table = read_report(report)
        rows = {r["path"]: dict.fromkeys(COLUMNS) | r for r in table.to_pylist()
                if r["status"] == "ok" and r["model_id"] == MODEL}
        del table
        lookup = rows.get
    else:
        from aiiscan.reports.ledger import Ledger
        from aiiscan.scanner.reuse import Reuse

        led = Ledger(Path(tempfile.mkdtemp()) / "index.sqlite", SCHEMA)
        Reuse(led, incremental=True).load_old(report, [MODEL])
        lookup = led.old_row
    load = time.perf_counter() - t0
    paths = [f"/archive/{i // 1000:06d}/photo_{i:09d}.jpg" for i in range(TREE, TREE + 5000)]
    paths += [f"/elsewhere/{i}.jpg" for i in range(5000)]
    t0 = time.perf_counter()
    hits = sum(lookup(p) is not None for p in paths)
    per = (time.perf_counter() - t0) / len(paths) * 1e6
    grown = peak_rss_mib() - base
    print("RESULT " + json.dumps({"load": load, "lookup_us": per, "hits": hits, "rss": grown}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--cache", default="/tmp/aiiscan-bench")
    ap.add_argument("--inner", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        inner(*args.inner)
        return
    tree = Path(args.cache) / f"empty{TREE}"
    make_empty_files(tree, TREE)
    print(f"command: {command()}\n")
    print("| old rows | index | load (s) | lookup (µs) | hits of 10,000 | peak RSS above start (MiB) |")
    print("|---:|---|---:|---:|---:|---:|")
    for n in args.rows:
        (Path(args.cache) / MODEL).mkdir(parents=True, exist_ok=True)
        report = prepare("incremental", tree, n, Path(args.cache) / MODEL, MODEL)
        for way in ("dict", "ledger"):
            out = subprocess.run([sys.executable, __file__, "--inner", way, str(report)],
                                 capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(out.stderr[-3000:])
            r = json.loads(out.stdout.split("RESULT ")[1])
            print(f"| {n:,} | {way} | {r['load']:.1f} | {r['lookup_us']:.1f} | {r['hits']:,} | "
                  f"{r['rss']:.0f} |")


if __name__ == "__main__":
    main()
