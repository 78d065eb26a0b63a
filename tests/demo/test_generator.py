"""The demo store: deterministic, Segment-shaped, believable, and carrying its planted problems.

Most checks run on a small store (2,000 visitors, 30 days). The planted problems need more
checkouts to be measured reliably, so they use a 12,000-visitor store that is streamed once and
summarised, which keeps memory low.
"""

from __future__ import annotations

import collections
import datetime
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from masar.demo.generator import CURRENCY_RATES, DOMAIN, PAID_CHANNELS, PLANTED, DemoConfig, build_demo

SMALL = DemoConfig(seed=11, visitors=2000, days=30, end=datetime.date(2024, 3, 31))
LARGE = DemoConfig(seed=7, visitors=12_000, days=30, end=datetime.date(2024, 11, 30))

DECIMALS = {"SAR": 2, "AED": 2, "EGP": 2, "KWD": 3, "JOD": 3}
CURRENCY_BY_TZ = {
    "Asia/Riyadh": "SAR", "Asia/Dubai": "AED", "Africa/Cairo": "EGP", "Asia/Kuwait": "KWD", "Asia/Amman": "JOD",
}  # fmt: skip
VAT_BY_CURRENCY = {"SAR": "0.15", "AED": "0.05", "EGP": "0.14", "KWD": "0", "JOD": "0.16"}
MONEY_KEYS = ("price", "revenue", "total", "subtotal", "tax", "shipping", "discount", "value")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
SESSION_GAP = datetime.timedelta(minutes=30)


def _ts(message: dict[str, Any]) -> datetime.datetime:
    return datetime.datetime.fromisoformat(message["timestamp"].replace("Z", "+00:00"))


def _is_iphone_safari(user_agent: str) -> bool:
    return "iPhone" in user_agent and "Version/" in user_agent and "CriOS" not in user_agent


def _digest(messages: Iterable[dict[str, Any]]) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    for m in messages:
        h.update(json.dumps(m, sort_keys=True, ensure_ascii=False).encode())
        n += 1
    return n, h.hexdigest()


@dataclass
class Session:
    """What the tests need to know about one web session."""

    anonymous_id: str
    start: datetime.datetime
    last: datetime.datetime
    landing: dict[str, Any]
    user_agent: str
    events: set[str] = field(default_factory=set)
    perfume_added: bool = False

    @property
    def source(self) -> str:
        campaign = self.landing["context"].get("campaign")
        if campaign:
            return f"{campaign['source']}/{campaign['medium']}"
        referrer = self.landing["properties"]["referrer"]
        return (urlsplit(referrer).hostname or "(direct)") if referrer else "(direct)"


def sessionize(messages: Iterable[dict[str, Any]]) -> list[Session]:
    """Web sessions per anonymousId: a new one after 30 minutes or on a new campaign, as masar does."""
    open_sessions: dict[str, Session] = {}
    done: list[Session] = []
    for m in messages:
        anon = m.get("anonymousId")
        if anon is None:
            continue  # server-side (email, refunds)
        ts = _ts(m)
        s = open_sessions.get(anon)
        if s is None or ts - s.last > SESSION_GAP or "campaign" in m["context"]:
            if s is not None:
                done.append(s)
            s = Session(anon, ts, ts, m, m["context"]["userAgent"])
            open_sessions[anon] = s
        s.last = ts
        event = m.get("event")
        if event:
            s.events.add(event)
            if event == "Product Added" and m["properties"]["category"] == "Perfumes":
                s.perfume_added = True
    return done + list(open_sessions.values())


def rate(sessions: list[Session], event: str) -> float:
    return sum(event in s.events for s in sessions) / len(sessions)


@pytest.fixture(scope="module")
def small() -> tuple[Any, list[dict[str, Any]]]:
    store = build_demo(SMALL)
    return store, list(store.messages())


@pytest.fixture(scope="module")
def small_sessions(small: tuple[Any, list[dict[str, Any]]]) -> list[Session]:
    return sessionize(small[1])


@dataclass
class LargeSummary:
    store: Any
    sessions: list[Session]
    # checkout_id → (iPhone Safari, day of step 2 completion)
    step2: dict[str, tuple[bool, str]]
    payment: set[str]
    orders_per_user: collections.Counter[str]
    devices_per_user: dict[str, set[str]]
    perfume_prices: dict[str, set[float]]  # product_id → SAR prices seen in Product Viewed


