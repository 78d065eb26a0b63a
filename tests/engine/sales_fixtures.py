"""Sales stores for the metrics tests, built through the real import path (Segment JSON Lines).

``Messages`` writes Segment messages the way a browser (a user agent, a location, UTM campaign
context) or a server (neither) would send them; ``build_store`` imports them with the segment
preset into a fresh embedded store and loads exchange rates and ad spend.

``hand_store`` is the small store whose every metric tests/engine/test_metrics.py computes by
hand. Its cast (times are UTC; the store's days are Asia/Riyadh, UTC+3):

==== ============ ========= ======= ============================================================
who  identity     device    country story
==== ============ ========= ======= ============================================================
P1   a1 → u1      desktop   SA      female lead (email) Feb 10 via Paid Search; orders O1 Feb 12,
                                    O2 Mar 5 (discount, 3 items), O3 Mar 20 (1 item)
P2   a2 → u2      mobile    AE      male; Paid Social visits Feb 27, Mar 2 (email lead, AED cart
                                    and O4), Mar 12 (O5 AED); O5 partly refunded Mar 14
P3   a3 → u3      desktop   KW      female lead Mar 6 via Email; O6 Mar 8 (KWD, Email), O7
                                    Mar 16 (KWD, Direct) fully refunded Mar 18
P4   a4 only      mobile    SA      never identified: cart, checkout and O8 Mar 10, whose Order
                                    Completed arrives twice
P5   a5 → u5      desktop   SA      "Signed Up" lead Mar 3 via Paid Search; cart and checkout
                                    abandoned
P6   u6           desktop   SA      cart Mar 6, O9 Mar 15 (more than 7 days later: abandoned);
                                    O14 at 21:40Z Mar 31 = Apr 1 local (outside March)
P7   u7           mobile    SA      O10 at 21:30Z Feb 28 = Mar 1 local; cart and checkout Mar 22
                                    bought by O11 Mar 27 (within 7 days)
P8   u8           desktop   SA      O12 Mar 25 cancelled; O13 Mar 26 (120, then Order Updated
                                    to 90)
P9   u9           desktop   SA      O15 Mar 28 in EGP, which has no rate, sent server-side
P10  a10 → u10    desktop   SA      email lead Jan 20 via Email; O16 Jan 30 in AED (before the
                                    first AED rate); a visit Mar 9; churned
==== ============ ========= ======= ============================================================

Rates: AED→SAR 1.02 from Feb 1 and 1.03 from Mar 10; KWD→SAR 12.2 from Mar 1 and, from Mar
15, SAR→KWD 0.08 (an inverted quote: 12.5). Spend: Paid Search "brand" 200 SAR on Feb 15 and
300 SAR on Mar 1; Paid Social "spring" 100 AED on Mar 15.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import masar
from masar.engine.facts import Rate
from masar.importers.run import import_path

UA_DESKTOP = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0 Safari/537.36"
UA_MOBILE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.0 Mobile/15E148 Safari/604.1"
)
DEVICE_UA = {"desktop": UA_DESKTOP, "mobile": UA_MOBILE}

# UTM context → the channel docs/channels.md gives it.
PAID_SEARCH = {"source": "google", "medium": "cpc", "name": "brand"}
PAID_SOCIAL = {"source": "facebook", "medium": "cpc", "name": "spring"}
EMAIL = {"source": "newsletter", "medium": "email", "name": "march"}
CAMPAIGNS = {"Paid Search": PAID_SEARCH, "Paid Social": PAID_SOCIAL, "Email": EMAIL}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Person:
    """How one person's messages identify them, and their browser (device, country)."""

    user_id: str | None = None
    anonymous_id: str | None = None
    device: str | None = "desktop"
    country: str | None = "SA"
    city: str | None = None  # context.location.city of browser messages

    def ids(self, *, anonymous: bool = False) -> dict[str, str]:
        """Browser messages carry the anonymous id, and the user id once known (Segment's clients)."""
        out = {}
        if self.anonymous_id:
            out["anonymousId"] = self.anonymous_id
        if self.user_id and not anonymous:
            out["userId"] = self.user_id
        return out


