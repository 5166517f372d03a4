"""C2PA trust kept apart from validity, and what a manifest declares (generated or edited,
active manifest or ingredient), on manifests the tests sign themselves: a throwaway CA made
with ``cryptography``, an ES256 signer, c2pa-python's Builder. Nothing is fetched; no key is
committed. Each signed file is made once per session."""

from __future__ import annotations

import datetime
import io
import pickle
import struct
import sys

import pytest
from PIL import Image

from aiiscan.decode import c2pa_check
from aiiscan.decode.evidence import Evidence, load_evidence, read_trust_anchors
from aiiscan.decode.job import DecodeJob, decode_job
from aiiscan.decode.provenance import extract
from aiiscan.errors import UsageError
from aiiscan.options import TRUST_ENV, EvidenceOptions

c2pa = pytest.importorskip("c2pa")
x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

DST = "http://cv.iptc.org/newscodes/digitalsourcetype/"
NO_USAGE = dict(content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False)


def _cert(subject: str, key, issuer_key=None, issuer=None, ca: bool = True) -> x509.Certificate:
    now, day = datetime.datetime.now(datetime.timezone.utc), datetime.timedelta(days=1)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "aiiscan tests")])
    usage = x509.KeyUsage(digital_signature=not ca, key_cert_sign=ca, crl_sign=ca, **NO_USAGE)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer.subject if issuer else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - day).not_valid_after(now + 7 * day)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
               .add_extension(usage, critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if not ca:
        eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION])
        builder = (builder.add_extension(eku, critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                  critical=False))
    return builder.sign(issuer_key or key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="session")
def pki() -> dict:
    """A test root CA with an ES256 signer under it, and another CA that signed nothing."""
    ca_key, other_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _cert("aiiscan test root", ca_key)
    leaf = _cert("aiiscan test signer", leaf_key, ca_key, ca, ca=False)
    key = leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    return {"ca": _pem(ca), "other": _pem(_cert("another root", other_key)), "leaf": _pem(leaf),
            "chain": _pem(leaf) + _pem(ca), "key": key}


def _image(fmt: str, color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), color).save(buf, fmt)
    return buf.getvalue()


def _action(action: str, source: str | None = None, agent: str | None = None, **extra) -> dict:
    return {"action": action, **({"digitalSourceType": DST + source} if source else {}),
            **({"softwareAgent": {"name": agent}} if agent else {}), **extra}


def _sign(pki: dict, actions: list[dict], generator: str = "aiiscan-test", ingredient: bytes | None = None,
          fmt: str = "jpeg", color: tuple[int, int, int] = (90, 120, 150)) -> bytes:
    mime = f"image/{fmt}"
    manifest = {"claim_generator_info": [{"name": generator, "version": "1.0"}], "title": f"t.{fmt}",
                "format": mime, "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": actions}}]}
    info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, pki["chain"], pki["key"], None)
    signer = c2pa.Signer.from_info(info)
    context = c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}})
    with c2pa.Builder(manifest, context=context) as builder:
        if ingredient is not None:
            builder.add_ingredient({"title": "parent.jpg", "relationship": "parentOf", "label": "parent"},
                                   "image/jpeg", io.BytesIO(ingredient))
        out = io.BytesIO()
        builder.sign(signer, mime, io.BytesIO(_image(fmt.upper(), color)), out)
    return out.getvalue()


OPENED = _action("c2pa.opened", parameters={"ingredientIds": ["parent"]})
FIREFLY_EDIT = _action("c2pa.edited", "trainedAlgorithmicMedia", "Adobe Firefly")


@pytest.fixture(scope="session")
def signed(pki) -> dict[str, bytes]:
    """Each case signed once: (file bytes)."""
    generated = _sign(pki, [_action("c2pa.created", "trainedAlgorithmicMedia", "TestGen 2")])
    human = _sign(pki, [_action("c2pa.created", "digitalCapture")], "CameraApp", color=(200, 10, 10))
    return {
        "generated": generated,
        "generated.png": _sign(pki, [_action("c2pa.created", "trainedAlgorithmicMedia")], fmt="png"),
        "human": human,
        "ai-edit": _sign(pki, [_action("c2pa.created", "digitalCapture"), FIREFLY_EDIT], "Photoshop"),
        "composite": _sign(pki, [_action("c2pa.created", "compositeWithTrainedAlgorithmicMedia")],
                           "Composer"),
        # an AI-generated picture, opened and retouched by a person: AI only in the ingredient
        "human-edit-of-ai": _sign(pki, [OPENED, _action("c2pa.color_adjustments")], "HumanEditor",
                                  ingredient=generated, color=(10, 10, 10)),
        # the reverse: a camera picture, edited with AI: AI in the active manifest
        "ai-edit-of-human": _sign(pki, [OPENED, FIREFLY_EDIT], "Photoshop", ingredient=human,
                                  color=(10, 200, 10)),
    }


