"""The customer profile (the ``customer`` query) inside ClickHouse: docs/audiences.md, "The
customer profile" and "The customer query", as masar/engine/customers.py and customer_runners.py.

The profile reads the source's sales facts (masar/store/clickhouse/facts.py, ``SalesFacts``: built
once per version of the data and shared with every other sales query). The profile is one person:
every query is restricted to the person and brings back only their rows (their orders, their
identify calls' traits, the latest events of the timeline). Two figures rank or model everyone,
so they read all customers, and only aggregates come back; both are the sales runners' own
(masar/store/clickhouse/sales.py): the RFM scores of ``rfm_customers`` and the lifetime-value
summary that ``ltv_fit`` fits.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from masar.engine.audiences import (
    ORDER_COMPLETED,
)
from masar.engine.customer_runners import pick_person
from masar.engine.customers import (
    TIMELINE_SCHEMA,
    Customer,
    Order,
    Profile,
    _utc,
    latest_traits,
    order_status,
    predict_customer,
    profile_options,
)
from masar.engine.ltv import fit_summary
from masar.errors import InvalidInput, NotFound
from masar.model.sales_queries import CustomerQuery
from masar.store.clickhouse.audiences import is_member
from masar.store.clickhouse.context import ClickHouseContext
from masar.store.clickhouse.facts import SalesFacts, text
from masar.store.clickhouse.sales import _as_of, _scored, _summary

_MAX_PERSON = 2**63 - 1


def _rows(facts: SalesFacts, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return facts.arrow(sql, params).to_pylist()


# -- everyone: RFM and the lifetime-value fit -----------------------------------------------------


def rfm_customer(facts: SalesFacts, as_of: date, person: int) -> dict[str, Any] | None:
    """One customer's RFM row (scored among every customer), as masar/engine/rfm.py ``rfm_customer``;
    None when they have no order that counts."""
    rows = _rows(facts, f"""SELECT recency_days, frequency, CAST(monetary AS Nullable(Decimal(38, 3))) AS monetary,
                                   r, f, m, segment
                            FROM {_scored(facts, as_of, None)} WHERE person = {{person:Int64}}""",
                 {"person": person})  # fmt: skip
    return {"person": person, **rows[0]} if rows else None


def _prediction(facts: SalesFacts, as_of: date, person: int) -> tuple[dict | None, str | None]:
    """The person's predicted value from both lifetime-value models fitted to every customer's
    orders up to ``as_of`` (customer_runners._prediction)."""
    try:
        fit = fit_summary(_summary(facts, as_of, "week"))
    except InvalidInput as exc:  # too few customers or repeat buyers, or no convergence
        return None, exc.message
    try:
        return predict_customer(fit, person), None
    except InvalidInput as exc:
        return None, exc.message


# -- the one person --------------------------------------------------------------------------------


def customer_profile(facts: SalesFacts, person: int, as_of: date, timeline_limit: int = 200, *,
                     anonymous_ids: list[str] | None = None, audiences: dict[str, Any] | None = None) -> Profile:  # fmt: skip
    """One person as of a day, as masar/engine/customers.py ``customer_profile``, over the sales
    facts: every query is about the person, and only their rows come back."""
    saved = profile_options(timeline_limit, audiences)
    params = {"person": person, "as_of": as_of}
    found = _rows(facts, """SELECT user_id, email, first_seen, first_day, first_channel, first_campaign, signup_ts
                             FROM {people} WHERE person = {person:Int64}""", params)  # fmt: skip
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
            facts,
            """SELECT order_key, ts, day, value, refunded, cancelled, order_number, items, discount, channel
               FROM {orders} WHERE person = {person:Int64} AND day <= {as_of:Date}
               ORDER BY ts DESC, order_key DESC""",
            params,
        )
    ]
    identifies = [
        (r["ts"], r["traits"])
        for r in _rows(facts, """SELECT ts, traits FROM {events} WHERE person = {person:Int64}
                                  AND type = 'identify' AND day <= {as_of:Date} AND traits IS NOT NULL""", params)
    ]  # fmt: skip
    seen = _rows(facts, """SELECT count() AS event_count, maxOrNull(ts) AS last_seen FROM {events}
                            WHERE person = {person:Int64} AND day <= {as_of:Date}""", params)[0]  # fmt: skip
    timeline = _timeline(facts, params, timeline_limit) if timeline_limit else []
    members = [name for name, d in saved.items() if is_member(facts, d, as_of, person)]
    return Profile(
        person=person, as_of=as_of, user_id=who["user_id"], email=who["email"],
        anonymous_ids=list(anonymous_ids or []), traits=latest_traits(identifies),
        first_seen=_utc(who["first_seen"]), first_day=who["first_day"], first_channel=who["first_channel"],
        first_campaign=who["first_campaign"], signup_ts=_utc(who["signup_ts"]), last_seen=_utc(seen["last_seen"]),
        orders=orders, events=int(seen["event_count"]), timeline=timeline, audiences=members,
    )  # fmt: skip


def _timeline(facts: SalesFacts, params: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    rows = _rows(
        facts,
        f"""
        SELECT e.ts AS ts, e.day AS day, e.type AS type, e.event AS event, e.session_id AS session_id,
               e.product_id AS product_id, e.category AS category, e.order_id AS order_id, e.price AS price,
               e.total AS total, e.quantity AS quantity, e.currency AS currency, e.channel AS channel,
               e.device_type AS device_type, e.country AS country,
               o.order_key IS NOT NULL AS is_order, o.value AS order_value, o.refunded AS order_refunded,
               ifNull(o.cancelled, false) AS order_cancelled
        FROM {{events}} AS e
        LEFT JOIN {{orders}} AS o ON o.order_key = if(e.event = {text(ORDER_COMPLETED)}, e.order_id, NULL)
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


