"""The ray engine gives the local engine's report: same rows, statuses and scores (1e-5).

Skipped cleanly when Ray is not installed; CI installs the extra (it is part of ``[dev]``).
"""

import pytest

ray = pytest.importorskip("ray")

from aiiscan.report import read_report, report_metadata  # noqa: E402
from aiiscan.scanner import options_from, run_scan  # noqa: E402

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
    local = run_scan([str(mixed_folder)], tmp_path / "local.parquet", *options_from(weights=str(head_prefix),
                     device="cpu", workers=2, batch_size=4, quiet=True))
    distributed = run_scan([str(mixed_folder)], tmp_path / "ray.parquet",
                           *options_from(weights=str(head_prefix),
                           device="cpu", engine="ray", batch_size=4, scorers=1, quiet=True))
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
    first = run_scan([str(mixed_folder / "sub")], tmp_path / "sub.parquet",
                     *options_from(weights=str(head_prefix),
                     device="cpu", workers=0, quiet=True))
    with ReportWriter(out) as w:  # an interrupted scan that had done the sub folder
        for row in read_report(first.report).to_pylist():
            w.write(row)
        w.flush()
    s = run_scan([str(mixed_folder)], out, *options_from(weights=str(head_prefix), device="cpu", engine="ray",
                 resume=True, quiet=True))
    assert s.resumed == 5 and s.scored == 10
    assert len(read_report(out)) == 19


def test_calibrate_and_evaluate_on_ray_match_the_local_engine(local_cluster, mixed_folder, head_prefix,
                                                              tmp_path):
    """Per-job variants (the band copies), conditions and seeds travel to Ray: same numbers."""
    import shutil

    from aiiscan.calibrate import calibrate
    from aiiscan.datasets import from_folders
    from aiiscan.engines import make_engine
    from aiiscan.evaluate import evaluate
    from aiiscan.launder import Condition
    from aiiscan.options import RunOptions

    photos = sorted(str(p) for p in mixed_folder.glob("img_*.png"))
    heads = {}
    for name in ("local", "ray"):
        heads[name] = tmp_path / name
        for suffix in (".safetensors", ".json"):
            shutil.copy(f"{head_prefix}{suffix}", f"{heads[name]}{suffix}")
    run = RunOptions(device="cpu", batch_size=4, workers=0, quiet=True)
    local = make_engine("local").open(str(heads["local"]), run)
    far = make_engine("ray", scorers=1).open(str(heads["ray"]), run)
    a = calibrate(local, photos, "balanced", workers=0, progress=False)
    b = calibrate(far, photos, "balanced", progress=False)
    for key in ("value", "auc", "balanced_accuracy", "natural_score_median", "perturbed_score_median"):
        assert abs(a.block[key] - b.block[key]) <= 1e-5, key
    write_photos(tmp_path / "gen", 4, seed=33)
    evalset = from_folders([str(mixed_folder / "sub")], [str(tmp_path / "gen")])
    conditions = [None, Condition.parse("jpeg:80")]
    ta = evaluate(local, evalset, conditions, 0.0, batch_size=4, workers=0, progress=False)
    tb = evaluate(far, evalset, conditions, 0.0, batch_size=4, progress=False)
    for x, y in zip(ta, tb, strict=True):
        assert x.condition == y.condition
        for rx, ry in zip(x.rows, y.rows, strict=True):
            assert rx.generator == ry.generator
            for k in ("ap", "auc", "acc"):
                vx, vy = getattr(rx, k), getattr(ry, k)
                assert (vx is None and vy is None) or abs(vx - vy) <= 1e-5, (x.condition, k)
