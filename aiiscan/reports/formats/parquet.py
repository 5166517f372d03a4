"""Parquet reports: typed columns, the scan's metadata in the schema metadata (``aiiscan``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from ..schema import META_KEY

SIDECAR = False


def write(sink: BinaryIO, batches: Iterator[pa.RecordBatch], schema: pa.Schema, meta: bytes) -> None:
    with pq.ParquetWriter(sink, schema.with_metadata({META_KEY: meta})) as w:
        for batch in batches:
            w.write_batch(batch)


def read(path: Path, schema_for: Callable[[list[str]], pa.Schema], batch_rows: int
         ) -> tuple[list[str], pa.Schema, Iterator[pa.Table]]:
    # buffered, not pre-buffered: a column chunk streams page by page, so a foreign report with
    # million-row row groups does not land in memory whole
    source = pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)
    names = source.schema_arrow.names
    batches = (pa.Table.from_batches([b]) for b in source.iter_batches(batch_size=batch_rows))
    return names, schema_for(names), batches


def metadata(path: Path) -> dict:
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(META_KEY, b"{}"))
