"""Normalized row dicts (from capture) → an Arrow table in the normalized schema."""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa

from masar.store.schema import MONEY, NORMALIZED, TS

_JSON = ("properties", "traits", "context")


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    columns = []
    for field in NORMALIZED:
        name = field.name
        values = [row.get(name) for row in rows]
        if name in _JSON:
            columns.append(pa.array([orjson.dumps(v or {}).decode() for v in values], pa.string()))
        elif field.type == TS:
            columns.append(pa.array(values, pa.int64()).cast(TS))
        elif field.type == MONEY:
            columns.append(pa.array(values, pa.string()).cast(MONEY))
        else:
            columns.append(pa.array(values, field.type))
    return pa.Table.from_arrays(columns, schema=NORMALIZED)
