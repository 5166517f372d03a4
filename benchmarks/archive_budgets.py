"""What a hostile zip costs (issue 24): memory of a huge central directory, time to refuse an
overlapping ("quoted") zip bomb.

    python benchmarks/archive_budgets.py [--code DIR] [--entries 1000000] [--workers 2]

Every case runs in a fresh process tree that imports aiiscan from ``--code`` (default: this
checkout), so an older checkout can be measured on the same files; this process samples the
tree's RSS (the process and all its children, summed, every 20 ms, with psutil) and reports
the peak, and the wall time. The zips are built by ``tests/inputs/zips.py``.

Cases:

- ``scan``: ``aiiscan scan ZIP -o r.csv --workers N`` with no head (evidence only), for a
  one-entry zip and for one whose central directory holds ``--entries`` entries while its end
  record declares 1 (over the member cap: refused);
- ``members``: the archive machinery alone with the member cap raised past ``--entries``: the
  main process lists every member (``archive.members``) while N spawned worker processes each
  read 200 members spread over the archive, as decode workers do (by the location the crawl
  made);
- ``quoted``: a scan of a 60-member quoted-overlap zip of about 2.2 MB whose members inflate
  to about 24 GB in all, each within the per-member ratio.

Measured on 2 shared cores (peak RSS of the tree, MiB; before = the code before issue 24):

| case | before | after |
|---|---|---|
| scan, 1-entry zip | 244 | 196 |
| scan, 1,000,000 entries, declares 1 | 2,739 (killed at 100 s, listing) | 183 (refused, 3.5 s) |
| members, 1-entry zip | 64 | 103 |
| members, 1,000,000 entries, cap raised | 1,258 (killed at 100 s) | 209 (done in 78 s) |
| scan, quoted-overlap zip (2.6 MB, 24 GB) | 1,742 (killed at 100 s, inflating) | 185 (refused in 1.7 s) |
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]

MEMBERS = """
import multiprocessing as mp, sys
from aiiscan import inputs
from aiiscan.inputs import archive
LIMITS = archive.Limits(max_members=int(sys.argv[2]))

def work(locs):
    n = 0
    for loc in locs:
        try:
            n += len(archive.read(loc, 1 << 20, LIMITS)[0]) >= 0
        except OSError:
            pass
    return n

if __name__ == "__main__":
    shard = inputs.parse(sys.argv[1])
    workers = int(sys.argv[3])
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers) as pool:
        pool.map(abs, range(workers))  # workers started, as a scan's pool is
        step = max(int(sys.argv[4]) // 200, 1)  # streamed, as the crawl does: keep 200
        picked = [e.location for i, e in enumerate(archive.members(shard, LIMITS)) if i % step == 0]
        done = pool.map(work, [picked] * workers)
    print(len(picked), sum(done))
"""


def measure(cmd: list[str], env: dict, timeout: float, cwd: Path) -> tuple[float, float, int | None]:
    """(peak RSS of the tree in MiB, wall seconds, exit code or None when killed at timeout)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    root, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        if time.perf_counter() - t0 > timeout:
            for p in root.children(recursive=True) + [root]:
                try:
                    p.kill()
                except psutil.Error:
                    pass
            proc.wait()
            return peak / 2**20, time.perf_counter() - t0, None
        total = 0
        try:
            for p in [root, *root.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        peak = max(peak, total)
        time.sleep(0.02)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode not in (0, 3):
        print(err[-2000:], file=sys.stderr)
    return peak / 2**20, time.perf_counter() - t0, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--code", default=str(ROOT))
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--cases", default="scan,members,quoted")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.inputs import zips

    cases = args.cases.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIISCAN_")}
        env.update(PYTHONPATH=args.code, XDG_DATA_HOME=str(work / "data"), HF_HUB_OFFLINE="1")
        one = work / "one.zip"
        one.write_bytes(zips.many_entries(1))
        big = work / "million.zip"
        big.write_bytes(zips.many_entries(args.entries, declared=1))
        rows = []

        def scan(name: str, path: Path) -> None:
            out = work / f"{name}.csv"
            cmd = [sys.executable, "-m", "aiiscan", "scan", str(path), "-o", str(out), "-q",
                   "--workers", str(args.workers), "--overwrite"]
            rows.append((name, *measure(cmd, env, args.timeout, work)))

        if "scan" in cases:
            scan("scan: 1-entry zip", one)
            scan(f"scan: {args.entries:,}-entry CD, declares 1", big)
        if "members" in cases:
            for name, path in (("members: 1-entry zip", one),
                               (f"members: {args.entries:,}-entry CD, cap raised", big)):
                script = work / "members.py"  # a file: spawned workers re-import it
                script.write_text(MEMBERS)
                cmd = [sys.executable, str(script), str(path), str(args.entries + 1), str(args.workers),
                       str(args.entries)]
                rows.append((name, *measure(cmd, env, args.timeout, work)))
        if "quoted" in cases:
            quoted = work / "quoted.zip"
            block = bytearray(4096)
            kernel = b"".join(os.urandom(18) + bytes(block[18:]) for _ in range(97_000))
            quoted.write_bytes(zips.quoted_overlap(60, kernel))
            print(f"quoted.zip: {quoted.stat().st_size:,} bytes, members inflate to "
                  f"{60 * len(kernel):,} bytes in all", flush=True)
            scan("scan: quoted-overlap zip (60 members)", quoted)
    print(f"\ncode: {args.code}, {args.workers} workers, {os.cpu_count()} cores\n")
    print("| case | peak RSS of the process tree (MiB) | wall (s) | exit |")
    print("|---|---|---|---|")
    for name, rss, wall, code in rows:
        print(f"| {name} | {rss:,.0f} | {wall:.1f} | {'killed at timeout' if code is None else code} |")


if __name__ == "__main__":
    main()
