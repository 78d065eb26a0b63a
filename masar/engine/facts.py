"""Sales facts: the tables every KPI, cohort, segment and lifetime-value analysis reads.

Events say what happened; sales analyses ask about orders, visits and customers. This module
turns a source's events into four tables, once per version of the data, and registers them on
a DuckDB cursor with the raw events:

* ``orders`` — one row per order (``order_id``, or the message for orders without one): its
  first ``Order Completed`` decides who, when and through which visit; the latest ``Order
  Completed``/``Order Updated`` with an amount decides the value; an ``Order Cancelled`` marks it
  cancelled; ``Order Refunded`` amounts add up in ``refunded``.
* ``refunds`` — one row per ``Order Refunded``, on the day it happened.
* ``sessions`` — one row per visit, with its channel, device and what the visitor did.
* ``people`` — one row per person: first touch, identity, lead and order history.
* ``events`` — every event, with ``person`` after identity merges and the local ``day``.

Money is converted to the source's reporting currency (its ``currency``) with the exchange rates
table, as of the order's local day, and rounded half away from zero to the reporting currency's
minor unit, order by order; an amount with no rate stays NULL and is reported, never guessed
(docs/metrics.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa

from masar.engine.context import QueryContext
from masar.enrich.channels import CHANNEL_BY_LOWER
from masar.model.money import minor_units
from masar.store.schema import EVENTS

ORDER_COMPLETED = "Order Completed"
ORDER_EVENTS = ("Order Completed", "Order Updated", "Order Cancelled", "Order Refunded")
SIGNUP_EVENTS = ("Signed Up",)
VISIT_TYPES = ("track", "page", "screen")
# A cart counts as bought when its visitor orders within this long after the first add.
CART_WINDOW_DAYS = 7


@dataclass
class Rate:
    day: date
    base: str
    quote: str
    rate: Decimal


@dataclass
class Facts:
    currency: str
    orders: pa.Table
    refunds: pa.Table
    sessions: pa.Table
    people: pa.Table
    spend: pa.Table
    rates: pa.Table

    def register(self, con: duckdb.DuckDBPyConnection) -> None:
        for name in ("orders", "refunds", "sessions", "people", "spend"):
            con.register(name, getattr(self, name))
        con.register("_rates", self.rates)


def sql_text(value: str) -> str:
    """A string literal for the few places SQL takes no parameters (view definitions)."""
    return "'" + value.replace("'", "''") + "'"


def rates_to(currency: str, rates: Iterable[Rate]) -> pa.Table:
    """Rates into one currency: direct quotes as given, reverse quotes inverted (12 places)."""
    rows: dict[tuple[date, str], Decimal] = {}
    for r in rates:
        if r.quote == currency and r.base != currency:
            rows[(r.day, r.base)] = r.rate
        elif r.base == currency and r.quote != currency and r.rate != 0:
            # A direct quote for the same day wins over an inverted one.
            rows.setdefault((r.day, r.quote), (Decimal(1) / r.rate).quantize(Decimal("1e-12")))
    return pa.table(
        {
            "day": pa.array([k[0] for k in rows], type=pa.date32()),
            "currency": pa.array([k[1] for k in rows], type=pa.string()),
            "rate": pa.array(list(rows.values()), type=pa.decimal128(38, 12)),
        }
    )


def _convert(table: str, currency: str, amounts: list[str]) -> str:
    """SQL selecting ``table`` with each amount column converted into ``currency``.

    The rate is the latest on or before the row's local day; rows older than every rate of their
    currency take its first rate (so a single rate works as a fixed rate)."""
    places = minor_units(currency)
    converted = ", ".join(
        f"CAST(CASE WHEN t.currency IS NULL OR t.currency = {sql_text(currency)} THEN round(t.{a}, {places}) "
        f"ELSE round(t.{a} * coalesce(r.rate, f.rate), {places}) END AS DECIMAL(18,3)) AS {a}"
        for a in amounts
    )
    return f"""
        SELECT t.* EXCLUDE ({", ".join(amounts)}), {converted},
               (t.currency IS NOT NULL AND t.currency <> {sql_text(currency)}
                AND coalesce(r.rate, f.rate) IS NULL) AS unconvertible
        FROM {table} t
        ASOF LEFT JOIN _rates r ON r.currency = t.currency AND r.day <= t.day
        LEFT JOIN (SELECT currency, arg_min(rate, day) AS rate FROM _rates GROUP BY currency) f
               ON f.currency = t.currency
    """


def build_facts(ctx: QueryContext, rates: list[Rate], spend_rows: list[dict[str, Any]]) -> Facts:
    con = ctx.con
    currency = ctx.source.currency
    rates_table = rates_to(currency, rates)
    con.register("_rates", rates_table)
    register_events(ctx)
    orders_raw = f"""
        SELECT event, message_id, coalesce(order_id, message_id) AS order_key, person, ts, day, session_id,
               currency,
               coalesce(total, revenue, subtotal - coalesce(discount, 0)) AS amount,
               coalesce(total, revenue, subtotal - coalesce(discount, 0)) IS NOT NULL AS has_amount,
               discount,
               coalesce(
                   list_sum(list_transform(
                       CAST(json_extract(properties, '$.products') AS JSON[]),
                       lambda x: coalesce(TRY_CAST(json_extract_string(x, '$.quantity') AS BIGINT), 1))),
                   quantity)::BIGINT AS items,
               channel, session_campaign AS campaign, device_type, country
        FROM events
        WHERE type = 'track' AND event IN ({", ".join(sql_text(e) for e in ORDER_EVENTS)})
    """
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _order_events AS {_convert(f'({orders_raw})', currency, ['amount', 'discount'])}"
    )
    # The value is the latest amount sent, even when it cannot be converted (then the order has
    # no known value and is reported), never an older amount that could be.
    orders = con.sql(
        """
        WITH completed AS (
            SELECT order_key,
                   arg_min(person, ts) AS person, min(ts) AS ts, arg_min(day, ts) AS day,
                   arg_min(session_id, ts) AS session_id, arg_min(channel, ts) AS channel,
                   arg_min(campaign, ts) AS campaign, arg_min(device_type, ts) AS device_type,
                   arg_min(country, ts) AS country, arg_min(currency, ts) AS order_currency
            FROM _order_events WHERE event = 'Order Completed' GROUP BY order_key
        ),
        valued AS (
            SELECT order_key,
                   arg_max_null(amount, (ts, event = 'Order Updated', message_id)) FILTER (WHERE has_amount) AS value,
                   arg_max(unconvertible, (ts, event = 'Order Updated', message_id)) FILTER (WHERE has_amount)
                       AS unconvertible,
                   arg_max(currency, (ts, event = 'Order Updated', message_id)) FILTER (WHERE has_amount)
                       AS value_currency,
                   arg_max(discount, ts) FILTER (WHERE discount IS NOT NULL) AS discount,
                   arg_max(items, ts) FILTER (WHERE items IS NOT NULL) AS items
            FROM _order_events WHERE event IN ('Order Completed', 'Order Updated') GROUP BY order_key
        ),
        ended AS (
            SELECT order_key, bool_or(event = 'Order Cancelled') AS cancelled
            FROM _order_events WHERE event = 'Order Cancelled' GROUP BY order_key
        )
        SELECT c.order_key, c.person, c.ts, c.day,
               v.value, coalesce(v.discount, 0) AS discount, v.items,
               coalesce(e.cancelled, false) AS cancelled,
               CASE WHEN NOT coalesce(e.cancelled, false) THEN
                   CAST(row_number() OVER (PARTITION BY c.person, coalesce(e.cancelled, false)
                                           ORDER BY c.ts, c.order_key) AS INTEGER) END AS order_number,
               coalesce(c.channel, 'Unassigned') AS channel, c.campaign, c.device_type, c.country, c.session_id,
               coalesce(v.value_currency, c.order_currency) AS currency,
               coalesce(v.unconvertible, false) AS unconvertible
        FROM completed c
        LEFT JOIN valued v USING (order_key)
        LEFT JOIN ended e USING (order_key)
        """
    ).to_arrow_table()
    con.register("_orders0", orders)
    # A refund without an amount (GA4's refund of a whole transaction) refunds what is left of
    # the order's value; it has no value when the order's is unknown.
    refunds = con.sql(
        """
        WITH r AS (
            SELECT e.order_key, e.person, e.ts, e.day, e.message_id, e.has_amount, e.amount,
                   e.currency, e.unconvertible AND e.has_amount AS unconvertible,
                   o.value AS order_value, o.unconvertible AS order_unconvertible, o.currency AS order_currency,
                   coalesce(o.cancelled, false) AS cancelled, o.order_key IS NOT NULL AS known_order,
                   coalesce(sum(e.amount) OVER (PARTITION BY e.order_key ORDER BY e.ts, e.message_id
                                                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
                       AS refunded_before,
                   coalesce(bool_or(NOT e.has_amount) OVER (PARTITION BY e.order_key ORDER BY e.ts, e.message_id
                                                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), false)
                       AS refunded_in_full_before
            FROM _order_events e LEFT JOIN _orders0 o USING (order_key)
            WHERE e.event = 'Order Refunded'
        )
        SELECT order_key, person, ts, day,
               CAST(CASE WHEN has_amount THEN amount
                         WHEN refunded_in_full_before THEN 0
                         ELSE greatest(order_value - refunded_before, 0) END AS DECIMAL(18,3)) AS value,
               CASE WHEN has_amount THEN currency ELSE order_currency END AS currency,
               CASE WHEN has_amount THEN unconvertible ELSE coalesce(order_unconvertible, false) END
                   AS unconvertible,
               cancelled, known_order
        FROM r ORDER BY ts, message_id
        """
    ).to_arrow_table()
    con.register("refunds", refunds)
    orders = con.sql(
        """
        SELECT o.*,
               CAST(coalesce(r.refunded, 0) AS DECIMAL(18,3)) AS refunded,
               CASE WHEN NOT o.cancelled THEN
                   lag(o.ts) OVER (PARTITION BY o.person, o.cancelled ORDER BY o.ts, o.order_key) END AS previous_ts
        FROM _orders0 o
        LEFT JOIN (SELECT order_key, sum(value) AS refunded FROM refunds GROUP BY order_key) r USING (order_key)
        ORDER BY o.ts, o.order_key
        """
    ).to_arrow_table()
    con.register("orders", orders)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _cart_lines AS "
        + _convert(
            """(SELECT session_id, day, currency,
                       CAST(price * coalesce(quantity, 1) AS DECIMAL(18,3)) AS line
                FROM events WHERE type = 'track' AND event = 'Product Added' AND price IS NOT NULL)""",
            currency,
            ["line"],
        )
    )
    sessions = con.sql(
        f"""
        WITH visits AS (
            SELECT session_id, any_value(person) AS person, min(ts) AS ts,
                   arg_min(channel, ts) AS channel, arg_min(session_source, ts) AS source,
                   arg_min(session_medium, ts) AS medium, arg_min(session_campaign, ts) AS campaign,
                   arg_min(device_type, ts) AS device_type, arg_min(country, ts) AS country,
                   count(*) AS events,
                   count(*) FILTER (WHERE event = 'Product Viewed') AS product_views,
                   min(ts) FILTER (WHERE event = 'Product Added') AS cart_ts,
                   min(ts) FILTER (WHERE event = 'Checkout Started') AS checkout_ts
            FROM events
            WHERE session_id IS NOT NULL AND type IN ('track', 'page', 'screen')
            GROUP BY session_id
            -- A visit shows a page or a screen or comes from a browser or an app: sessions of
            -- server-side events alone (an email delivered, a refund) are nobody's visit.
            HAVING count(*) FILTER (WHERE type IN ('page', 'screen') OR device_type IS NOT NULL) > 0
        ),
        placed AS (
            SELECT session_id, count(*) AS orders FROM orders WHERE NOT cancelled GROUP BY session_id
        ),
        carts AS (
            SELECT session_id, sum(line) AS cart_value,
                   count(*) FILTER (WHERE unconvertible) AS cart_lines_unconverted,
                   any_value(currency) FILTER (WHERE unconvertible) AS cart_unconverted_currency
            FROM _cart_lines GROUP BY session_id
        )
        SELECT v.session_id, v.person, v.ts, CAST(timezone({sql_text(ctx.tz.key)}, v.ts) AS DATE) AS day,
               coalesce(v.channel, 'Unassigned') AS channel, v.source, v.medium, v.campaign,
               v.device_type, v.country, v.events, v.product_views, coalesce(p.orders, 0) AS orders,
               v.cart_ts, v.checkout_ts, CAST(coalesce(c.cart_value, 0) AS DECIMAL(18,3)) AS cart_value,
               coalesce(c.cart_lines_unconverted, 0) AS cart_lines_unconverted, c.cart_unconverted_currency
        FROM visits v LEFT JOIN placed p USING (session_id) LEFT JOIN carts c USING (session_id)
        """
    ).to_arrow_table()
    con.register("_sessions0", sessions)
    # A cart (or checkout) is bought when its visitor places an order within the window after it.
    sessions = con.sql(
        f"""
        WITH bought AS (SELECT person, ts FROM orders WHERE NOT cancelled),
        cart AS (
            SELECT s.session_id, o.ts AS next_order FROM _sessions0 s
            ASOF JOIN bought o ON o.person = s.person AND o.ts >= s.cart_ts
            WHERE s.cart_ts IS NOT NULL
        ),
        checkout AS (
            SELECT s.session_id, o.ts AS next_order FROM _sessions0 s
            ASOF JOIN bought o ON o.person = s.person AND o.ts >= s.checkout_ts
            WHERE s.checkout_ts IS NOT NULL
        )
        SELECT s.*,
               (c.next_order IS NOT NULL AND c.next_order <= s.cart_ts + INTERVAL {CART_WINDOW_DAYS} DAY)
                   AS cart_bought,
               (k.next_order IS NOT NULL AND k.next_order <= s.checkout_ts + INTERVAL {CART_WINDOW_DAYS} DAY)
                   AS checkout_bought
        FROM _sessions0 s LEFT JOIN cart c USING (session_id) LEFT JOIN checkout k USING (session_id)
        ORDER BY s.person, s.ts
        """
    ).to_arrow_table()
    con.register("sessions", sessions)
    people = con.sql(
        f"""
        WITH seen AS (
            SELECT person, min(ts) AS first_seen, arg_min(channel, ts) AS first_channel,
                   arg_min(campaign, ts) AS first_campaign, count(*) AS sessions
            FROM sessions GROUP BY person
        ),
        bought AS (
            SELECT person, min(ts) AS first_order_ts, max(ts) AS last_order_ts, count(*) AS orders,
                   CAST(coalesce(sum(value), 0) AS DECIMAL(18,3)) AS revenue,
                   CAST(coalesce(sum(refunded), 0) AS DECIMAL(18,3)) AS refunded
            FROM orders WHERE NOT cancelled GROUP BY person
        ),
        known AS (
            SELECT person,
                   arg_max(user_id, ts) FILTER (WHERE user_id IS NOT NULL) AS user_id,
                   min(ts) FILTER (WHERE type = 'track' AND event IN ({", ".join(sql_text(e) for e in SIGNUP_EVENTS)}))
                       AS signed_up_ts,
                   min(ts) AS first_event
            FROM events GROUP BY person
        ),
        -- Only events that carry traits are parsed for an email.
        emails AS (
            SELECT person, arg_max(email, ts) AS email, min(ts) AS email_ts
            FROM (SELECT person, ts, json_extract_string(traits, '$.email') AS email
                  FROM events WHERE traits IS NOT NULL)
            WHERE email IS NOT NULL GROUP BY person
        )
        SELECT k.person, k.user_id, m.email, least(m.email_ts, k.signed_up_ts) AS signup_ts,
               coalesce(least(s.first_seen, b.first_order_ts), k.first_event) AS first_seen,
               CAST(timezone({sql_text(ctx.tz.key)}, coalesce(least(s.first_seen, b.first_order_ts), k.first_event))
                    AS DATE) AS first_day,
               coalesce(s.first_channel, 'Unassigned') AS first_channel, s.first_campaign,
               b.first_order_ts, b.last_order_ts,
               coalesce(b.orders, 0) AS orders, coalesce(b.revenue, 0) AS revenue,
               coalesce(b.refunded, 0) AS refunded, coalesce(s.sessions, 0) AS sessions
        FROM known k LEFT JOIN seen s USING (person) LEFT JOIN bought b USING (person)
        LEFT JOIN emails m USING (person)
        ORDER BY k.person
        """
    ).to_arrow_table()
    spend = _spend_table(con, currency, spend_rows)
    return Facts(
        currency=currency,
        orders=orders,
        refunds=refunds,
        sessions=sessions,
        people=people,
        spend=spend,
        rates=rates_table,
    )


def spend_rows_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Spend rows as given (not converted); ``named_channel`` when the row's channel is one of the
    channel groups (docs/channels.md), spelled as the groups are, else kept as given (a platform name)."""
    named = [CHANNEL_BY_LOWER.get(str(r["channel"]).strip().lower()) for r in rows]
    return pa.table(
        {
            "day": pa.array([r["day"] for r in rows], type=pa.date32()),
            "channel": pa.array([n or r["channel"] for n, r in zip(named, rows, strict=True)], type=pa.string()),
            "named_channel": pa.array([n is not None for n in named], type=pa.bool_()),
            "campaign": pa.array([r["campaign"] for r in rows], type=pa.string()),
            "spend": pa.array([Decimal(r["spend"]) for r in rows], type=pa.decimal128(18, 3)),
            "currency": pa.array([r["currency"] for r in rows], type=pa.string()),
        }
    )


def _spend_table(con: duckdb.DuckDBPyConnection, currency: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Spend rows converted into the reporting currency."""
    con.register("_spend_raw", spend_rows_table(rows))
    return con.sql(
        _convert("_spend_raw", currency, ["spend"]) + " ORDER BY day, channel, campaign"
    ).to_arrow_table()


def register_events(ctx: QueryContext) -> None:
    """The ``events`` view: every event with ``person`` after identity merges and its local day."""
    con = ctx.con
    overrides = ctx.overrides
    con.register(
        "_overrides",
        pa.table(
            {
                "old": pa.array(list(overrides.keys()), type=pa.int64()),
                "new": pa.array(list(overrides.values()), type=pa.int64()),
            }
        ),
    )
    if ctx.relation is None:
        con.register("_no_events", EVENTS.empty_table())
        relation = "_no_events"
    else:
        relation = ctx.relation
    con.execute(
        f"""
        CREATE OR REPLACE TEMP VIEW events AS
        SELECT e.*, coalesce(o.new, e.person_id) AS person,
               CAST(timezone({sql_text(ctx.tz.key)}, e.ts) AS DATE) AS day
        FROM {relation} e LEFT JOIN _overrides o ON o.old = e.person_id
        """
    )
