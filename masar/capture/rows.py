"""Normalized row dicts (from capture) → an Arrow table in the normalized schema."""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa

from masar.store.schema import MONEY, NORMALIZED, TS

_JSON = ("properties", "traits", "context")


def _columns(rows: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """Transpose rows to columns. Rows from ``normalize_message`` share one key order, so one C-level
    ``zip`` does it; anything else takes the per-key path."""
    keys = tuple(rows[0])
    if all(tuple(row) == keys for row in rows):
        return dict(zip(keys, zip(*(row.values() for row in rows), strict=True), strict=True))
    return {name: tuple(row.get(name) for row in rows) for name in NORMALIZED.names}


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    if not rows:
        return NORMALIZED.empty_table()
    columns = _columns(rows)
    arrays = []
    for field in NORMALIZED:
        values = columns.get(field.name) or (None,) * len(rows)
        if field.name in _JSON:
            dumps = orjson.dumps
            arrays.append(pa.array([dumps(v).decode() if v else "{}" for v in values], pa.string()))
        elif field.type == TS:
            arrays.append(pa.array(values, pa.int64()).cast(TS))
        elif field.type == MONEY:
            arrays.append(pa.array(values, pa.string()).cast(MONEY))
        else:
            arrays.append(pa.array(values, field.type))
    return pa.Table.from_arrays(arrays, schema=NORMALIZED)
