"""``aiiscan evidence``: what a scan would record as evidence for a few files, readable."""

from __future__ import annotations

import json
import sys

import click

from ..decode.provenance import camera_name
from ..options import EvidenceOptions
from ..textsafe import for_terminal
from . import common
from .params import options_for

# What the table shows of a file's evidence, in order: (label, how to say it from the row).
_SHOWN = (
    ("c2pa", lambda r: r["c2pa_present"] and " ".join(filter(None, [
        r["c2pa_trust"], r["c2pa_ai"] and f"(AI: {r['c2pa_ai']}, in the {r['c2pa_ai_in']} manifest)",
        r["c2pa_claim_generator"] and f"claim generator {r['c2pa_claim_generator']}",
        r["c2pa_failures"] and f"failures: {r['c2pa_failures']}"]))),
    ("generator", lambda r: r["generator_kind"]
     and f"{r['generator'] or 'unnamed'} ({r['generator_kind']}; rule {r['generator_rule']})"),
    ("watermark", lambda r: r["watermark"] and f"{r['watermark']} ({r['watermark_bit_errors']} bit errors)"),
    ("iptc source", lambda r: r["iptc_digital_source_type"]),
    ("generator text", lambda r: r["gen_tool"]
     and f"{r['gen_tool']} parameters" + (f": {r['gen_prompt'][:80]}" if r["gen_prompt"] else "")),
    ("exif camera", lambda r: r["has_exif"] and " ".join(filter(None, [
        camera_name(r["exif_make"], r["exif_model"]), r["exif_datetime_original"]]))),
    ("exif software", lambda r: r["exif_software"]),
    ("metadata error", lambda r: r["metadata_error"]),
    ("verdict", lambda r: r["verdict"] and f"{r['verdict']} ({r['verdict_reasons']}) from evidence alone"),
)


@click.command("evidence", context_settings=common.CONTEXT,
               short_help="Show the evidence a scan would record for a few files (C2PA, metadata, "
                          "watermarks).",
               epilog=common.examples(
                   "aiiscan evidence suspect.png",
                   "aiiscan evidence *.jpg --c2pa-trust newsroom-cas.pem",
                   "aiiscan evidence photo.png --json | jq '.[0].c2pa_trust'"))
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@options_for(EvidenceOptions)
@click.option("--json", "as_json", is_flag=True, help="Print the report's columns for each file as JSON.")
@click.option("--keep-gps", is_flag=True, help="Show GPS coordinates (default: only whether there are any).")
@common.common
def command(paths, as_json, keep_gps, quiet, progress, **params) -> None:  # noqa: ARG001
    """Show what a scan would record as evidence for each file: C2PA (validation and trust against
    --c2pa-trust anchors, AI declared by the active manifest or an ingredient), generator metadata
    (rules kept as data), invisible watermarks (SDXL, SD 1, SD 2) and camera EXIF.

    Absence means nothing: metadata is stripped by most uploads, and watermarks do not survive JPEG.
    Camera EXIF is trivially copied: it is shown, and never decides a verdict.
    """
    from .. import api

    rows = api.evidence(paths, keep_gps=keep_gps, **params)
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False, default=str))
    else:
        for row in rows:
            click.echo(for_terminal(row["path"]))
            facts = (f"{row['format']}, {row['width']}x{row['height']}, {row['mode']}, {row['size']} bytes"
                     if row["status"] == "ok" else row["error"])
            click.echo(f"  {'status':<15} {row['status']} ({for_terminal(str(facts))})")
            found = [(label, say(row)) for label, say in _SHOWN] if row["status"] == "ok" else []
            for label, text in found:
                if text:
                    click.echo(f"  {label:<15} {for_terminal(str(text))}")
            if row["status"] == "ok" and not any(text for label, text in found[:4]):
                click.echo(f"  {'evidence':<15} none found (its absence means nothing)")
    sys.exit(3 if any(r["status"] != "ok" for r in rows) else 0)
