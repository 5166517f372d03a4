"""The ray engine gives the local engine's report: same rows, statuses and scores (1e-5).

Skipped cleanly when Ray is not installed; CI installs the extra (it is part of ``[dev]``).
"""

import pytest

ray = pytest.importorskip("ray")

from aiiscan.report import read_report, report_metadata  # noqa: E402
from aiiscan.scanner import run_scan  # noqa: E402

from .conftest import write_photos  # noqa: E402
from .hostile import png_bomb  # noqa: E402


@pytest.fixture(scope="module")
def local_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
             configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray") / "in"
    write_photos(root, 10, seed=31)
    write_photos(root / "sub", 5, seed=32, ext="jpg")
    (root / "truncated.jpg").write_bytes((root / "sub" / "img_000.jpg").read_bytes()[:300])
    (root / "empty.png").write_bytes(b"")
    (root / "text.png").write_text("not an image")
    (root / "bomb.png").write_bytes(png_bomb(40000))
    (root / "notes.txt").write_text("skipped: not an image, not named like one")
    return root


def test_ray_engine_matches_local_engine(local_cluster, mixed_folder, head_prefix, tmp_path):
    local = run_scan([str(mixed_folder)], tmp_path / "local.parquet", weights=str(head_prefix),
                     device="cpu", workers=2, batch_size=4, quiet=True)
    distributed = run_scan([str(mixed_folder)], tmp_path / "ray.parquet", weights=str(head_prefix),
                           device="cpu", engine="ray", batch_size=4, scorers=1, quiet=True)
    assert local.exit_code == distributed.exit_code == 3
    a = {r["path"]: r for r in read_report(local.report).to_pylist()}
    b = {r["path"]: r for r in read_report(distributed.report).to_pylist()}
    assert a.keys() == b.keys() and len(a) == 19
    for path in a:
        ra, rb = a[path], b[path]
        assert (ra["status"], ra["error"]) == (rb["status"], rb["error"]), path
        if ra["score"] is None:
            assert rb["score"] is None
        else:
            assert abs(ra["score"] - rb["score"]) <= 1e-5, path
        for col in ("size", "sha256", "format", "width", "height", "mode", "has_exif", "provenance_hint"):
            assert ra[col] == rb[col], (path, col)
    assert report_metadata(distributed.report)["engine"] == "ray"


def test_ray_engine_resumes_like_the_local_one(local_cluster, mixed_folder, head_prefix, tmp_path):
    """Rows already in parts are not sent to the cluster again."""
    from aiiscan.report import ReportWriter

    out = tmp_path / "r.parquet"
    first = run_scan([str(mixed_folder / "sub")], tmp_path / "sub.parquet", weights=str(head_prefix),
                     device="cpu", workers=0, quiet=True)
    with ReportWriter(out) as w:  # an interrupted scan that had done the sub folder
        for row in read_report(first.report).to_pylist():
            w.write(row)
        w.flush()
    s = run_scan([str(mixed_folder)], out, weights=str(head_prefix), device="cpu", engine="ray",
                 resume=True, quiet=True)
    assert s.resumed == 5 and s.scored == 10
    assert len(read_report(out)) == 19
