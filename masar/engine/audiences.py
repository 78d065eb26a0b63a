"""Behavioural audiences: people selected by what they did, bought and are, saved by name.

An audience definition is JSON (``{"all": [conditions...]}``, with nested ``{"any": [...]}``,
``{"all": [...]}`` and ``{"not": condition}``) parsed into the pydantic models below. It
compiles into ONE DuckDB query over the sales facts (``events``, ``orders``, ``people``) that
returns the member persons as of a day: each condition is a set of persons (one grouped scan),
and the tree of all/any/not becomes a boolean expression of ``person IN (set)`` tests over the
people seen by that day. docs/audiences.md defines every condition exactly;
tests/engine/reference_audiences.py is the plain version the compiler must agree with.

Values are always bound as parameters (``$p0``, ``$p1``, ...); property names pass through
``resolve_property``, the one place that turns a name into SQL.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

import duckdb
import pyarrow as pa
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from masar.errors import InvalidInput

ORDER_COMPLETED = "Order Completed"
# Limits that keep one definition a reasonable query; far beyond anything written by hand.
MAX_DEPTH = 8
MAX_CONDITIONS = 100
MAX_WINDOW_DAYS = 36_600
MAX_NAME = 200  # characters of a saved audience's name (the metadata column's width)

# The columns of ``events`` a filter may name (docs/audiences.md); numeric ones compare as numbers.
EVENT_COLUMNS = {
    "type": False, "event": False, "session_id": True, "product_id": False, "category": False,
    "order_id": False, "currency": False, "price": True, "total": True, "quantity": True,
    "channel": False, "device_type": False, "country": False,
}  # fmt: skip
# Columns that conditions handle themselves: a filter on them is a mistake worth naming.
_RESERVED = {
    "person": "conditions are always about one person",
    "ts": "use within_days or from_date/to_date",
    "day": "use within_days or from_date/to_date",
    "properties": "name one property: properties.NAME",
    "traits": "use a trait condition",
}
_NEGATIVE = {"not_equals": "equals", "not_in": "in", "not_contains": "contains", "is_not_set": "is_set"}
_ALIASES = {"eq": "equals", "neq": "not_equals"}  # the funnel filters' names (docs/funnels.md)

FilterOp = Literal[
    "equals", "not_equals", "in", "not_in", "contains", "not_contains",
    "gt", "gte", "lt", "lte", "is_set", "is_not_set",
]  # fmt: skip


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def json_path(key: str) -> str:
    # One key, quoted, so dots and spaces in a property name stay part of the name.
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class PropertyRef:
    """A property of an event: a column of ``events`` or a key of its ``properties`` JSON."""

    name: str
    column: str | None  # the column, or None for a JSON property
    key: str | None  # the JSON key
    numeric: bool

    def sql(self, bind) -> str:
        """The value as SQL (text for JSON properties), binding the JSON path as a parameter."""
        if self.column is not None:
            return quote(self.column)
        return f"json_extract_string(properties, {bind(json_path(self.key))})"


def resolve_property(name: str) -> PropertyRef:
    """The one place a property name becomes SQL: a listed column, ``properties.NAME``, or any
    other name as a key of the event's properties JSON. Raises ValueError (a validation error)."""
    if not isinstance(name, str) or not 1 <= len(name) <= 200:
        raise ValueError("a property name is 1 to 200 characters")
    if name in _RESERVED:
        raise ValueError(f"{name!r} cannot be filtered: {_RESERVED[name]}")
    if name.startswith("person."):
        raise ValueError(f"{name!r} is a person trait: use a trait condition")
    if name in EVENT_COLUMNS:
        return PropertyRef(name, name, None, EVENT_COLUMNS[name])
    if name.startswith("properties."):
        key = name[len("properties.") :]
        if not key:
            raise ValueError(f"{name!r} names no property: use properties.NAME")
        return PropertyRef(name, None, key, False)
    return PropertyRef(name, None, name, False)


