"""The ray engine gives the local engine's report: same rows, statuses and scores (1e-5).

Skipped cleanly when Ray is not installed; CI installs the extra (it is part of ``[dev]``).
"""

from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from aiiscan.api import scan_options  # noqa: E402
from aiiscan.reports.read import read_report, report_metadata  # noqa: E402
from aiiscan.scanner.driver import run_scan  # noqa: E402

from ..conftest import write_photos  # noqa: E402
from ..hostile import png_bomb  # noqa: E402


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
    local = run_scan([str(mixed_folder)], tmp_path / "local.parquet", *scan_options(weights=str(head_prefix),
                     device="cpu", workers=2, batch_size=4, precision="fp32", quiet=True))
    distributed = run_scan([str(mixed_folder)], tmp_path / "ray.parquet",
                           *scan_options(weights=str(head_prefix),
                           device="cpu", engine="ray", batch_size=4, scorers=1, precision="fp32",
                           quiet=True))
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
    from aiiscan.reports.parts import ReportWriter

    out = tmp_path / "r.parquet"
    first = run_scan([str(mixed_folder / "sub")], tmp_path / "sub.parquet",
                     *scan_options(weights=str(head_prefix), device="cpu", engine="ray", quiet=True))
    # an interrupted scan that had done the sub folder, with the options of the run that resumes it
    with ReportWriter(out, identity=report_metadata(first.report)["run_identity"]) as w:
        for row in read_report(first.report).to_pylist():
            w.write(row)
        w.flush()
    s = run_scan([str(mixed_folder)], out, *scan_options(weights=str(head_prefix), device="cpu", engine="ray",
                 resume=True, quiet=True))
    assert s.resumed == 5 and s.scored == 10
    assert len(read_report(out)) == 19


def test_calibrate_and_evaluate_on_ray_match_the_local_engine(local_cluster, mixed_folder, head_prefix,
                                                              tmp_path):
    """Per-job variants (the band copies), conditions and seeds travel to Ray: same numbers."""
    import shutil

    from aiiscan.decode.launder import Condition
    from aiiscan.engines import make_engine
    from aiiscan.options import RunOptions
    from aiiscan.tasks.calibrate import calibrate
    from aiiscan.tasks.datasets import from_folders
    from aiiscan.tasks.evaluate import evaluate

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


# -- multi-head scans: the actors hold what the local engine builds (a Scorer) ------------------------
@pytest.fixture(scope="module")
def multi_folder(tmp_path_factory):
    """Photos, a copy (content scored once, every head's score reused) and a file that fails."""
    import shutil

    root = tmp_path_factory.mktemp("ray-multi")
    paths = write_photos(root, 6, seed=34)
    write_photos(root / "sub", 3, seed=35, ext="jpg")
    shutil.copy(paths[0], root / "copy_of_0.png")
    (root / "empty.png").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def calibrated_heads(multi_folder, head_prefix, head2_prefix, mpft_prefix, tmp_path_factory):
    """Two CLIP-Flow heads on one backbone and an MPFT head, heads 2 and 3 calibrated at their
    median score here (so every label and verdict is decided); head 1's threshold, for --threshold."""
    import json
    import shutil

    probe = tmp_path_factory.mktemp("probe")
    s = run_scan([str(multi_folder)], probe / "p.parquet",
                 *scan_options(weights=[str(head_prefix), str(head2_prefix), str(mpft_prefix)],
                               device="cpu", workers=0, quiet=True))
    ok = [r for r in read_report(s.report).to_pylist() if r["status"] == "ok"]
    heads = [str(head_prefix)]
    for k, prefix in ((2, head2_prefix), (3, mpft_prefix)):
        card = json.loads(Path(f"{prefix}.json").read_text())
        card["threshold"] = {"value": float(np.median([r[f"score_{k}"] for r in ok])), "policy": "test"}
        dst = probe / f"cal{k}"
        Path(f"{dst}.json").write_text(json.dumps(card))
        shutil.copy(f"{prefix}.safetensors", f"{dst}.safetensors")
        heads.append(str(dst))
    return heads, float(np.median([r["score"] for r in ok]))


def _by_path(report) -> dict[str, dict]:
    return {r["path"]: r for r in read_report(report).to_pylist()}


def _assert_same_rows(a: dict[str, dict], b: dict[str, dict], n_heads: int) -> None:
    assert a.keys() == b.keys()
    for path, ra in a.items():
        rb = b[path]
        for col in ("status", "error", "label", "verdict", "reused", "reused_from", "sha256", "model_id",
                    *(f"{c}_{k}" for k in range(2, n_heads + 1) for c in ("label", "model_id"))):
            assert ra[col] == rb[col], (path, col)
        for col in ("score", *(f"score_{k}" for k in range(2, n_heads + 1))):
            assert (ra[col] is None) == (rb[col] is None), (path, col)
            if ra[col] is not None:
                assert abs(ra[col] - rb[col]) <= 1e-6, (path, col, ra[col], rb[col])