@pytest.fixture(scope="module")
def large() -> LargeSummary:
    store = build_demo(LARGE)
    step2: dict[str, tuple[bool, str]] = {}
    payment: set[str] = set()
    orders: collections.Counter[str] = collections.Counter()
    devices: dict[str, set[str]] = collections.defaultdict(set)
    perfume_prices: dict[str, set[float]] = collections.defaultdict(set)

    def tap(messages: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        for m in messages:
            event = m.get("event")
            if event == "Checkout Step Completed" and m["properties"]["step"] == 2:
                step2[m["properties"]["checkout_id"]] = (
                    _is_iphone_safari(m["context"]["userAgent"]),
                    m["timestamp"][:10],
                )
            elif event == "Payment Info Entered":
                payment.add(m["properties"]["checkout_id"])
            elif event == "Order Completed":
                orders[m["userId"]] += 1
            elif event == "Product Viewed":
                props = m["properties"]
                if props["currency"] == "SAR" and props["category"] == "Perfumes":
                    perfume_prices[props["product_id"]].add(props["price"])
            if "userId" in m and "anonymousId" in m:
                devices[m["userId"]].add(m["anonymousId"])
            yield m

    sessions = sessionize(tap(store.messages()))
    return LargeSummary(store, sessions, step2, payment, orders, devices, perfume_prices)


# --- determinism ------------------------------------------------------------------------------


def test_same_seed_gives_identical_messages(small: tuple[Any, list[dict[str, Any]]]) -> None:
    store, messages = small
    again = build_demo(SMALL)
    assert _digest(again.messages()) == _digest(messages)
    assert _digest(store.messages()) == _digest(messages)  # iterating twice is repeatable too
    assert again.spend == store.spend
    assert again.products == store.products
    assert again.planted == store.planted


def test_different_seed_differs(small: tuple[Any, list[dict[str, Any]]]) -> None:
    other = build_demo(DemoConfig(seed=12, visitors=SMALL.visitors, days=SMALL.days, end=SMALL.end))
    assert _digest(other.messages())[1] != _digest(small[1])[1]
    assert other.spend != small[0].spend


def test_end_defaults_to_today_utc() -> None:
    store = build_demo(DemoConfig(visitors=20, days=3))
    assert store.end == datetime.datetime.now(datetime.UTC).date()
    assert store.start == store.end - datetime.timedelta(days=2)


# --- message shape ----------------------------------------------------------------------------


def test_messages_are_segment_messages(small: tuple[Any, list[dict[str, Any]]]) -> None:
    store, messages = small
    first = datetime.datetime.combine(store.start, datetime.time(), datetime.UTC)
    after_last = datetime.datetime.combine(
        store.end + datetime.timedelta(days=1), datetime.time(), datetime.UTC
    )
    ids = set()
    previous_day = ""
    for m in messages:
        json.dumps(m)  # plain JSON: no Decimal, no datetime
        assert m["type"] in ("page", "track", "identify")
        assert m["messageId"] and m["messageId"] not in ids
        ids.add(m["messageId"])
        assert m.get("anonymousId") or m.get("userId")
        assert TIMESTAMP.match(m["timestamp"])
        assert first <= _ts(m) < after_last
        assert m["timestamp"][:10] >= previous_day  # day by day
        previous_day = m["timestamp"][:10]
        if m["type"] == "track":
            assert m["event"]
            assert isinstance(m["properties"], dict)
        elif m["type"] == "page":
            assert m["name"]
            page = m["context"]["page"]
            assert page["url"].startswith(DOMAIN) and page["url"] == m["properties"]["url"]
            assert set(page) >= {"url", "path", "referrer", "title"}
        else:
            assert m["userId"] and m["anonymousId"] and m["traits"]["email"]
        if "anonymousId" in m:  # browser messages carry the device context
            ctx = m["context"]
            assert ctx["ip"] and ctx["userAgent"] and ctx["locale"] and ctx["timezone"] in CURRENCY_BY_TZ
            assert not ctx["ip"].startswith(("10.", "192.168.", "127."))
    assert 5 <= len(messages) / SMALL.visitors <= 20


def test_messages_pass_capture_validation(small: tuple[Any, list[dict[str, Any]]]) -> None:
    normalize = pytest.importorskip("masar.capture.normalize")
    store, messages = small
    received = datetime.datetime.combine(
        store.end + datetime.timedelta(days=1), datetime.time(), datetime.UTC
    )
    ctx = normalize.CaptureContext(
        received_at_us=int(received.timestamp() * 1_000_000), default_currency="SAR"
    )
    for m in messages:
        normalize.normalize_message(json.loads(json.dumps(m)), ctx)


def test_user_agents_and_mobile_share(small_sessions: list[Session]) -> None:
    mobile = sum(("iPhone" in s.user_agent or "Mobile" in s.user_agent) and "iPad" not in s.user_agent
                 for s in small_sessions)  # fmt: skip
    assert 0.62 <= mobile / len(small_sessions) <= 0.78
    agents = {s.user_agent for s in small_sessions}
    for marker in ("iPhone", "Android", "SamsungBrowser", "Windows NT", "Macintosh", "Edg/"):
        assert any(marker in ua for ua in agents), marker


def test_sessions_start_with_a_page_and_tagged_ones_carry_campaign(small_sessions: list[Session]) -> None:
    click_ids = {"google/cpc": "gclid", "tiktok/cpc": "ttclid", "facebook/paid_social": "fbclid",
                 "instagram/paid_social": "fbclid"}  # fmt: skip
    sources = collections.Counter()
    for s in small_sessions:
        landing = s.landing
        assert landing["type"] == "page" and "page" in landing["context"]
        url = landing["context"]["page"]["url"]
        query = parse_qs(urlsplit(url).query)
        campaign = landing["context"].get("campaign")
        if "utm_source" in query:
            assert campaign is not None
            assert campaign["source"] == query["utm_source"][0]
            assert campaign["medium"] == query["utm_medium"][0]
            assert campaign["name"] == query["utm_campaign"][0]
            key = s.source
            sources[key] += 1
            if key in click_ids:
                assert click_ids[key] in query, (key, url)
        else:
            assert campaign is None
    for key in ("tiktok/cpc", "facebook/paid_social", "instagram/paid_social", "snapchat/paid_social",
                "google/cpc", "newsletter/email", "instagram/influencer"):  # fmt: skip
        assert sources[key] > 0, key
    referrers = collections.Counter(
        s.source for s in small_sessions if "campaign" not in s.landing["context"]
    )
    assert referrers["(direct)"] > 0 and referrers["www.google.com.sa"] > 0
    assert any(
        host.endswith(("sayidaty.net", "hiamag.com", "tech-wd.com", "hawaaworld.com")) for host in referrers
    )


def test_users_identify_with_realistic_traits(small: tuple[Any, list[dict[str, Any]]]) -> None:
    _, messages = small
    identifies = [m for m in messages if m["type"] == "identify"]
    assert identifies
    countries = collections.Counter()
    for m in identifies:
        traits = m["traits"]
        assert traits["age_band"] in ("18-24", "25-34", "35-44", "45-54", "55+")
        assert traits["gender"] in ("female", "male")
        assert traits["email"].endswith(("@example.com", "@example.net", "@example.org"))
        assert traits["first_name"] and traits["city"]
        countries[traits["country"]] += 1
    assert countries["SA"] > countries["AE"] > countries["KW"] > 0
    # Once identified, a device's later events carry the userId.
    first_user: dict[str, str] = {}
    for m in messages:
        if m["type"] == "identify":
            first_user.setdefault(m["anonymousId"], m["userId"])
        elif "anonymousId" in m and m["anonymousId"] in first_user:
            assert m.get("userId") == first_user[m["anonymousId"]]


# --- money ------------------------------------------------------------------------------------


def _decimals(x: float | int) -> int:
    exponent = Decimal(repr(x)).as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def test_amounts_have_currency_decimals_and_orders_add_up(small: tuple[Any, list[dict[str, Any]]]) -> None:
    _, messages = small
    orders = 0
    currencies = set()
    for m in messages:
        props = m.get("properties") or {}
        currency = props.get("currency")
        if currency is None:
            continue
        places = DECIMALS[currency]
        for key in MONEY_KEYS:
            if key in props:
                assert isinstance(props[key], int | float) and _decimals(props[key]) <= places, (
                    key,
                    props[key],
                )
        for item in props.get("products", ()):
            assert _decimals(item["price"]) <= places
        if "anonymousId" in m:
            assert currency == CURRENCY_BY_TZ[m["context"]["timezone"]]
        if m.get("event") != "Order Completed":
            continue
        orders += 1
        currencies.add(currency)
        d = {
            k: Decimal(repr(props[k]))
            for k in ("total", "subtotal", "revenue", "shipping", "tax", "discount")
        }
        gross = sum(Decimal(repr(p["price"])) * p["quantity"] for p in props["products"])
        assert d["subtotal"] == gross - d["discount"]
        assert d["revenue"] == d["subtotal"]
        assert d["total"] == d["subtotal"] + d["shipping"] + d["tax"]
        vat = Decimal(VAT_BY_CURRENCY[currency])
        assert abs(d["tax"] - (d["subtotal"] + d["shipping"]) * vat) <= Decimal(1).scaleb(-places)
        assert (d["discount"] > 0) == ("coupon" in props)
        assert props["order_id"] and props["checkout_id"]
        for p in props["products"]:
            assert set(p) >= {"product_id", "sku", "name", "category", "brand", "price", "quantity"}
    assert orders > 20
    assert {"SAR", "AED"} <= currencies


def test_catalogue(small: tuple[Any, list[dict[str, Any]]]) -> None:
    store, _ = small
    products = store.products
    assert 100 <= len(products) <= 140
    assert len({p["product_id"] for p in products}) == len(products)
    assert len({p["sku"] for p in products}) == len(products)
    categories = collections.Counter(p["category"] for p in products)
    assert len(categories) >= 7 and categories["Perfumes"] >= 15
    for p in products:
        assert set(p) == {
            "product_id",
            "sku",
            "name",
            "name_ar",
            "category",
            "brand",
            "price",
            "image_url",
            "url",
        }
        assert isinstance(p["price"], Decimal) and Decimal("20") <= p["price"] <= Decimal("2000")
        assert p["url"].startswith(DOMAIN) and re.search(r"[\u0600-\u06FF]", p["name_ar"])
    prices = sorted(p["price"] for p in products)
    assert prices[-1] / prices[0] > 10  # a realistic spread
    assert set(CURRENCY_RATES) == {"SAR", "AED", "EGP", "KWD", "JOD"}


def test_spend_rows_for_every_paid_channel_and_day(small: tuple[Any, list[dict[str, Any]]]) -> None:
    store, _ = small
    days = {(store.start + datetime.timedelta(days=d)).isoformat() for d in range(SMALL.days)}
    seen = collections.defaultdict(set)
    for row in store.spend:
        assert set(row) == {"date", "channel", "campaign", "spend", "currency"}
        assert row["currency"] == "SAR" and isinstance(row["spend"], Decimal) and row["spend"] > 0
        assert row["spend"] == row["spend"].quantize(Decimal("0.01"))
        assert row["date"] in days
        seen[row["channel"]].add(row["date"])
    for channel in PAID_CHANNELS:
        assert seen[channel] == days, channel
    assert 0 < len(seen["influencer"]) < len(days)  # paid per post
    # TikTok, the planted poor converter, is also the biggest ad platform budget.
    per_channel = collections.Counter()
    for row in store.spend:
        if row["channel"] in PAID_CHANNELS:
            per_channel[row["channel"]] += row["spend"]
    assert per_channel.most_common(1)[0][0] == "tiktok_ads"


# --- behaviour --------------------------------------------------------------------------------


def test_funnel_ratios_are_plausible(small_sessions: list[Session]) -> None:
    assert 0.36 <= rate(small_sessions, "Product Viewed") <= 0.52
    assert 0.075 <= rate(small_sessions, "Product Added") <= 0.13
    assert 0.035 <= rate(small_sessions, "Checkout Started") <= 0.07
    assert 0.015 <= rate(small_sessions, "Order Completed") <= 0.04
    for event in ("Products Searched", "Product List Viewed", "Cart Viewed", "Checkout Step Viewed",
                  "Payment Info Entered", "Coupon Entered", "Product Added to Wishlist"):  # fmt: skip
        assert rate(small_sessions, event) > 0, event


def test_email_campaigns(small: tuple[Any, list[dict[str, Any]]], small_sessions: list[Session]) -> None:
    _, messages = small
    email = [
        m for m in messages if m.get("event", "").startswith("Email") or m.get("event") == "Unsubscribed"
    ]
    kinds = collections.Counter(m["event"] for m in email)
    assert kinds["Email Delivered"] > kinds["Email Opened"] > kinds["Email Link Clicked"] > 0
    assert kinds["Email Bounced"] > 0
    for m in email:
        assert m["userId"] and "anonymousId" not in m
        assert set(m["properties"]) >= {"email_id", "email_subject", "campaign_id", "campaign_name"}
    clicked = [m for m in email if m["event"] == "Email Link Clicked"]
    assert all("utm_medium=email" in m["properties"]["link_url"] for m in clicked)
    email_sessions = [s for s in small_sessions if s.source == "newsletter/email"]
    assert email_sessions and all(s.landing.get("userId") for s in email_sessions)


def test_weekly_pattern_and_sale_bump(large: LargeSummary) -> None:
    per_day = collections.Counter(s.start.date() for s in large.sessions)
    sale = large.store.seasonal[0]

    def in_sale(day: datetime.date) -> bool:
        return sale["start"] <= day.isoformat() <= sale["end"]

    sale_days = [n for d, n in per_day.items() if in_sale(d)]
    normal = [n for d, n in per_day.items() if not in_sale(d)]
    assert sum(sale_days) / len(sale_days) > 1.4 * sum(normal) / len(normal)
    fridays = [n for d, n in per_day.items() if d.weekday() == 4 and not in_sale(d)]
    assert sum(fridays) / len(fridays) < 0.95 * sum(normal) / len(normal)


def test_repeat_customers(large: LargeSummary) -> None:
    buyers = large.orders_per_user
    assert sum(1 for n in buyers.values() if n >= 2) >= 0.03 * len(buyers)  # within only 30 days
    assert any(len(devices) >= 2 and buyers[user] >= 1 for user, devices in large.devices_per_user.items())


# --- planted problems -------------------------------------------------------------------------


def _planted(store: Any, planted_id: str) -> dict[str, Any]:
    return next(p for p in store.planted if p["id"] == planted_id)


def test_planted_descriptions() -> None:
    store = build_demo(LARGE)
    assert [p["id"] for p in store.planted] == [p["id"] for p in PLANTED]
    for p in store.planted:
        assert store.start.isoformat() <= p["start"] <= p["end"] <= store.end.isoformat()
        json.dumps(p)
    ios = _planted(store, "ios_safari_payment_step")
    assert ios["start"] < ios["end"] < store.end.isoformat()


def test_planted_ios_safari_payment_break(large: LargeSummary) -> None:
    spec = _planted(large.store, "ios_safari_payment_step")
    groups: dict[tuple[bool, bool], list[int]] = collections.defaultdict(lambda: [0, 0])
    for checkout_id, (ios, day) in large.step2.items():
        key = (ios, spec["start"] <= day <= spec["end"])
        groups[key][0] += 1
        groups[key][1] += checkout_id in large.payment
    conversion = {k: paid / n for k, (n, paid) in groups.items()}
    assert groups[(True, True)][0] >= 30
    affected = conversion[(True, True)]
    assert affected < 0.5
    for other in ((True, False), (False, True), (False, False)):
        assert 0.7 <= conversion[other] <= 0.9, (other, conversion)
        assert conversion[other] - affected > 0.25


def test_planted_tiktok_heavy_traffic_poor_conversion(large: LargeSummary) -> None:
    sessions = large.sessions
    store_rate = rate(sessions, "Order Completed")
    by_source: dict[str, list[Session]] = collections.defaultdict(list)
    for s in sessions:
        by_source[s.source].append(s)
    tiktok = by_source["tiktok/cpc"]
    assert 0.15 <= len(tiktok) / len(sessions) <= 0.25
    assert rate(tiktok, "Order Completed") < store_rate / 3
    # No other sizeable channel is anywhere near as bad.
    for source, group in by_source.items():
        if source != "tiktok/cpc" and len(group) >= 0.04 * len(sessions):
            assert rate(group, "Order Completed") > 0.5 * store_rate, source


def test_planted_perfume_price_increase(large: LargeSummary) -> None:
    spec = _planted(large.store, "perfume_price_increase")
    groups: dict[tuple[bool, bool], list[int]] = collections.defaultdict(lambda: [0, 0])
    for s in large.sessions:
        if "Product Added" not in s.events:
            continue
        key = (s.perfume_added, s.start.date().isoformat() >= spec["start"])
        groups[key][0] += 1
        groups[key][1] += "Checkout Started" in s.events
    cart_to_checkout = {k: started / n for k, (n, started) in groups.items()}
    assert groups[(True, True)][0] >= 80
    before, after = cart_to_checkout[(True, False)], cart_to_checkout[(True, True)]
    assert after < 0.6 * before
    # Carts without perfume are unaffected.
    assert abs(cart_to_checkout[(False, True)] - cart_to_checkout[(False, False)]) < 0.08
    # And perfume prices are 25% higher in the events from the change day on.
    product_prices = large.perfume_prices
    catalogue = {p["product_id"]: float(p["price"]) for p in large.store.products}
    changed = [pid for pid, prices in product_prices.items() if len(prices) == 2]
    assert changed
    for pid in changed:
        assert max(product_prices[pid]) == pytest.approx(catalogue[pid] * 1.25, abs=0.01)
