"""Sales facts in ClickHouse: the ``orders``, ``refunds``, ``sessions``, ``people`` and ``spend``
tables of masar/engine/facts.py, built by ClickHouse SQL from the source's events, for one query.

The definitions are masar/engine/facts.py's, column for column (its docstring says what each table
holds); only the dialect differs:

* ``argMin``/``argMax`` skip NULL arguments like DuckDB's ``arg_min``/``arg_max``; where DuckDB
  keeps a NULL (``arg_max_null``) the argument is wrapped in a tuple, which is never NULL.
* ``minOrNullIf``: DuckDB's ``min(x) FILTER (WHERE ...)`` is NULL over no rows, ClickHouse's
  ``minIf`` the type's default.
* money: ``Decimal(18,3) × Decimal(38,12)`` keeps every digit (scales add) and ``round`` on a
  Decimal rounds half away from zero, as DuckDB's does; the rate is the latest on or before the
  row's local day (``ASOF LEFT JOIN``), else the currency's first rate.
* ``greatest``/``least`` skip NULLs in both engines.

The tables are Memory tables (``_sales_<id>_orders``, ...). Built for a version of the source's
events and metadata (``ClickHouseStore.run`` gives the context one), they are kept in a
``FactsCache`` and shared by every query of that version, as the embedded store keeps its facts in
memory: the first query after new events pays for the build, the rest read the tables. A newer
version replaces them; the old tables are dropped once the last query reading them is done. Without
a version (a context made by hand) they are built for the one query and dropped after it. Small
tables a query adds for itself (a mapping of trait values, a page of people) are scratch tables of
that query. Nothing but the aggregates a runner asks for leaves ClickHouse.
"""

from __future__ import annotations

import itertools
import re
import threading
import uuid
from collections.abc import Hashable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from masar.engine.facts import CART_WINDOW_DAYS, ORDER_EVENTS, SIGNUP_EVENTS, rates_to, spend_rows_table
from masar.model.money import minor_units
from masar.store.clickhouse.client import Client, clickhouse_type, scratch_table
from masar.store.clickhouse.context import ClickHouseContext
from masar.store.clickhouse.predicates import json_text, stripped

_counter = itertools.count()
_MONEY = "Nullable(Decimal(18, 3))"
# As in DuckDB, a column of the FROM clause wins over a same-named alias of the SELECT list
# (``min(ts) AS ts, argMin(day, ts)`` reads the column ts).
SETTINGS = " SETTINGS prefer_column_name_to_alias = 1"
# ``{orders}``, ``{events}``, ...: a table of the query; ``{name:Type}`` (a bound parameter) is left alone.
_NAME = re.compile(r"\{([a-z_0-9]+)\}")


def fill(names: dict[str, str], template: str) -> str:
    """``template`` with each ``{name}`` of ``names`` replaced by its table."""
    return _NAME.sub(lambda m: names.get(m.group(1), m.group(0)), template)


def text(value: str) -> str:
    """A ClickHouse string literal, for the few constants the code controls (event names, the
    reporting currency, the time zone); values from a query are bound as parameters."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def integer_text(expr: str) -> str:
    """DuckDB's ``TRY_CAST(text AS BIGINT)``: whole numbers, and decimals rounded half away from zero,
    whitespace around them allowed."""
    expr = stripped(expr)
    return f"coalesce(toInt64OrNull({expr}), toInt64OrNull(toString(round(toDecimal128OrNull({expr}, 6)))))"


def local_date(expr: str, tz: str) -> str:
    return f"toDate({expr}, {text(tz)})"


@dataclass
class _Built:
    """One version's facts tables: their names, and how many queries are reading them."""

    names: dict[str, str]
    tables: list[str]
    readers: int = 0
    replaced: bool = False


