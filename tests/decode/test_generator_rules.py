"""Generator attribution from rules kept as data: every built-in rule on a minimal file or
metadata dict, the negatives (camera EXIF, no metadata, near misses), user rules files (order,
replacement, digest) and the checks a rules file must pass as untrusted input."""

from __future__ import annotations

import io
import json
import struct
import time
import zlib

import pytest
from PIL import Image, PngImagePlugin

from aiiscan.decode.evidence import Evidence, load_evidence
from aiiscan.decode.generators import (
    MAX_INPUT,
    Rule,
    RuleSet,
    builtin_rules,
    parse_rules,
    rules_digest,
)
from aiiscan.decode.provenance import extract
from aiiscan.errors import UsageError
from aiiscan.options import EvidenceOptions

A1111 = "a lighthouse at dusk\nNegative prompt: blurry\nSteps: 30, Sampler: Euler a, CFG scale: 7, Seed: 1"
DST = "http://cv.iptc.org/newscodes/digitalsourcetype/"


def _png(texts: dict[str, str]) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in texts.items():
        info.add_text(key, value)
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 150)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def _jpeg(exif: Image.Exif | None = None, xmp: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 150)).save(buf, "JPEG", **({"exif": exif} if exif else {}))
    data = buf.getvalue()
    if xmp is None:
        return data
    seg = b"http://ns.adobe.com/xap/1.0/\0" + xmp.encode()
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(seg) + 2) + seg + data[2:]


def _exif(software: str | None = None, comment: str | None = None, camera: bool = False) -> Image.Exif:
    ex = Image.Exif()
    if camera:
        ex[0x010F], ex[0x0110] = "Canon", "EOS 5D Mark IV"
        ex.get_ifd(0x8769)[0x9003] = "2021:06:01 12:00:00"
    if software:
        ex[0x0131] = software
    if comment:  # Pillow writes the EXIF sub-IFD only beside some IFD0 tag
        ex[0x010E] = "picture"
        ex.get_ifd(0x8769)[0x9286] = b"ASCII\0\0\0" + comment.encode()
    return ex


def _xmp(**attrs: str) -> str:
    body = " ".join(f'{k}="{v}"' for k, v in attrs.items())
    return f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description {body}/></rdf:RDF></x:xmpmeta>'


def _itxt_xmp_png(xmp: str) -> bytes:
    data = _png({})
    body = b"XML:com.adobe.xmp\0\0\0\0\0" + xmp.encode()
    chunk = struct.pack(">I", len(body)) + b"iTXt" + body + struct.pack(">I", zlib.crc32(b"iTXt" + body))
    iend = data.rindex(b"IEND") - 4
    return data[:iend] + chunk + data[iend:]


