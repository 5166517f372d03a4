"""Provenance evidence from a file's own bytes: EXIF, generator text chunks, XMP, C2PA.

Evidence shown beside the score, never folded into it; its absence means nothing (metadata
is trivially stripped). Runs in the decode workers on the bytes already read. Every parser
is bounded and wrapped: hostile metadata gives a ``metadata_error``, never a lost row. XMP is
matched with regular expressions, not an XML parser, so entity tricks (XXE, billion laughs)
have nothing to act on. C2PA manifests are checked by ``c2pa_check`` (validation, trust against
the user's anchors, AI declared by the active manifest or an ingredient); the ``generator``
columns come from the rules of ``generators``, applied to the fields read here.
"""

from __future__ import annotations

import html
import io
import json
import logging
import re
import struct
import zlib
from dataclasses import dataclass, field

import exifread

from .c2pa_check import check as check_c2pa
from .evidence import Evidence

PROMPT_CHARS = 500
MAX_TEXT = 4 * 1024 * 1024  # per text chunk kept for parsing (a zTXt bomb stops here)
MAX_TEXT_TOTAL = 16 * 1024 * 1024  # all text chunks of one file together (250 zTXt bombs stop here)
MAX_XMP = 4 * 1024 * 1024
AI_SOURCE_TYPES = frozenset({"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"})
C2PA_UUID = bytes.fromhex("d8fec3d61b0e483c92975828877ec481")  # ISOBMFF uuid box of C2PA

COLUMNS = (
    "has_exif", "exif_make", "exif_model", "exif_software", "exif_datetime_original",
    "exif_lens", "has_gps", "gps", "gen_params_present", "gen_tool", "gen_prompt",
    "iptc_digital_source_type", "xmp_creator_tool", "c2pa_present", "c2pa_declares_ai",
    "c2pa_claim_generator", "c2pa_valid", "c2pa_trust", "c2pa_failures", "c2pa_ai", "c2pa_ai_in",
    "generator", "generator_kind", "generator_rule", "provenance_hint", "metadata_error",
)

logging.getLogger("exifread").setLevel(logging.CRITICAL)  # it logs every oddity of a file


@dataclass
class Blocks:
    """The metadata payloads found by walking the container."""

    exif: bytes | None = None
    xmp: bytes | None = None
    text: dict[str, str] = field(default_factory=dict)  # PNG tEXt/zTXt/iTXt keyword -> value
    c2pa: bytes | None = None
    errors: list[str] = field(default_factory=list)


def _inflate(data: bytes, errors: list[str], key: str, limit: int) -> bytes:
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, limit)
    except zlib.error as exc:
        errors.append(f"PNG text chunk {key!r}: {exc}")
        return b""
    if d.unconsumed_tail:
        errors.append(f"PNG text chunk {key!r} inflates past {limit} bytes; kept the first part")
    return out


def _png(data: bytes, b: Blocks) -> None:
    pos, budget, skipped = 8, MAX_TEXT_TOTAL, 0
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if len(body) < length:
            b.errors.append(f"PNG chunk {ctype!r} runs past the end of the file")
            break
        pos += 12 + length
        if ctype == b"IEND":
            break
        if ctype in (b"tEXt", b"zTXt", b"iTXt"):
            key_raw, _, rest = body.partition(b"\0")
            key = key_raw[:79].decode("latin-1")
            limit = min(MAX_TEXT, budget)
            if limit <= 0:
                skipped += 1
                continue
            if ctype == b"tEXt":
                value = rest[:limit]
            elif ctype == b"zTXt":
                value = _inflate(rest[1:], b.errors, key, limit)
            else:
                flag = rest[:1] == b"\x01"
                _lang, _, rest = rest[2:].partition(b"\0")
                _translated, _, text = rest.partition(b"\0")
                value = _inflate(text, b.errors, key, limit) if flag else text[:limit]
            budget -= len(value)
            enc = "latin-1" if ctype != b"iTXt" else "utf-8"
            if len(value) >= limit:
                b.errors.append(f"PNG text chunk {key!r} over {limit} bytes; kept the first part")
            b.text[key] = value.decode(enc, errors="replace")
            if key == "XML:com.adobe.xmp":
                b.xmp = value
        elif ctype == b"eXIf":
            b.exif = body
        elif ctype == b"caBX":
            b.c2pa = body
    if skipped:
        b.errors.insert(0, f"{skipped} PNG text chunks skipped: the file's text passed "
                           f"{MAX_TEXT_TOTAL} bytes")


