"""CSV reports, safe to open in a spreadsheet.

Formula injection: a cell starting with = + - @ TAB CR is executed by Excel, so such cells are
prefixed with '. Values that already start with quotes before such a character get one more, so
that reading a CSV report back (``--incremental``) strips exactly one quote from every value
starting with quotes and one of those characters: no value changes.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .text import SIDECAR, metadata, text_columns, text_schema  # noqa: F401 (this format's interface)

FORMULA_START = "^'*[=+\\-@\t\r]"


def write(sink: BinaryIO, batches: Iterator[pa.RecordBatch], schema: pa.Schema, meta: bytes) -> None:  # noqa: ARG001
    with pacsv.CSVWriter(sink, text_schema(schema)) as w:
        for batch in batches:
            w.write_table(text_columns(pa.Table.from_batches([batch], schema), FORMULA_START))


def _unguard(table: pa.Table) -> pa.Table:
    """Undo the formula guard on a report read back (string columns)."""
    for i, field in enumerate(table.schema):
        if pa.types.is_string(field.type):
            table = table.set_column(i, field, pc.replace_substring_regex(
                table.column(i), pattern="^'(" + FORMULA_START[1:] + ")", replacement="\\1"))
    return table


def read(path: Path, schema_for: Callable[[list[str]], pa.Schema], batch_rows: int  # noqa: ARG001
         ) -> tuple[list[str], pa.Schema, Iterator[pa.Table]]:
    with open(path, encoding="utf-8", errors="replace") as f:
        header = f.readline(1 << 20)  # a hostile file is not read whole
    schema = schema_for(next(csv.reader([header]), []))
    reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 24),
                            convert_options=pacsv.ConvertOptions(column_types=text_schema(schema),
                                                                 strings_can_be_null=True))
    return reader.schema.names, schema, (_unguard(pa.Table.from_batches([b])) for b in reader)
