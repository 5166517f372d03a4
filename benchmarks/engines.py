"""Local engine vs ray engine on the same files, one machine: what Ray costs on a single node.

    python benchmarks/engines.py --files 1000 --runs 3

Tiny random-init backbone with a briefly trained head (the ray engine loads heads from disk),
generated 640x480 JPEGs. The Ray cluster is started once before timing; its start-up is shown
separately. Medians of --runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command, small_jpegs, trained_detector  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cache", default="/tmp/aiiscan-bench")
    args = ap.parse_args()
    import os

    import ray

    from aiiscan.api import scan_options
    from aiiscan.scanner.driver import run_scan

    paths = small_jpegs(Path(args.cache) / "small", args.files)
    head = Path(args.cache) / "fidelity-head-tiny"
    trained_detector("tiny", head)
    cores = len(os.sched_getaffinity(0))
    t = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, configure_logging=False)
    startup = time.perf_counter() - t
    rates = {"local": [], "ray": []}
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "list.txt"
        listing.write_text("\n".join(paths) + "\n")
        for _ in range(args.runs):
            for engine in ("local", "ray"):
                out = Path(tmp) / f"{engine}.parquet"
                t = time.perf_counter()
                s = run_scan([], out,
                             *scan_options(weights=str(head), from_list=str(listing), device="cpu",
                                           engine=engine, quiet=True))
                rates[engine].append(s.scored / (time.perf_counter() - t))
                out.unlink()
    local, distributed = statistics.median(rates["local"]), statistics.median(rates["ray"])
    print(f"command: {command()}")
    print(f"{len(paths)} files, {cores} cores, medians of {args.runs} runs; Ray local cluster start-up "
          f"{startup:.1f}s (not included)\n")
    print("| engine | img/s (whole scan, model load included) | vs local |")
    print("|---|---:|---:|")
    print(f"| local | {local:.1f} | 1.00 |")
    print(f"| ray (1 node) | {distributed:.1f} | {distributed / local:.2f} |")


if __name__ == "__main__":
    main()
