"""Peak RSS and time of a report's finish (the merge of sorted parts by path) against its rows.

    python benchmarks/finish.py                                  # 100,000, 1,000,000, 10,000,000 rows
    python benchmarks/finish.py --rows 10000 100000              # a quick look

Each size runs in its own process: synthetic parts of the full report schema (every column, as a
scan of undecodable files writes them: path, status, error, the rest null), ``--part-rows`` rows
each and sorted as ``ReportWriter.flush`` sorts them, are merged by ``reports.merge.merged`` into
batches as the format writers take them; the process's peak RSS (``ru_maxrss``) includes Python
and pyarrow. Ratios are against the first size: memory must not grow with the rows.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def inner(rows: int, part_rows: int) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from aiiscan.reports.merge import merged, sort_by_path
    from aiiscan.reports.parts import FINISH_BATCH
    from aiiscan.reports.schema import SCHEMA

    with tempfile.TemporaryDirectory() as tmp:
        parts = Path(tmp)
        files = []
        for start in range(0, rows, part_rows):
            n = min(part_rows, rows - start)
            cols = {f.name: pa.nulls(n, f.type) for f in SCHEMA}
            cols["path"] = pa.array([f"/archive/d{(i * 7919) % 1000:04d}/file{i:09d}.jpg"
                                     for i in range(start, start + n)])
            cols["status"] = pa.array(["error"] * n)
            cols["error"] = pa.array(["cannot identify image file: not an image (0 bytes)"] * n)
            files.append(parts / f"part-{start // part_rows:06d}.parquet")
            pq.write_table(sort_by_path(pa.table(cols, schema=SCHEMA)), files[-1])
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0, count, last = time.perf_counter(), 0, ""
        for table in merged(files, SCHEMA, parts / "merge.tmp", FINISH_BATCH):
            paths = table.column("path")
            assert paths[0].as_py() >= last  # in order across batches (within: merge's own sort)
            last, count = paths[-1].as_py(), count + len(table)
        assert count == rows
        return {"rows": rows, "seconds": time.perf_counter() - t0,
                "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "before_mib": base / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    ap.add_argument("--part-rows", type=int, default=1024, help="rows per part (scan --part-rows)")
    ap.add_argument("--inner", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        print(json.dumps(inner(args.inner, args.part_rows)))
        return
    print("command: python benchmarks/finish.py " + " ".join(sys.argv[1:]))
    print("\n| rows | merge seconds | peak RSS (MiB) | of which before the merge | vs first |\n"
          "|---:|---:|---:|---:|---:|")
    first = None
    for rows in args.rows:
        out = subprocess.run([sys.executable, __file__, "--inner", str(rows), "--part-rows",
                              str(args.part_rows)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        first = first or r["peak_mib"]
        print(f"| {rows:,} | {r['seconds']:.1f} | {r['peak_mib']:.0f} | {r['before_mib']:.0f} | "
              f"{r['peak_mib'] / first:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
