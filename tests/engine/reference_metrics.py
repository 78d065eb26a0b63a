"""The sales metrics written plainly, over lists of orders, refunds and visits (docs/metrics.md).

No SQL, no components, no breakdowns: each metric of ``masar.engine.metrics.METRICS`` for one date
range, computed straight from its definition, so that tests/engine/test_metrics.py can compare the
engine with it on generated stores. The inputs are what the test's generator *sent* (amounts in
their own currency, visits as it laid them out); the reference does the currency conversion, the
local days, order numbers, the cart window and churn itself.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from masar.engine.facts import Rate
from masar.model.money import minor_units

CART_WINDOW = timedelta(days=7)


@dataclass
class Order:
    order_id: str
    person: str
    ts: datetime  # its first Order Completed (UTC)
    amount: Decimal | None  # the latest amount sent (Order Completed or Order Updated), in ``currency``
    currency: str
    discount: Decimal | None = None
    items: int | None = None
    cancelled: bool = False
    visit: str | None = None  # the visit it was placed in


@dataclass
class Refund:
    order_id: str
    person: str
    ts: datetime
    amount: Decimal | None  # None: whatever is left of the order's value
    currency: str


@dataclass
class Visit:
    visit: str
    person: str
    ts: datetime  # its first event
    channel: str
    cart_ts: datetime | None = None  # first Product Added
    cart_lines: list[tuple[Decimal, int, str]] = field(default_factory=list)  # price, quantity, currency
    checkout_ts: datetime | None = None  # first Checkout Started


@dataclass
class Spend:
    day: date
    spend: Decimal
    currency: str


@dataclass
class Sales:
    currency: str
    timezone: str
    orders: list[Order]
    refunds: list[Refund]
    visits: list[Visit]
    signups: dict[str, datetime]  # person → first identify with an email, or first "Signed Up"
    spend: list[Spend]
    rates: list[Rate]
    identities: list[tuple[str, datetime, dict[str, Any]]] = field(default_factory=list)  # identify calls' traits
    places: list[tuple[str, datetime, str]] = field(default_factory=list)  # a visit's location city

    # -- days and money ---------------------------------------------------------------------------

    def day(self, ts: datetime) -> date:
        return ts.astimezone(ZoneInfo(self.timezone)).date()

    def rate(self, currency: str, day: date) -> Decimal | None:
        """Into the reporting currency: the latest rate on or before ``day``, else the first one."""
        quotes: dict[date, Decimal] = {}
        for r in self.rates:
            if r.base == currency and r.quote == self.currency:
                quotes[r.day] = r.rate
        for r in self.rates:
            if r.base == self.currency and r.quote == currency and r.day not in quotes:
                quotes[r.day] = (Decimal(1) / r.rate).quantize(Decimal("1e-12"))
        if not quotes:
            return None
        earlier = [d for d in quotes if d <= day]
        return quotes[max(earlier)] if earlier else quotes[min(quotes)]

    def convert(self, amount: Decimal | None, currency: str, day: date) -> Decimal | None:
        if amount is None:
            return None
        unit = Decimal(1).scaleb(-minor_units(self.currency))
        if currency == self.currency:
            return amount.quantize(unit, rounding=ROUND_HALF_UP)
        rate = self.rate(currency, day)
        return None if rate is None else (amount * rate).quantize(unit, rounding=ROUND_HALF_UP)

    def value(self, order: Order) -> Decimal | None:
        return self.convert(order.amount, order.currency, self.day(order.ts))

    # -- the metrics ------------------------------------------------------------------------------

    def metrics(self, start: date, end: date, churn_days: int) -> dict[str, Any]:
        """Every metric for the local days ``start``..``end`` (inclusive)."""
        in_range = lambda ts: start <= self.day(ts) <= end  # noqa: E731

        live = sorted((o for o in self.orders if not o.cancelled), key=lambda o: (o.ts, o.order_id))
        number: dict[str, int] = {}
        previous: dict[str, datetime | None] = {}
        count: dict[str, int] = defaultdict(int)
        last: dict[str, datetime] = {}
        for o in live:
            count[o.person] += 1
            number[o.order_id] = count[o.person]
            previous[o.order_id] = last.get(o.person)
            last[o.person] = o.ts
        first_order: dict[str, datetime] = {}
        for o in live:
            first_order.setdefault(o.person, o.ts)
        first_seen: dict[str, datetime] = {}
        for v in sorted(self.visits, key=lambda v: v.ts):
            first_seen.setdefault(v.person, v.ts)
        for person, ts in first_order.items():
            first_seen[person] = min(first_seen.get(person, ts), ts)

        orders = [o for o in live if in_range(o.ts)]
        values = {o.order_id: self.value(o) for o in orders}
        gross = sum((v for v in values.values() if v is not None), Decimal(0))
        refunds = sum(
            (a for r, a in self.refund_values() if in_range(r.ts) if a is not None), Decimal(0)
        )
        net = gross - refunds
        discount = sum(
            (d for o in orders if (d := self.convert(o.discount, o.currency, self.day(o.ts))) is not None),
            Decimal(0),
        )
        with_items = [o.items for o in orders if o.items is not None]
        buyers = {o.person for o in orders}
        new = {o.person for o in orders if number[o.order_id] == 1}
        repeat = {o.person for o in orders if number[o.order_id] >= 2}

        visits = [v for v in self.visits if in_range(v.ts)]
        visitors = {v.person for v in visits}
        placed = {o.visit for o in live}
        carts = [v for v in visits if v.cart_ts is not None]
        checkouts = [v for v in visits if v.checkout_ts is not None]

        def bought(person: str, since: datetime) -> bool:
            return any(o.person == person and since <= o.ts <= since + CART_WINDOW for o in live)

        abandoned = [v for v in carts if not bought(v.person, v.cart_ts)]  # type: ignore[arg-type]
        abandoned_value = sum(
            (self.convert(price * quantity, currency, self.day(v.cart_ts)) or Decimal(0)  # type: ignore[arg-type]
             for v in abandoned for price, quantity, currency in v.cart_lines),
            Decimal(0),
        )  # fmt: skip
        abandoned_checkouts = [v for v in checkouts if not bought(v.person, v.checkout_ts)]  # type: ignore[arg-type]

        leads = [p for p, ts in self.signups.items() if in_range(ts)]
        lead_customers = [p for p in leads if p in first_order and self.day(first_order[p]) <= end]

        spend = sum(
            (s for row in self.spend if start <= row.day <= end
             if (s := self.convert(row.spend, row.currency, row.day)) is not None),
            Decimal(0),
        )  # fmt: skip

        gaps = [(o.ts - previous[o.order_id]).total_seconds() / 86400 for o in orders if previous[o.order_id]]
        cycles = [
            (o.ts - first_seen[o.person]).total_seconds() / 86400 for o in orders if number[o.order_id] == 1
        ]

        active, churned = 0, 0
        for person in {o.person for o in live}:
            days = [self.day(o.ts) for o in live if o.person == person]
            before = max((d for d in days if d < start), default=None)
            by_end = max((d for d in days if d <= end), default=None)
            if before is not None and before >= start - timedelta(days=churn_days):
                active += 1
                if by_end + timedelta(days=churn_days) <= end:  # type: ignore[operator]
                    churned += 1

        # Pipeline velocity: a visit with a cart or a checkout is an opportunity; won when either
        # was bought, by the first order at or after the cart (else the checkout).
        opportunities = [v for v in visits if v.cart_ts is not None or v.checkout_ts is not None]
        won_orders = []
        for v in opportunities:
            for since in (v.cart_ts, v.checkout_ts):
                if since is not None and bought(v.person, since):
                    winner = min((o for o in live if o.person == v.person and o.ts >= since), key=lambda o: o.ts)
                    opened = min(t for t in (v.cart_ts, v.checkout_ts) if t is not None)
                    won_orders.append((winner, (self.day(winner.ts) - self.day(opened)).days + 1))
                    break
        open_count = len(opportunities) - len(won_orders)
        won_values = [value for o, _ in won_orders if (value := self.value(o)) is not None]
        won_average = ratio(sum(won_values, Decimal(0)), len(won_values))
        cycle = statistics.median(span for _, span in won_orders) if won_orders else None
        win_rate = ratio(len(won_orders), len(opportunities))
        velocity = (
            Decimal(open_count) * Decimal(len(won_orders)) / Decimal(len(opportunities)) * won_average
            / Decimal(str(cycle))
            if won_average is not None and cycle else None
        )  # fmt: skip

        first_revenue = sum((v for o in orders if number[o.order_id] == 1 if (v := values[o.order_id]) is not None),
                            Decimal(0))  # fmt: skip
        repeat_revenue = sum((v for o in orders if number[o.order_id] >= 2 if (v := values[o.order_id]) is not None),
                             Decimal(0))  # fmt: skip
        return {
            "gross_revenue": gross,
            "refunds": refunds,
            "net_revenue": net,
            "orders": len(orders),
            "average_order_value": ratio(gross, sum(v is not None for v in values.values())),
            "items_per_order": ratio(sum(with_items), len(with_items)),
            "discount": discount,
            "buyers": len(buyers),
            "sessions": len(visits),
            "visitors": len(visitors),
            "session_conversion_rate": ratio(sum(v.visit in placed for v in visits), len(visits)),
            "visitor_conversion_rate": ratio(len(buyers), len(visitors)),
            "leads": len(leads),
            "lead_conversion_rate": ratio(len(lead_customers), len(leads)),
            "cart_abandonment_rate": ratio(len(abandoned), len(carts)),
            "abandoned_cart_value": abandoned_value,
            "checkout_abandonment_rate": ratio(len(abandoned_checkouts), len(checkouts)),
            "new_customers": len(new),
            "returning_customers": len(buyers - new),
            "new_customer_revenue": first_revenue,
            "returning_customer_revenue": repeat_revenue,
            "repeat_purchase_rate": ratio(len(repeat), len(buyers)),
            "revenue_per_customer": ratio(net, len(buyers)),
            "time_between_orders": statistics.median(gaps) if gaps else None,
            "sales_cycle_median": statistics.median(cycles) if cycles else None,
            "sales_cycle_p90": quantile(cycles, 0.9),
            "churn_rate": ratio(churned, active),
            "ad_spend": spend,
            "cac": ratio(spend, len(new)),
            "cost_per_lead": ratio(spend, len(leads)),
            "roas": ratio(gross, spend),
            "open_opportunities": open_count,
            "opportunity_win_rate": win_rate,
            "average_won_value": won_average,
            "pipeline_cycle_days": cycle,
            "pipeline_velocity": velocity,
        }

    def only(self, persons: set[str], *, spend: bool = False) -> Sales:
        """The same store seen through some persons: their orders, refunds, visits and sign-ups (all
        of their history), and the spend only when asked — what a breakdown row by a person's own
        characteristic holds (the spend is in the null row)."""
        return Sales(
            currency=self.currency,
            timezone=self.timezone,
            orders=[o for o in self.orders if o.person in persons],
            refunds=[r for r in self.refunds if r.person in persons],
            visits=[v for v in self.visits if v.person in persons],
            signups={p: ts for p, ts in self.signups.items() if p in persons},
            spend=self.spend if spend else [],
            rates=self.rates,
        )

    def characteristic(self, name: str, as_of: date) -> dict[str, str]:
        """Every person's age_band, gender or city: from their latest identify call that sent it."""
        people = {o.person for o in self.orders} | {v.person for v in self.visits} | {p for p, _, _ in self.identities}
        latest: dict[tuple[str, str], tuple[datetime, Any]] = {}
        for person, ts, traits in self.identities:
            sent = {**traits, "city": (traits.get("address") or {}).get("city")}
            for key, value in sent.items():
                if value is not None and ((person, key) not in latest or latest[(person, key)][0] < ts):
                    latest[(person, key)] = (ts, value)
        out = {}
        for person in people:
            trait = lambda key, person=person: latest.get((person, key), (None, None))  # noqa: E731
            if name == "gender":
                out[person] = GENDERS[trait("gender")[1]] if trait("gender")[1] is not None else "unknown"
            elif name == "age_band":
                birthday = trait("birthday")[1]
                age_ts, age = trait("age")
                out[person] = age_band_on(as_of, date.fromisoformat(birthday) if birthday else None,
                                          (int(age), self.day(age_ts)) if age is not None else None)  # fmt: skip
            else:
                seen = max((p for p in self.places if p[0] == person), key=lambda p: p[1], default=None)
                given = trait("city")[1] or (seen[2] if seen else None)
                out[person] = CITIES[given] if given is not None else "unknown"
        return out


    def refund_values(self) -> list[tuple[Refund, Decimal | None]]:
        """Each refund of an order that is not cancelled with its converted value: its own amount,
        or (without one) what is left of the order's value after the refunds before it."""
        orders = {o.order_id: o for o in self.orders}
        out: list[tuple[Refund, Decimal | None]] = []
        refunded: dict[str, Decimal] = defaultdict(Decimal)
        in_full: set[str] = set()
        for r in sorted(self.refunds, key=lambda r: r.ts):
            order = orders.get(r.order_id)
            if order is not None and order.cancelled:
                continue
            if r.amount is not None:
                value = self.convert(r.amount, r.currency, self.day(r.ts))
            elif r.order_id in in_full:
                value = Decimal(0)
            else:
                whole = self.value(order) if order is not None else None
                value = None if whole is None else max(whole - refunded[r.order_id], Decimal(0))
                in_full.add(r.order_id)
            out.append((r, value))
            if value is not None:
                refunded[r.order_id] += value
        return out