# -- the definition -------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _number(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError(f"{value!r} is not a number")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return number


def _text(value: Any) -> str:
    """A filter value as the text it is compared with (JSON true → "true", 3.0 → "3")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _check_value(op: str, value: Any, numeric: bool, what: str) -> None:
    if op in ("is_set", "is_not_set"):
        if value is not None:
            raise ValueError(f"{what}: the {op} filter takes no value")
        return
    values = value if op in ("in", "not_in") else [value]
    if op in ("in", "not_in") and (not isinstance(value, list) or not value or len(value) > 1000):
        raise ValueError(f"{what}: the {op} filter needs a list of 1 to 1000 values")
    for v in values:
        if v is None or isinstance(v, list | dict):
            raise ValueError(f"{what}: the {op} filter needs a text or a number, got {v!r}")
        if (numeric and op not in ("contains", "not_contains")) or op in ("gt", "gte", "lt", "lte"):
            try:
                _number(v)
            except ValueError as exc:
                raise ValueError(f"{what}: the {op} filter needs a number here ({exc})") from None
    if op in ("contains", "not_contains") and _text(value) == "":
        raise ValueError(f"{what}: the {op} filter needs a non-empty text")


def _op(value: Any) -> Any:
    return _ALIASES.get(value, value) if isinstance(value, str) else value


class Filter(_Model):
    """A condition on one property of an event (docs/audiences.md, "Property filters")."""

    property: str
    op: FilterOp = "equals"
    value: Any = None

    _alias = field_validator("op", mode="before")(_op)

    @model_validator(mode="after")
    def _valid(self) -> Filter:
        ref = resolve_property(self.property)
        _check_value(self.op, self.value, ref.numeric, f"property {self.property!r}")
        return self


class _Window(_Model):
    """When the events count: ``within_days`` (as_of and the days before it) or dates, inclusive."""

    within_days: int | None = Field(None, ge=1, le=MAX_WINDOW_DAYS)
    from_date: date | None = None
    to_date: date | None = None

    @model_validator(mode="after")
    def _one_window(self) -> _Window:
        if self.within_days is not None and (self.from_date is not None or self.to_date is not None):
            raise ValueError("use within_days or from_date/to_date, not both")
        if self.from_date is not None and self.to_date is not None and self.from_date > self.to_date:
            raise ValueError(f"from_date {self.from_date} is after to_date {self.to_date}")
        return self


class EventSpec(_Window):
    """Events of one name (``"*"``: any event) that pass every filter, within the window."""

    event: str = Field(min_length=1, max_length=200)
    filters: list[Filter] = Field(default_factory=list, max_length=50)


class Did(EventSpec):
    """Did the event between ``at_least`` and ``at_most`` times; with ``per_property``, that many
    times with one same value of the property (the same product), for which the ``same_value``
    conditions hold too."""

    type: Literal["did"] = "did"
    at_least: int = Field(1, ge=1, le=1_000_000)
    at_most: int | None = Field(None, ge=1, le=1_000_000)
    per_property: str | None = None
    same_value: list[Annotated[Did | DidNot, Field(discriminator="type")]] = Field(
        default_factory=list, max_length=20
    )

    @model_validator(mode="after")
    def _valid(self) -> Did:
        if self.at_most is not None and self.at_most < self.at_least:
            raise ValueError(f"at_most ({self.at_most}) is below at_least ({self.at_least})")
        if self.per_property is not None:
            resolve_property(self.per_property)
        if self.same_value and self.per_property is None:
            raise ValueError("same_value needs per_property: the property whose value is shared")
        for inner in self.same_value:
            if isinstance(inner, Did) and (inner.per_property is not None or inner.same_value):
                raise ValueError("a same_value condition takes its value from the outer per_property")
        return self


class DidNot(EventSpec):
    """Never did the event (within the window)."""

    type: Literal["did_not"] = "did_not"


class DidNotSince(_Model):
    """Did the ``since`` event and no ``event`` at or after the last (or first) of them."""

    type: Literal["did_not_since"] = "did_not_since"
    event: str = Field(min_length=1, max_length=200)
    filters: list[Filter] = Field(default_factory=list, max_length=50)
    since: EventSpec
    anchor: Literal["last", "first"] = "last"


class _Categories(_Window):
    categories: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(min_length=1, max_length=1000)


class BoughtCategory(_Categories):
    """Placed a (non-cancelled) order with a product of one of the categories."""

    type: Literal["bought_category"] = "bought_category"


class NeverBoughtCategory(_Categories):
    """Placed no (non-cancelled) order with a product of any of the categories."""

    type: Literal["never_bought_category"] = "never_bought_category"


class TopPercent(_Window):
    """Among the customers (a non-cancelled order in the window), the top ``percent`` by revenue
    net of refunds, or by number of orders; ties at the edge are all in."""

    type: Literal["top_percent"] = "top_percent"
    percent: Decimal = Field(gt=0, le=100)
    by: Literal["revenue", "orders"] = "revenue"

    @field_serializer("percent")
    def _as_number(self, value: Decimal) -> int | float:
        return int(value) if value == value.to_integral_value() else float(value)

    @field_validator("percent", mode="before")
    @classmethod
    def _exact(cls, value: Any) -> Decimal:
        number = _number(value)
        if number != number.quantize(Decimal("0.0001")):
            raise ValueError("percent has at most 4 decimals")
        return number


class Lapsed(_Model):
    """No order for more than ``factor`` × the customer's usual gap between order days."""

    type: Literal["lapsed"] = "lapsed"
    factor: float = Field(2.0, gt=0, le=1000)
    min_orders: int = Field(2, ge=2, le=10_000)


