"""The customer profile: who a person is, what they bought, what they did, and which audiences
they are in — as of a day, from the sales facts (docs/audiences.md, "The customer profile").

A handful of small queries, each restricted to the one person (``person = $person``): the
tables are sorted by nothing in particular, so every query is a filtered scan, and the
audiences are checked with the one-person form of their query (``audiences.is_member``).

``Customer`` is the answer of the ``customer`` query: the profile with the person's RFM scores
(``rfm.rfm_customer``) and the value the lifetime-value models predict for them (``ltv``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from masar.engine.audiences import ORDER_COMPLETED, AudienceDefinition, is_member, parse_audience
from masar.engine.ltv import LtvFit, predict
from masar.errors import InvalidInput, NotFound

_MILLS = Decimal("0.001")  # the storage scale of amounts (DECIMAL(18,3))
MAX_TIMELINE = 10_000
PREDICTION_WEEKS = 52  # the predicted value is for the year after as_of

TIMELINE_SCHEMA = pa.schema(
    [
        ("ts", pa.timestamp("us", tz="UTC")),
        ("day", pa.date32()),
        ("type", pa.string()),
        ("event", pa.string()),
        ("session_id", pa.int64()),
        ("product_id", pa.string()),
        ("category", pa.string()),
        ("order_id", pa.string()),
        ("price", pa.decimal128(18, 3)),
        ("total", pa.decimal128(18, 3)),
        ("quantity", pa.int64()),
        ("currency", pa.string()),
        ("channel", pa.string()),
        ("device_type", pa.string()),
        ("country", pa.string()),
        ("is_order", pa.bool_()),
        ("order_value", pa.decimal128(18, 3)),
        ("order_status", pa.string()),
    ]
)
_DETAILS = ("product_id", "category", "order_id", "price", "total", "quantity", "currency")


@dataclass
class Order:
    order_key: str
    ts: datetime
    day: date
    value: Decimal | None  # NULL when it could not be converted to the reporting currency
    refunded: Decimal
    cancelled: bool
    order_number: int | None
    items: int | None
    discount: Decimal | None
    channel: str | None

    @property
    def status(self) -> str:
        return order_status(self.value, self.refunded, self.cancelled)

    def to_dict(self) -> dict[str, Any]:
        return {
            "order_key": self.order_key, "ts": _iso(self.ts), "day": self.day.isoformat(), "value": _money(self.value),
            "refunded": _money(self.refunded), "status": self.status, "cancelled": self.cancelled,
            "order_number": self.order_number, "items": self.items, "discount": _money(self.discount),
            "channel": self.channel,
        }  # fmt: skip


def order_status(value: Decimal | None, refunded: Decimal, cancelled: bool) -> str:
    """cancelled; refunded (refunds reach the value); partially_refunded; completed."""
    if cancelled:
        return "cancelled"
    if refunded > 0:
        return "refunded" if value is not None and refunded >= value else "partially_refunded"
    return "completed"


@dataclass
class Profile:
    person: int
    as_of: date
    user_id: str | None
    email: str | None
    anonymous_ids: list[str]
    traits: dict[str, Any]
    first_seen: datetime | None
    first_day: date | None
    first_channel: str | None
    first_campaign: str | None
    signup_ts: datetime | None
    last_seen: datetime | None
    orders: list[Order]  # every order up to as_of, cancelled ones too, newest first
    events: int  # events up to as_of
    timeline: list[dict[str, Any]]  # the latest events, newest first
    audiences: list[str] = field(default_factory=list)

    @property
    def placed(self) -> list[Order]:
        return [o for o in self.orders if not o.cancelled]

    @property
    def valued(self) -> list[Order]:
        return [o for o in self.placed if o.value is not None]

    @property
    def revenue(self) -> Decimal:
        return sum((o.value for o in self.valued), Decimal(0))

    @property
    def refunded(self) -> Decimal:
        return sum((o.refunded for o in self.valued), Decimal(0))

    @property
    def lifetime_value(self) -> Decimal:
        """Σ (value − refunded) over the non-cancelled orders with a value, up to as_of."""
        return self.revenue - self.refunded

    @property
    def average_order_value(self) -> Decimal | None:
        """Σ value / number of those orders (before refunds), to the storage scale, half up."""
        if not self.valued:
            return None
        return (self.revenue / len(self.valued)).quantize(_MILLS, rounding=ROUND_HALF_UP)

    @property
    def days_since_last_order(self) -> int | None:
        return (self.as_of - self.placed[0].day).days if self.placed else None

    def to_dict(self) -> dict[str, Any]:
        placed = self.placed
        return {
            "kind": "customer_profile",
            "person": self.person,
            "as_of": self.as_of.isoformat(),
            "identity": {"user_id": self.user_id, "email": self.email, "anonymous_ids": list(self.anonymous_ids)},
            "traits": self.traits,
            "first_seen": _iso(self.first_seen),
            "first_day": self.first_day.isoformat() if self.first_day else None,
            "first_channel": self.first_channel,
            "first_campaign": self.first_campaign,
            "signup_ts": _iso(self.signup_ts),
            "last_seen": _iso(self.last_seen),
            "value": {
                "orders": len(placed),
                "orders_without_value": len(placed) - len(self.valued),
                "cancelled_orders": len(self.orders) - len(placed),
                "revenue": _money(self.revenue),
                "refunded": _money(self.refunded),
                "lifetime_value": _money(self.lifetime_value),
                "average_order_value": _money(self.average_order_value),
                "first_order_ts": _iso(placed[-1].ts) if placed else None,
                "last_order_ts": _iso(placed[0].ts) if placed else None,
                "days_since_last_order": self.days_since_last_order,
            },
            "orders": [o.to_dict() for o in self.orders],
            "events": self.events,
            "timeline": [_entry_dict(e) for e in self.timeline],
            "timeline_truncated": len(self.timeline) < self.events,
            "audiences": list(self.audiences),
        }

    def table(self) -> pa.Table:
        """The timeline, one row per event (newest first)."""
        return pa.Table.from_pylist(
            [{name: e.get(name) for name in TIMELINE_SCHEMA.names} for e in self.timeline], schema=TIMELINE_SCHEMA
        )


def profile_options(timeline_limit: Any, audiences: dict[str, Any] | None) -> dict[str, Any]:
    """A profile's options checked (on every backend): the timeline's length, and the saved
    audiences to test the person against, parsed (one clear error naming the audience)."""
    if isinstance(timeline_limit, bool) or not isinstance(timeline_limit, int) or not 0 <= timeline_limit <= MAX_TIMELINE:
        raise InvalidInput(f"timeline_limit is a whole number from 0 to {MAX_TIMELINE}", code="invalid_query")
    saved = {}
    for name, definition in (audiences or {}).items():
        try:
            saved[name] = parse_audience(definition)
        except InvalidInput as exc:
            raise InvalidInput(f"audience {name!r}: {exc.message}", code="invalid_query", details=exc.details) from None
    return saved


def customer_profile(
    con: duckdb.DuckDBPyConnection,
    person: int,
    as_of: date,
    timeline_limit: int = 200,
    *,
    anonymous_ids: Sequence[str] | None = None,
    audiences: Mapping[str, AudienceDefinition | dict[str, Any]] | None = None,
) -> Profile:
    """One person as of a day. ``anonymous_ids`` come from the identity store (the facts do not
    hold them); ``audiences`` are the saved definitions by name, and the profile lists those the
    person belongs to, in the mapping's order."""
    if isinstance(person, bool) or not isinstance(person, int):
        raise InvalidInput(f"person is a whole number, got {person!r}", code="invalid_query")
    if isinstance(as_of, datetime) or not isinstance(as_of, date):
        raise InvalidInput(f"as_of is a date (the store's local day), got {as_of!r}", code="invalid_query")
    saved = profile_options(timeline_limit, audiences)

    params = {"person": person, "as_of": as_of}
    # fetchall, not fetchone: a result left open blocks the connection's next query.
    found = con.execute(
        """
        SELECT user_id, email, first_seen, first_day, first_channel, first_campaign, signup_ts
        FROM people WHERE person = $person
        """,
        {"person": person},
    ).fetchall()
    if not found:
        raise NotFound(f"person {person} is not among this source's people", code="not_found")
    user_id, email, first_seen, first_day, first_channel, first_campaign, signup_ts = found[0]
    if first_day is not None and first_day > as_of:
        raise NotFound(f"person {person} was first seen on {first_day}, after {as_of}", code="not_found")

    orders = [
        Order(r[0], _utc(r[1]), r[2], r[3], r[4] if r[4] is not None else Decimal(0), bool(r[5]), r[6], r[7], r[8], r[9])
        for r in con.execute(
            """
            SELECT order_key, ts, day, value, refunded, coalesce(cancelled, false), order_number, items, discount,
                   channel
            FROM orders WHERE person = $person AND day <= $as_of ORDER BY ts DESC, order_key DESC
            """,
            params,
        ).fetchall()
    ]
    identifies = con.execute(
        """
        SELECT ts, traits FROM events
        WHERE person = $person AND type = 'identify' AND day <= $as_of AND traits IS NOT NULL
        """,
        params,
    ).fetchall()
    events, last_seen = con.execute(
        "SELECT count(*), max(ts) FROM events WHERE person = $person AND day <= $as_of", params
    ).fetchall()[0]
    timeline = _timeline(con, params, timeline_limit) if timeline_limit else []
    return Profile(
        person=person,
        as_of=as_of,
        user_id=user_id,
        email=email,
        anonymous_ids=list(anonymous_ids or []),
        traits=latest_traits(identifies),
        first_seen=_utc(first_seen),
        first_day=first_day,
        first_channel=first_channel,
        first_campaign=first_campaign,
        signup_ts=_utc(signup_ts),
        last_seen=_utc(last_seen),
        orders=orders,
        events=int(events),
        timeline=timeline,
        audiences=[name for name, d in saved.items() if is_member(con, d, as_of, person)],
    )