SD = "Stable Diffusion WebUI (A1111 parameters)"
OPENAI = "OpenAI image generation (ChatGPT, API)"
# rule id -> (a file and its format, or the fields dict the C2PA check fills), generator, kind
CASES = {
    "a1111-parameters": ((_png({"parameters": A1111}), "PNG"), SD, "generated"),
    "a1111-exif-comment": ((_jpeg(_exif(comment=A1111)), "JPEG"), SD, "generated"),
    "comfyui-prompt": ((_png({"prompt": json.dumps({"3": {"class_type": "KSampler"}})}), "PNG"), "ComfyUI",
                       "generated"),
    "comfyui-workflow": ((_png({"workflow": ' {"nodes": []}'}), "PNG"), "ComfyUI", "generated"),
    "invokeai-metadata": ((_png({"invokeai_metadata": '{"positive_prompt": "x"}'}), "PNG"), "InvokeAI",
                          "generated"),
    "invokeai-graph": ((_png({"invokeai_graph": "{}"}), "PNG"), "InvokeAI", "generated"),
    "invokeai-sd-metadata": ((_png({"sd-metadata": "{}"}), "PNG"), "InvokeAI", "generated"),
    "invokeai-dream": ((_png({"Dream": '"a castle" -s 50 -S 42'}), "PNG"), "InvokeAI", "generated"),
    "novelai-software": ((_png({"Software": "NovelAI", "Source": "NovelAI Diffusion V3"}), "PNG"), "NovelAI",
                         "generated"),
    "google-credit": ((_jpeg(xmp=_xmp(**{"photoshop:Credit": "Made with Google AI",
                                         "Iptc4xmpExt:DigitalSourceType": DST + "trainedAlgorithmicMedia"})),
                       "JPEG"), "Google AI (Imagen, Gemini)", "generated"),
    "openai-dalle-agent": ({"c2pa:generated_by": "DALL·E", "c2pa:claim_generator": "ChatGPT c2pa-rs/0.28.4",
                            "c2pa:ai": "generated"}, "DALL·E (OpenAI)", "generated"),
    "openai-image-agent": ({"c2pa:generated_by": "gpt-image", "c2pa:ai": "generated"}, OPENAI, "generated"),
    "adobe-firefly-agent": ({"c2pa:generated_by": "Adobe Firefly", "c2pa:claim_generator": "Adobe_Firefly",
                             "c2pa:ai": "generated"}, "Adobe Firefly", "generated"),
    "adobe-firefly-edit-agent": ({"c2pa:edited_by": "Adobe Firefly", "c2pa:ai": "edited",
                                  "c2pa:claim_generator": "Adobe Photoshop"}, "Adobe Firefly", "edited"),
    "openai-chatgpt-claim": ({"c2pa:claim_generator": "ChatGPT 1.0", "c2pa:ai": "generated"}, OPENAI,
                             "generated"),
    "openai-api-claim": ({"c2pa:claim_generator": "OpenAI-API c2pa-rs/0.28.4"}, OPENAI, "generated"),
    "adobe-firefly-claim": ({"c2pa:claim_generator": "Adobe_Firefly adobe_c2pa/0.5.0 c2pa-rs/0.20.0"},
                            "Adobe Firefly", "generated"),
    "microsoft-designer-claim": ({"c2pa:claim_generator": "Microsoft Responsible AI Image Provenance 1.0"},
                                 "Microsoft Designer / Bing Image Creator", "generated"),
    "c2pa-generated": ({"c2pa:ai": "generated", "c2pa:claim_generator": "SomeApp 2.0"}, None, "generated"),
    "c2pa-edited": ({"c2pa:ai": "edited", "c2pa:claim_generator": "Adobe Photoshop 25.0"}, None, "edited"),
    "iptc-generated": ((_jpeg(xmp=_xmp(**{"Iptc4xmpExt:DigitalSourceType": DST + "trainedAlgorithmicMedia"})),
                        "JPEG"), None, "generated"),
    "iptc-edited": ((_itxt_xmp_png(_xmp(**{"Iptc4xmpExt:DigitalSourceType":
                                           DST + "compositeWithTrainedAlgorithmicMedia"})), "PNG"),
                    None, "edited"),
}


def test_every_builtin_rule_has_a_case():
    assert [r.id for r in builtin_rules()] == list(CASES)


@pytest.mark.parametrize("rule_id", list(CASES))
def test_builtin_rule(rule_id):
    source, generator, kind = CASES[rule_id]
    if isinstance(source, dict):
        found = RuleSet.of().attribute(source)
        assert (found.generator, found.kind, found.rule) == (generator, kind, rule_id)
    else:
        out = extract(*source)
        assert (out["generator"], out["generator_kind"], out["generator_rule"]) == (generator, kind, rule_id)
        assert out["provenance_hint"] == "declared-ai"


@pytest.mark.parametrize("data, fmt", [
    (_jpeg(_exif(camera=True)), "JPEG"),
    (_jpeg(_exif("Adobe Photoshop Lightroom Classic 12.0 (Windows)", camera=True)), "JPEG"),
    (_jpeg(_exif("GIMP 2.10.34")), "JPEG"),
    (_jpeg(_exif("Firmware 1.1.0", camera=True), xmp=_xmp(**{"xmp:CreatorTool": "Photoshop"})), "JPEG"),
    (_jpeg(), "JPEG"),
    (_png({}), "PNG"),
    (_png({"Software": "Adobe ImageReady", "Comment": "holiday"}), "PNG"),
    (_png({"parameters": "Steps: thirty, Sampler: none"}), "PNG"),  # the key alone is no A1111 line
    (_png({"prompt": "a cat on a mat"}), "PNG"),  # not ComfyUI's JSON
    (_jpeg(xmp=_xmp(**{"photoshop:Credit": "Made with Google AI Studio"})), "JPEG"),
    (_jpeg(xmp=_xmp(**{"Iptc4xmpExt:DigitalSourceType": DST + "digitalCapture"})), "JPEG"),
])
def test_camera_exif_and_absent_metadata_name_no_generator(data, fmt):
    out = extract(data, fmt)
    assert (out["generator"], out["generator_kind"], out["generator_rule"]) == (None, None, None)