def test_ray_multihead_scan_matches_local(local_cluster, multi_folder, calibrated_heads, tmp_path):
    """Two CLIP-Flow heads (one shared pass) and an MPFT head (its own): the local engine's rows."""
    heads, thr = calibrated_heads
    kw = dict(weights=heads, threshold=thr, combine="any", device="cpu", batch_size=4, precision="fp32",
              quiet=True)
    local = run_scan([str(multi_folder)], tmp_path / "local.parquet", *scan_options(workers=2, **kw))
    far = run_scan([str(multi_folder)], tmp_path / "ray.parquet",
                   *scan_options(engine="ray", scorers=1, **kw))
    assert local.exit_code == far.exit_code == 3  # empty.png
    a, b = _by_path(local.report), _by_path(far.report)
    assert len(a) == 11 and sum(r["reused"] == "duplicate" for r in b.values()) == 1
    _assert_same_rows(a, b, 3)
    ok = [r for r in b.values() if r["status"] == "ok"]
    assert all(r["verdict"] for r in ok)  # every head labels: the verdict is decided
    assert all({r[c] for r in ok} == {"ai", "natural"} for c in ("label", "label_2", "label_3"))
    assert read_report(far.report).schema == read_report(local.report).schema
    ma, mb = report_metadata(local.report), report_metadata(far.report)
    assert mb["engine"] == "ray" and mb["backbone_passes"] == ma["backbone_passes"] == 2
    for key in ("heads", "head_thresholds", "combine"):
        assert mb[key] == ma[key], key
    assert far.verdicts == local.verdicts and far.duplicates == local.duplicates == 1


def test_ray_multihead_scan_resumes_and_reuses(local_cluster, multi_folder, calibrated_heads, tmp_path):
    """An interrupted multi-head scan's parts (here: the sub folder, scored locally) stand, and so
    do an --incremental report's rows of the same heads; Ray scores the rest, and the report is
    the local engine's."""
    from aiiscan.reports.parts import ReportWriter
    from aiiscan.reports.schema import report_schema

    heads, thr = calibrated_heads
    kw = dict(weights=heads, threshold=thr, device="cpu", batch_size=4, precision="fp32", quiet=True)
    whole = run_scan([str(multi_folder)], tmp_path / "whole.parquet", *scan_options(workers=0, **kw))
    sub = run_scan([str(multi_folder / "sub")], tmp_path / "sub.parquet", *scan_options(workers=0, **kw))
    out = tmp_path / "r.parquet"
    identity = report_metadata(sub.report)["run_identity"]  # the interrupted run's: the same options
    with ReportWriter(out, schema=report_schema(3), identity=identity) as w:
        for row in read_report(sub.report).to_pylist():
            w.write(row)
        w.flush()
    s = run_scan([str(multi_folder)], out, *scan_options(engine="ray", resume=True, **kw))
    assert s.resumed == 3 and s.scored == 6 and s.duplicates == 1
    _assert_same_rows(_by_path(whole.report), _by_path(out), 3)
    s = run_scan([str(multi_folder)], tmp_path / "inc.parquet",
                 *scan_options(engine="ray", incremental=str(sub.report), **kw))
    assert s.reused == 3 and s.scored == 6
    inc = _by_path(tmp_path / "inc.parquet")
    assert [r["reused"] for r in inc.values()].count("unchanged") == 3
    _assert_same_rows({p: r | {"reused": inc[p]["reused"], "reused_from": inc[p]["reused_from"]}
                       for p, r in _by_path(whole.report).items()}, inc, 3)


def test_ray_refuses_heads_of_different_crop_sizes_as_local(local_cluster, head_prefix, photos,
                                                            tmp_path):
    from aiiscan.decode.proxies import ProxySpec
    from aiiscan.errors import UsageError
    from aiiscan.models.backbone import build_backbone
    from aiiscan.options import TrainOptions
    from aiiscan.tasks.selftest import TINY64_CONFIG
    from aiiscan.tasks.train import train

    small = tmp_path / "tiny64"
    bb = build_backbone(str(TINY64_CONFIG), "none", device="cpu", quiet=True)
    train(bb, photos[:8], small, TrainOptions(mode="P", proxy=ProxySpec(ratio=0.1), epochs=1, batch_size=8,
                                             views=1, workers=0), progress=False,
          backbone_source=str(TINY64_CONFIG))
    write_photos(tmp_path / "in", 1, seed=36)
    for engine in ("local", "ray"):
        with pytest.raises(UsageError, match="different crop sizes"):
            run_scan([str(tmp_path / "in")], tmp_path / f"{engine}.parquet",
                     *scan_options(weights=[str(head_prefix), str(small)], engine=engine, device="cpu",
                                   workers=0, quiet=True))
        assert not (tmp_path / f"{engine}.parquet.parts").exists()


def test_ray_scores_a_probe_beside_a_clip_flow_head(local_cluster, multi_folder, head_prefix, probe_prefix,
                                                    tmp_path):
    """A linear probe (issue 28) shares the CLIP-Flow head's backbone pass on Ray as locally."""
    kw = dict(weights=[str(head_prefix), str(probe_prefix)], device="cpu", batch_size=4, precision="fp32",
              quiet=True)
    local = run_scan([str(multi_folder)], tmp_path / "local.parquet", *scan_options(workers=2, **kw))
    far = run_scan([str(multi_folder)], tmp_path / "ray.parquet",
                   *scan_options(engine="ray", scorers=1, **kw))
    a, b = _by_path(local.report), _by_path(far.report)
    assert a.keys() == b.keys() and len(a) == 11
    for path, ra in a.items():  # the probe's logits are larger than a flow's scores: float noise scales too
        assert all(ra[c] == b[path][c] for c in ("status", "reused", "model_id", "model_id_2")), path
        for col in ("score", "score_2"):
            assert (ra[col] is None) == (b[path][col] is None), (path, col)
            assert ra[col] is None or ra[col] == pytest.approx(b[path][col], rel=1e-5, abs=1e-6), (path, col)
    ma, mb = report_metadata(local.report), report_metadata(far.report)
    assert mb["engine"] == "ray" and mb["backbone_passes"] == ma["backbone_passes"] == 1
    assert [h["model_id"] for h in mb["heads"]] == [h["model_id"] for h in ma["heads"]]
