"""What the text formats (CSV, JSONL) share: mtime spelt as ISO 8601 UTC text, and the scan's
metadata in a ``REPORT.meta.json`` sidecar."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ..schema import TIME_FORMAT

SIDECAR = True


def text_schema(schema: pa.Schema) -> pa.Schema:
    """The schema as read from text: mtime as a string, parsed by ``schema.conform``, which takes
    our spelling (a Z) and earlier or foreign ones (a +00:00 offset, a space for the T, no zone)."""
    return schema.set(schema.get_field_index("mtime"), pa.field("mtime", pa.string()))


def text_columns(table: pa.Table, formula: str | None = None) -> pa.Table:
    """mtime as ISO 8601 UTC text and, with ``formula`` (a pattern of cells a spreadsheet would
    run), such cells prefixed with '."""
    for i, name in enumerate(table.column_names):
        col = table.column(i)
        if name == "mtime":
            col = pc.strftime(col, format=TIME_FORMAT)
        elif formula and pa.types.is_string(col.type):
            risky = pc.fill_null(pc.match_substring_regex(col, formula), False)
            col = pc.if_else(risky, pc.binary_join_element_wise("'", col, ""), col)
        table = table.set_column(i, name, col)
    return table


def metadata(path: Path) -> dict:
    sidecar = path.with_name(path.name + ".meta.json")
    return json.loads(sidecar.read_text()) if sidecar.is_file() else {}
