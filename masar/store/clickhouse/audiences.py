"""Audiences (the ``audience`` query) inside ClickHouse: docs/audiences.md, as
masar/engine/audiences.py.

The definition compiles to ONE ClickHouse query the way it compiles to one DuckDB query: each
condition a set of persons (one grouped scan of ``events`` or ``orders``), the tree of all/any/not
``AND``/``OR``/``NOT`` over ``person IN (set)`` on ``people``. The compiler is the engine's, with
the dialect's differences overridden: typed server-side parameters (``{p0:String}``),
``countIf`` for ``count(*) FILTER``, ``JSONExtract*`` for ``json_extract_string``, ``lagInFrame``
for ``lag``, ``quantileExactInclusive(0.5)`` for the exact ``median``, ``has``/``hasAny`` for
list tests. It writes over relations named as the engine's: ``events``, ``orders`` and ``people``;
the runner names the source's sales facts so (masar/store/clickhouse/facts.py, ``SalesFacts``:
built once per version of the data and shared with every other sales query).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Any

from masar.engine.audiences import (
    MEMBER_SCHEMA,
    ORDER_COMPLETED,
    AudienceDefinition,
    AudienceResult,
    Did,
    DidNot,
    DidNotSince,
    Lapsed,
    TopPercent,
    Trait,
    _Categories,
    _check_as_of,
    _Compiler,
    _number,
    _text,
    parse_audience,
    resolve_property,
)
from masar.errors import InvalidInput
from masar.model.sales_queries import AudienceQuery
from masar.store.clickhouse.context import ClickHouseContext
from masar.store.clickhouse.facts import SalesFacts
from masar.store.clickhouse.predicates import json_text, number_text
from masar.store.clickhouse.sales import _as_of

_DECIMAL_COLUMNS = {"price", "total"}
# The relations a compiled audience reads, as the sales facts' tables (``facts.sql`` fills them in).
RELATIONS = "WITH events AS (SELECT * FROM {events}), orders AS (SELECT * FROM {orders}), people AS (SELECT * FROM {people})"


class ClickHouseCompiler(_Compiler):
    """The engine's audience compiler writing ClickHouse."""

    def __init__(self, as_of: date, person: int | None):
        super().__init__(as_of, person)
        self.day_to = "{as_of:Date}"

    def only(self, column: str = "person") -> str:
        return "" if self.person is None else f" AND {column} = {{person:Int64}}"

    def bind(self, value: Any) -> str:
        if isinstance(value, list):
            return "[" + ", ".join(self.bind(v) for v in value) + "]"
        name = f"p{self.bound}"
        self.bound += 1
        if isinstance(value, bool):
            raise TypeError("no boolean parameters")
        if isinstance(value, int):
            self.params[name] = value
            return f"{{{name}:Int64}}"
        if isinstance(value, float):
            self.params[name] = value
            return f"{{{name}:Float64}}"
        if isinstance(value, Decimal):
            # Exact: the decimal's own digits, compared with Decimal(18, 3) columns exactly.
            scale = max(0, -value.as_tuple().exponent)
            if scale > 30 or len(value.as_tuple().digits) > 38:
                raise InvalidInput(f"{value} has too many digits to compare exactly", code="invalid_query")
            self.params[name] = format(value, "f")
            return f"toDecimal128({{{name}:String}}, {scale})"
        if isinstance(value, date):
            self.params[name] = value
            return f"{{{name}:Date}}"
        self.params[name] = str(value)
        return f"{{{name}:String}}"

    def key(self, key: str) -> str:
        name = f"p{self.bound}"
        self.bound += 1
        self.params[name] = key
        return f"{{{name}:String}}"

    def value(self, name: str) -> tuple[str, bool, bool]:
        """(SQL, numeric, decimal) of an event property."""
        ref = resolve_property(name)
        if ref.column is not None:
            return f"`{ref.column}`", ref.numeric, ref.column in _DECIMAL_COLUMNS
        return json_text("properties", self.key(ref.key)), False, False

    def filter(self, f: Any) -> str:
        sql, numeric, decimal = self.value(f.property)
        return self.test(sql, f.op, f.value, numeric, decimal)

    def test(self, x: str, op: str, value: Any, numeric: bool, decimal: bool = False) -> str:
        negative = {"not_equals": "equals", "not_in": "in", "not_contains": "contains", "is_not_set": "is_set"}
        if op in negative:
            return f"(NOT {self.test(x, negative[op], value, numeric, decimal)})"
        if op == "is_set":
            return f"({x} IS NOT NULL)"
        if op in ("gt", "gte", "lt", "lte"):
            symbol = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
            if numeric:
                return f"ifNull({x} {symbol} {self.bind(_number(value))}, false)"
            return f"ifNull({number_text(x)} {symbol} {self.bind(float(_number(value)))}, false)"
        if op == "contains":  # in the value's text, numbers included (a price reads 19.990)
            text = f"toDecimalString({x}, 3)" if decimal else (f"toString({x})" if numeric else x)
            return f"ifNull(position(lowerUTF8({text}), lowerUTF8({self.bind(_text(value))})) > 0, false)"
        values = value if op == "in" else [value]
        bound = [self.bind(_number(v)) if numeric else self.bind(_text(v)) for v in values]
        if len(bound) == 1:
            return f"ifNull({x} = {bound[0]}, false)"
        return f"ifNull({x} IN ({', '.join(bound)}), false)"

    def did(self, c: Did) -> str:
        if c.per_property is None:
            having = f"count() >= {self.bind(c.at_least)}"
            if c.at_most is not None:
                having += f" AND count() <= {self.bind(c.at_most)}"
            return (
                f"SELECT person FROM events WHERE person IS NOT NULL{self.only()} "
                f"AND {self.match(c.event, c.filters, c)} GROUP BY person HAVING {having}"
            )
        value, _, _ = self.value(c.per_property)
        matches = [self.match(c.event, c.filters, c)] + [self.match(s.event, s.filters, s) for s in c.same_value]
        counts = ", ".join(f"countIf({m}) AS n{i}" for i, m in enumerate(matches))
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
            f"SELECT DISTINCT person FROM (SELECT person, {value} AS per_value, {counts} FROM events "
            f"WHERE person IS NOT NULL{self.only()} AND per_value IS NOT NULL AND ({' OR '.join(matches)}) "
            f"GROUP BY person, per_value) WHERE {' AND '.join(tests)}"
        )

    def did_not_since(self, c: DidNotSince) -> str:
        # The engine's query with names of their own: ClickHouse's analyzer resolves an alias
        # across subqueries, so two ``t`` would be one.
        pick = "max" if c.anchor == "last" else "min"
        since = self.match(c.since.event, c.since.filters, c.since)
        then = self.match(c.event, c.filters, None)
        return (
            f"SELECT anchors.person FROM (SELECT person, {pick}(ts) AS anchor_ts FROM events "
            f"WHERE person IS NOT NULL{self.only()} AND {since} GROUP BY person) AS anchors "
            f"LEFT JOIN (SELECT person, max(ts) AS target_ts FROM events "
            f"WHERE person IS NOT NULL{self.only()} AND {then} GROUP BY person) AS targets "
            f"ON targets.person = anchors.person "
            f"WHERE targets.target_ts IS NULL OR targets.target_ts < anchors.anchor_ts"
        )

    def bought(self, c: _Categories) -> str:
        cats = self.bind(list(c.categories))
        categories = "arrayMap(x -> JSONExtractString(x, 'category'), JSONExtractArrayRaw(ifNull(e.properties, ''), 'products'))"  # noqa: E501
        return (
            f"SELECT DISTINCT e.person FROM events e LEFT JOIN orders o ON o.order_key = e.order_id "
            f"WHERE e.person IS NOT NULL{self.only('e.person')} AND e.event = {self.bind(ORDER_COMPLETED)} "
            f"AND {self.window(c, 'e.day')} AND NOT ifNull(o.cancelled, false) "
            f"AND (ifNull(has({cats}, e.category), false) OR hasAny({cats}, {categories}))"
        )

    def top_percent(self, c: TopPercent) -> str:
        measure = "ifNull(sum(value - ifNull(refunded, 0)), 0)" if c.by == "revenue" else "count()"
        return (
            f"SELECT person FROM (SELECT person, rank() OVER (ORDER BY measure DESC) AS place, "
            f"count() OVER () AS customers FROM (SELECT person, {measure} AS measure FROM orders "
            f"WHERE person IS NOT NULL AND NOT ifNull(cancelled, false) AND {self.window(c)} GROUP BY person)) "
            f"WHERE 100 * (place - 1) < {self.bind(c.percent)} * customers{self.only()}"
        )

    def lapsed(self, c: Lapsed) -> str:
        # The median of the gaps exactly (the mean of the two middle ones), as DuckDB's median.
        return (
            f"SELECT person FROM (SELECT person, count() AS order_days, max(day) AS last_day, "
            f"quantileExactInclusive(0.5)(gap) AS usual "
            f"FROM (SELECT person, day, dateDiff('day', lagInFrame(toNullable(day)) OVER (PARTITION BY person ORDER BY day "
            f"ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW), day) AS gap "
            f"FROM (SELECT DISTINCT person, day FROM orders WHERE person IS NOT NULL{self.only()} "
            f"AND NOT ifNull(cancelled, false) AND day <= {self.day_to})) GROUP BY person) "
            f"WHERE order_days >= {self.bind(c.min_orders)} "
            f"AND dateDiff('day', last_day, {self.day_to}) > {self.bind(float(c.factor))} * usual"
        )

    def trait(self, c: Trait) -> str:
        value = json_text("traits", self.key(c.trait))
        return (
            f"SELECT person FROM (SELECT person, argMax(trait_value, (ts, trait_value)) AS latest_value "
            f"FROM (SELECT person, ts, {value} AS trait_value FROM events WHERE person IS NOT NULL{self.only()} "
            f"AND type = 'identify' AND day <= {self.day_to} AND traits IS NOT NULL) "
            f"WHERE trait_value IS NOT NULL GROUP BY person) WHERE {self.test('latest_value', c.op, c.value, False)}"
        )


