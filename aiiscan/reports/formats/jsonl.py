"""JSON Lines reports: one JSON object per row, as written by ``json.dumps`` (UTF-8, not ASCII)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.json as pajson

from ..schema import SCHEMA
from .text import SIDECAR, metadata, text_columns, text_schema  # noqa: F401 (this format's interface)


def write(sink: BinaryIO, batches: Iterator[pa.RecordBatch], schema: pa.Schema, meta: bytes) -> None:  # noqa: ARG001
    f = io.TextIOWrapper(sink, encoding="utf-8", newline="\n")
    for batch in batches:
        text = text_columns(pa.Table.from_batches([batch], schema))
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in text.to_pylist())
    f.flush()
    f.detach()  # the sink stays open: its owner (files.atomic_output) closes it


def read(path: Path, schema_for: Callable[[list[str]], pa.Schema], batch_rows: int  # noqa: ARG001
         ) -> tuple[list[str], pa.Schema, Iterator[pa.Table]]:
    with open(path, encoding="utf-8", errors="replace") as f:
        first = f.readline(1 << 24)  # a first row (at most a block); a hostile file is not read whole
    try:  # an empty report (a scan of no file) has every column, as written
        row = json.loads(first) if first.strip() else dict.fromkeys(SCHEMA.names)
    except ValueError:
        row = None
    names = list(row) if isinstance(row, dict) else []
    schema = schema_for(names)
    if not first.strip() and path.stat().st_size <= len(first.encode()):
        return names, schema, iter(())  # pyarrow refuses an empty stream
    reader = pajson.open_json(path, read_options=pajson.ReadOptions(block_size=1 << 24),
                              parse_options=pajson.ParseOptions(explicit_schema=text_schema(schema),
                                                                unexpected_field_behavior="ignore"))
    return names, schema, (pa.Table.from_batches([b]) for b in reader)