class Trait(_Model):
    """A person trait: the latest value of ``traits.NAME`` from the person's identify calls."""

    type: Literal["trait"] = "trait"
    trait: str = Field(min_length=1, max_length=200)
    op: FilterOp = "equals"
    value: Any = None

    _alias = field_validator("op", mode="before")(_op)

    @model_validator(mode="after")
    def _valid(self) -> Trait:
        _check_value(self.op, self.value, False, f"trait {self.trait!r}")
        return self


class AllOf(_Model):
    all: list[Node] = Field(min_length=1)


class AnyOf(_Model):
    any: list[Node] = Field(min_length=1)


class Not(_Model):
    not_: Node = Field(alias="not")


CONDITIONS = {
    "did": Did, "did_not": DidNot, "did_not_since": DidNotSince, "bought_category": BoughtCategory,
    "never_bought_category": NeverBoughtCategory, "top_percent": TopPercent, "lapsed": Lapsed, "trait": Trait,
}  # fmt: skip
_GROUPS = {"all": AllOf, "any": AnyOf, "not": Not}


def _node_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        if "type" in value:
            return value["type"] if isinstance(value["type"], str) else None
        keys = [k for k in value if k in _GROUPS]
        return keys[0] if len(keys) == 1 else None
    for tag, model in {**CONDITIONS, **_GROUPS}.items():
        if type(value) is model:
            return tag
    return None


