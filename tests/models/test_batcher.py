"""The one decode -> features stream: order, alignment, and bad files that never wait."""

from aiiscan.decode.job import DecodeJob
from aiiscan.models.batcher import feature_batches
from aiiscan.models.headfile import load_head
from aiiscan.models.scorer import Detector

from ..conftest import write_empty, write_photos


def test_bad_files_leave_at_once_and_features_align(tmp_path, backbone, head_prefix):
    good = write_photos(tmp_path / "good", 3, seed=11)
    bad = write_empty(tmp_path / "bad", 5)
    paths = [*bad, good[0], bad[0], *good[1:]]
    jobs = [DecodeJob(p, backbone.image_size, variants=(None, None)) for p in paths]
    batches = list(feature_batches(backbone.features, jobs, batch_size=64, workers=0))
    # five leading failures are out before any batch of decoded files has filled
    assert [len(b.results) for b in batches[:5]] == [1] * 5 and all(b.features is None for b in batches[:5])
    results = [r for b in batches for r in b.results]
    assert [r.path for r in results] == paths
    feats = batches[-1].features
    assert feats.shape == (3, 2, backbone.identity.feature_dim)
    assert (feats[:, 0] == feats[:, 1]).all()  # the two identical variants of a file
    det = Detector(backbone, *load_head(head_prefix))
    scores = [s for _, s in det.score_stream(iter(jobs), workers=0)]
    assert [s is None for s in scores] == [p in bad for p in paths]
    assert all(len(s) == 2 for s in scores if s is not None)
