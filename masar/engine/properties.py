"""Properties an analysis can filter, break down or hold constant, and their SQL.

A name resolves to one of three things, in this order:

* ``person.NAME`` — a person trait: the latest value of ``traits.NAME`` from the person's identify
  calls (after identity merges).
* a column of the event table (``device_type``, ``channel``, ``price``, ``utm_campaign``, ...).
* anything else (or ``properties.NAME`` explicitly) — an event property, read from the event's
  properties JSON.

Values are bound as parameters, never pasted into SQL; identifiers pass through ``quote``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from masar.engine.frame import map_persons
from masar.errors import InvalidInput
from masar.model.queries import PropertyFilter
from masar.store.schema import EVENTS, MONEY_FIELDS

_JSON_COLUMNS = {"properties", "traits", "context"}
COLUMNS = {name for name in EVENTS.names if name not in _JSON_COLUMNS}
_NUMERIC = set(MONEY_FIELDS) | {"quantity", "step", "person_id", "session_id"}
_TIME = {"ts", "original_timestamp", "sent_at", "received_at", "session_start"}
_CLOSED = {"ip"}  # truncated addresses are kept for audits, not for slicing


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _json_path(name: str) -> str:
    # One key, quoted, so dots and spaces in property names stay part of the name.
    return '$."' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class PropertyRef:
    name: str
    scope: str  # "column", "event" (properties JSON) or "person" (traits)
    key: str  # column name, or the JSON key
    numeric: bool = False

    @property
    def label(self) -> str:
        return self.name

    def value_sql(self) -> tuple[str, tuple[Any, ...]]:
        """Expression for the value as text (or a number for numeric columns), with parameters."""
        if self.scope == "column":
            if self.key in _TIME:
                return f"strftime({quote(self.key)}, '%Y-%m-%dT%H:%M:%S')", ()
            return quote(self.key), ()
        if self.scope == "event":
            return "json_extract_string(properties, ?)", (_json_path(self.key),)
        return "json_extract_string(traits, ?)", (_json_path(self.key),)

    def text_sql(self) -> tuple[str, tuple[Any, ...]]:
        sql, params = self.value_sql()
        return f"CAST({sql} AS VARCHAR)", params


def resolve(name: str) -> PropertyRef:
    if not name or len(name) > 200:
        raise InvalidInput("a property name is 1 to 200 characters", code="invalid_property")
    if name.startswith("person."):
        key = name[len("person."):]
        if not key:
            raise InvalidInput(f"{name!r} names no trait: use person.TRAIT", code="invalid_property")
        return PropertyRef(name, "person", key)
    if name.startswith("properties."):
        key = name[len("properties."):]
        if not key:
            raise InvalidInput(f"{name!r} names no property: use properties.NAME", code="invalid_property")
        return PropertyRef(name, "event", key)
    if name in _CLOSED:
        raise InvalidInput(f"{name!r} cannot be used in analyses", code="invalid_property")
    if name in COLUMNS:
        return PropertyRef(name, "column", name, numeric=name in _NUMERIC)
    return PropertyRef(name, "event", name)


def condition_sql(value_sql: str, params: tuple[Any, ...], flt: PropertyFilter, numeric: bool) -> tuple[str, tuple]:
    """A boolean SQL condition (never NULL) for one filter over a value expression."""
    op, value = flt.op, flt.value
    text = f"CAST({value_sql} AS VARCHAR)"
    number = f"TRY_CAST({value_sql} AS DOUBLE)"
    if op == "is_set":
        return f"({value_sql}) IS NOT NULL", params
    if op == "is_not_set":
        return f"({value_sql}) IS NULL", params
    if op in ("gt", "gte", "lt", "lte"):
        symbol = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
        return f"coalesce({number} {symbol} ?, false)", (*params, float(value))
    if op in ("eq", "neq"):
        if numeric or is_number(value):
            # A number compares as a number when the value reads as one, else as text.
            cond = f"coalesce({number} = ?, false) OR coalesce({text} = ?, false)"
            bound = (*params, float(value), *params, as_text(value))
        else:
            cond = f"coalesce({text} = ?, false)"
            bound = (*params, as_text(value))
        return (cond if op == "eq" else f"NOT ({cond})"), bound
    if op in ("in", "not_in"):
        placeholders = ", ".join("?" for _ in value)
        cond = f"coalesce({text} IN ({placeholders}), false)"
        bound = (*params, *(as_text(v) for v in value))
        return (cond if op == "in" else f"NOT ({cond})"), bound
    if op in ("contains", "not_contains"):
        cond = f"coalesce(contains(lower({text}), lower(?)), false)"
        bound = (*params, as_text(value))
        return (cond if op == "contains" else f"NOT ({cond})"), bound
    raise InvalidInput(f"unknown filter operator {op!r}", code="invalid_filter")


def is_number(value: Any) -> bool:
    """A filter value that is a number (not a boolean)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def as_text(value: Any) -> str:
    """A filter value as the text it is compared with."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def person_values(
    con: duckdb.DuckDBPyConnection, relation: str | None, ref: PropertyRef, overrides: dict[int, int]
) -> tuple[np.ndarray, pa.Array]:
    """(persons sorted, latest value of a trait per person) from identify calls."""
    if relation is None:
        return np.empty(0, dtype=np.int64), pa.array([], type=pa.string())
    sql, params = ref.text_sql()
    table = con.sql(
        f"SELECT person_id, epoch_us(ts) AS t, {sql} AS v FROM {relation} "
        f"WHERE type = 'identify' AND v IS NOT NULL",
        params=list(params),
    ).to_arrow_table()
    person = table.column("person_id").to_numpy().astype(np.int64)
    person = map_persons(person, overrides)
    t = table.column("t").to_numpy()
    # Latest value per person: sort by (person, time) and keep each person's last row.
    order = np.lexsort((t, person))
    person = person[order]
    last = np.ones(len(person), dtype=bool)
    if len(person):
        last[:-1] = person[1:] != person[:-1]
    values = table.column("v").combine_chunks().take(pa.array(order[last]))
    return person[last], values


def spread_to_events(event_person: np.ndarray, persons: np.ndarray, values: pa.Array) -> pa.Array:
    """Per-person values laid over events (null where a person has none)."""
    if len(persons) == 0:
        return pa.nulls(len(event_person), type=pa.string())
    at = np.clip(np.searchsorted(persons, event_person), 0, len(persons) - 1)
    hit = persons[at] == event_person
    taken = values.take(pa.array(at))
    return pa.array(np.where(hit, taken.to_numpy(zero_copy_only=False), None), type=pa.string())