Node = Annotated[
    Annotated[Did, Tag("did")]
    | Annotated[DidNot, Tag("did_not")]
    | Annotated[DidNotSince, Tag("did_not_since")]
    | Annotated[BoughtCategory, Tag("bought_category")]
    | Annotated[NeverBoughtCategory, Tag("never_bought_category")]
    | Annotated[TopPercent, Tag("top_percent")]
    | Annotated[Lapsed, Tag("lapsed")]
    | Annotated[Trait, Tag("trait")]
    | Annotated[AllOf, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[Not, Tag("not")],
    Discriminator(
        _node_tag,
        custom_error_type="invalid_condition",
        custom_error_message=(
            "a condition is an object with a type (" + ", ".join(CONDITIONS) + ") "
            'or one of {"all": [...]}, {"any": [...]}, {"not": {...}}'
        ),
    ),
]


class AudienceDefinition(_Model):
    """An audience: the people for whom every condition holds."""

    all: list[Node] = Field(min_length=1)

    @model_validator(mode="after")
    def _size(self) -> AudienceDefinition:
        count = _conditions(self, 0)
        if count > MAX_CONDITIONS:
            raise ValueError(f"an audience has at most {MAX_CONDITIONS} conditions, this one has {count}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return _type_first(self.model_dump(mode="json", by_alias=True, exclude_none=True))


def _type_first(value: Any) -> Any:
    """The JSON with each condition's ``type`` as its first key, as people write it."""
    if isinstance(value, list):
        return [_type_first(v) for v in value]
    if isinstance(value, dict):
        ordered = {"type": value["type"]} if "type" in value else {}
        ordered.update({k: _type_first(v) for k, v in value.items() if k != "type"})
        return ordered
    return value


def _conditions(node: Any, depth: int) -> int:
    if depth > MAX_DEPTH:
        raise ValueError(f"conditions nest at most {MAX_DEPTH} levels deep")
    if isinstance(node, AllOf | AudienceDefinition):
        return sum(_conditions(child, depth + 1) for child in node.all)
    if isinstance(node, AnyOf):
        return sum(_conditions(child, depth + 1) for child in node.any)
    if isinstance(node, Not):
        return _conditions(node.not_, depth + 1)
    return 1


for _model in (Did, AllOf, AnyOf, Not, AudienceDefinition):
    _model.model_rebuild()


def parse_audience(definition: AudienceDefinition | dict[str, Any]) -> AudienceDefinition:
    """A definition from JSON (or as is); any mistake becomes one InvalidInput naming where it is."""
    if isinstance(definition, AudienceDefinition):
        return definition
    if not isinstance(definition, dict):
        raise InvalidInput(
            f'an audience is a JSON object {{"all": [conditions...]}}, got {type(definition).__name__}',
            code="invalid_query",
        )
    try:
        return AudienceDefinition.model_validate(definition)
    except ValidationError as exc:
        errors = [
            {"loc": [str(part) for part in e["loc"]], "message": _message(e)}
            for e in exc.errors(include_url=False, include_context=False)
        ]
        where = ".".join(errors[0]["loc"])
        message = errors[0]["message"]
        raise InvalidInput(
            f"invalid audience: {where}: {message}" if where else f"invalid audience: {message}",
            code="invalid_query",
            details={"errors": errors},
        ) from None


def _message(error: dict[str, Any]) -> str:
    given = error.get("input")
    if error["type"] == "invalid_condition" and isinstance(given, dict) and isinstance(given.get("type"), str):
        return f"unknown condition type {given['type']!r}: use one of {', '.join(CONDITIONS)}"
    return error["msg"].removeprefix("Value error, ")


def check_audience_name(name: Any) -> str:
    """A saved audience's name as stored: surrounding spaces dropped, 1 to 200 characters, any
    script (Arabic included), no control characters (a name is shown on one line)."""
    if not isinstance(name, str):
        raise InvalidInput(f"an audience name is text, got {type(name).__name__}")
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME:
        raise InvalidInput(f"an audience name is 1 to {MAX_NAME} characters, got {len(name)}")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise InvalidInput("an audience name cannot hold control characters (line breaks, tabs)")
    return name


def _check_as_of(as_of: Any) -> date:
    if isinstance(as_of, datetime) or not isinstance(as_of, date):
        raise InvalidInput(f"as_of is a date (the store's local day), got {as_of!r}", code="invalid_query")
    return as_of


# -- the compiler ---------------------------------------------------------------------------------


class _Compiler:
    """Builds the SQL of one definition; every value goes into ``params`` under a fresh name."""

    def __init__(self, as_of: date, person: int | None):
        self.params: dict[str, Any] = {"as_of": as_of}
        self.bound = 0
        self.as_of = as_of
        self.day_to = "$as_of"
        self.person = person
        if person is not None:
            self.params["person"] = int(person)

    def only(self, column: str = "person") -> str:
        """For one person's profile every scan but a ranking's can skip everyone else."""
        return "" if self.person is None else f" AND {column} = $person"

    def bind(self, value: Any) -> str:
        name = f"p{self.bound}"
        self.bound += 1
        self.params[name] = value
        return "$" + name

    # Each node → a boolean SQL expression about ``u.person``.
    def node(self, node: Any) -> str:
        if isinstance(node, AllOf | AudienceDefinition):
            return "(" + " AND ".join(self.node(child) for child in node.all) + ")"
        if isinstance(node, AnyOf):
            return "(" + " OR ".join(self.node(child) for child in node.any) + ")"
        if isinstance(node, Not):
            return f"(NOT {self.node(node.not_)})"
        if isinstance(node, DidNot):
            return f"(NOT (u.person IN ({self.did(Did(**_spec_fields(node)))})))"
        if isinstance(node, NeverBoughtCategory):
            return f"(NOT (u.person IN ({self.bought(node)})))"
        if isinstance(node, Trait) and node.op in _NEGATIVE:
            # A person without the trait passes a negative test: the complement of the positive set.
            positive = node.model_copy(update={"op": _NEGATIVE[node.op]})
            return f"(NOT (u.person IN ({self.trait(positive)})))"
        members = {
            Did: self.did, DidNotSince: self.did_not_since, BoughtCategory: self.bought,
            TopPercent: self.top_percent, Lapsed: self.lapsed, Trait: self.trait,
        }[type(node)](node)  # fmt: skip
        return f"(u.person IN ({members}))"

    # -- event matching

    def window(self, w: _Window, column: str = "day") -> str:
        """The window as SQL over the local day; nothing after as_of ever counts."""
        if w.within_days is not None:
            start = self.as_of - timedelta(days=w.within_days - 1)
            return f"{column} >= {self.bind(start)} AND {column} <= {self.day_to}"
        parts = []
        if w.from_date is not None:
            parts.append(f"{column} >= {self.bind(w.from_date)}")
        if w.to_date is not None and w.to_date < self.as_of:
            parts.append(f"{column} <= {self.bind(w.to_date)}")
        else:
            parts.append(f"{column} <= {self.day_to}")
        return " AND ".join(parts)

    def match(self, event: str, filters: list[Filter], w: _Window | None) -> str:
        parts = [self.window(w) if w is not None else f"day <= {self.day_to}"]
        if event != "*":
            parts.append(f"event = {self.bind(event)}")
        parts += [self.filter(f) for f in filters]
        return "(" + " AND ".join(parts) + ")"

    def filter(self, f: Filter) -> str:
        ref = resolve_property(f.property)
        return self.test(ref.sql(self.bind), f.op, f.value, ref.numeric)

    def test(self, x: str, op: str, value: Any, numeric: bool) -> str:
        """A filter over a value expression; never NULL. A negative test passes when unset."""
        if op in _NEGATIVE:
            return f"(NOT {self.test(x, _NEGATIVE[op], value, numeric)})"
        if op == "is_set":
            return f"({x} IS NOT NULL)"
        if op in ("gt", "gte", "lt", "lte"):
            symbol = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
            if numeric:
                return f"coalesce({x} {symbol} {self.bind(_number(value))}, false)"
            return f"coalesce(TRY_CAST({x} AS DOUBLE) {symbol} {self.bind(float(_number(value)))}, false)"
        if op == "contains":  # in the value's text, numbers included (a price reads 19.990)
            return f"coalesce(contains(lower(CAST({x} AS VARCHAR)), lower({self.bind(_text(value))})), false)"
        values = value if op == "in" else [value]
        bound = [self.bind(_number(v)) if numeric else self.bind(_text(v)) for v in values]
        if len(bound) == 1:
            return f"coalesce({x} = {bound[0]}, false)"
        return f"coalesce({x} IN ({', '.join(bound)}), false)"

    # -- conditions: each → SQL selecting the member persons (never NULL)

    def did(self, c: Did) -> str:
        if c.per_property is None:
            having = f"count(*) >= {self.bind(c.at_least)}"
            if c.at_most is not None:
                having += f" AND count(*) <= {self.bind(c.at_most)}"
            return (
                f"SELECT person FROM events WHERE person IS NOT NULL{self.only()} "
                f"AND {self.match(c.event, c.filters, c)} GROUP BY person HAVING {having}"
            )
        # Per (person, value): the main count and one count per same_value condition, in one scan.
        value = resolve_property(c.per_property).sql(self.bind)
        matches = [self.match(c.event, c.filters, c)] + [self.match(s.event, s.filters, s) for s in c.same_value]
        counts = ", ".join(f"count(*) FILTER (WHERE {m}) AS n{i}" for i, m in enumerate(matches))
        tests = [f"n0 >= {self.bind(c.at_least)}"]
        if c.at_most is not None:
            tests.append(f"n0 <= {self.bind(c.at_most)}")
        for i, s in enumerate(c.same_value, start=1):
            if isinstance(s, DidNot):
                tests.append(f"n{i} = 0")
            else:
                tests.append(f"n{i} >= {self.bind(s.at_least)}")
                if s.at_most is not None:
                    tests.append(f"n{i} <= {self.bind(s.at_most)}")
        return (
            f"SELECT DISTINCT person FROM (SELECT person, {counts} FROM events "
            f"WHERE person IS NOT NULL{self.only()} AND {value} IS NOT NULL AND ({' OR '.join(matches)}) "
            f"GROUP BY person, {value}) WHERE {' AND '.join(tests)}"
        )

    def did_not_since(self, c: DidNotSince) -> str:
        pick = "max" if c.anchor == "last" else "min"
        since = self.match(c.since.event, c.since.filters, c.since)
        then = self.match(c.event, c.filters, None)
        return (
            f"SELECT a.person FROM (SELECT person, {pick}(ts) AS t FROM events "
            f"WHERE person IS NOT NULL{self.only()} AND {since} GROUP BY person) a "
            f"LEFT JOIN (SELECT person, max(ts) AS t FROM events "
            f"WHERE person IS NOT NULL{self.only()} AND {then} GROUP BY person) b ON b.person = a.person "
            f"WHERE b.t IS NULL OR b.t < a.t"
        )

    def bought(self, c: _Categories) -> str:
        # An order's products are on its Order Completed event: the event's own category, or the
        # categories of properties.products[]; cancelled orders did not sell anything.
        cats = self.bind(list(c.categories))
        return (
            f"SELECT DISTINCT e.person FROM events e LEFT JOIN orders o ON o.order_key = e.order_id "
            f"WHERE e.person IS NOT NULL{self.only('e.person')} AND e.event = {self.bind(ORDER_COMPLETED)} "
            f"AND {self.window(c, 'e.day')} AND NOT coalesce(o.cancelled, false) "
            f"AND (coalesce(list_contains({cats}, e.category), false) OR coalesce(list_has_any("
            f"{cats}, json_extract_string(e.properties, '$.products[*].category')), false))"
        )

    def top_percent(self, c: TopPercent) -> str:
        # The ranking needs every customer, so the one-person restriction applies after it.
        measure = (
            "coalesce(sum(value - coalesce(refunded, 0)), 0)" if c.by == "revenue" else "count(*)"
        )
        return (
            f"SELECT person FROM (SELECT person, rank() OVER (ORDER BY m DESC) AS r, count(*) OVER () AS n "
            f"FROM (SELECT person, {measure} AS m FROM orders WHERE person IS NOT NULL "
            f"AND NOT coalesce(cancelled, false) AND {self.window(c)} GROUP BY person)) "
            f"WHERE 100 * (r - 1) < {self.bind(c.percent)} * n{self.only()}"
        )

    def lapsed(self, c: Lapsed) -> str:
        return (
            f"SELECT person FROM (SELECT person, count(*) AS days, max(day) AS last_day, median(gap) AS usual "
            f"FROM (SELECT person, day, day - lag(day) OVER (PARTITION BY person ORDER BY day) AS gap "
            f"FROM (SELECT DISTINCT person, day FROM orders WHERE person IS NOT NULL{self.only()} "
            f"AND NOT coalesce(cancelled, false) AND day <= {self.day_to})) GROUP BY person) "
            f"WHERE days >= {self.bind(c.min_orders)} "
            f"AND ({self.day_to} - last_day) > {self.bind(float(c.factor))} * usual"
        )

    def trait(self, c: Trait) -> str:
        # The latest value set: the identify call with the latest ts; on a tie, the greatest value.
        path = self.bind(json_path(c.trait))
        return (
            f"SELECT person FROM (SELECT person, arg_max(v, (ts, v)) AS v FROM (SELECT person, ts, "
            f"json_extract_string(traits, {path}) AS v FROM events WHERE person IS NOT NULL{self.only()} "
            f"AND type = 'identify' AND day <= {self.day_to} AND traits IS NOT NULL) "
            f"WHERE v IS NOT NULL GROUP BY person) WHERE {self.test('v', c.op, c.value, False)}"
        )


def _spec_fields(c: EventSpec) -> dict[str, Any]:
    return {name: getattr(c, name) for name in EventSpec.model_fields}


def _compile(definition: AudienceDefinition, as_of: date, person: int | None) -> tuple[str, dict[str, Any]]:
    compiler = _Compiler(as_of, person)
    where = compiler.node(definition)
    only = compiler.only("u.person")
    sql = f"SELECT u.person FROM people u WHERE u.first_day <= {compiler.day_to}{only} AND {where}"
    return sql, compiler.params


def compile_audience(
    definition: AudienceDefinition | dict[str, Any], as_of: date
) -> tuple[str, dict[str, Any]]:
    """ONE DuckDB query selecting the members' ``person`` (one row each), with its named parameters
    (``$p0``, ...: pass the dict to ``con.execute``)."""
    return _compile(parse_audience(definition), _check_as_of(as_of), None)


def is_member(con: duckdb.DuckDBPyConnection, definition: AudienceDefinition | dict[str, Any],
              as_of: date, person: int) -> bool:
    """Whether one person belongs: the same query with every scan restricted to the person."""
    sql, params = _compile(parse_audience(definition), _check_as_of(as_of), person)
    return _count_rows(con, sql, params) > 0


# -- members --------------------------------------------------------------------------------------


MEMBER_SCHEMA = pa.schema(
    [
        ("person", pa.int64()),
        ("user_id", pa.string()),
        ("email", pa.string()),
        ("orders", pa.int64()),
        ("revenue", pa.decimal128(18, 3)),
        ("last_order_ts", pa.timestamp("us", tz="UTC")),
        ("last_seen", pa.timestamp("us", tz="UTC")),
    ]
)


@dataclass
class Member:
    person: int
    user_id: str | None
    email: str | None
    orders: int  # non-cancelled orders up to as_of
    revenue: Decimal  # their value net of refunds (orders without a value left out)
    last_order_ts: datetime | None
    last_seen: datetime | None  # the latest event up to as_of

    def to_dict(self) -> dict[str, Any]:
        return {
            "person": self.person, "user_id": self.user_id, "email": self.email, "orders": self.orders,
            "revenue": str(self.revenue), "last_order_ts": _iso(self.last_order_ts), "last_seen": _iso(self.last_seen),
        }  # fmt: skip


@dataclass
class AudienceResult:
    definition: AudienceDefinition
    as_of: date
    count: int  # all members, whatever the page
    rows: pa.Table  # the page, by person id (MEMBER_SCHEMA): kept columnar, an export can be large
    limit: int | None = None
    offset: int = 0
    name: str | None = None  # the saved audience's name, when it was run by name

    @property
    def members(self) -> list[Member]:
        return [Member(**row) for row in self.rows.to_pylist()]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "audience",
            "name": self.name,
            "as_of": self.as_of.isoformat(),
            "definition": self.definition.to_dict(),
            "count": self.count,
            "limit": self.limit,
            "offset": self.offset,
            "members": [m.to_dict() for m in self.members],
        }

    def table(self) -> pa.Table:
        return self.rows


def audience_members(
    con: duckdb.DuckDBPyConnection,
    definition: AudienceDefinition | dict[str, Any],
    as_of: date,
    limit: int | None = None,
    offset: int = 0,
) -> AudienceResult:
    """The members as of a day (count, and the page ``offset``..``offset+limit`` by person id);
    ``limit=None`` returns them all (export), ``limit=0`` only counts."""
    parsed = parse_audience(definition)
    as_of = _check_as_of(as_of)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidInput(f"limit is a whole number ≥ 0 or none, got {limit!r}", code="invalid_query")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidInput(f"offset is a whole number ≥ 0, got {offset!r}", code="invalid_query")
    sql, params = _compile(parsed, as_of, None)
    if limit == 0:
        count = _count_rows(con, sql, params)
        return AudienceResult(parsed, as_of, int(count), MEMBER_SCHEMA.empty_table(), limit, offset)
    base = params
    params = dict(params)
    page = f"SELECT person, count(*) OVER () AS total FROM ({sql}) ORDER BY person"
    if limit is not None:
        params["limit"], params["offset"] = limit, offset
        page += " LIMIT $limit OFFSET $offset"
    elif offset:
        params["offset"] = offset
        page += " OFFSET $offset"
    # The page is small next to the store: the members' orders and events are read for it only.
    rows = con.sql(
        f"""
        WITH page AS MATERIALIZED ({page}),
        bought AS (
            SELECT person, count(*) AS orders, coalesce(sum(value - coalesce(refunded, 0)), 0) AS revenue,
                   max(ts) AS last_order_ts
            FROM orders
            WHERE person IN (SELECT person FROM page) AND NOT coalesce(cancelled, false) AND day <= $as_of
            GROUP BY person
        ),
        seen AS (
            SELECT person, max(ts) AS last_seen FROM events
            WHERE person IN (SELECT person FROM page) AND day <= $as_of GROUP BY person
        )
        SELECT page.person, p.user_id, p.email, coalesce(b.orders, 0) AS orders,
               coalesce(b.revenue, 0) AS revenue, b.last_order_ts, s.last_seen, page.total
        FROM page
        LEFT JOIN people p ON p.person = page.person
        LEFT JOIN bought b ON b.person = page.person
        LEFT JOIN seen s ON s.person = page.person
        ORDER BY page.person
        """,
        params=params,
    ).to_arrow_table()
    if rows.num_rows:
        count = rows.column("total")[0].as_py()
    else:  # a page past the end still reports how many there are
        count = _count_rows(con, sql, base)
    # The same instants in UTC whatever the connection's TimeZone; revenue back to the storage type.
    rows = rows.drop_columns(["total"]).cast(MEMBER_SCHEMA)
    return AudienceResult(parsed, as_of, int(count), rows, limit, offset)


def audience_count(con: duckdb.DuckDBPyConnection, definition: AudienceDefinition | dict[str, Any],
                   as_of: date) -> int:
    sql, params = compile_audience(definition, as_of)
    return _count_rows(con, sql, params)


def _count_rows(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> int:
    # fetchall, not fetchone: a result left open blocks the connection's next query.
    return int(con.execute(f"SELECT count(*) FROM ({sql})", params).fetchall()[0][0])


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