def ratio(num: Any, den: Any) -> Decimal | float | None:
    if not den:
        return None
    if isinstance(num, Decimal) or isinstance(den, Decimal):
        return Decimal(num) / Decimal(den)
    return num / den


def quantile(values: list[float], q: float) -> float | None:
    """Linear interpolation between the closest ranks (DuckDB's quantile_cont)."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


def change(value: Any, before: Any) -> float | None:
    """The relative change the metrics runner reports (None against nothing or zero)."""
    if value is None or before is None or before == 0:
        return None
    return (float(value) - float(before)) / abs(float(before))


# -- customer characteristics, plainly ---------------------------------------------------------------

GENDERS = {"male": "male", "M": "male", "ذكر": "male", "أنثى": "female", "انثي": "female", "F": "female",
           "Non-Binary": "other", "zz": "unknown"}  # fmt: skip
CITIES = {"riyadh": "Riyadh", "RIYADH": "Riyadh", "Riyadh": "Riyadh", "الرياض": "الرياض", "jeddah": "Jeddah"}


def age_band_on(as_of: date, birthday: date | None, age: tuple[int, date] | None) -> str:
    """The band of a person on ``as_of`` from a birthday, else an age sent on a day."""
    if birthday is not None:
        years = as_of.year - birthday.year - ((as_of.month, as_of.day) < (birthday.month, birthday.day))
    elif age is not None:
        sent, day = age
        years = sent + max(0, as_of.year - day.year - ((as_of.month, as_of.day) < (day.month, day.day)))
    else:
        return "unknown"
    for low, high, band in ((0, 17, "under 18"), (18, 24, "18-24"), (25, 34, "25-34"), (35, 44, "35-44"),
                            (45, 54, "45-54"), (55, 64, "55-64"), (65, 120, "65+")):  # fmt: skip
        if low <= years <= high:
            return band
    return "unknown"
