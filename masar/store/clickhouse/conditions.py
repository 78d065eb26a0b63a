"""Step matchers and property filters (masar/model/queries.py) as ClickHouse conditions over the
context's ``events`` — the ClickHouse side of masar/engine/properties.py ``condition_sql`` and
masar/engine/matching.py, for the journeys (paths) runner.

Small on purpose: ``Params`` binds values as server-side parameters (``{p0:String}``), and
``matcher_sql`` / ``filter_sql`` return a condition that is never NULL. The funnels worker has a
fuller compiler in predicates.py; the two are meant to merge.
"""

from __future__ import annotations

from typing import Any

from masar.engine.properties import PropertyRef, as_text, is_number, resolve
from masar.errors import InvalidInput
from masar.model.queries import EventMatcher, PropertyFilter

ANY_EVENT = "*"
_TIME = {"ts", "original_timestamp", "sent_at", "received_at", "session_start"}
_DECIMAL = {"price", "revenue", "total", "subtotal", "tax", "shipping", "discount"}
# A negative test passes where the value is not set (docs/funnels.md).
_PASSES_UNSET = {"neq", "not_in", "not_contains", "is_not_set"}


class Params:
    """Values bound as ClickHouse query parameters, each under a fresh name."""

    def __init__(self, prefix: str = "p"):
        self.values: dict[str, Any] = {}
        self._prefix = prefix

    def bind(self, value: Any, kind: str = "String") -> str:
        name = f"{self._prefix}{len(self.values)}"
        self.values[name] = value
        return f"{{{name}:{kind}}}"

    def text(self, value: str) -> str:
        return self.bind(str(value), "String")


def quote(identifier: str) -> str:
    return "`" + identifier.replace("\\", "\\\\").replace("`", "\\`") + "`"


def json_text(document: str, key: str) -> str:
    """A key of a JSON text as DuckDB's ``json_extract_string`` reads it: a string as it is, any
    other value as JSON text, NULL for JSON null or a missing key. ``key`` is SQL: a bound
    parameter or a literal. (ClickHouse writes numbers in its own form — ``42.0`` reads ``42`` —
    where DuckDB writes ``42.0``: docs/scaling.md.)"""
    return (
        f"multiIf(JSONType({document}, {key}) = 'String', JSONExtractString({document}, {key}), "
        f"JSONType({document}, {key}) IN ('Null'), NULL, JSONHas({document}, {key}), "
        f"JSONExtractRaw({document}, {key}), NULL)"
    )


def value_sql(ref: PropertyRef, params: Params) -> str:
    """The property as ClickHouse SQL (events' columns; event scope reads ``properties``)."""
    if ref.scope == "column":
        if ref.key in _TIME:
            return f"formatDateTime({quote(ref.key)}, '%Y-%m-%dT%H:%i:%S', 'UTC')"
        return quote(ref.key)
    if ref.scope == "event":
        return json_text("properties", params.text(ref.key))
    return json_text("traits", params.text(ref.key))


def _text(ref: PropertyRef, sql: str) -> str:
    """CAST(... AS VARCHAR) as DuckDB writes it: decimals with their three places (19.990)."""
    if ref.scope == "column" and ref.key in _DECIMAL:
        return f"toDecimalString({sql}, 3)"
    if ref.numeric:
        return f"toString({sql})"
    return sql


def _number(ref: PropertyRef, sql: str) -> str:
    """TRY_CAST(... AS DOUBLE); DuckDB allows spaces around the number."""
    if ref.numeric:
        return f"toFloat64({sql})"
    return f"toFloat64OrNull(trimBoth({sql}))"




def condition(ref: PropertyRef, sql: str, flt: PropertyFilter, params: Params) -> str:
    """One filter over a value expression, never NULL (masar/engine/properties.py condition_sql)."""
    op, value = flt.op, flt.value
    text, number = _text(ref, sql), _number(ref, sql)
    if op == "is_set":
        return f"(({sql}) IS NOT NULL)"
    if op == "is_not_set":
        return f"(({sql}) IS NULL)"
    if op in ("gt", "gte", "lt", "lte"):
        symbol = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
        return f"ifNull({number} {symbol} {params.bind(float(value), 'Float64')}, false)"
    if op in ("eq", "neq"):
        if ref.numeric or is_number(value):
            cond = (f"(ifNull({number} = {params.bind(float(value), 'Float64')}, false) "
                    f"OR ifNull({text} = {params.text(as_text(value))}, false))")  # fmt: skip
        else:
            cond = f"ifNull({text} = {params.text(as_text(value))}, false)"
        return cond if op == "eq" else f"(NOT {cond})"
    if op in ("in", "not_in"):
        cond = f"ifNull({text} IN ({', '.join(params.text(as_text(v)) for v in value)}), false)"
        return cond if op == "in" else f"(NOT {cond})"
    if op in ("contains", "not_contains"):
        # DuckDB's lower() folds every script; ClickHouse's lower() only ASCII.
        cond = f"ifNull(position(lowerUTF8({text}), lowerUTF8({params.text(as_text(value))})) > 0, false)"
        return cond if op == "contains" else f"(NOT {cond})"
    raise InvalidInput(f"unknown filter operator {op!r}", code="invalid_filter")


def filter_sql(flt: PropertyFilter, events: str, params: Params) -> str:
    """Does an event (or its person) pass the filter. A person trait is the latest value of the
    person's identify calls (ties in time: the greater value; docs/scaling.md)."""
    ref = resolve(flt.property)
    if ref.scope != "person":
        return condition(ref, value_sql(ref, params), flt, params)
    value = json_text("traits", params.text(ref.key))
    # Aliases are distinct on purpose: ClickHouse's analyzer resolves an alias across subqueries.
    latest = (
        f"SELECT person, argMax(trait_value, (ts, trait_value)) AS latest_value FROM (SELECT person, ts, "
        f"{value} AS trait_value FROM {events} WHERE type = 'identify') WHERE trait_value IS NOT NULL GROUP BY person"
    )
    test = condition(ref, "latest_value", flt, params)
    if flt.op in _PASSES_UNSET:  # people without the trait pass: the complement of those who fail
        return f"(person NOT IN (SELECT person FROM ({latest}) WHERE NOT {test}))"
    return f"(person IN (SELECT person FROM ({latest}) WHERE {test}))"


def matcher_sql(matcher: EventMatcher, events: str, params: Params) -> str:
    parts = [] if matcher.event == ANY_EVENT else [f"event = {params.text(matcher.event)}"]
    parts += [filter_sql(f, events, params) for f in matcher.filters]
    return "(" + " AND ".join(parts) + ")" if parts else "true"


def step_sql(matchers: list[EventMatcher], events: str, params: Params) -> str:
    """A step: any of its matchers."""
    return "(" + " OR ".join(matcher_sql(m, events, params) for m in matchers) + ")"