def _fmt(name: str) -> str:
    return "PNG" if name.endswith(".png") else "JPEG"


# -- trust and validity ------------------------------------------------------------------------

def test_trusted_with_the_ca_as_anchor(signed, pki):
    for name in ("generated", "generated.png", "human-edit-of-ai"):
        out = extract(signed[name], _fmt(name), evidence=Evidence(trust_pem=pki["ca"].decode()))
        assert (out["c2pa_present"], out["c2pa_trust"], out["c2pa_valid"]) == (True, "trusted", True), name
        assert out["c2pa_failures"] is None and out["metadata_error"] is None, name


def test_valid_untrusted_without_anchors_and_with_another_ca(signed, pki):
    for evidence in (None, Evidence(trust_pem=pki["other"].decode())):
        out = extract(signed["generated"], "JPEG", evidence=evidence)
        assert (out["c2pa_trust"], out["c2pa_valid"]) == ("valid-untrusted", True)
        assert out["c2pa_failures"] == "signingCredential.untrusted" and out["metadata_error"] is None
        assert out["c2pa_claim_generator"] == "aiiscan-test 1.0"


def test_invalid_when_pixels_or_manifest_bytes_are_changed_after_signing(signed, pki):
    evidence = Evidence(trust_pem=pki["ca"].decode())
    data = bytearray(signed["generated"])
    data[-4] ^= 0x55  # the entropy-coded pixels, just before the end-of-image marker
    out = extract(bytes(data), "JPEG", evidence=evidence)
    assert (out["c2pa_trust"], out["c2pa_valid"]) == ("invalid", False)
    assert "assertion.dataHash.mismatch" in out["c2pa_failures"]
    data = bytearray(signed["generated"])
    data[data.find(b"aiiscan-test")] ^= 0x01  # the claim itself: its signature no longer matches
    out = extract(bytes(data), "JPEG", evidence=evidence)
    assert (out["c2pa_trust"], out["c2pa_valid"]) == ("invalid", False)
    assert "claimSignature.mismatch" in out["c2pa_failures"]
    data = bytearray(signed["generated"])
    at = data.find(b"jumb")
    data[at + 100:at + 300] = bytes(200)  # the manifest store itself broken: the SDK cannot parse it
    out = extract(bytes(data), "JPEG", evidence=evidence)
    assert (out["c2pa_trust"], out["c2pa_valid"]) == ("invalid", False)
    assert out["metadata_error"].startswith("C2PA: ")


def test_none_without_a_manifest():
    out = extract(_image("JPEG", (1, 2, 3)), "JPEG")
    assert (out["c2pa_present"], out["c2pa_trust"], out["c2pa_valid"]) == (False, "none", None)
    assert out["c2pa_ai"] is None and out["generator"] is None


def test_unchecked_when_c2pa_python_is_missing(signed, monkeypatch):
    monkeypatch.setitem(sys.modules, "c2pa", None)  # import c2pa now raises ImportError
    out = extract(signed["generated"], "JPEG")
    assert (out["c2pa_present"], out["c2pa_trust"], out["c2pa_valid"]) == (True, "unchecked", None)
    assert out["c2pa_declares_ai"] is True and out["c2pa_ai"] is None  # the bytes name the source type
    assert "c2pa-python is not installed" in out["metadata_error"]
    with pytest.raises(UsageError, match="needs c2pa-python"):
        read_trust_anchors("any.pem")


def test_unchecked_when_the_manifest_is_over_the_cap(signed, monkeypatch):
    monkeypatch.setattr(c2pa_check, "MAX_MANIFEST", 100)
    out = extract(signed["generated"], "JPEG")
    assert out["c2pa_trust"] == "unchecked" and "is over 100" in out["metadata_error"]


# -- what the manifest declares ------------------------------------------------------------------

@pytest.mark.parametrize("name, ai, where, generator, kind, rule", [
    ("generated", "generated", "active", None, "generated", "c2pa-generated"),
    ("generated.png", "generated", "active", None, "generated", "c2pa-generated"),
    ("human", None, None, None, None, None),
    ("ai-edit", "edited", "active", "Adobe Firefly", "edited", "adobe-firefly-edit-agent"),
    ("composite", "edited", "active", None, "edited", "c2pa-edited"),
    ("human-edit-of-ai", "generated", "ingredient", None, "generated", "c2pa-generated"),
    ("ai-edit-of-human", "edited", "active", "Adobe Firefly", "edited", "adobe-firefly-edit-agent"),
])
def test_generated_or_edited_in_the_active_manifest_or_an_ingredient(signed, name, ai, where, generator, kind,
                                                                      rule):
    out = extract(signed[name], _fmt(name))
    assert (out["c2pa_ai"], out["c2pa_ai_in"]) == (ai, where)
    assert (out["generator"], out["generator_kind"], out["generator_rule"]) == (generator, kind, rule)
    assert out["c2pa_declares_ai"] is (ai is not None)
    assert out["provenance_hint"] == ("declared-ai" if ai else None)


