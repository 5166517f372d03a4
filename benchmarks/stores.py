"""Input throughput: the same files from the local disk, from an S3-protocol server on loopback,
and from a tar shard.

    python benchmarks/stores.py [--n 300] [--size 640x480]

What is timed is a scan's input side, one file after another in this process: the read alone
(``inputs.read``) and the read plus the scan's decode (``decode.decode_job``: bytes,
sha256, metadata, the crop). The backbone is the same whatever the source, so it is left out.
The server is moto's standalone server in its own process on 127.0.0.1 (pure Python: it is the
bottleneck here, so the bucket figures are a floor, not what S3 itself delivers; a real store
adds network latency, which a scan hides with its decode workers: the last row reads the bucket
with 8 threads). One run each, after a warm-up of 20 files per source.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import command, small_jpegs  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_moto() -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", "from moto.server import main; main()", "-H", "127.0.0.1",
                             "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("moto server did not start")


def _time(paths: list[str], fn) -> tuple[float, int]:
    t0 = time.perf_counter()
    total = 0
    for p in paths:
        total += fn(p)
    return time.perf_counter() - t0, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--size", default="640x480")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))

    import boto3

    from aiiscan import inputs
    from aiiscan.decode.job import DecodeJob, decode_job
    from aiiscan.inputs import archive as shards
    from aiiscan.inputs import store as stores

    tmp = Path(tempfile.mkdtemp(prefix="aiiscan-bench-stores-"))
    files = small_jpegs(tmp / "disk", args.n, size=(w, h))
    shard = tmp / "shard.tar"
    with tarfile.open(shard, "w") as tf:
        for f in files:
            tf.add(f, arcname=os.path.relpath(f, tmp / "disk"))
    proc, endpoint = _start_moto()
    try:
        env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
               "AWS_DEFAULT_REGION": "us-east-1"}
        os.environ.update(env)
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket="bench")
        for f in files:
            client.put_object(Bucket="bench", Key="photos/" + os.path.relpath(f, tmp / "disk"),
                              Body=Path(f).read_bytes())
        sources = {
            "local disk": files,
            "bucket (loopback)": list(stores.iter_prefix("s3://bench/photos/")),
            "tar shard": [e.location.raw for e in shards.members(inputs.parse(str(shard))) if e.skip is None],
        }
        assert all(len(v) == len(files) for v in sources.values()), {k: len(v) for k, v in sources.items()}
        total_bytes = sum(os.path.getsize(f) for f in files)
        mb = total_bytes / 1e6

        def read(p: str) -> int:
            return len(inputs.read(inputs.parse(p), 1 << 30)[0])

        def decode(p: str) -> int:
            res = decode_job(DecodeJob(p, 224))
            assert res.status == "ok", (p, res.error)
            return res.info["size"]

        print(f"$ {command()}")
        print(f"{len(files)} JPEGs {w}x{h}, {mb:.1f} MB in all; one run each after a warm-up\n")
        print("| source | read files/s | read MB/s | read+decode files/s | read+decode MB/s |")
        print("|---|---:|---:|---:|---:|")
        figures: dict[str, tuple[float, float, float, float]] = {}
        for name, paths in sources.items():
            _time(paths[:20], read)  # warm-up: connections, caches, imports
            _time(paths[:20], decode)
            t_read, n_read = _time(paths, read)
            t_dec, n_dec = _time(paths, decode)
            assert n_read == n_dec == total_bytes, (name, n_read, n_dec)
            figures[name] = (len(paths) / t_read, mb / t_read, len(paths) / t_dec, mb / t_dec)
            print(f"| {name} | {figures[name][0]:.0f} | {figures[name][1]:.1f} | {figures[name][2]:.0f} | "
                  f"{figures[name][3]:.1f} |")
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(8) as pool:  # a scan's decode workers overlap requests like this
            list(pool.map(read, sources["bucket (loopback)"][:20]))
            t0 = time.perf_counter()
            n = sum(pool.map(read, sources["bucket (loopback)"]))
            t = time.perf_counter() - t0
        assert n == total_bytes
        print(f"| bucket (loopback), 8 concurrent readers | {len(files) / t:.0f} | {mb / t:.1f} | | |")
        base = figures["local disk"]
        print("\nratios to the local disk (read; read+decode):")
        for name, fig in figures.items():
            print(f"  {name}: {fig[0] / base[0]:.3g}x; {fig[2] / base[2]:.3g}x")
    finally:
        proc.kill()
        proc.wait()
        shards.close_all()
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