def _jpeg(data: bytes, b: Blocks) -> None:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            b.errors.append(f"JPEG marker expected at byte {pos}")
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # image data follows: no metadata segments after it
            break
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        seg = data[pos + 4:pos + 2 + length]
        pos += 2 + length
        if marker == 0xE1 and seg.startswith(b"Exif\0\0") and b.exif is None:
            b.exif = seg[6:]
        elif marker == 0xE1 and seg.startswith(b"http://ns.adobe.com/xap/1.0/\0"):
            b.xmp = seg[29:]
        elif marker == 0xEB and b"jumb" in seg[:64] and b"c2pa" in seg:
            b.c2pa = (b.c2pa or b"") + seg


def _riff(data: bytes, b: Blocks) -> None:
    pos = 12
    while pos + 8 <= len(data):
        fourcc = data[pos:pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4:pos + 8])
        body = data[pos + 8:pos + 8 + size]
        pos += 8 + size + (size & 1)
        if fourcc == b"EXIF":
            b.exif = body[6:] if body.startswith(b"Exif\0\0") else body
        elif fourcc == b"XMP ":
            b.xmp = body
        elif fourcc == b"C2PA":
            b.c2pa = body


def _isobmff(data: bytes, b: Blocks) -> None:
    pos = 0
    while pos + 8 <= len(data):
        size, btype = struct.unpack(">I4s", data[pos:pos + 8])
        header = 8
        if size == 1 and pos + 16 <= len(data):
            (size,) = struct.unpack(">Q", data[pos + 8:pos + 16])
            header = 16
        elif size == 0:
            size = len(data) - pos
        if size < header:
            b.errors.append(f"ISOBMFF box {btype!r} has an impossible size")
            break
        if btype == b"uuid" and data[pos + header:pos + header + 16] == C2PA_UUID:
            b.c2pa = data[pos:pos + size]
        pos += size


def find_blocks(data: bytes, fmt: str | None) -> Blocks:
    b = Blocks()
    walker = {"PNG": _png, "JPEG": _jpeg, "WEBP": _riff, "HEIF": _isobmff, "AVIF": _isobmff}.get(fmt or "")
    try:
        if walker:
            walker(data, b)
        elif fmt == "TIFF":
            b.exif = data
    except (struct.error, ValueError, IndexError) as exc:
        b.errors.append(f"{fmt} container: {exc}")
    if b.xmp is None:  # GIF, TIFF, or XMP where the walker does not look: find the packet
        start = data.find(b"<x:xmpmeta")
        if start >= 0:
            end = data.find(b"</x:xmpmeta>", start, start + MAX_XMP)
            b.xmp = data[start:end + 12] if end >= 0 else data[start:start + MAX_XMP]
    return b


# -- EXIF ----------------------------------------------------------------------------------

def _user_comment(raw: list | bytes) -> str | None:
    data = bytes(raw) if not isinstance(raw, bytes) else raw
    code, body = data[:8], data[8:]
    if code.startswith(b"UNICODE"):
        enc = "utf-16-be" if body[:1] == b"\0" else "utf-16-le"
        text = body.decode(enc, errors="replace")
    else:
        text = body.decode("utf-8", errors="replace")
    text = text.strip("\0 ")
    return text or None


def _dms(values, ref: str) -> float:
    deg, minutes, sec = (float(v.num) / float(v.den) if hasattr(v, "num") else float(v) for v in values[:3])
    out = deg + minutes / 60 + sec / 3600
    return -out if ref in ("S", "W") else out


def _exif(blob: bytes, keep_gps: bool, out: dict, errors: list[str]) -> str | None:
    """Fills the exif_* columns; returns the UserComment text (A1111 puts parameters there)."""
    try:
        tags = exifread.process_file(io.BytesIO(blob), details=True, extract_thumbnail=False)
    except Exception as exc:  # exifread on hostile offsets: any error means "unreadable EXIF"
        errors.append(f"EXIF: {type(exc).__name__}: {exc}"[:200])
        return None
    if not tags:
        errors.append("EXIF block present but unreadable")
        return None
    out["has_exif"] = True

    def text(*names: str) -> str | None:
        for n in names:
            if n in tags:
                v = str(tags[n].printable).strip("\0 ")[:200]
                if v:
                    return v
        return None

    out["exif_make"] = text("Image Make")
    out["exif_model"] = text("Image Model")
    out["exif_software"] = text("Image Software")
    out["exif_datetime_original"] = text("EXIF DateTimeOriginal", "Image DateTimeOriginal")
    out["exif_lens"] = text("EXIF LensModel", "MakerNote LensModel", "EXIF LensMake")
    out["has_gps"] = "GPS GPSLatitude" in tags or "GPS GPSLongitude" in tags
    if keep_gps and "GPS GPSLatitude" in tags and "GPS GPSLongitude" in tags:
        try:
            lat = _dms(tags["GPS GPSLatitude"].values, text("GPS GPSLatitudeRef") or "N")
            lon = _dms(tags["GPS GPSLongitude"].values, text("GPS GPSLongitudeRef") or "E")
            out["gps"] = f"{lat:.6f},{lon:.6f}"
        except (ZeroDivisionError, TypeError, ValueError, IndexError) as exc:
            errors.append(f"EXIF GPS: {exc}")
    if "EXIF UserComment" in tags:
        return _user_comment(tags["EXIF UserComment"].values)
    return None