def latest_traits(identifies: list[tuple[datetime, str]]) -> dict[str, Any]:
    """Each trait's latest value: from the identify call with the latest ts; a JSON null sets
    nothing; on a tie in time, the greater value as text (the rule of the trait condition)."""
    latest: dict[str, tuple[datetime, str, Any]] = {}
    for ts, text in identifies:
        try:
            traits = json.loads(text)
        except ValueError:
            continue  # the store keeps valid JSON; a bad row says nothing
        if not isinstance(traits, dict):
            continue
        for key, value in traits.items():
            if value is None:
                continue
            as_text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
            if key not in latest or (ts, as_text) > latest[key][:2]:
                latest[key] = (ts, as_text, value)
    return {key: latest[key][2] for key in sorted(latest)}


def _timeline(con: duckdb.DuckDBPyConnection, params: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    # An Order Completed event carries its order (value and status as known now): the entries a
    # customer page highlights.
    table = con.execute(
        """
        SELECT e.ts, e.day, e.type, e.event, e.session_id, e.product_id, e.category, e.order_id, e.price,
               e.total, e.quantity, e.currency, e.channel, e.device_type, e.country,
               o.order_key IS NOT NULL AS is_order, o.value AS order_value, o.refunded AS order_refunded,
               coalesce(o.cancelled, false) AS order_cancelled
        FROM events e
        LEFT JOIN orders o ON e.event = $order_event AND o.order_key = e.order_id
        WHERE e.person = $person AND e.day <= $as_of
        ORDER BY e.ts DESC, e.type, e.event, e.order_id, e.product_id
        LIMIT $limit
        """,
        {**params, "limit": limit, "order_event": ORDER_COMPLETED},
    ).fetchall()
    entries = []
    for r in table:
        entry = dict(zip([*TIMELINE_SCHEMA.names[:15], "is_order"], r[:16], strict=True))
        entry["ts"] = _utc(entry["ts"])
        value, refunded, cancelled = r[16], r[17], r[18]
        entry["order_value"] = value if entry["is_order"] else None
        entry["order_status"] = (
            order_status(value, refunded if refunded is not None else Decimal(0), cancelled)
            if entry["is_order"] else None
        )  # fmt: skip
        entries.append(entry)
    return entries


@dataclass
class Customer:
    """One person as the ``customer`` query answers: the profile, the RFM scores as of the same
    day, and the value predicted for the year after it."""

    profile: Profile
    rfm: dict[str, Any] | None  # rfm.rfm_customer's row; None when they had no order by as_of
    prediction: dict[str, Any] | None  # predict_customer; None with a note saying why
    prediction_note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        rfm = None
        if self.rfm is not None:
            rfm = {k: _money(v) if k == "monetary" else v for k, v in self.rfm.items() if k != "person"}
        return {
            **self.profile.to_dict(),
            "kind": "customer",
            "rfm": rfm,
            "prediction": self.prediction,
            "prediction_note": self.prediction_note,
        }

    def table(self) -> pa.Table:
        """The timeline, one row per event (newest first)."""
        return self.profile.table()


def predict_customer(fit: LtvFit, person: int, weeks: float = PREDICTION_WEEKS) -> dict[str, Any] | None:
    """The BG/NBD and Gamma-Gamma predictions (docs/ltv.md) of one customer of the fit's summary,
    over ``weeks`` after its calibration end; None when they had bought nothing by then. Raises
    InvalidInput when the models give no finite figure (the Gamma-Gamma's q ≤ 1, or a BG/NBD fit
    at its parameters' bounds)."""
    s = fit.summary
    at = int(np.searchsorted(s.person, person))  # the summary is sorted by person
    if at == len(s) or s.person[at] != person:
        return None
    one = slice(at, at + 1)
    mine = replace(s, person=s.person[one], first_day=s.first_day[one], x=s.x[one], t_x=s.t_x[one], T=s.T[one],
                   m=s.m[one], m_count=s.m_count[one])  # fmt: skip
    p = predict(mine, fit.bgnbd, fit.gamma_gamma, weeks)
    figures = (p.p_alive[0], p.expected_purchases[0], p.expected_value[0], p.predicted_value[0])
    if not np.isfinite(figures).all():
        # Seen when the BG/NBD's r and α run to their bounds (every customer buying at one rate):
        # the formulas overflow there. No number beats a wrong one.
        b = fit.bgnbd
        raise InvalidInput(
            f"the fitted models give no finite prediction for this customer (BG/NBD r = {b.r:.3g}, "
            f"α = {b.alpha:.3g}, a = {b.a:.3g}, b = {b.b:.3g})",
            code="invalid_query",
        )
    return {
        "calibration_end": s.calibration_end.isoformat(),
        "horizon_weeks": weeks,
        "p_alive": float(p.p_alive[0]),
        "expected_purchases": float(p.expected_purchases[0]),
        "expected_value_per_purchase": float(p.expected_value[0]),
        "predicted_value": float(p.predicted_value[0]),
    }


def _entry_dict(e: dict[str, Any]) -> dict[str, Any]:
    details = {k: _json_value(e[k]) for k in _DETAILS if e[k] is not None}
    out = {
        "ts": _iso(e["ts"]), "day": e["day"].isoformat(), "type": e["type"], "event": e["event"],
        "session_id": e["session_id"], "channel": e["channel"], "device_type": e["device_type"],
        "country": e["country"], "properties": details,
    }  # fmt: skip
    if e["is_order"]:
        out["order"] = {"order_key": e["order_id"], "value": _money(e["order_value"]), "status": e["order_status"]}
    return out


def _json_value(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(_MILLS))


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
