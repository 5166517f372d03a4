"""CSV reports, safe to open in a spreadsheet.

Formula injection: a cell starting with = + - @ TAB CR is executed by Excel, so such cells are
prefixed with '. Values that already start with quotes before such a character get one more, so
that reading a CSV report back (``--incremental``) strips exactly one quote from every value
starting with quotes and one of those characters: no value changes.
"""

from __future__ import annotations

import csv
import re
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
    # A quoted cell may hold newlines (an error's text, a prompt): without newlines_in_values
    # pyarrow splits its 16 MB blocks inside such a cell and the row falls apart. Only an unquoted
    # empty cell is null: our writer quotes every string, so "" stays "" and "NULL", "nan" or
    # "N/A" stay text, and a float's nan/inf read back as the float.
    reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 24),
                            parse_options=pacsv.ParseOptions(newlines_in_values=True),
                            convert_options=pacsv.ConvertOptions(column_types=text_schema(schema),
                                                                 strings_can_be_null=True,
                                                                 quoted_strings_can_be_null=False,
                                                                 null_values=[""]))
    return reader.schema.names, schema, _tables(reader)


def _tables(reader: pacsv.CSVStreamingReader) -> Iterator[pa.Table]:
    """The report's tables; a cell that does not convert is named by its column, not its number."""
    names = reader.schema.names
    try:
        for batch in reader:
            yield _unguard(pa.Table.from_batches([batch]))
    except pa.ArrowInvalid as exc:
        found = re.search(r"In CSV column #(\d+)", str(exc))
        if not found or int(found.group(1)) >= len(names):
            raise
        named = f"in column {names[int(found.group(1))]!r}"
        raise pa.ArrowInvalid(str(exc).replace(found.group(0), named)) from None
