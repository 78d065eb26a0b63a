"""The sales relations audiences and the customer profile read — ``events``, ``orders`` and
``people`` — as ClickHouse common table expressions with the meaning of masar/engine/facts.py.

``sales_relations(ctx)`` yields a ``WITH`` clause that names them (``visits`` too: the sessions
that are someone's visit); a query written for the DuckDB facts reads them under the same names.
The source's exchange rates, converted to its currency, sit in a scratch table, and the relations
are computed once into Memory tables, for the life of the block.

Kept apart from the sales facts' own module (masar/store/clickhouse/facts.py, written alongside):
this one holds only the columns audiences and profiles read, and the two are meant to merge.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa

from masar.engine.facts import ORDER_COMPLETED, ORDER_EVENTS, SIGNUP_EVENTS, rates_to
from masar.model.money import minor_units
from masar.store.clickhouse.client import ClickHouseUnavailable, scratch_table
from masar.store.clickhouse.conditions import json_text
from masar.store.clickhouse.context import ClickHouseContext


def literal(text: str) -> str:
    """A string literal, for the few values the code itself controls (currency, time zone)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _names(values) -> str:
    return ", ".join(literal(v) for v in values)


# Each relation computed once into a table, from the common table expressions it needs (those
# already computed read their table): a WITH clause is inlined wherever it is named.
_STAGES = (
    ("order_events", ["events", "order_rows", "order_events"]),
    ("placed_orders", ["order_events", "placed_orders"]),
    ("orders", ["order_events", "placed_orders", "refund_rows", "orders"]),
    ("visits", ["events", "visits"]),
    ("people", ["events", "orders", "visits", "people"]),
)
_RATES = pa.schema([pa.field("day", pa.date32(), nullable=False), pa.field("currency", pa.string(), nullable=False),
                    pa.field("rate", pa.decimal128(38, 12), nullable=False)])  # fmt: skip


@contextmanager
def sales_relations(ctx: ClickHouseContext) -> Iterator[str]:
    """``WITH events AS (...), orders AS (...), visits AS (...), people AS (...)`` for the queries
    of one answer. ``orders``, ``visits`` and ``people`` are computed once, into Memory tables that
    live as long as the block: a WITH clause is inlined wherever it is named, and a profile asks a
    dozen questions of the same orders."""
    rates = rates_to(ctx.source.currency, ctx.store.exchange_rates()).cast(_RATES)
    with scratch_table(ctx.client, rates, prefix="rates") as rates_table:
        parts = _relations(ctx, rates_table)
        made: dict[str, str] = {}
        try:
            for name, needs in _STAGES:
                table = f"{ctx.client.database}._{name}_{uuid.uuid4().hex[:12]}"
                ctes = [f"{n} AS (SELECT * FROM {made[n]})" if n in made else parts[n] for n in needs]
                ctx.client.command(f"CREATE TABLE {table} ENGINE = Memory AS WITH {', '.join(ctes)} SELECT * FROM {name}")
                made[name] = table
            kept = [f"{n} AS (SELECT * FROM {made[n]})" for n in ("orders", "visits", "people")]
            yield "WITH " + ", ".join([parts["events"], *kept])
        finally:
            for table in made.values():
                try:
                    ctx.client.command(f"DROP TABLE IF EXISTS {table}")
                except ClickHouseUnavailable:
                    pass


def _convert(amount: str, currency: str, places: int) -> str:
    """An amount in the reporting currency, rounded half away from zero to its minor unit; NULL
    when its currency has no rate (facts.py ``_convert``: the rate on or before the row's day,
    else the currency's first rate)."""
    return (
        f"if(t.currency IS NULL OR t.currency = {currency}, toDecimal64(round(t.{amount}, {places}), 3), "
        f"toDecimal64(round(t.{amount} * coalesce(r.rate, f.rate), {places}), 3))"
    )