def test_c2pa_fields_of_ordinary_software_name_no_generator():
    for fields in ({}, {"c2pa:claim_generator": "Adobe Photoshop 25.0"},
                   {"c2pa:claim_generator": "Leica M11"}, {"c2pa:edited_by": "Lightroom"}):
        assert RuleSet.of().attribute(fields) is None


# -- user rules --------------------------------------------------------------------------------------

def _rules(*rules: dict) -> str:
    return json.dumps({"version": 1, "rules": list(rules)})


MIDJOURNEY = {"id": "midjourney-software", "field": "exif:Software", "match": "prefix", "value": "midjourney",
              "ignore_case": True, "generator": "Midjourney", "kind": "generated"}


def test_user_rules_come_first_and_replace_builtins_of_the_same_id(tmp_path):
    path = tmp_path / "mine.json"
    forge = {"id": "forge", "field": "png:parameters", "match": "contains", "value": "Module 1: ",
             "generator": "Forge", "kind": "generated"}
    novelai = {"id": "novelai-software", "field": "png:Software", "match": "equals", "value": "NovelAI",
               "generator": "NovelAI (mine)", "kind": "generated"}
    path.write_text(_rules(MIDJOURNEY, forge, novelai))
    evidence = load_evidence(EvidenceOptions(rules=str(path)))
    rules = evidence.rules().rules
    assert [r.id for r in rules[:3]] == ["midjourney-software", "forge", "novelai-software"]
    assert len(rules) == len(builtin_rules()) + 2  # the user's novelai-software replaced the built-in one
    out = extract(_jpeg(_exif("MidJourney v6")), "JPEG", evidence=evidence)
    assert (out["generator"], out["generator_rule"]) == ("Midjourney", "midjourney-software")
    out = extract(_png({"parameters": A1111 + ", Module 1: ae"}), "PNG", evidence=evidence)
    assert out["generator"] == "Forge"  # before the built-in A1111 rule
    assert extract(_png({"Software": "NovelAI"}), "PNG", evidence=evidence)["generator"] == "NovelAI (mine)"
    assert extract(_png({"parameters": A1111}), "PNG", evidence=evidence)["generator"] == SD
    assert extract(_jpeg(_exif("MidJourney v6")), "JPEG")["generator"] is None  # not a built-in


def test_rules_digest_names_the_rules_in_effect():
    base = rules_digest()
    assert base == rules_digest(None) == RuleSet.of().digest() and base.startswith("sha256:")
    mine = rules_digest(_rules(MIDJOURNEY))
    assert mine != base and mine == Evidence(user_rules=_rules(MIDJOURNEY)).rules().digest()
    assert rules_digest(_rules({**MIDJOURNEY, "note": "comments do not count"})) == mine
    assert rules_digest(_rules({**MIDJOURNEY, "generator": "MJ"})) != mine


def _bad(**change) -> str:
    return _rules({**MIDJOURNEY, **change})