# -- generator parameters --------------------------------------------------------------------

_STEPS = re.compile(r"Steps: \d")


def _is_a1111(text: str) -> bool:
    """``Steps: N`` and, somewhere after it, ``Sampler: ``. The first and the last occurrence
    decide, so the cost is linear (the former ``Steps: \\d+.*Sampler: `` pattern backtracked
    quadratically on ``Steps: 1 `` repeated)."""
    m = _STEPS.search(text)
    return m is not None and text.rfind("Sampler: ") >= m.end()


def _a1111_prompt(params: str) -> str:
    return re.split(r"\n(?:Negative prompt:|Steps: )", params, maxsplit=1)[0].strip()


def _json(text: str):
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _comfy_prompt(text: str) -> str | None:
    graph = _json(text)
    if not isinstance(graph, dict):
        return None
    for node in graph.values():
        if isinstance(node, dict) and "TextEncode" in str(node.get("class_type", "")):
            value = (node.get("inputs") or {}).get("text")
            if isinstance(value, str) and value.strip():
                return value.strip()
    return None


def _generator(text: dict[str, str], user_comment: str | None) -> tuple[str | None, str | None]:
    """(tool, prompt) from PNG text chunks and the EXIF UserComment."""
    if "parameters" in text:
        return "a1111", _a1111_prompt(text["parameters"])
    if user_comment and _is_a1111(user_comment):
        return "a1111", _a1111_prompt(user_comment)
    if "prompt" in text or "workflow" in text:
        if isinstance(_json(text.get("prompt") or text.get("workflow") or ""), dict):
            return "comfyui", _comfy_prompt(text.get("prompt", ""))
    if text.get("Software", "").startswith("NovelAI") or (
            "Comment" in text and isinstance(_json(text["Comment"]), dict) and "Description" in text):
        comment = _json(text.get("Comment", ""))
        prompt = text.get("Description") or (comment.get("prompt") if isinstance(comment, dict) else None)
        return "novelai", prompt
    for key in ("invokeai_metadata", "sd-metadata", "Dream", "invokeai_graph"):
        if key in text:
            meta = _json(text[key])
            prompt = None
            if isinstance(meta, dict):
                prompt = meta.get("positive_prompt") or meta.get("prompt")
                image = meta.get("image")
                if prompt is None and isinstance(image, dict):
                    prompt = image.get("prompt")
                if isinstance(prompt, list) and prompt and isinstance(prompt[0], dict):
                    prompt = prompt[0].get("prompt")
            elif key == "Dream":
                prompt = text[key].split(" -", 1)[0].strip('" ')
            return "invokeai", prompt if isinstance(prompt, str) else None
    for key, value in text.items():
        if key.lower() in ("generation_data", "generation data", "ai_metadata") or _is_a1111(value):
            return "other", None
    return None, None


# -- XMP -----------------------------------------------------------------------------------------

def _xmp_attribute(xmp: str, name: str) -> str | None:
    """``name="value"`` or ``name='value'``, whitespace allowed around ``=``; linear: a quote
    that never closes is searched for once."""
    unclosed: set[str] = set()
    for m in re.finditer(re.escape(name) + r"\s*=\s*([\"'])", xmp):
        if m[1] in unclosed:
            continue
        end = xmp.find(m[1], m.end())
        if end < 0:
            unclosed.add(m[1])
        elif xmp[m.end():end].strip():
            return xmp[m.end():end]
    return None


def _xmp_element(xmp: str, name: str) -> str | None:
    """``<name rdf:resource="value"/>`` or ``<name ...>value</name>`` (text without markup).

    Searched with ``str.find``, never with a pattern that can backtrack: every search is
    cached until the walk passes its result, and openers that end at an already examined ``>``
    are skipped, so the whole walk is linear in the packet."""
    opener, closer = "<" + name, "</" + name + ">"
    gt = close = -1
    pos = xmp.find(opener)
    while pos >= 0:
        after = pos + len(opener)
        pos = xmp.find(opener, after)
        if after >= len(xmp) or not (xmp[after] in "/>" or xmp[after].isspace()):
            continue  # a longer name that starts the same
        if gt >= after:
            continue  # inside the tag examined last: same end, nothing new
        gt = xmp.find(">", after)
        if gt < 0:
            return None
        tag = xmp[after:gt]
        if "rdf:resource" in tag:
            value = _xmp_attribute(tag, "rdf:resource")
            if value is not None:
                return value
        elif not tag.endswith("/"):
            if close < gt:
                close = xmp.find(closer, gt)
                if close < 0:
                    return None
            text = xmp[gt + 1:close]
            if "<" not in text and text.strip():
                return text
    return None


