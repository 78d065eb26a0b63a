"""Property filters, event matchers and property values as ClickHouse SQL, with bound parameters.

The ClickHouse counterpart of masar/engine/properties.py and masar/engine/matching.py: the same
names resolve the same way (``resolve``), and each filter compiles to a boolean that is never NULL
and passes exactly where the embedded DuckDB condition passes:

* event properties are read from the properties JSON as DuckDB's ``json_extract_string`` reads
  them: a string as itself, anything else as its JSON text (``12.5``, ``true``, ``{"a":1}``), a
  missing key or a JSON null as NULL;
* money columns (Decimal) read as text with their full scale (``12.500``), as DuckDB casts them;
* a person trait is the latest non-null value from the person's identify calls (after identity
  merges; of calls at one instant, the greater value), joined per person.

Every ClickHouse runner that filters events compiles here (funnels, leaks, correlation, journeys);
``json_text`` is also how the audiences and the sales facts read JSON.

Usage: one ``Predicates`` per query collects parameters and the person traits it needs::

    p = Predicates()
    cond = p.matcher(EventMatcher(event="Order Completed", filters=[...]))
    value = p.text("device_type")
    sql = f"SELECT ... FROM {ctx.events} AS e {p.joins(ctx.events, 'e')} WHERE {cond}"
    ctx.arrow(sql, p.params)

Column names in the returned SQL are unqualified (``event``, ``properties``, ...), so they read
the events subquery's columns; traits come from the joined ``masar_traits`` relation.
"""

from __future__ import annotations

from typing import Any

from masar.engine.properties import _NUMERIC, _TIME, PropertyRef, as_text, is_number, resolve
from masar.errors import InvalidInput
from masar.model.queries import EventMatcher, PropertyFilter
from masar.store.schema import MONEY_FIELDS

ANY_EVENT = "*"
ACTIONS = "type IN ('track', 'page', 'screen')"
TRAITS = "masar_traits"
_MONEY_SCALE = 3


def stripped(expr: str) -> str:
    """Text without the whitespace DuckDB's casts from text skip around a number."""
    return f"trim(BOTH ' \\t\\n\\v\\f\\r' FROM {expr})"


def number_text(expr: str) -> str:
    """DuckDB's ``TRY_CAST(text AS DOUBLE)``: NULL unless the text is a number."""
    return f"toFloat64OrNull({stripped(expr)})"


def quote(identifier: str) -> str:
    """A ClickHouse identifier in backquotes."""
    return "`" + identifier.replace("\\", "\\\\").replace("`", "\\`") + "`"