def compile_audience(definition: AudienceDefinition | dict[str, Any], as_of: date,
                     person: int | None = None) -> tuple[str, dict[str, Any]]:  # fmt: skip
    """The members' ``person`` (one row each) as ClickHouse SQL over ``events``, ``orders`` and
    ``people`` (``RELATIONS`` goes in front), with its parameters."""
    compiler = ClickHouseCompiler(_check_as_of(as_of), person)
    where = compiler.node(parse_audience(definition))
    sql = (
        f"SELECT u.person AS person FROM people u WHERE u.first_day <= {compiler.day_to}"
        f"{compiler.only('u.person')} AND {where}"
    )
    return sql, compiler.params


def is_member(facts: SalesFacts, definition: Any, as_of: date, person: int) -> bool:
    """Whether one person belongs: the same query with every scan restricted to the person."""
    sql, params = compile_audience(definition, as_of, person)
    return facts.arrow(f"{RELATIONS} SELECT count() AS n FROM ({sql})", params).column("n")[0].as_py() > 0


def audience_members(ctx: ClickHouseContext, definition: Any, as_of: date | None,
                     limit: int | None = None, offset: int = 0) -> AudienceResult:  # fmt: skip
    """As masar/engine/audiences.py ``audience_members``: the count and a page of members with
    their orders, revenue and last event, by person id. ``as_of`` None: the data's last day."""
    parsed = parse_audience(definition)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidInput(f"limit is a whole number ≥ 0 or none, got {limit!r}", code="invalid_query")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidInput(f"offset is a whole number ≥ 0, got {offset!r}", code="invalid_query")
    with SalesFacts(ctx) as facts:
        as_of = _check_as_of(_as_of(facts, as_of))
        sql, params = compile_audience(parsed, as_of)
        count = facts.arrow(f"{RELATIONS} SELECT count() AS n FROM ({sql})", params).column("n")[0].as_py()
        if limit == 0:
            return AudienceResult(parsed, as_of, int(count), MEMBER_SCHEMA.empty_table(), limit, offset)
        page = f"SELECT person FROM ({sql}) ORDER BY person"
        params = dict(params)
        if limit is not None:
            params["page_limit"], params["page_offset"] = limit, offset
            page += " LIMIT {page_limit:UInt64} OFFSET {page_offset:UInt64}"
        elif offset:
            params["page_offset"] = offset
            page += " OFFSET {page_offset:UInt64}"
        rows = facts.arrow(
            f"""{RELATIONS},
            page AS ({page}),
            bought AS (
                SELECT person, count() AS order_count, sum(value - ifNull(refunded, 0)) AS revenue, max(ts) AS last_order_ts
                FROM orders
                WHERE person IN (SELECT person FROM page) AND NOT ifNull(cancelled, false) AND day <= {{as_of:Date}}
                GROUP BY person
            ),
            seen AS (
                SELECT person, max(ts) AS last_seen FROM events
                WHERE person IN (SELECT person FROM page) AND day <= {{as_of:Date}} GROUP BY person
            )
            SELECT pg.person AS person, p.user_id AS user_id, p.email AS email, ifNull(b.order_count, 0) AS orders,
                   toDecimal64(ifNull(b.revenue, 0), 3) AS revenue, b.last_order_ts AS last_order_ts,
                   s.last_seen AS last_seen
            FROM page AS pg
            LEFT JOIN people AS p ON p.person = pg.person
            LEFT JOIN bought AS b ON b.person = pg.person
            LEFT JOIN seen AS s ON s.person = pg.person
            ORDER BY pg.person
            """,
            params,
        )
    return AudienceResult(parsed, as_of, int(count), rows.select(MEMBER_SCHEMA.names).cast(MEMBER_SCHEMA), limit, offset)


def run_audience(ctx: ClickHouseContext, query: AudienceQuery) -> AudienceResult:
    saved = query.definition if query.name is None else ctx.store.audience(ctx.source, query.name).definition
    result = audience_members(ctx, saved, query.as_of, query.limit, query.offset)
    return replace(result, name=query.name)


RUNNERS = {"audience": run_audience}
