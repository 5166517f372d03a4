"""Issue 26: the verdict rule on real files the suite makes: a PNG marked by the reference
watermark encoder and signed by a trusted C2PA signer that declares a capture (conflicting
evidence: uncertain), and a trusted manifest declaring generation (ai, against a head's natural)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from aiiscan.decode.evidence import Evidence
from aiiscan.decode.job import DecodeJob, decode_job
from aiiscan.scanner.rows import facts
from aiiscan.scanner.verdict import decide

from ..decode.test_c2pa_trust import _action, pki, signed  # noqa: F401  (pki, signed: fixtures)
from ..decode.test_watermark import SD2, embed, oracle, synthetic_photo  # noqa: F401  (oracle: a fixture)


def _signed_png(anchors: dict, rgb: np.ndarray, actions: list[dict]) -> bytes:
    """``rgb`` as a PNG, signed by the test signer (its pixels, hence its watermark, unchanged)."""
    import c2pa

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    manifest = {"claim_generator_info": [{"name": "CameraApp", "version": "1.0"}], "title": "t.png",
                "format": "image/png",
                "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": actions}}]}
    info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, anchors["chain"], anchors["key"], None)
    context = c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}})
    out = io.BytesIO()
    with c2pa.Builder(manifest, context=context) as builder:
        builder.sign(c2pa.Signer.from_info(info), "image/png", io.BytesIO(buf.getvalue()), out)
    return out.getvalue()


def _row(path, anchors: dict) -> dict:
    res = decode_job(DecodeJob(str(path), provenance=True, watermark=True,
                               evidence=Evidence(trust_pem=anchors["ca"].decode())))
    assert res.status == "ok", res.error
    return facts(res)


def test_a_watermark_under_a_trusted_capture_manifest_is_uncertain(oracle, pki, tmp_path):  # noqa: F811
    marked = embed(oracle, np.asarray(synthetic_photo(np.random.default_rng(3), (640, 480))), SD2)
    path = tmp_path / "marked.png"
    path.write_bytes(_signed_png(pki, marked, [_action("c2pa.created", "digitalCapture")]))
    row = _row(path, pki)
    assert (row["c2pa_trust"], row["c2pa_ai"], row["watermark"]) == ("trusted", None, "sd2")
    assert decide(row, []) == ("uncertain", "watermark-sd2;c2pa-trusted-no-ai")
    assert decide(row, ["natural"]) == ("uncertain", "watermark-sd2;c2pa-trusted-no-ai;score<threshold")


def test_a_trusted_ai_manifest_decides_against_a_head(signed, pki, tmp_path):  # noqa: F811
    path = tmp_path / "generated.png"
    path.write_bytes(signed["generated.png"])
    row = _row(path, pki)
    assert decide(row, ["natural"]) == ("ai", "c2pa-trusted-ai;generator-metadata;score<threshold")
    path.write_bytes(signed["human"])  # a trusted capture, no head against it
    assert decide(_row(path, pki), []) == ("natural", "c2pa-trusted-no-ai")