@dataclass
class Messages:
    """Segment messages with deterministic message ids."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def _add(self, message: dict[str, Any], at: datetime | str) -> None:
        when = utc(at) if isinstance(at, str) else at
        message["timestamp"] = when.isoformat().replace("+00:00", "Z")
        message["messageId"] = f"m{len(self.rows) + 1}"  # a resent event is a new message
        self.rows.append(message)

    @staticmethod
    def _context(person: Person, *, browser: bool, campaign: dict[str, str] | None = None) -> dict[str, Any]:
        context: dict[str, Any] = {}
        if browser and person.device:
            context["userAgent"] = DEVICE_UA[person.device]
        if browser and person.country:
            context["location"] = {"country": person.country}
        if browser and person.city:
            context.setdefault("location", {})["city"] = person.city
        if campaign:
            context["campaign"] = campaign
        return context

    def page(self, person: Person, at: datetime | str, *, campaign: dict[str, str] | None = None,
             anonymous: bool = False, url: str = "https://shop.sa/", referrer: str | None = None) -> None:  # fmt: skip
        """A browser page view (a visit), optionally landing from a campaign, a URL with a click id
        (``https://shop.sa/?ttclid=1``) or a referrer."""
        properties = {"url": url, **({"referrer": referrer} if referrer else {})}
        self._add({"type": "page", **person.ids(anonymous=anonymous), "properties": properties,
                   "context": self._context(person, browser=True, campaign=campaign)}, at)  # fmt: skip

    def identify(self, person: Person, at: datetime | str, **traits: Any) -> None:
        ids = {"userId": person.user_id} if person.user_id else {}
        if person.anonymous_id:
            ids["anonymousId"] = person.anonymous_id
        self._add({"type": "identify", **ids, "traits": traits}, at)

    def track(self, person: Person, at: datetime | str, event: str, *, server: bool = False,
              anonymous: bool = False, **properties: Any) -> None:  # fmt: skip
        """A track call: from the browser (user agent, location) unless ``server``."""
        self._add({"type": "track", "event": event, **person.ids(anonymous=anonymous), "properties": properties,
                   "context": self._context(person, browser=not server)}, at)  # fmt: skip

    def write(self, path: Path) -> Path:
        path.write_text("".join(json.dumps(m) + "\n" for m in self.rows))
        return path


def build_store(
    directory: Path,
    messages: Messages,
    *,
    rates: Sequence[Rate] = (),
    spend: Sequence[dict[str, Any]] = (),
    name: str = "S",
    currency: str = "SAR",
    timezone: str = "Asia/Riyadh",
) -> Any:
    """A fresh store at ``directory`` holding one source ``name`` with the messages imported."""
    store = masar.open(directory / "data")
    store.create_source(name, currency=currency, timezone=timezone)
    source = store.source(name)
    report = import_path(store, source, messages.write(directory / "export.jsonl"), preset="segment")
    assert report.rejected == 0, report
    if rates:
        store.set_exchange_rates(list(rates))
    if spend:
        store.set_ad_spend(source, list(spend))
    return store


HAND_RATES = [
    Rate(date(2026, 2, 1), "AED", "SAR", Decimal("1.02")),
    Rate(date(2026, 3, 10), "AED", "SAR", Decimal("1.03")),
    Rate(date(2026, 3, 1), "KWD", "SAR", Decimal("12.2")),
    Rate(date(2026, 3, 15), "SAR", "KWD", Decimal("0.08")),  # inverted: 1 KWD = 12.5 SAR
]
HAND_SPEND = [
    {"day": date(2026, 2, 15), "channel": "Paid Search", "campaign": "brand", "spend": Decimal("200"), "currency": "SAR"},
    {"day": date(2026, 3, 1), "channel": "Paid Search", "campaign": "brand", "spend": Decimal("300"), "currency": "SAR"},
    {"day": date(2026, 3, 15), "channel": "Paid Social", "campaign": "spring", "spend": Decimal("100"), "currency": "AED"},
]  # fmt: skip

P1 = Person("u1", "a1", "desktop", "SA")
P2 = Person("u2", "a2", "mobile", "AE")
P3 = Person("u3", "a3", "desktop", "KW")
P4 = Person(None, "a4", "mobile", "SA")
P5 = Person("u5", "a5", "desktop", "SA")
P6 = Person("u6", None, "desktop", "SA")
P7 = Person("u7", None, "mobile", "SA")
P8 = Person("u8", None, "desktop", "SA")
P9 = Person("u9", None, "desktop", "SA")
P10 = Person("u10", "a10", "desktop", "SA")


def _order(m: Messages, who: Person, at: str, order_id: str, total: str | float, currency: str = "SAR",
           **extra: Any) -> None:  # fmt: skip
    m.track(who, at, "Order Completed", order_id=order_id, total=total, currency=currency, **extra)


def hand_messages() -> Messages:
    m = Messages()
    # P1: anonymous landing from Paid Search, identified with an email (a lead) and a gender.
    m.page(P1, "2026-02-10T09:00:00Z", campaign=PAID_SEARCH, anonymous=True)
    # a trait key that reads like a table placeholder of the ClickHouse facts' SQL
    m.identify(P1, "2026-02-10T09:01:00Z", email="sara@example.com", gender="female", **{"{orders}": "gold"})
    m.page(P1, "2026-02-12T09:00:00Z")
    _order(m, P1, "2026-02-12T09:10:00Z", "O1", 200)
    m.page(P1, "2026-03-05T09:00:00Z")
    _order(m, P1, "2026-03-05T09:10:00Z", "O2", 150, discount=10,
           products=[{"product_id": "p1", "quantity": 2}, {"product_id": "p2"}])  # fmt: skip
    m.page(P1, "2026-03-20T09:00:00Z")
    _order(m, P1, "2026-03-20T09:10:00Z", "O3", 100, quantity=1)

    # P2: Paid Social, first seen Feb 27; the email lead, an AED cart and O4 on Mar 2; O5 Mar 12.
    m.page(P2, "2026-02-27T09:00:00Z", campaign=PAID_SOCIAL, anonymous=True)
    m.page(P2, "2026-03-02T09:00:00Z", campaign=PAID_SOCIAL, anonymous=True)
    m.identify(P2, "2026-03-02T09:01:00Z", email="omar@example.com", gender="male")
    m.track(
        P2, "2026-03-02T09:02:00Z", "Product Added", product_id="p3", price=100, currency="AED", quantity=1
    )
    m.track(P2, "2026-03-02T09:05:00Z", "Checkout Started", order_id="O4")
    _order(m, P2, "2026-03-02T09:10:00Z", "O4", 100, "AED")
    m.page(P2, "2026-03-12T09:00:00Z", campaign=PAID_SOCIAL)
    _order(m, P2, "2026-03-12T09:10:00Z", "O5", 200, "AED")
    m.track(
        P2, "2026-03-14T09:00:00Z", "Order Refunded", server=True, order_id="O5", total=50, currency="AED"
    )

    # P3: Email lead Mar 6; O6 from the Email campaign Mar 8, O7 Mar 16 fully refunded Mar 18 (KWD).
    m.page(P3, "2026-03-06T09:00:00Z", campaign=EMAIL, anonymous=True)
    m.identify(P3, "2026-03-06T09:01:00Z", email="noura@example.com", gender="female")
    m.page(P3, "2026-03-08T09:00:00Z", campaign=EMAIL)
    _order(m, P3, "2026-03-08T09:10:00Z", "O6", 10.125, "KWD")
    m.page(P3, "2026-03-16T09:00:00Z")
    _order(m, P3, "2026-03-16T09:10:00Z", "O7", "8.002", "KWD")
    m.track(
        P3, "2026-03-18T09:00:00Z", "Order Refunded", server=True, order_id="O7", total=8.002, currency="KWD"
    )

    # P4: never identified; the same Order Completed sent twice (two message ids).
    m.page(P4, "2026-03-10T09:00:00Z")
    m.track(P4, "2026-03-10T09:02:00Z", "Product Added", product_id="p4", price=80, quantity=1)
    m.track(P4, "2026-03-10T09:05:00Z", "Checkout Started")
    _order(m, P4, "2026-03-10T09:10:00Z", "O8", 80)
    _order(m, P4, "2026-03-10T09:12:00Z", "O8", 80)

    # P5: signs up (a lead without an email), leaves a cart and a checkout.
    m.page(P5, "2026-03-03T09:00:00Z", campaign=PAID_SEARCH, anonymous=True)
    m.track(P5, "2026-03-03T09:01:00Z", "Signed Up", method="phone")
    m.track(P5, "2026-03-03T09:02:00Z", "Product Added", product_id="p5", price=60)
    m.track(P5, "2026-03-03T09:05:00Z", "Checkout Started")

    # P6: a cart on Mar 6 bought 9 days later (abandoned); an order on Apr 1 local time.
    m.page(P6, "2026-03-06T09:00:00Z")
    m.track(P6, "2026-03-06T09:02:00Z", "Product Added", product_id="p6", price=20, quantity=2)
    m.page(P6, "2026-03-15T09:00:00Z")
    _order(m, P6, "2026-03-15T09:10:00Z", "O9", 40)
    m.page(P6, "2026-03-31T21:30:00Z")
    _order(m, P6, "2026-03-31T21:40:00Z", "O14", 60)

    # P7: an order at 00:30 on Mar 1 local time; a cart and checkout bought 5 days later.
    m.page(P7, "2026-02-28T21:20:00Z")
    _order(m, P7, "2026-02-28T21:30:00Z", "O10", 50)
    m.page(P7, "2026-03-22T09:00:00Z")
    m.track(P7, "2026-03-22T09:02:00Z", "Product Added", product_id="p7", price=70)
    m.track(P7, "2026-03-22T09:05:00Z", "Checkout Started")
    m.page(P7, "2026-03-27T09:00:00Z")
    _order(m, P7, "2026-03-27T09:10:00Z", "O11", 70)

    # P8: a cancelled order, then an order whose value an Order Updated changes.
    m.page(P8, "2026-03-25T09:00:00Z")
    _order(m, P8, "2026-03-25T09:10:00Z", "O12", 300)
    m.track(P8, "2026-03-25T10:00:00Z", "Order Cancelled", server=True, order_id="O12")
    m.page(P8, "2026-03-26T09:00:00Z")
    _order(m, P8, "2026-03-26T09:10:00Z", "O13", 120)
    m.track(
        P8, "2026-03-26T12:00:00Z", "Order Updated", server=True, order_id="O13", total=90, currency="SAR"
    )

    # P9: an order in a currency without any rate, sent from the server.
    m.page(P9, "2026-03-28T09:00:00Z")
    m.track(
        P9, "2026-03-28T09:10:00Z", "Order Completed", server=True, order_id="O15", total=500, currency="EGP"
    )

    # P10: an email lead in January, one AED order before the first AED rate, a visit in March.
    m.page(P10, "2026-01-20T09:00:00Z", campaign=EMAIL, anonymous=True)
    m.identify(P10, "2026-01-20T09:01:00Z", email="khalid@example.com")
    m.page(P10, "2026-01-30T09:00:00Z")
    _order(m, P10, "2026-01-30T09:10:00Z", "O16", 100, "AED")
    m.page(P10, "2026-03-09T09:00:00Z")
    return m


def hand_store(directory: Path) -> Any:
    return build_store(directory, hand_messages(), rates=HAND_RATES, spend=HAND_SPEND)


# -- generated stores (the property test) ---------------------------------------------------------
# A plan is what hypothesis draws: visits (each a session: a page, then maybe an identify, cart
# lines, a checkout and an order with its duplicate, update, cancellation and refund) and spend.
# Visits start on even UTC hours and refunds arrive on odd hours, so no two visits of a person
# share a session and no server-side event joins one: the plan's visits are the store's sessions.

PLAN_START = date(2026, 2, 15)  # day offsets count from here; the test's range is Mar 1-14
PLAN_RATES = [
    Rate(date(2026, 2, 20), "AED", "SAR", Decimal("1.02")),  # days before Feb 20 take it too
    Rate(date(2026, 3, 5), "SAR", "AED", Decimal("0.97")),  # inverted: 1.030927835052
]
SPEND_CAMPAIGNS = {"brand": "Paid Search", "spring": "Paid Social", "launch": "Display"}


def plan_person(index: int) -> Person:
    # The last person is never identified: an anonymous id only.
    return Person(None, "anon5", None, None) if index == 5 else Person(f"g{index}", None, None, None)


def plan_store(directory: Path, plan: dict[str, Any]) -> tuple[Any, Any]:
    """The store and the plain reference (tests/engine/reference_metrics.py) of one plan."""
    from tests.engine.reference_metrics import Order, Refund, Sales, Spend, Visit

    m = Messages()
    orders, refunds, visits, signups = [], [], [], {}
    identities: list[tuple[str, datetime, dict[str, Any]]] = []
    places: list[tuple[str, datetime, str]] = []
    for n, v in enumerate(plan["visits"]):
        base = plan_person(v["person"])
        who = Person(base.user_id, base.anonymous_id, v["device"], v["country"], v.get("city"))
        name = who.user_id or who.anonymous_id
        start = datetime.combine(PLAN_START + timedelta(days=v["day"]), time(v["hour"]), tzinfo=UTC)
        at = lambda minutes, start=start: start + timedelta(minutes=minutes)  # noqa: E731
        m.page(who, at(0), campaign=CAMPAIGNS.get(v["channel"]))
        if who.city:
            places.append((name, at(0), who.city))  # every browser event of the visit carries it
        visit = Visit(f"v{n}", name, at(0), v["channel"] or "Direct")
        if v["identify"] and who.user_id:
            traits = {"email": f"{who.user_id}@example.com", **({"tier": v["tier"]} if v["tier"] else {})}
            # Customer characteristics (drawn by the property test of age band, gender and city).
            traits.update({key: v[key] for key in ("gender", "age") if v.get(key) is not None})
            if v.get("birthday") is not None:
                traits["birthday"] = v["birthday"].isoformat()
            if v.get("address_city") is not None:
                traits["address"] = {"city": v["address_city"]}
            m.identify(who, at(1), **traits)
            identities.append((name, at(1), traits))
            signups[name] = min(signups.get(name, at(1)), at(1))  # visits are drawn in any order
        for i, (price, quantity, currency) in enumerate(v["cart"]):
            m.track(who, at(2 + i), "Product Added", product_id=f"p{i}", price=str(price), quantity=quantity,
                    currency=currency)  # fmt: skip
            visit.cart_ts = visit.cart_ts or at(2 + i)
            visit.cart_lines.append((price, quantity, currency))
        if v["checkout"]:
            m.track(who, at(4), "Checkout Started")
            visit.checkout_ts = at(4)
        visits.append(visit)
        o = v["order"]
        if o is None:
            continue
        order_id = f"o{n}"
        props: dict[str, Any] = {"order_id": order_id, "total": str(o["amount"]), "currency": o["currency"]}
        if o["discount"] is not None:
            props["discount"] = str(o["discount"])
        if o["items"]:
            props["products"] = [{"product_id": f"p{i}", "quantity": q} for i, q in enumerate(o["items"])]
        m.track(who, at(5), "Order Completed", server=o["server"], **props)
        if o["duplicate"]:
            m.track(who, at(6), "Order Completed", server=o["server"], **props)
        amount = o["amount"]
        if o["updated"] is not None:
            amount = o["updated"]
            m.track(who, at(7), "Order Updated", server=True, order_id=order_id, total=str(amount),
                    currency=o["currency"])  # fmt: skip
        if o["cancelled"]:
            m.track(who, at(8), "Order Cancelled", server=True, order_id=order_id)
        orders.append(Order(order_id, name, at(5), amount, o["currency"], o["discount"],
                            sum(o["items"]) if o["items"] else None, o["cancelled"], visit.visit))  # fmt: skip
        if o["refund"] is not None:
            # A share of the order, or (share None) a refund without an amount: the whole order.
            share, days_later = o["refund"]
            when = start + timedelta(days=days_later, hours=1)
            if share is None:
                m.track(who, when, "Order Refunded", server=True, order_id=order_id)
                refunds.append(Refund(order_id, name, when, None, o["currency"]))
            else:
                refund = (amount * share).quantize(Decimal("0.01"))
                m.track(who, when, "Order Refunded", server=True, order_id=order_id, total=str(refund),
                        currency=o["currency"])  # fmt: skip
                refunds.append(Refund(order_id, name, when, refund, o["currency"]))
    spend_rows = [
        {"day": PLAN_START + timedelta(days=s["day"]), "channel": SPEND_CAMPAIGNS[s["campaign"]],
         "campaign": s["campaign"], "spend": s["spend"], "currency": s["currency"]}
        for s in plan["spend"]
    ]  # fmt: skip
    store = build_store(directory, m, rates=PLAN_RATES, spend=spend_rows)
    sales = Sales(
        currency="SAR",
        timezone="Asia/Riyadh",
        orders=orders,
        refunds=refunds,
        visits=visits,
        signups=signups,
        spend=[Spend(r["day"], r["spend"], r["currency"]) for r in spend_rows],
        rates=PLAN_RATES,
        identities=identities,
        places=places,
    )
    return store, sales


# -- a store of returning customers (the lifetime-value query tests) -----------------------------

LTV_END = datetime(2025, 12, 31, 12, tzinfo=UTC)
LTV_SPEND = [
    {"day": date(2025, 1, 1), "channel": "Paid Search", "campaign": "brand", "spend": Decimal("900"), "currency": "SAR"},
    {"day": date(2025, 1, 1), "channel": "Paid Social", "campaign": "spring", "spend": Decimal("400"), "currency": "SAR"},
]  # fmt: skip
# Refunds the sales metrics subtract and historical value does not (docs/ltv.md, "Reconciling with
# net revenue"): of a cancelled order, of an order without a value, of an order never placed.
LTV_REFUND_OF_CANCELLED = Decimal("30")
LTV_REFUND_WITHOUT_VALUE = Decimal("20")
LTV_REFUND_OF_NO_ORDER = Decimal("15")


def ltv_messages(customers: int = 40, seed: int = 7) -> Messages:
    """``customers`` people who buy at their own pace through 2025: each lands from a channel
    (Direct, Paid Search "brand", Email, Paid Social "spring" in turn), places a first order on a
    random day of the first half, and comes back at a random rate (some never) until they leave
    (after each repeat order with chance 0.15) or the year ends, each order in a visit of its own.
    Every tenth never identifies (an anonymous buyer); the others identify with an email. After
    their last order, customer 1 (Paid Search) also has an order without an amount that is
    refunded, customer 2 a cancelled order that is refunded, customer 3 a refund of an order that
    does not exist, and customer 5 an order in EGP, which has no rate. Amounts are SAR, the
    store's currency."""
    rng = random.Random(seed)
    m = Messages()
    channels = [None, "Paid Search", "Email", "Paid Social"]
    for i in range(customers):
        who = Person(None, f"anon{i}") if i % 10 == 0 else Person(f"c{i}", f"anon{i}")
        at = datetime(2025, 1, 1, 8, tzinfo=UTC) + timedelta(days=rng.randrange(180), hours=2 * (i % 5))
        m.page(who, at, campaign=CAMPAIGNS.get(channels[i % 4]), anonymous=True)
        if who.user_id:
            m.identify(who, at + timedelta(minutes=1), email=f"{who.user_id}@example.com")
        per_day = rng.choice([0.0, 0.01, 0.03, 0.08])
        typical = rng.choice([40, 120, 300])
        n = 0
        while at <= LTV_END:
            m.page(who, at + timedelta(minutes=2))
            _order(m, who, at + timedelta(minutes=3), f"c{i}-{n}", f"{typical * rng.uniform(0.6, 1.4):.2f}")
            n += 1
            if per_day == 0 or (n > 1 and rng.random() < 0.15):  # gone for good after a repeat order
                break
            at += timedelta(days=1 + rng.expovariate(per_day))
        extra = min(at, LTV_END) + timedelta(hours=1)  # after the last order
        if i == 1:
            m.track(who, extra, "Order Completed", order_id="c1-no-amount", currency="SAR")
            m.track(who, extra + timedelta(minutes=5), "Order Refunded", server=True, order_id="c1-no-amount",
                    total=str(LTV_REFUND_WITHOUT_VALUE), currency="SAR")  # fmt: skip
        elif i == 2:
            _order(m, who, extra, "c2-cancelled", "90")
            m.track(who, extra + timedelta(minutes=5), "Order Cancelled", server=True, order_id="c2-cancelled")
            m.track(who, extra + timedelta(minutes=6), "Order Refunded", server=True, order_id="c2-cancelled",
                    total=str(LTV_REFUND_OF_CANCELLED), currency="SAR")  # fmt: skip
        elif i == 3:
            m.track(who, extra, "Order Refunded", server=True, order_id="never-placed",
                    total=str(LTV_REFUND_OF_NO_ORDER), currency="SAR")  # fmt: skip
        elif i == 5:
            _order(m, who, extra, "c5-egp", "700", "EGP")
    return m


def ltv_store(directory: Path, customers: int = 40, seed: int = 7) -> Any:
    return build_store(directory, ltv_messages(customers, seed), spend=LTV_SPEND)
