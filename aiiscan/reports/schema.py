"""The report's schema: its columns and types, one set of head columns per head, and its formats.

One row per file. The columns a script may rely on are documented in the README's schema table;
reports written before a column existed read it as null (``optional``).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ReportError

META_KEY = b"aiiscan"  # the Parquet schema-metadata key of the scan's metadata
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # Arrow's %S carries the fraction: 2026-11-23T01:16:45.599949Z

_BASE = pa.schema([
    ("path", pa.string()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("size", pa.int64()),
    # UTC in microseconds, stored without a zone: DuckDB, pandas and pyarrow's to_pylist() read
    # it with no extra module (a zoned one needs pytz in DuckDB; nanoseconds need pandas in
    # to_pylist). CSV/JSONL spell it ISO 8601 with a Z (TIME_FORMAT).
    ("mtime", pa.timestamp("us")),
    # An object's ETag (object stores; an archive member's is its shard's), null for a local file:
    # with size and mtime it tells --resume and --incremental whether an object changed.
    ("etag", pa.string()),
    ("sha256", pa.string()),
    ("format", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("mode", pa.string()),
    ("score", pa.float64()),
    ("label", pa.string()),
    ("threshold", pa.float64()),
    ("model_id", pa.string()),
    # A score not computed by this scan's backbone pass: "unchanged" (same path, size and mtime
    # in the --incremental report), "same_content" (same sha256 at another path of that report:
    # a moved or copied file), "duplicate" (same sha256 as a file scored earlier in this scan).
    # reused_from: the path whose score it carries. Both null for a score computed now.
    ("reused", pa.string()),
    ("reused_from", pa.string()),
    # Provenance evidence (aiiscan.provenance): shown beside the score, never part of it.
    ("has_exif", pa.bool_()),
    ("exif_make", pa.string()),
    ("exif_model", pa.string()),
    ("exif_software", pa.string()),
    ("exif_datetime_original", pa.string()),
    ("exif_lens", pa.string()),
    ("has_gps", pa.bool_()),
    ("gps", pa.string()),
    ("gen_params_present", pa.bool_()),
    ("gen_tool", pa.string()),
    ("gen_prompt", pa.string()),
    ("iptc_digital_source_type", pa.string()),
    ("xmp_creator_tool", pa.string()),
    ("c2pa_present", pa.bool_()),
    ("c2pa_declares_ai", pa.bool_()),
    ("c2pa_claim_generator", pa.string()),
    ("c2pa_valid", pa.bool_()),
    # C2PA trust against the user's anchors, the SDK's failure codes, AI declared (generated or
    # edited) and where (the active manifest or an ingredient): decode.c2pa_check.
    ("c2pa_trust", pa.string()),
    ("c2pa_failures", pa.string()),
    ("c2pa_ai", pa.string()),
    ("c2pa_ai_in", pa.string()),
    # The first generator rule that matched (decode.generators): name, generated/edited, rule id.
    ("generator", pa.string()),
    ("generator_kind", pa.string()),
    ("generator_rule", pa.string()),
    ("provenance_hint", pa.string()),
    ("metadata_error", pa.string()),
    # An invisible watermark (decode.watermark) read from a lossless picture's pixels: sdxl, sd1
    # or sd2 and its bit errors; null when none was found or the file was not checked (lossy).
    ("watermark", pa.string()),
    ("watermark_bit_errors", pa.int32()),
])
HEAD_FIELDS = (("score", pa.float64()), ("label", pa.string()), ("threshold", pa.float64()),
               ("model_id", pa.string()))
# After the heads' columns: each head's score range over the original and its --stability
# variants (score_min, score_max; score_min_2, ... for head 2), null without --stability; then the
# file's verdict and its reasons (scanner.verdict, docs/verdicts.md), in every report.
RANGE = ("score_min", "score_max")
VERDICT_FIELDS = (("verdict", pa.string()), ("verdict_reasons", pa.string()))


def suffix(k: int) -> str:
    """Head k's column suffix: none for head 1, ``_k`` for the others."""
    return "" if k == 1 else f"_{k}"


def report_schema(heads: int = 1) -> pa.Schema:
    """The report's schema for a scan with ``heads`` heads (``multihead``). Each further head k adds
    ``score_k``, ``label_k``, ``threshold_k``, ``model_id_k`` after ``model_id``; then every head's
    score range and the verdict's two columns, whatever the number of heads."""
    at = _BASE.get_field_index("model_id") + 1
    extra = [pa.field(f"{name}{suffix(k)}", kind) for k in range(2, heads + 1) for name, kind in HEAD_FIELDS]
    ranges = [pa.field(f"{name}{suffix(k)}", pa.float64()) for k in range(1, max(heads, 1) + 1)
              for name in RANGE]
    verdict = [pa.field(name, kind) for name, kind in VERDICT_FIELDS]
    return pa.schema([*_BASE][:at] + extra + ranges + verdict + [*_BASE][at:])