def resolve_person(facts: SalesFacts, given: int | str, by: str | None = None) -> int:
    """The person a person id, user id, email or anonymous id names, after identity merges
    (customer_runners.resolve_person): among the facts' ``people``."""
    ctx = facts.ctx
    overrides = ctx.store.identities.overrides(ctx.source.id)

    def persons_of(reading: str, value: str) -> list[int]:
        if reading == "person":
            if not value.isdecimal() or int(value) > _MAX_PERSON:
                return []
            person = overrides.get(int(value), int(value))
            rows = _rows(facts, "SELECT 1 AS found FROM {people} WHERE person = {person:Int64}", {"person": person})
            return [person] if rows else []
        if reading == "email":  # the latest email trait, any case
            rows = _rows(facts, "SELECT person FROM {people} WHERE lowerUTF8(email) = lowerUTF8({email:String}) "
                                "ORDER BY person", {"email": value})  # fmt: skip
            return [int(r["person"]) for r in rows]
        person = ctx.store.identities.person_of(ctx.source.id, **{reading: value})
        return [] if person is None else [overrides.get(person, person)]

    return pick_person(ctx.source.name, given, by, persons_of)


def run_customer(ctx: ClickHouseContext, query: CustomerQuery) -> Customer:
    with SalesFacts(ctx) as facts:
        person = resolve_person(facts, query.person, query.by)
        identity = ctx.store.identities_of(ctx.source, [person])[person]
        saved = {a.name: a.definition for a in ctx.store.audiences(ctx.source)}
        as_of = _as_of(facts, query.as_of)
        profile = customer_profile(facts, person, as_of, query.timeline_limit, anonymous_ids=identity["anonymous_ids"],
                                   audiences=saved)  # fmt: skip
        if not query.predict:
            prediction, note = None, "not asked for (predict: false)"
        elif not profile.placed:
            prediction, note = None, f"no order up to {as_of.isoformat()}: the models predict for customers"
        else:
            prediction, note = _prediction(facts, as_of, person)
        return Customer(profile, rfm_customer(facts, as_of, person), prediction, note)


RUNNERS = {"customer": run_customer}
