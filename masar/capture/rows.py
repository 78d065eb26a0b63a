"""Normalized rows (from capture) → an Arrow table in the normalized schema."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pyarrow as pa

from masar.store.schema import MONEY, NORMALIZED, NORMALIZED_NAMES, TS

JSON_COLUMNS = ("properties", "traits", "context")  # JSON objects, stored as their text


def json_texts(values: Sequence[Any]) -> list[bytes]:
    """A JSON column's objects as their stored text (an empty or missing object is ``{}``)."""
    dumps = orjson.dumps
    return [dumps(v) if v else b"{}" for v in values]


def column_array(field: pa.Field, values: Sequence[Any]) -> pa.Array:
    """One column's Python values (as ``normalize_values`` gives them) → its Arrow array."""
    if field.name in JSON_COLUMNS:
        return pa.array(json_texts(values), pa.string())  # pyarrow takes UTF-8 bytes as they are
    if field.type == TS:
        return pa.array(values, TS)  # integers are taken as microseconds, without a cast
    if field.type == MONEY:
        return pa.array(values, pa.string()).cast(MONEY)
    return pa.array(values, field.type)


def values_to_table(rows: Sequence[Sequence[Any]]) -> pa.Table:
    """Rows of values in ``NORMALIZED`` column order (``normalize_values``) → a table: one C-level
    transpose, then one array per column."""
    if not rows:
        return NORMALIZED.empty_table()
    columns = zip(*rows, strict=True)
    return pa.Table.from_arrays([column_array(f, c) for f, c in zip(NORMALIZED, columns, strict=True)], schema=NORMALIZED)


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Row dicts (``normalize_message``) → a table; keys missing from a row are null."""
    if not rows:
        return NORMALIZED.empty_table()
    if all(len(row) == len(NORMALIZED_NAMES) for row in rows):
        try:
            return values_to_table([tuple(row[name] for name in NORMALIZED_NAMES) for row in rows])
        except KeyError:
            pass
    return values_to_table([tuple(row.get(name) for name in NORMALIZED_NAMES) for row in rows])