@pytest.mark.parametrize("text, message", [
    ("{", "not JSON"),
    ('{"version": 2, "rules": []}', "'version' must be 1"),
    ('{"version": 1, "rules": {}}', 'expected {"version": 1'),
    ('{"version": 1, "rules": [1]}', "rule #1: a rule is a JSON object"),
    (_bad(fild="x"), "rule 'midjourney-software', 'fild': unknown key"),
    (_bad(id="Mid Journey"), "rule 'Mid Journey', 'id': 1 to 64 characters"),
    (_bad(field="exif:Lens"), "'field': unknown field 'exif:Lens'"),
    (_bad(field="png:"), "'field': unknown field"),
    (_bad(match="glob"), "'match': 'glob' is not one of"),
    (_bad(value=None), "'value': required for 'prefix'"),
    (_bad(value=""), "'value': required for 'prefix'"),
    (_bad(match="present"), "'value': a 'present' rule has no value"),
    (_bad(match="regex", value="^(a+)+$"), "'value': a quantifier applies to a group"),
    (_bad(match="regex", value="(?:ab|cd)*x"), "'value': a quantifier applies to a group"),
    (_bad(match="regex", value="Midjourney.*v6"), "'value': an unbounded repeat"),
    (_bad(match="regex", value="^a*b*c"), "'value': more than one variable-length repeat"),
    (_bad(match="regex", value=r"(\w)\1"), "'value': groupref is not allowed"),
    (_bad(match="regex", value="(?<=a)b"), "'value': assert is not allowed"),
    (_bad(match="regex", value="(?m)^x"), "'value': (?m) is not allowed"),
    (_bad(match="regex", value="a{0,100}b"), "'value': 101 ways to match"),
    (_bad(match="regex", value="(?:ab|cd|ef)(?:ab|cd|ef)(?:ab|cd|ef)(?:ab|cd|ef)"), "'value': 81 ways"),
    (_bad(match="regex", value="x" * 129), "'value': required for 'regex': a non-empty string of at most"),
    (_bad(match="regex", value="[a-"), "'value': not a regular expression"),
    (_bad(kind="maybe"), "'kind': 'maybe' is not one of generated, edited"),
    (_bad(generator=5), "'generator': null or a string"),
    (_bad(ignore_case="yes"), "'ignore_case': true or false"),
    (_rules(MIDJOURNEY, MIDJOURNEY), "rule 'midjourney-software', 'id': used twice"),
    (_rules(*[{**MIDJOURNEY, "id": f"r{i}"} for i in range(501)]), "501 rules, at most 500"),
])
def test_bad_rules_files_are_usage_errors_naming_rule_and_key(tmp_path, text, message):
    path = tmp_path / "rules.json"
    path.write_text(text)
    with pytest.raises(UsageError) as err:
        load_evidence(EvidenceOptions(rules=str(path)))
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith("rules file ") and "rules.json" in str(err.value)


def test_rules_file_size_cap_and_unreadable_file(tmp_path):
    big = tmp_path / "big.json"
    big.write_text(_rules(MIDJOURNEY) + " " * 300_000)
    with pytest.raises(UsageError, match="over 262144 bytes"):
        load_evidence(EvidenceOptions(rules=str(big)))
    with pytest.raises(UsageError, match="cannot read"):
        load_evidence(EvidenceOptions(rules=str(tmp_path / "missing.json")))


def test_allowed_patterns_stay_linear_on_hostile_values():
    """The worst patterns the checks let through, on values built to make them backtrack: the
    value is cut to MAX_INPUT characters and no pattern can try more than a bounded number of
    ways per position."""
    worst = ["^a.*b", "a{0,63}b", "(?:aa|ab|ac|ad)(?:aa|ab|ac|ad)(?:aa|ab|ac|ad)b",
             r"Steps: \d{1,6}, Sampler: ", "^[a ]*x"]
    rules = parse_rules(_rules(*[{"id": f"w{i}", "field": "png:x", "match": "regex", "value": pattern,
                                  "generator": "x", "kind": "generated"} for i, pattern in enumerate(worst)]),
                        "worst")
    started = time.perf_counter()
    for rule in rules:
        for value in ("a" * 4_000_000, "Steps: 1" * 500_000, "a " * 2_000_000):
            assert not rule.test(value)
    assert time.perf_counter() - started < 3
    needle = Rule("t", "png:x", "contains", "needle", "x", "generated")
    assert needle.test("a" * MAX_INPUT + "needle") is False


def test_builtin_rules_pass_the_same_checks():
    text = json.dumps({"version": 1, "rules": [
        {"id": r.id, "field": r.field, "match": r.match, "generator": r.generator, "kind": r.kind,
         **({"value": r.value} if r.value is not None else {})} for r in builtin_rules()]})
    assert parse_rules(text, "copy") == builtin_rules()