class Predicates:
    """Compiles filters and values of one query; ``params`` holds the values bound so far."""

    def __init__(self, prefix: str = "p") -> None:
        self.params: dict[str, Any] = {}
        self._prefix = prefix
        self._traits: dict[str, str] = {}  # trait key → column alias in the traits relation

    # -- parameters -------------------------------------------------------------------------------

    def bind(self, value: Any, kind: str = "String") -> str:
        name = f"{self._prefix}{len(self.params)}"
        self.params[name] = value
        return f"{{{name}:{kind}}}"

    # -- values -----------------------------------------------------------------------------------

    def value(self, ref: PropertyRef | str) -> str:
        """The property's value: a number for numeric columns, else text (NULL where unset)."""
        ref = resolve(ref) if isinstance(ref, str) else ref
        if ref.scope == "column":
            column = quote(ref.key)
            if ref.key in _TIME:
                return f"formatDateTime({column}, '%Y-%m-%dT%H:%i:%S', 'UTC')"
            return column
        if ref.scope == "event":
            return json_text("properties", self.bind(ref.key))
        return f"{TRAITS}.{self._trait(ref.key)}"

    def text(self, ref: PropertyRef | str) -> str:
        """The property as text, as DuckDB's ``CAST(value AS VARCHAR)`` writes it."""
        ref = resolve(ref) if isinstance(ref, str) else ref
        sql = self.value(ref)
        if ref.scope == "column" and ref.key in MONEY_FIELDS:
            # DuckDB keeps a decimal's scale (12.500); ClickHouse's toString drops trailing zeros.
            return f"if(isNull({sql}), NULL, toDecimalString(assumeNotNull({sql}), {_MONEY_SCALE}))"
        if ref.scope == "column" and ref.key in _NUMERIC:
            return f"toString({sql})"
        return sql

    def _number(self, ref: PropertyRef) -> str:
        sql = self.value(ref)
        if ref.scope == "column" and ref.key in _NUMERIC:
            return f"toFloat64({sql})"
        return number_text(self.text(ref))

    # -- conditions -------------------------------------------------------------------------------

    def filter(self, flt: PropertyFilter) -> str:
        """A boolean (never NULL) for one filter; negative filters pass where the value is unset."""
        ref = resolve(flt.property)
        op, value = flt.op, flt.value
        if op == "is_set":
            return f"isNotNull({self.value(ref)})"
        if op == "is_not_set":
            return f"isNull({self.value(ref)})"
        text = self.text(ref)
        if op in ("gt", "gte", "lt", "lte"):
            symbol = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
            return f"ifNull({self._number(ref)} {symbol} {self.bind(float(value), 'Float64')}, false)"
        if op in ("eq", "neq"):
            numeric = ref.scope == "column" and ref.numeric
            if numeric or is_number(value):
                # A number compares as a number when the value reads as one, else as text.
                cond = (f"(ifNull({self._number(ref)} = {self.bind(float(value), 'Float64')}, false) "
                        f"OR ifNull({text} = {self.bind(as_text(value))}, false))")  # fmt: skip
            else:
                cond = f"ifNull({text} = {self.bind(as_text(value))}, false)"
            return cond if op == "eq" else f"NOT {cond}"
        if op in ("in", "not_in"):
            values = self.bind([as_text(v) for v in value], "Array(String)")
            cond = f"ifNull(has({values}, {text}), false)"
            return cond if op == "in" else f"NOT {cond}"
        if op in ("contains", "not_contains"):
            # DuckDB's lower() folds Unicode case; lowerUTF8 does the same for what shops type.
            cond = f"ifNull(position(lowerUTF8({text}), lowerUTF8({self.bind(as_text(value))})) > 0, false)"
            return cond if op == "contains" else f"NOT {cond}"
        raise InvalidInput(f"unknown filter operator {op!r}", code="invalid_filter")

    def matcher(self, matcher: EventMatcher) -> str:
        """A boolean for one event name (``*``: any) with its filters."""
        parts = [] if matcher.event == ANY_EVENT else [f"ifNull(event = {self.bind(matcher.event)}, false)"]
        parts += [self.filter(f) for f in matcher.filters]
        return "(" + " AND ".join(parts) + ")" if parts else "true"

    def any_of(self, matchers: list[EventMatcher]) -> str:
        return "(" + " OR ".join(self.matcher(m) for m in matchers) + ")" if matchers else "false"

    # -- person traits ----------------------------------------------------------------------------

    def _trait(self, key: str) -> str:
        if key not in self._traits:
            self._traits[key] = f"t{len(self._traits)}"
        return self._traits[key]

    def joins(self, events: str, alias: str) -> str:
        """``LEFT JOIN`` of the person traits used so far (empty when none): the latest non-null
        value of each from the person's identify calls (of calls at one instant, the greater value,
        as audiences take it). Put it after ``FROM {events} AS {alias}``."""
        if not self._traits:
            return ""
        columns = []
        for key, column in self._traits.items():
            value = json_text("traits", self.bind(key))
            columns.append(f"argMaxIf({value}, (ts, {value}), isNotNull({value})) AS {column}")
        return (f"LEFT JOIN (SELECT person, {', '.join(columns)} FROM {events} WHERE type = 'identify' GROUP BY person) "
                f"AS {TRAITS} ON {TRAITS}.person = {alias}.person")  # fmt: skip


def json_text(column: str, *path: str) -> str:
    """DuckDB's ``json_extract_string(column, '$."a"."b"')``: a string as itself, a missing key or
    a JSON null as NULL, anything else as JSON text the way DuckDB writes it back. ``path`` is the
    keys as SQL: bound parameters for what a query names, ``text(...)`` literals for the code's own.

    ClickHouse's parser writes numbers back its own way (``119`` for ``119.0``), so: a number that
    is a double reads as DuckDB prints doubles (``119.0``, ``1.5``); an array or object under one
    key is the stored text itself (``simpleJSONExtractRaw``; what the capture path stores is
    compact), unless that finds a same-named key nested earlier — then ClickHouse's own rendering,
    as it is for an array or object deeper down a path."""
    doc = f"assumeNotNull({column})"
    keys = ", ".join(path)
    kind = f"JSONType({doc}, {keys})"
    double = f"JSONExtractFloat({doc}, {keys})"
    raw = f"JSONExtractRaw({doc}, {keys})"
    stored = raw
    if len(path) == 1:
        simple = f"simpleJSONExtractRaw({doc}, {keys})"
        stored = f"if(JSONExtractRaw(concat('{{\"k\":', {simple}, '}}'), 'k') = {raw}, {simple}, {raw})"
    return (f"multiIf(isNull({column}), NULL, {kind} = 'String', toNullable(JSONExtractString({doc}, {keys})), "
            f"{kind} = 'Null', NULL, "
            f"{kind} = 'Double', toNullable(if(isFinite({double}) AND {double} = floor({double}), "
            f"concat(toString({double}), '.0'), toString({double}))), "
            f"{kind} IN ('Array', 'Object'), toNullable({stored}), toNullable({raw}))")  # fmt: skip