def _xmp_field(xmp: str, name: str) -> str | None:
    value = _xmp_attribute(xmp, name) or _xmp_element(xmp, name)
    return html.unescape(value.strip())[:200] if value else None


def _c2pa(data: bytes, fmt: str | None, size: int, anchors: str | None, out: dict,
          fields: dict[str, str], errors: list[str]) -> None:
    """The C2PA columns from c2pa-python's check, and the C2PA fields the generator rules read."""
    facts = check_c2pa(data, fmt, size, anchors)
    out.update(c2pa_trust=facts.trust, c2pa_valid=facts.valid, c2pa_failures=facts.failures,
               c2pa_claim_generator=facts.claim_generator, c2pa_ai=facts.ai, c2pa_ai_in=facts.ai_in)
    out["c2pa_declares_ai"] = out["c2pa_declares_ai"] or facts.ai is not None
    if facts.error:
        errors.append(facts.error)
    for name, value in (("c2pa:claim_generator", facts.claim_generator), ("c2pa:ai", facts.ai),
                        ("c2pa:generated_by", facts.generated_by), ("c2pa:edited_by", facts.edited_by)):
        if value:
            fields[name] = value


def extract(data: bytes, fmt: str | None, keep_gps: bool = False, prompts: bool = True,
            evidence: Evidence | None = None) -> dict:
    """The provenance columns of one file. Never raises."""
    evidence = evidence or Evidence()
    out: dict = dict.fromkeys(COLUMNS)
    out.update(has_exif=False, has_gps=False, gen_params_present=False, c2pa_present=False, c2pa_trust="none")
    errors: list[str] = []
    try:
        b = find_blocks(data, fmt)
        errors += b.errors
        fields = {f"png:{k}": v for k, v in b.text.items()}  # what the generator rules read
        comment = _exif(b.exif, keep_gps, out, errors) if b.exif else None
        for name, value in (("exif:Make", out["exif_make"]), ("exif:Model", out["exif_model"]),
                            ("exif:Software", out["exif_software"]), ("exif:UserComment", comment)):
            if value:
                fields[name] = value
        tool, prompt = _generator(b.text, comment)
        if tool:
            out["gen_params_present"] = True
            out["gen_tool"] = tool
            if prompts and prompt:
                out["gen_prompt"] = prompt[:PROMPT_CHARS]
        if b.xmp:
            xmp = b.xmp[:MAX_XMP].decode("utf-8", errors="replace")
            source = _xmp_field(xmp, "Iptc4xmpExt:DigitalSourceType")
            out["iptc_digital_source_type"] = source and source.rstrip("/").rsplit("/", 1)[-1]
            out["xmp_creator_tool"] = _xmp_field(xmp, "xmp:CreatorTool")
            for name, value in (("xmp:DigitalSourceType", out["iptc_digital_source_type"]),
                                ("xmp:CreatorTool", out["xmp_creator_tool"]),
                                ("xmp:Credit", _xmp_field(xmp, "photoshop:Credit"))):
                if value:
                    fields[name] = value
        if b.c2pa is not None:
            out["c2pa_present"] = True
            out["c2pa_declares_ai"] = any(t.encode() in b.c2pa for t in AI_SOURCE_TYPES)
            _c2pa(data, fmt, len(b.c2pa), evidence.trust_pem, out, fields, errors)
        found = evidence.rules().attribute(fields)
        if found:
            out.update(generator=found.generator, generator_kind=found.kind, generator_rule=found.rule)
    except Exception as exc:  # a parser bug on hostile input must not cost the row
        errors.append(f"metadata parser failure: {type(exc).__name__}: {exc}"[:200])
    declared = (out["gen_params_present"] or out["iptc_digital_source_type"] in AI_SOURCE_TYPES
                or bool(out["c2pa_declares_ai"]) or out["generator_kind"] is not None)
    if declared:
        out["provenance_hint"] = "declared-ai"
    elif out["exif_make"] and out["exif_model"] and out["exif_datetime_original"]:
        out["provenance_hint"] = "camera-exif"
    if errors:
        out["metadata_error"] = "; ".join(e.replace("\n", " ") for e in errors)[:500]
    return out


def camera_name(make: str | None, model: str | None) -> str:
    """A camera as people write it: "Canon" + "Canon EOS 5D" is "Canon EOS 5D", not "Canon Canon
    EOS 5D" (many makers repeat the make in the model tag). Empty when neither is known."""
    make, model = (make or "").strip(), (model or "").strip()
    return model if make and model.lower().startswith(make.lower()) else f"{make} {model}".strip()