def test_an_ingredient_declaration_is_walked_through_nested_manifests(signed, pki):
    twice = _sign(pki, [OPENED, _action("c2pa.resized")], "Resizer", ingredient=signed["human-edit-of-ai"],
                  color=(1, 1, 1))
    out = extract(twice, "JPEG")
    assert (out["c2pa_ai"], out["c2pa_ai_in"], out["c2pa_claim_generator"]) == ("generated", "ingredient",
                                                                                 "Resizer 1.0")


# -- hostile manifests and the way to the workers --------------------------------------------------

def _app11(payload: bytes) -> bytes:
    seg = b"JP\0\x01\0\0\0\x01" + payload
    return b"\xff\xeb" + struct.pack(">H", len(seg) + 2) + seg


@pytest.mark.parametrize("payload", [
    b"jumb" + b"c2pa" * 10,  # a box header and nothing else
    struct.pack(">I", 0xFFFFFFF0) + b"jumbjumd" + b"c2pa" + bytes(64),  # a box claiming 4 GB
    struct.pack(">I", 40) + b"jumb" + (struct.pack(">I", 32) + b"jumb") * 8 + b"c2pa",  # nested, inconsistent
    struct.pack(">I", 10248) + b"jumb" + bytes(range(256)) * 40 + b"c2pa",  # noise
])
def test_hostile_manifest_gives_metadata_error_never_a_lost_row(tmp_path, payload, pki):
    jpeg = _image("JPEG", (5, 5, 5))
    path = tmp_path / "hostile.jpg"
    path.write_bytes(jpeg[:2] + _app11(payload) + jpeg[2:])
    res = decode_job(DecodeJob(str(path), provenance=True, evidence=Evidence(trust_pem=pki["ca"].decode())))
    assert res.status == "ok" and res.arrays
    prov = res.info["provenance"]
    assert prov["c2pa_present"] is True and prov["c2pa_trust"] in ("invalid", "unchecked")
    assert prov["metadata_error"] and "C2PA" in prov["metadata_error"]


def test_anchors_travel_in_the_decode_job(tmp_path, signed, pki):
    path = tmp_path / "g.jpg"
    path.write_bytes(signed["generated"])
    evidence = load_evidence(EvidenceOptions(c2pa_trust=str(_write(tmp_path / "ca.pem", pki["ca"]))))
    job = DecodeJob(str(path), provenance=True, evidence=evidence)
    blob = pickle.dumps(job)
    assert len(blob) < 2048  # one anchor: what each job carries to a worker
    assert decode_job(pickle.loads(blob)).info["provenance"]["c2pa_trust"] == "trusted"


# -- the anchors file -------------------------------------------------------------------------------

def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_anchor_file_is_read_once_and_checked(tmp_path, pki, signed):
    bundle = _write(tmp_path / "bundle.pem", b"# my anchors\n" + pki["other"] + b"\n" + pki["ca"])
    pem = read_trust_anchors(bundle)
    assert pem.count("BEGIN CERTIFICATE") == 2 and "#" not in pem
    out = extract(signed["generated"], "JPEG", evidence=Evidence(trust_pem=pem))
    assert out["c2pa_trust"] == "trusted"
    meta = Evidence(trust_pem=pem).metadata()
    assert [s.split(",")[0] for s in meta["c2pa_trust_anchors"]["subjects"]] == ["O=aiiscan tests"] * 2
    assert meta["generator_rules_digest"].startswith("sha256:") and meta["user_rules"] is False


@pytest.mark.parametrize("content, message", [
    (b"not a certificate", "not a PEM file of certificates"),
    (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not a PEM file of certificates"),
    ("leaf", "is not a CA certificate"),
    (b"x" * (1024 * 1024 + 1), "over 1048576 bytes"),
    (None, "cannot read"),
])
def test_bad_anchor_files_are_usage_errors_with_one_line(tmp_path, pki, content, message):
    path = tmp_path / "anchors.pem"
    if content is not None:
        path.write_bytes(pki["leaf"] if content == "leaf" else content)
    with pytest.raises(UsageError, match=message) as err:
        load_evidence(EvidenceOptions(c2pa_trust=str(path)))
    assert "\n" not in str(err.value) and "anchors.pem" in str(err.value)


def test_environment_variable_fills_in_an_absent_option(monkeypatch):
    env = {TRUST_ENV: "/etc/anchors.pem"}
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert EvidenceOptions().c2pa_trust == "/etc/anchors.pem"
    assert EvidenceOptions("mine.pem").c2pa_trust == "mine.pem"
    monkeypatch.setenv(TRUST_ENV, "")
    assert EvidenceOptions().c2pa_trust is None
    monkeypatch.delenv(TRUST_ENV)
    assert EvidenceOptions(rules="r.json") == EvidenceOptions(None, "r.json")