@dataclass
class FactsCache:
    """The facts of each source, for the latest version of its data asked for.

    ``acquire`` returns the tables of a version, building them first when they are missing (one
    build per version: queries asking meanwhile wait for it); ``release`` ends a query's reading.
    When a newer version is built, the old tables are dropped as soon as no query reads them. A
    table that vanished (a ClickHouse server restarted: Memory tables do not survive it) is built
    again."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _builds: dict[int, threading.Lock] = field(default_factory=dict)
    _latest: dict[int, tuple[Hashable, _Built]] = field(default_factory=dict)

    def acquire(self, facts: SalesFacts, version: Hashable) -> _Built:
        source_id = facts.ctx.source.id
        with self._lock:
            build_lock = self._builds.setdefault(source_id, threading.Lock())
        with build_lock:
            with self._lock:
                found = self._latest.get(source_id)
            if found is not None and found[0] == version and _exists(facts.client, found[1].tables[-1]):
                built = found[1]
            else:
                built = facts.build()
                unread = None
                with self._lock:
                    if found is not None:
                        found[1].replaced = True
                        unread = found[1] if found[1].readers == 0 else None
                    self._latest[source_id] = (version, built)
                if unread is not None:
                    _drop(facts.client, unread.tables)
            with self._lock:
                built.readers += 1
            return built

    def release(self, facts: SalesFacts, built: _Built) -> None:
        with self._lock:
            built.readers -= 1
            if not (built.replaced and built.readers == 0):
                return
        _drop(facts.client, built.tables)

    def clear(self, client: Client) -> None:
        """Drop every table kept (the store closes)."""
        with self._lock:
            kept, self._latest = list(self._latest.values()), {}
        for _, built in kept:
            _drop(client, built.tables)


def _materialize(client: Client, table: str, select: str, params: dict[str, Any] | None) -> str:
    client.command(f"CREATE TABLE {table} ENGINE = Memory AS {select}{SETTINGS}", params)
    return table


def _exists(client: Client, table: str) -> bool:
    return bool(client.arrow(f"EXISTS TABLE {table}").column(0)[0].as_py())


def _drop(client: Client, tables: list[str]) -> None:
    for table in reversed(tables):
        try:
            client.command(f"DROP TABLE IF EXISTS {table}")
        except Exception:  # noqa: BLE001 - dropping is best effort; every build names its own tables
            pass


class SalesFacts:
    """The facts of one source for one query: ``with SalesFacts(ctx) as facts``; ``facts.sql(t)``
    fills ``{orders}``, ``{events}``, ... in ``t`` with the tables' names. The tables come from the
    context's ``FactsCache`` when it has a version, else they are built for this query."""

    def __init__(self, ctx: ClickHouseContext):
        self.ctx = ctx
        self.client = ctx.client
        self.currency = ctx.source.currency
        self.tz = ctx.tz.key
        self._stack = ExitStack()  # this query's own scratch tables
        self.names: dict[str, str] = {"events": ctx.events}

    # -- the query's tables ----------------------------------------------------------------------

    def sql(self, template: str) -> str:
        return fill(self.names, template)

    def arrow(self, template: str, params: dict[str, Any] | None = None) -> pa.Table:
        return self.client.arrow(self.sql(template) + SETTINGS, params)

    def rows(self, template: str, params: dict[str, Any] | None = None) -> list[tuple]:
        table = self.arrow(template, params)
        columns = [c.to_pylist() for c in table.columns]
        return list(zip(*columns, strict=True)) if columns else []

    def scratch(self, name: str, data: pa.Table) -> str:
        """A small table (a mapping of values, a page of people) for this query, as ``{name}``."""
        self.names[name] = self._stack.enter_context(scratch_table(self.client, data, prefix=f"sales_{name}"))
        return self.names[name]

    def table(self, name: str, select: str, params: dict[str, Any] | None = None) -> str:
        """``select`` materialised as a table of this query, reachable as ``{name}``, dropped after."""
        table = f"{self.client.database}._sales_q{uuid.uuid4().hex[:12]}_{next(_counter)}_{name}"
        self._stack.callback(_drop, self.client, [table])
        self.names[name] = _materialize(self.client, table, self.sql(select), params)
        return table

    def __enter__(self) -> SalesFacts:
        cache, version = self.ctx.facts_cache, self.ctx.version
        try:
            if cache is not None and version is not None:
                built = cache.acquire(self, version)
                self._stack.callback(cache.release, self, built)
            else:
                built = self.build()
                self._stack.callback(_drop, self.client, built.tables)
        except BaseException:
            self._stack.close()
            raise
        self.names.update(built.names)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()

    def build(self) -> _Built:
        """Build every facts table (and the rates and spend they convert with) under new names."""
        return _Builder(self.ctx).build()