SCHEMA = report_schema(1)
COLUMNS = SCHEMA.names
# Newer than some reports: read as null when absent (a range or verdict column of any head too).
OPTIONAL = ("reused", "reused_from", "etag", "c2pa_trust", "c2pa_failures", "c2pa_ai", "c2pa_ai_in",
            "generator", "generator_kind", "generator_rule", "watermark", "watermark_bit_errors",
            *(name for name, _ in VERDICT_FIELDS))


def optional(name: str) -> bool:
    """Whether a report may lack this column (written before it existed): read as null."""
    return name in OPTIONAL or name.startswith(RANGE)


def carried(schema: pa.Schema) -> list[str]:
    """What a score reused by content carries (``reports.ledger``): every head's score, its range and
    threshold, and the verdict's reasons (they name the --stability conditions that flipped)."""
    heads = heads_in(schema.names)
    return [f"{name}{suffix(k)}" for name in ("score", *RANGE, "threshold") for k in range(1, heads + 1)
            ] + ["verdict_reasons"]
# The scan's metadata keys aiiscan itself reads back (the HTML page, --incremental) and their
# types: (list, T) is a list of T or null. A value of another type reads as absent (reports.read).
META_TYPES: dict[str, type | tuple] = {
    "threshold": float, "head_thresholds": (list, float), "heads": (list, dict), "backbone": dict,
    "threshold_block": dict, "evidence": dict, "roots": (list, str), "model_id": str,
    "model_card_sha256": str, "threshold_source": str, "combine": str, "command": str,
    "started": str, "finished": str, "aiiscan_version": str, "stability": str, "run_identity": dict,
    "cwd": str, "host": str}


def heads_in(names: list[str]) -> int:
    """How many heads a report with these columns holds: head k counts when all four of its
    columns are there (a stray ``score_2`` alone is a foreign column, not a head)."""
    n = 1
    while all(f"{name}_{n + 1}" in names for name, _ in HEAD_FIELDS):
        n += 1
    return n


def _nested(kind: pa.DataType) -> bool:
    return pa.types.is_nested(kind) or pa.types.is_union(kind) or pa.types.is_map(kind)


def conform(table: pa.Table, schema: pa.Schema = SCHEMA) -> pa.Table:
    """A table with the report schema (``schema``: a multi-head report's), or ``ReportError``
    naming the column that cannot be one. mtime from any earlier spelling (text with or without a
    zone, nanoseconds, zoned) becomes microseconds, years 1 to 9999; every other column must cast
    exactly. Columns the schema lacks are dropped; optional ones that are absent read as null."""
    names = table.column_names
    columns = []
    for field in schema:
        if field.name not in names:
            if not optional(field.name):
                raise ReportError(f"not an aiiscan report: no column {field.name!r}")
            columns.append(pa.nulls(len(table), field.type))
            continue
        col = table.column(field.name)
        if _nested(col.type) and not pa.types.is_dictionary(col.type):
            raise ReportError(f"not an aiiscan report: column {field.name!r} holds {col.type} values, "
                              f"not {field.type}")
        try:
            if field.name == "mtime":
                col = _timestamps(col)
            columns.append(pc.cast(col, field.type, safe=True))
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise ReportError(f"not an aiiscan report: column {field.name!r} does not read as "
                              f"{field.type}: {one_line(exc)}") from None
    return pa.Table.from_arrays(columns, schema=schema)


def _timestamps(col):
    """mtime as microseconds since the epoch, from any spelling a report has had."""
    if pa.types.is_dictionary(col.type):
        col = pc.cast(col, col.type.value_type)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        # ISO 8601 UTC text: parsed straight into microseconds (nanoseconds end in 2262)
        return pc.cast(pc.replace_substring_regex(col, r"(Z|[+-]00:?00)$", ""), pa.timestamp("us"))
    if pa.types.is_timestamp(col.type):
        return pc.cast(col, pa.timestamp("us"), safe=False)  # truncated to µs; a zone is UTC
    return col  # anything else must cast exactly, or is refused


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An error's text on one line, cut short: a report's cell may be huge, or binary."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."
