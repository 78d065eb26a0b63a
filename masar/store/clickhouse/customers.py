"""The customer profile (the ``customer`` query) inside ClickHouse: docs/audiences.md, "The
customer profile" and "The customer query", as masar/engine/customers.py and customer_runners.py.

The profile is one person: every query runs over the sales relations restricted to the person's
events (masar/store/clickhouse/sales_relations.py, ``person=``) and brings back only their rows
(their orders, their identify calls' traits, the latest events of the timeline). Two figures rank
or model everyone, so they read all customers, and only aggregates come back:

* ``rfm_customer`` — the RFM scores (docs/segments.md) in one query, the per-customer figures a
  GROUP BY and the scores counts of worse values by window sums, as masar/engine/rfm.py;
* ``ltv_fit`` — the BG/NBD and Gamma-Gamma fit (docs/ltv.md) on the purchase days (one row per
  customer and day), fitted by masar/engine/ltv.py.

Both have the obvious interface (context, day, person) so the sales facts' own versions can take
their place when they exist.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from masar.engine.audiences import (
    ORDER_COMPLETED,
    parse_audience,
)
from masar.engine.customer_runners import pick_person
from masar.engine.customers import (
    MAX_TIMELINE,
    TIMELINE_SCHEMA,
    Customer,
    Order,
    Profile,
    _utc,
    latest_traits,
    order_status,
    predict_customer,
)
from masar.engine.ltv import LtvFit, fit_summary, summary_from_customers
from masar.engine.rfm import GRID
from masar.errors import InvalidInput, NotFound
from masar.model.sales_queries import CustomerQuery
from masar.store.clickhouse.audiences import is_member
from masar.store.clickhouse.conditions import json_text
from masar.store.clickhouse.context import ClickHouseContext
from masar.store.clickhouse.sales_relations import literal, sales_relations

_MAX_PERSON = 2**63 - 1


def _rows(ctx: ClickHouseContext, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return ctx.arrow(sql, params).to_pylist()


def data_end(ctx: ClickHouseContext, relations: str) -> date:
    """The data's last day: the last day with a visit or an order (kpis.data_window); today
    when there is neither."""
    found = _rows(ctx, f"{relations} SELECT greatest((SELECT maxOrNull(day) FROM orders), "
                       "(SELECT maxOrNull(day) FROM visits)) AS end")[0]["end"]  # fmt: skip
    return found if found is not None else date.today()


# -- everyone: RFM and the lifetime-value fit -----------------------------------------------------


def rfm_customer(ctx: ClickHouseContext, relations: str, as_of: date, person: int) -> dict[str, Any] | None:
    """One customer's RFM row (scored among every customer), as masar/engine/rfm.py ``rfm_customer``;
    None when they have no order that counts."""
    grid = ", ".join(literal(s) for s in GRID)
    rows = _rows(
        ctx,
        f"""{relations},
        customer AS (
            SELECT person, dateDiff('day', max(day), {{as_of:Date}}) AS recency_days, count() AS frequency,
                   sum(value - ifNull(refunded, 0)) AS monetary
            FROM orders WHERE NOT ifNull(cancelled, false) AND day <= {{as_of:Date}} GROUP BY person
        ),
        n AS (SELECT count() AS customers, count(monetary) AS known FROM customer),
        worse_r AS (
            SELECT recency_days, sum(count()) OVER (ORDER BY recency_days DESC ROWS UNBOUNDED PRECEDING) - count() AS b
            FROM customer GROUP BY recency_days
        ),
        worse_f AS (
            SELECT frequency, sum(count()) OVER (ORDER BY frequency ROWS UNBOUNDED PRECEDING) - count() AS b
            FROM customer GROUP BY frequency
        ),
        worse_m AS (
            SELECT monetary, sum(count()) OVER (ORDER BY monetary ROWS UNBOUNDED PRECEDING) - count() AS b
            FROM customer WHERE monetary IS NOT NULL GROUP BY monetary
        )
        SELECT c.recency_days AS recency_days, c.frequency AS frequency, c.monetary AS monetary,
               toInt32(1 + intDiv(5 * wr.b, n.customers)) AS r, toInt32(1 + intDiv(5 * wf.b, n.customers)) AS f,
               if(c.monetary IS NULL, NULL, toInt32(1 + intDiv(5 * wm.b, n.known))) AS m,
               [{grid}][(r - 1) * 5 + f] AS segment
        FROM customer AS c CROSS JOIN n
        JOIN worse_r AS wr ON wr.recency_days = c.recency_days
        JOIN worse_f AS wf ON wf.frequency = c.frequency
        LEFT JOIN worse_m AS wm ON wm.monetary = c.monetary
        WHERE c.person = {{person:Int64}}
        """,
        {"as_of": as_of, "person": person},
    )
    if not rows:
        return None
    row = rows[0]
    return {"person": person, "recency_days": int(row["recency_days"]), "frequency": int(row["frequency"]),
            "monetary": row["monetary"], "r": row["r"], "f": row["f"], "m": row["m"], "segment": row["segment"]}  # fmt: skip


def ltv_fit(ctx: ClickHouseContext, relations: str, calibration_end: date, unit: str = "week") -> LtvFit:
    """Both lifetime-value models fitted to the non-cancelled orders up to ``calibration_end``:
    ClickHouse merges the orders into purchase days, masar/engine/ltv.py fits the models."""
    table = ctx.arrow(
        f"""{relations}
        SELECT person, min(day) AS first_day, max(day) AS last_day, toInt64(count()) AS days,
               toInt64(countIf(known AND day > first)) AS m_count,
               CAST(sumOrNullIf(day_value, known AND day > first) AS Nullable(Decimal(38, 3))) AS m_sum
        FROM (
            SELECT person, day, sum(value) AS day_value, min(value IS NOT NULL) = 1 AS known,
                   min(day) OVER (PARTITION BY person) AS first
            FROM orders WHERE NOT ifNull(cancelled, false) AND day <= {{end:Date}} AND person IS NOT NULL
            GROUP BY person, day
        )
        GROUP BY person ORDER BY person""",
        {"end": calibration_end},
    )
    return fit_summary(summary_from_customers(table, calibration_end, unit))


def _prediction(ctx: ClickHouseContext, relations: str, as_of: date, person: int) -> tuple[dict | None, str | None]:
    try:
        fit = ltv_fit(ctx, relations, as_of, "week")
    except InvalidInput as exc:  # too few customers or repeat buyers, or no convergence
        return None, exc.message
    try:
        return predict_customer(fit, person), None
    except InvalidInput as exc:
        return None, exc.message


# -- the one person --------------------------------------------------------------------------------


def customer_profile(ctx: ClickHouseContext, relations: str, person: int, as_of: date, timeline_limit: int = 200, *,
                     anonymous_ids: list[str] | None = None, audiences: dict[str, Any] | None = None) -> Profile:  # fmt: skip
    """One person as of a day, as masar/engine/customers.py ``customer_profile``, over the sales
    relations (``sales_relations(ctx)``): every query is about the person, and only their rows
    come back."""
    if isinstance(timeline_limit, bool) or not isinstance(timeline_limit, int) or not 0 <= timeline_limit <= MAX_TIMELINE:
        raise InvalidInput(f"timeline_limit is a whole number from 0 to {MAX_TIMELINE}", code="invalid_query")
    saved = {}
    for name, definition in (audiences or {}).items():
        try:
            saved[name] = parse_audience(definition)
        except InvalidInput as exc:
            raise InvalidInput(f"audience {name!r}: {exc.message}", code="invalid_query", details=exc.details) from None
    params = {"person": person, "as_of": as_of}
    found = _rows(ctx, f"""{relations} SELECT user_id, email, first_seen, first_day, first_channel, first_campaign,
                               signup_ts FROM people WHERE person = {{person:Int64}}""", params)  # fmt: skip
    if not found:
        raise NotFound(f"person {person} is not among this source's people", code="not_found")
    who = found[0]
    if who["first_day"] is not None and who["first_day"] > as_of:
        raise NotFound(f"person {person} was first seen on {who['first_day']}, after {as_of}", code="not_found")
    orders = [
        Order(r["order_key"], _utc(r["ts"]), r["day"], r["value"],
              r["refunded"] if r["refunded"] is not None else Decimal(0), bool(r["cancelled"]), r["order_number"],
              r["items"], r["discount"], r["channel"])  # fmt: skip
        for r in _rows(
            ctx,
            f"""{relations} SELECT order_key, ts, day, value, refunded, cancelled, order_number, items, discount,
                                   channel
                FROM orders WHERE person = {{person:Int64}} AND day <= {{as_of:Date}}
                ORDER BY ts DESC, order_key DESC""",
            params,
        )
    ]
    identifies = [
        (r["ts"], r["traits"])
        for r in _rows(ctx, f"""{relations} SELECT ts, traits FROM events WHERE person = {{person:Int64}}
                               AND type = 'identify' AND day <= {{as_of:Date}} AND traits IS NOT NULL""", params)
    ]  # fmt: skip
    seen = _rows(ctx, f"""{relations} SELECT count() AS event_count, maxOrNull(ts) AS last_seen FROM events
                         WHERE person = {{person:Int64}} AND day <= {{as_of:Date}}""", params)[0]  # fmt: skip
    timeline = _timeline(ctx, relations, params, timeline_limit) if timeline_limit else []
    members = [name for name, d in saved.items() if is_member(ctx, relations, d, as_of, person)]
    return Profile(
        person=person, as_of=as_of, user_id=who["user_id"], email=who["email"],
        anonymous_ids=list(anonymous_ids or []), traits=latest_traits(identifies),
        first_seen=_utc(who["first_seen"]), first_day=who["first_day"], first_channel=who["first_channel"],
        first_campaign=who["first_campaign"], signup_ts=_utc(who["signup_ts"]), last_seen=_utc(seen["last_seen"]),
        orders=orders, events=int(seen["event_count"]), timeline=timeline, audiences=members,
    )  # fmt: skip


def _timeline(ctx: ClickHouseContext, relations: str, params: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    rows = _rows(
        ctx,
        f"""{relations}
        SELECT e.ts AS ts, e.day AS day, e.type AS type, e.event AS event, e.session_id AS session_id,
               e.product_id AS product_id, e.category AS category, e.order_id AS order_id, e.price AS price,
               e.total AS total, e.quantity AS quantity, e.currency AS currency, e.channel AS channel,
               e.device_type AS device_type, e.country AS country,
               o.order_key IS NOT NULL AS is_order, o.value AS order_value, o.refunded AS order_refunded,
               ifNull(o.cancelled, false) AS order_cancelled
        FROM events AS e
        LEFT JOIN orders AS o ON o.order_key = if(e.event = {literal(ORDER_COMPLETED)}, e.order_id, NULL)
        WHERE e.person = {{person:Int64}} AND e.day <= {{as_of:Date}}
        ORDER BY e.ts DESC, e.type, e.event, e.order_id, e.product_id
        LIMIT {{timeline_limit:UInt32}}
        """,
        {**params, "timeline_limit": limit},
    )
    entries = []
    for r in rows:
        entry = {name: r[name] for name in [*TIMELINE_SCHEMA.names[:15], "is_order"]}
        entry["ts"] = _utc(entry["ts"])
        entry["is_order"] = bool(entry["is_order"])
        refunded = r["order_refunded"] if r["order_refunded"] is not None else Decimal(0)
        entry["order_value"] = r["order_value"] if entry["is_order"] else None
        entry["order_status"] = (
            order_status(r["order_value"], refunded, bool(r["order_cancelled"])) if entry["is_order"] else None
        )
        entries.append(entry)
    return entries


# -- who the customer is ---------------------------------------------------------------------------


def resolve_person(ctx: ClickHouseContext, given: int | str, by: str | None = None) -> int:
    """The person a person id, user id, email or anonymous id names, after identity merges
    (customer_runners.resolve_person)."""
    overrides = ctx.store.identities.overrides(ctx.source.id)

    def persons_of(reading: str, text: str) -> list[int]:
        if reading == "person":
            if not text.isdecimal() or int(text) > _MAX_PERSON:
                return []
            person = overrides.get(int(text), int(text))
            rows = _rows(ctx, f"SELECT 1 AS found FROM {ctx.events} WHERE person = {{person:Int64}} LIMIT 1",
                         {"person": person})  # fmt: skip
            return [person] if rows else []
        if reading == "email":  # the latest email trait (as ``people.email``), any case
            email = json_text("traits", "'email'")
            rows = _rows(ctx, f"""SELECT person FROM (SELECT person, argMax(email, ts) AS latest_email
                                  FROM (SELECT person, ts, {email} AS email FROM {ctx.events} WHERE traits IS NOT NULL)
                                  WHERE email IS NOT NULL GROUP BY person)
                                  WHERE lowerUTF8(latest_email) = lowerUTF8({{email:String}}) ORDER BY person""",
                         {"email": text})  # fmt: skip
            return [int(r["person"]) for r in rows]
        person = ctx.store.identities.person_of(ctx.source.id, **{reading: text})
        return [] if person is None else [overrides.get(person, person)]

    return pick_person(ctx.source.name, given, by, persons_of)


def run_customer(ctx: ClickHouseContext, query: CustomerQuery) -> Customer:
    person = resolve_person(ctx, query.person, query.by)
    identity = ctx.store.identities_of(ctx.source, [person])[person]
    saved = {a.name: a.definition for a in ctx.store.audiences(ctx.source)}
    with sales_relations(ctx) as everyone:
        as_of = query.as_of if query.as_of is not None else data_end(ctx, everyone)
        profile = customer_profile(ctx, everyone, person, as_of, query.timeline_limit, anonymous_ids=identity["anonymous_ids"],
                                   audiences=saved)  # fmt: skip
        if not query.predict:
            prediction, note = None, "not asked for (predict: false)"
        elif not profile.placed:
            prediction, note = None, f"no order up to {as_of.isoformat()}: the models predict for customers"
        else:
            prediction, note = _prediction(ctx, everyone, as_of, person)
        return Customer(profile, rfm_customer(ctx, everyone, as_of, person), prediction, note)


RUNNERS = {"customer": run_customer}