class _Builder:
    """Builds one version's facts tables: ``{orders}``, ``{refunds}``, ``{sessions}``, ``{people}``,
    ``{spend}`` and those they are made from, ``{rates}`` included (queries convert with it)."""

    def __init__(self, ctx: ClickHouseContext):
        self.ctx = ctx
        self.client = ctx.client
        self.currency = ctx.source.currency
        self.tz = ctx.tz.key
        self._id = f"{uuid.uuid4().hex[:12]}_{next(_counter)}"
        self._made: list[str] = []
        self.names: dict[str, str] = {"events": ctx.events}

    def sql(self, template: str) -> str:
        return fill(self.names, template)

    def table(self, name: str, select: str, params: dict[str, Any] | None = None) -> str:
        """``select`` materialised as a table of this version, reachable as ``{name}``."""
        table = f"{self.client.database}._sales_{self._id}_{name}"
        self._made.append(table)
        self.names[name] = _materialize(self.client, table, self.sql(select), params)
        return table

    def rows_table(self, name: str, data: pa.Table) -> str:
        """A small Arrow table (rates, spend rows) as a table of this version."""
        table = f"{self.client.database}._sales_{self._id}_{name}"
        self._made.append(table)
        columns = ", ".join(f"`{f.name}` {clickhouse_type(f.type, nullable=f.nullable)}" for f in data.schema)
        self.client.command(f"CREATE TABLE {table} ({columns}) ENGINE = Memory")
        if data.num_rows:
            self.client.insert(table, data)
        self.names[name] = table
        return table

    def build(self) -> _Built:
        try:
            self._build()
        except BaseException:
            _drop(self.client, self._made)
            raise
        names = {k: v for k, v in self.names.items() if k != "events"}
        return _Built(names, list(self._made))

    # -- building ----------------------------------------------------------------------------------

    def _convert(self, source: str, columns: list[str], amounts: list[str]) -> str:
        """``source`` with each amount converted into the reporting currency (facts._convert)."""
        places = minor_units(self.currency)
        cur = text(self.currency)
        rate = "coalesce(r.rate, f.rate)"
        converted = ", ".join(
            f"if(t.currency IS NULL OR t.currency = {cur}, CAST(round(t.{a}, {places}) AS {_MONEY}), "
            f"CAST(round(t.{a} * {rate}, {places}) AS {_MONEY})) AS {a}"
            for a in amounts
        )
        kept = ", ".join(f"t.{c} AS {c}" for c in columns if c not in amounts)
        return f"""
            SELECT {kept}, {converted},
                   (t.currency IS NOT NULL AND t.currency != {cur} AND {rate} IS NULL) AS unconvertible
            FROM ({source}) AS t
            ASOF LEFT JOIN (SELECT currency, day, rate FROM {{rates}}) AS r
                 ON r.currency = t.currency AND r.day <= t.day
            LEFT JOIN (SELECT currency, argMin(rate, day) AS rate FROM {{rates}} GROUP BY currency) AS f
                 ON f.currency = t.currency
        """

    def _build(self) -> None:
        store, source = self.ctx.store, self.ctx.source
        rates = rates_to(self.currency, store.exchange_rates())
        self.rows_table("rates", _not_null(rates))
        self.rows_table("spend_raw", spend_rows_table(store.ad_spend(source)))
        tz = self.tz
        events_in = ", ".join(text(e) for e in ORDER_EVENTS)
        amount = "coalesce(total, revenue, subtotal - coalesce(discount, 0))"
        quantity = integer_text(json_text("x", text("quantity")))
        products = "JSONExtractArrayRaw(ifNull(properties, ''), 'products')"
        order_events = f"""
            SELECT toString(event) AS event, message_id, coalesce(order_id, message_id) AS order_key, person, ts, day,
                   session_id, toNullable(toString(currency)) AS currency, {amount} AS amount,
                   {amount} IS NOT NULL AS has_amount, discount,
                   CAST(coalesce(if(empty({products}), NULL, arraySum(x -> coalesce({quantity}, 1), {products})),
                                 quantity) AS Nullable(Int64)) AS items,
                   toNullable(toString(channel)) AS channel, session_campaign AS campaign,
                   toNullable(toString(device_type)) AS device_type, toNullable(toString(country)) AS country
            FROM {{events}}
            WHERE type = 'track' AND event IN ({events_in})
        """
        columns = ["event", "message_id", "order_key", "person", "ts", "day", "session_id", "currency", "amount",
                   "has_amount", "discount", "items", "channel", "campaign", "device_type", "country"]  # fmt: skip
        self.table("order_events", self._convert(order_events, columns, ["amount", "discount"]))
        self._orders()
        self._sessions(tz)
        self._people(tz)
        self.table(
            "spend",
            self._convert("SELECT * FROM {spend_raw}", ["day", "channel", "named_channel", "campaign", "spend",
                                                         "currency"], ["spend"]),  # fmt: skip
        )

    def _orders(self) -> None:
        n = self.names
        self.table(
            "orders0",
            f"""
            WITH completed AS (
                SELECT order_key, argMin(person, ts) AS person, min(ts) AS ts, argMin(day, ts) AS day,
                       argMin(session_id, ts) AS session_id, argMin(channel, ts) AS channel,
                       argMin(campaign, ts) AS campaign, argMin(device_type, ts) AS device_type,
                       argMin(country, ts) AS country, argMin(currency, ts) AS order_currency
                FROM {n["order_events"]} WHERE event = 'Order Completed' GROUP BY order_key
            ),
            valued AS (
                SELECT order_key,
                       argMaxIf(tuple(amount), (ts, event = 'Order Updated', message_id), has_amount).1 AS value,
                       argMaxIf(unconvertible, (ts, event = 'Order Updated', message_id), has_amount) AS unconvertible,
                       argMaxIf(currency, (ts, event = 'Order Updated', message_id), has_amount) AS value_currency,
                       argMax(discount, ts) AS discount, argMax(items, ts) AS items
                FROM {n["order_events"]} WHERE event IN ('Order Completed', 'Order Updated') GROUP BY order_key
            ),
            ended AS (
                SELECT DISTINCT order_key, true AS cancelled FROM {n["order_events"]} WHERE event = 'Order Cancelled'
            ),
            joined AS (
                SELECT c.order_key AS order_key, c.person AS person, c.ts AS ts, c.day AS day, v.value AS value,
                       coalesce(v.discount, toDecimal64(0, 3)) AS discount, v.items AS items,
                       coalesce(e.cancelled, false) AS cancelled,
                       coalesce(c.channel, 'Unassigned') AS channel, c.campaign AS campaign,
                       c.device_type AS device_type, c.country AS country, c.session_id AS session_id,
                       coalesce(v.value_currency, c.order_currency) AS currency,
                       coalesce(v.unconvertible, false) AS unconvertible
                FROM completed AS c
                LEFT JOIN valued AS v ON v.order_key = c.order_key
                LEFT JOIN ended AS e ON e.order_key = c.order_key
            )
            SELECT *,
                   if(NOT cancelled, toNullable(toInt32(row_number() OVER (PARTITION BY person, cancelled
                                                                           ORDER BY ts, order_key))), NULL)
                       AS order_number
            FROM joined
            """,
        )
        # A refund without an amount refunds what is left of the order's value (facts.py).
        self.table(
            "refunds",
            f"""
            WITH r AS (
                SELECT e.order_key AS order_key, e.person AS person, e.ts AS ts, e.day AS day,
                       e.message_id AS message_id, e.has_amount AS has_amount, e.amount AS amount,
                       e.currency AS currency, e.unconvertible AND e.has_amount AS unconvertible,
                       o.value AS order_value, o.unconvertible AS order_unconvertible, o.currency AS order_currency,
                       coalesce(o.cancelled, false) AS cancelled, o.order_key IS NOT NULL AS known_order,
                       coalesce(sum(e.amount) OVER (PARTITION BY e.order_key ORDER BY e.ts, e.message_id
                                                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
                           AS refunded_before,
                       coalesce(max(NOT e.has_amount) OVER (PARTITION BY e.order_key ORDER BY e.ts, e.message_id
                                                            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
                           AS refunded_in_full_before
                FROM {n["order_events"]} AS e LEFT JOIN {n["orders0"]} AS o ON o.order_key = e.order_key
                WHERE e.event = 'Order Refunded'
            )
            SELECT order_key, person, ts, day,
                   CAST(multiIf(has_amount, amount, refunded_in_full_before = 1, toDecimal64(0, 3),
                                greatest(order_value - refunded_before, 0)) AS Nullable(Decimal(18, 3))) AS value,
                   if(has_amount, currency, order_currency) AS currency,
                   if(has_amount, unconvertible, coalesce(order_unconvertible, false)) AS unconvertible,
                   cancelled, known_order
            FROM r
            """,
        )
        self.table(
            "orders",
            f"""
            SELECT o.*, CAST(coalesce(r.refunded, 0) AS Decimal(18, 3)) AS refunded,
                   if(NOT o.cancelled, lagInFrame(toNullable(o.ts), 1, NULL) OVER (
                       PARTITION BY o.person, o.cancelled ORDER BY o.ts, o.order_key
                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW), NULL) AS previous_ts
            FROM {n["orders0"]} AS o
            LEFT JOIN (SELECT order_key AS refunded_order, sum(value) AS refunded FROM {n["refunds"]}
                       GROUP BY order_key) AS r ON r.refunded_order = o.order_key
            """,
        )

    def _sessions(self, tz: str) -> None:
        cart_lines = """
            SELECT session_id, day, toNullable(toString(currency)) AS currency,
                   CAST(price * coalesce(quantity, 1) AS Nullable(Decimal(18, 3))) AS line
            FROM {events} WHERE type = 'track' AND event = 'Product Added' AND price IS NOT NULL
        """
        self.table("cart_lines", self._convert(cart_lines, ["session_id", "day", "currency", "line"], ["line"]))
        self.table(
            "sessions0",
            f"""
            WITH visits AS (
                SELECT session_id, any(person) AS person, min(ts) AS ts,
                       argMin(toNullable(toString(channel)), ts) AS channel,
                       argMin(toNullable(toString(session_source)), ts) AS source,
                       argMin(toNullable(toString(session_medium)), ts) AS medium,
                       argMin(session_campaign, ts) AS campaign,
                       argMin(toNullable(toString(device_type)), ts) AS device_type,
                       argMin(toNullable(toString(country)), ts) AS country,
                       count() AS events,
                       countIf(ifNull(event = 'Product Viewed', 0)) AS product_views,
                       minOrNullIf(ts, ifNull(event = 'Product Added', 0)) AS cart_ts,
                       minOrNullIf(ts, ifNull(event = 'Checkout Started', 0)) AS checkout_ts
                FROM {{events}}
                WHERE session_id IS NOT NULL AND type IN ('track', 'page', 'screen')
                GROUP BY session_id
                HAVING countIf(type IN ('page', 'screen') OR device_type IS NOT NULL) > 0
            ),
            placed AS (
                SELECT session_id, count() AS orders FROM {{orders}} WHERE NOT cancelled GROUP BY session_id
            ),
            carts AS (
                SELECT session_id, sum(line) AS cart_value, countIf(unconvertible) AS cart_lines_unconverted,
                       anyIf(currency, unconvertible) AS cart_unconverted_currency
                FROM {{cart_lines}} GROUP BY session_id
            )
            SELECT v.session_id AS session_id, v.person AS person, v.ts AS ts, {local_date("v.ts", tz)} AS day,
                   coalesce(v.channel, 'Unassigned') AS channel, v.source AS source, v.medium AS medium,
                   v.campaign AS campaign, v.device_type AS device_type, v.country AS country, v.events AS events,
                   v.product_views AS product_views, toInt64(coalesce(p.orders, 0)) AS orders,
                   v.cart_ts AS cart_ts, v.checkout_ts AS checkout_ts,
                   CAST(coalesce(c.cart_value, 0) AS Decimal(18, 3)) AS cart_value,
                   toInt64(coalesce(c.cart_lines_unconverted, 0)) AS cart_lines_unconverted,
                   c.cart_unconverted_currency AS cart_unconverted_currency
            FROM visits AS v LEFT JOIN placed AS p ON p.session_id = v.session_id
            LEFT JOIN carts AS c ON c.session_id = v.session_id
            """,
        )
        # A cart (or checkout) is bought when its visitor orders within the window after it: the
        # first order at or after it (ASOF), as facts.py.
        bought = "SELECT person, ts FROM {orders} WHERE NOT cancelled"

        def first_order_after(column: str) -> str:
            return f"""
                SELECT s.session_id AS {column}_session, o.ts AS next_order
                FROM (SELECT session_id, person, assumeNotNull({column}) AS at FROM {{sessions0}}
                      WHERE {column} IS NOT NULL) AS s
                ASOF JOIN ({bought}) AS o ON o.person = s.person AND o.ts >= s.at
            """

        self.table(
            "sessions",
            f"""
            SELECT s.*,
                   (c.next_order IS NOT NULL AND c.next_order <= s.cart_ts + INTERVAL {CART_WINDOW_DAYS} DAY)
                       AS cart_bought,
                   (k.next_order IS NOT NULL AND k.next_order <= s.checkout_ts + INTERVAL {CART_WINDOW_DAYS} DAY)
                       AS checkout_bought
            FROM {{sessions0}} AS s
            LEFT JOIN ({first_order_after("cart_ts")}) AS c ON c.cart_ts_session = s.session_id
            LEFT JOIN ({first_order_after("checkout_ts")}) AS k ON k.checkout_ts_session = s.session_id
            """,
        )

    def _people(self, tz: str) -> None:
        signups = ", ".join(text(e) for e in SIGNUP_EVENTS)
        email = json_text("traits", text("email"))
        first = "least(s.first_seen, b.first_order_ts)"
        self.table(
            "people",
            f"""
            WITH seen AS (
                SELECT person, min(ts) AS first_seen, argMin(channel, ts) AS first_channel,
                       argMin(campaign, ts) AS first_campaign, count() AS sessions
                FROM {{sessions}} GROUP BY person
            ),
            bought AS (
                SELECT person, min(ts) AS first_order_ts, max(ts) AS last_order_ts, count() AS orders,
                       CAST(coalesce(sum(value), 0) AS Decimal(18, 3)) AS revenue,
                       CAST(coalesce(sum(refunded), 0) AS Decimal(18, 3)) AS refunded
                FROM {{orders}} WHERE NOT cancelled GROUP BY person
            ),
            known AS (
                SELECT person, argMax(user_id, ts) AS user_id,
                       minOrNullIf(ts, type = 'track' AND ifNull(event IN ({signups}), 0)) AS signed_up_ts,
                       min(ts) AS first_event
                FROM {{events}} GROUP BY person
            ),
            emails AS (
                SELECT person, argMax(email, ts) AS email, min(ts) AS email_ts
                FROM (SELECT person, ts, {email} AS email FROM {{events}} WHERE traits IS NOT NULL)
                WHERE email IS NOT NULL GROUP BY person
            )
            SELECT k.person AS person, k.user_id AS user_id, m.email AS email,
                   least(m.email_ts, k.signed_up_ts) AS signup_ts,
                   coalesce({first}, k.first_event) AS first_seen,
                   {local_date(f"coalesce({first}, k.first_event)", tz)} AS first_day,
                   coalesce(s.first_channel, 'Unassigned') AS first_channel, s.first_campaign AS first_campaign,
                   b.first_order_ts AS first_order_ts, b.last_order_ts AS last_order_ts,
                   toInt64(coalesce(b.orders, 0)) AS orders,
                   coalesce(b.revenue, toDecimal64(0, 3)) AS revenue,
                   coalesce(b.refunded, toDecimal64(0, 3)) AS refunded,
                   toInt64(coalesce(s.sessions, 0)) AS sessions
            FROM known AS k LEFT JOIN seen AS s ON s.person = k.person
            LEFT JOIN bought AS b ON b.person = k.person
            LEFT JOIN emails AS m ON m.person = k.person
            """,
        )


def _not_null(table: pa.Table) -> pa.Table:
    """An ASOF join needs its key columns non-nullable."""
    schema = pa.schema([f.with_nullable(False) for f in table.schema])
    return table.cast(schema)