def _relations(ctx: ClickHouseContext, rates: str) -> dict[str, str]:
    """The common table expressions of each relation (``orders`` needs its helpers before it)."""
    currency = literal(ctx.source.currency)
    places = minor_units(ctx.source.currency)
    tz = literal(ctx.tz.key)
    products = "JSONExtractArrayRaw(ifNull(properties, ''), 'products')"
    quantity = "toInt64OrNull(trimBoth(" + json_text("x", "'quantity'") + "))"
    email = json_text("traits", "'email'")
    events = f"events AS (SELECT * FROM {ctx.events})"
    order_rows = f"""
    order_rows AS (
        SELECT event, message_id, ifNull(order_id, message_id) AS order_key, person, ts, day, session_id, currency,
               coalesce(total, revenue, subtotal - ifNull(discount, 0)) AS raw_amount,
               raw_amount IS NOT NULL AS has_amount, discount AS raw_discount,
               if(JSONType(ifNull(properties, ''), 'products') = 'Array' AND length({products}) > 0,
                  arraySum(arrayMap(x -> ifNull({quantity}, 1), {products})), quantity) AS items,
               channel, session_campaign AS campaign
        FROM events WHERE type = 'track' AND event IN ({_names(ORDER_EVENTS)})
    )"""
    order_events = f"""
    order_events AS (
        SELECT t.event AS event, t.message_id AS message_id, t.order_key AS order_key, t.person AS person,
               t.ts AS ts, t.day AS day, t.session_id AS session_id, t.currency AS currency,
               t.has_amount AS has_amount, t.items AS items, t.channel AS channel,
               {_convert("raw_amount", currency, places)} AS amount,
               {_convert("raw_discount", currency, places)} AS discount,
               (t.currency IS NOT NULL AND t.currency != {currency} AND coalesce(r.rate, f.rate) IS NULL)
                   AS unconvertible
        FROM (SELECT *, ifNull(currency, '') AS currency_key, toDate32(day) AS rate_day FROM order_rows) AS t
        ASOF LEFT JOIN (SELECT currency AS rate_currency, day AS rate_day, rate FROM {rates}) AS r
            ON r.rate_currency = t.currency_key AND r.rate_day <= t.rate_day
        LEFT JOIN (SELECT currency AS first_currency, argMin(rate, day) AS rate FROM {rates} GROUP BY currency) AS f
            ON f.first_currency = t.currency_key
    )"""
    placed_orders = f"""
    placed_orders AS (
        SELECT c.order_key AS order_key, c.buyer AS person, c.placed_ts AS ts, c.placed_day AS day,
               v.last_value AS value, coalesce(v.last_discount, toDecimal64(0, 3)) AS discount, v.last_items AS items,
               coalesce(x.cancelled, false) AS cancelled, coalesce(c.placed_channel, 'Unassigned') AS channel
        FROM (
            -- Aliases never reuse a column's name: in ClickHouse an alias replaces the column in
            -- the whole SELECT (``min(ts) AS ts`` would make ``argMin(day, ts)`` read min(ts)).
            SELECT order_key, argMin(person, ts) AS buyer, min(ts) AS placed_ts, argMin(day, ts) AS placed_day,
                   argMin(channel, ts) AS placed_channel
            FROM order_events WHERE event = {literal(ORDER_COMPLETED)} GROUP BY order_key
        ) AS c
        LEFT JOIN (
            -- The latest amount sent, even one that cannot be converted (then the value is NULL):
            -- in a tuple, so argMax does not pass over a NULL value.
            SELECT order_key,
                   tupleElement(argMaxIf(tuple(amount), (ts, event = 'Order Updated', message_id), has_amount), 1)
                       AS last_value,
                   argMaxIf(discount, ts, discount IS NOT NULL) AS last_discount,
                   argMaxIf(items, ts, items IS NOT NULL) AS last_items
            FROM order_events WHERE event IN ('Order Completed', 'Order Updated') GROUP BY order_key
        ) AS v ON v.order_key = c.order_key
        LEFT JOIN (
            SELECT order_key, true AS cancelled FROM order_events WHERE event = 'Order Cancelled' GROUP BY order_key
        ) AS x ON x.order_key = c.order_key
    )"""
    refund_rows = """
    refund_rows AS (
        -- A refund without an amount refunds what is left of the order's value (facts.py).
        SELECT e.order_key AS order_key,
               toDecimal64(multiIf(
                   e.has_amount, e.amount,
                   refunded_in_full_before, toDecimal64(0, 3),
                   greatest(o.value - refunded_before, toDecimal64(0, 3))), 3) AS value,
               coalesce(sum(e.amount) OVER before, toDecimal64(0, 3)) AS refunded_before,
               coalesce(max(NOT e.has_amount) OVER before, false) AS refunded_in_full_before
        FROM order_events AS e LEFT JOIN placed_orders AS o ON o.order_key = e.order_key
        WHERE e.event = 'Order Refunded'
        WINDOW before AS (PARTITION BY e.order_key ORDER BY e.ts, e.message_id
                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
    )"""
    orders = """
    orders AS (
        SELECT o.*, toDecimal64(coalesce(r.refunded, toDecimal64(0, 3)), 3) AS refunded,
               if(NOT o.cancelled, row_number() OVER (PARTITION BY o.person, o.cancelled ORDER BY o.ts, o.order_key),
                  NULL) AS order_number
        FROM placed_orders AS o
        LEFT JOIN (SELECT order_key, sum(value) AS refunded FROM refund_rows GROUP BY order_key) AS r
            ON r.order_key = o.order_key
    )"""
    visits = f"""
    visits AS (
        -- A visit shows a page or a screen or comes from a browser or an app (facts.py sessions).
        SELECT session_id, visitor AS person, started AS ts, toDate(started, {tz}) AS day,
               coalesce(visit_channel, 'Unassigned') AS channel, visit_campaign AS campaign
        FROM (
            SELECT session_id, any(person) AS visitor, min(ts) AS started, argMin(channel, ts) AS visit_channel,
                   argMin(session_campaign, ts) AS visit_campaign
            FROM events
            WHERE session_id IS NOT NULL AND type IN ('track', 'page', 'screen')
            GROUP BY session_id
            HAVING countIf(type IN ('page', 'screen') OR device_type IS NOT NULL) > 0
        )
    )"""
    people = f"""
    people AS (
        SELECT k.person AS person, k.known_user_id AS user_id, m.latest_email AS email,
               least(m.email_ts, k.signed_up_ts) AS signup_ts,
               coalesce(least(s.first_seen, b.first_order_ts), k.first_event) AS first_seen,
               toDate(first_seen, {tz}) AS first_day,
               coalesce(s.first_channel, 'Unassigned') AS first_channel, s.first_campaign AS first_campaign
        FROM (
            SELECT person, argMaxIf(user_id, ts, user_id IS NOT NULL) AS known_user_id,
                   minIf(ts, type = 'track' AND event IN ({_names(SIGNUP_EVENTS)})) AS signed_up_ts_or_zero,
                   if(countIf(type = 'track' AND event IN ({_names(SIGNUP_EVENTS)})) > 0, signed_up_ts_or_zero, NULL)
                       AS signed_up_ts,
                   min(ts) AS first_event
            FROM events GROUP BY person
        ) AS k
        LEFT JOIN (
            SELECT person, min(ts) AS first_seen, argMin(channel, ts) AS first_channel,
                   argMin(campaign, ts) AS first_campaign
            FROM visits GROUP BY person
        ) AS s ON s.person = k.person
        LEFT JOIN (SELECT person, min(ts) AS first_order_ts FROM orders WHERE NOT cancelled GROUP BY person) AS b
            ON b.person = k.person
        LEFT JOIN (
            SELECT person, argMax(email, ts) AS latest_email, min(ts) AS email_ts
            FROM (SELECT person, ts, {email} AS email
                  FROM events WHERE traits IS NOT NULL)
            WHERE email IS NOT NULL GROUP BY person
        ) AS m ON m.person = k.person
    )"""
    return {"events": events, "order_rows": order_rows, "order_events": order_events, "placed_orders": placed_orders,
            "refund_rows": refund_rows, "orders": orders, "visits": visits, "people": people}
