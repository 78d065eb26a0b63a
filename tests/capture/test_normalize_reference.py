"""``normalize_values`` (the optimized hot path) agrees with the plain reference on any message.

Messages are drawn from a grammar of Segment messages in which every field may be missing, of the
wrong type, empty, too long or odd; batch defaults (context, integrations, sentAt) are drawn too.
Both implementations must raise the same code, or produce the same row.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masar.capture.normalize import (
    CaptureContext,
    MessageRejected,
    normalize_message,
    normalize_values,
    parse_time_us,
)
from masar.store.schema import NORMALIZED_NAMES
from tests.capture.reference_normalize import merge_batch_defaults, reference_normalize

RECEIVED = parse_time_us("2026-03-01T12:00:00Z", "x")
CTX = CaptureContext(received_at_us=RECEIVED, default_currency="SAR", request_ip="198.51.100.7")

odd = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False, allow_infinity=False),
    st.just(""), st.text(max_size=8), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)  # fmt: skip
ident = st.one_of(st.text(min_size=1, max_size=12), st.just("x" * 257), st.integers(0, 10**6), odd)
times = st.one_of(
    st.sampled_from(["2026-03-01T11:59:00Z", "2026-03-01T14:59:00+03:00", "2026-03-01T11:00:00", "2026-03-03T12:00:00Z",
                     "1969-01-01T00:00:00Z", "nope", ""]),
    st.integers(1_700_000_000, 1_800_000_000), st.integers(1_700_000_000_000, 1_800_000_000_000), odd,
)  # fmt: skip
text_or_odd = st.one_of(st.text(max_size=20), st.just("https://s.com/p?utm_source=ig&gclid=1"),
                        st.just("https://s.com/?utm_medium=cpc&utm_campaign=c"), odd)  # fmt: skip
money = st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.integers(-(10**6), 10**6), st.just("12.50"),
                  st.just("1,234.5"), st.just("abc"), st.just(1e20), odd)  # fmt: skip


def _maybe(strategy):
    return st.one_of(st.just(None), strategy)


@st.composite
def messages(draw):
    msg = {}
    choices = {
        "type": st.one_of(st.sampled_from(["track", "page", "screen", "identify", "group", "alias"]), odd),
        "messageId": st.one_of(st.text(min_size=1, max_size=10), st.just("m" * 101), odd),
        "anonymousId": ident, "userId": ident, "previousId": ident, "groupId": ident,
        "event": st.one_of(st.sampled_from(["Product Viewed", "purchase", "add_to_cart", " ", "e" * 201]), odd),
        "name": text_or_odd,
        "timestamp": times, "originalTimestamp": times, "sentAt": times,
        "properties": st.one_of(
            st.fixed_dictionaries({}, optional={
                "price": money, "total": money, "revenue": money, "value": money, "currency": st.one_of(st.sampled_from(["kwd", "USD", "RIYAL", " jpy "]), odd),
                "order_id": st.one_of(st.text(max_size=5), odd), "transaction_id": st.text(max_size=5), "product_id": odd,
                "step": st.one_of(st.integers(-3, 2**32), odd), "quantity": st.one_of(st.integers(-(2**63), 2**63), odd),
                "url": text_or_odd, "path": text_or_odd, "referrer": text_or_odd, "title": text_or_odd, "name": text_or_odd,
                "items": st.just([{"item_id": "p1"}, 3]), "products": st.just([{"item_id": "p2"}]),
            }),
            odd,
        ),
        "traits": st.one_of(st.fixed_dictionaries({"email": st.text(max_size=5)}), st.just({}), odd),
        "context": st.one_of(
            st.fixed_dictionaries({}, optional={
                "ip": st.one_of(st.sampled_from(["203.0.113.9", "2001:db8::1", "bad", ""]), odd),
                "page": st.one_of(st.fixed_dictionaries({}, optional={"url": text_or_odd, "path": text_or_odd,
                                                                      "referrer": text_or_odd, "title": text_or_odd}), odd),
                "referrer": st.one_of(st.fixed_dictionaries({"url": text_or_odd}), odd),
                "campaign": st.one_of(st.fixed_dictionaries({}, optional={"source": text_or_odd, "medium": text_or_odd}), odd),
                "library": st.one_of(st.fixed_dictionaries({"name": text_or_odd, "version": text_or_odd}), odd),
                "locale": st.one_of(st.sampled_from(["ar-KW", "en_AE", "x"]), odd),
                "timezone": st.one_of(st.sampled_from(["Asia/Riyadh", "Nowhere/X"]), odd),
                "location": st.one_of(st.fixed_dictionaries({}, optional={"country": text_or_odd, "city": text_or_odd}), odd),
                "userAgent": text_or_odd,
                "traits": st.one_of(st.fixed_dictionaries({"plan": st.text(max_size=4)}), odd),
            }),
            odd,
        ),
        "integrations": st.one_of(st.fixed_dictionaries({"All": st.booleans()}), st.just({}), odd),
        "custom_top": odd,
    }  # fmt: skip
    for key in draw(st.lists(st.sampled_from(list(choices)), unique=True)):  # few keys, often
        msg[key] = draw(choices[key])
    if draw(st.integers(0, 3)) == 3:
        return msg
    # Mostly a valid core, so that the checks after identity, type and time are reached often.
    msg["type"] = draw(st.sampled_from(["track", "track", "page", "screen", "identify", "group", "alias"]))
    msg["anonymousId"] = "a1"
    msg["event"] = draw(st.sampled_from(["Product Viewed", "purchase", "add_to_cart"]))
    msg["previousId"], msg["groupId"] = "p1", "g1"
    if not isinstance(msg.get("messageId"), str) or len(msg["messageId"]) > 100:
        msg["messageId"] = "m1"
    for key in ("properties", "context", "traits"):
        if key in msg and not isinstance(msg[key], dict):
            msg[key] = {}
    for key in ("timestamp", "originalTimestamp", "sentAt"):
        if key in msg:
            msg[key] = draw(st.sampled_from(["2026-03-01T11:59:00Z", "2026-03-01T14:59:00+03:00", 1772366000]))
    return msg


defaults_strategy = st.one_of(
    st.just({}),
    st.fixed_dictionaries({}, optional={
        "context": st.one_of(st.fixed_dictionaries({"library": st.just({"name": "batch"}), "locale": st.just("en-US")}), st.just({}), odd),
        "integrations": st.one_of(st.just({"Segment.io": True}), odd),
        "sentAt": times,
    }),
)  # fmt: skip


def _outcome(fn):
    try:
        return "ok", fn()
    except MessageRejected as exc:
        return "rejected", exc.code


def _compare(msg, defaults):
    # A missing messageId becomes a random UUID in both: compare everything else.
    sent_at = defaults.get("sentAt")
    expected = _outcome(lambda: reference_normalize(merge_batch_defaults(msg, defaults), CTX, batch_sent_at=sent_at))
    actual = _outcome(lambda: dict(zip(NORMALIZED_NAMES, normalize_values(msg, CTX, batch_sent_at=sent_at, defaults=defaults), strict=True)))
    if expected[0] == "ok" and actual[0] == "ok":
        for row in (expected[1], actual[1]):
            if not isinstance(msg.get("messageId"), str) or not msg.get("messageId"):
                row["message_id"] = "generated"
    assert actual == expected


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages(), defaults_strategy)
def test_normalize_values_agrees_with_reference(msg, defaults):
    _compare(msg, defaults)


def test_agrees_on_the_benchmark_messages():
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    import ingest

    rng = random.Random(7)
    defaults = {"context": {"library": {"name": "bench"}}, "sentAt": "2026-03-01T12:00:00.500Z"}
    for i, template in enumerate(ingest._event_pool(rng, 500, visitors=300)):
        msg = {**template, "messageId": f"m-{i}", "timestamp": "2026-03-01T11:59:59.000Z"}
        _compare(msg, defaults)
        _compare(msg, {})


def test_normalize_message_is_the_row_as_a_dict():
    row = normalize_message({"type": "track", "event": "Order Completed", "userId": "u", "messageId": "m",
                             "properties": {"total": 5, "currency": "KWD"}}, CTX)  # fmt: skip
    assert tuple(row) == NORMALIZED_NAMES
    assert row["total"] == "5.000"


_T = {"type": "track", "event": "Product Viewed", "anonymousId": "a1"}


@pytest.mark.parametrize(
    "msg",
    [
        {**_T, "properties": {"step": True, "quantity": False}},
        {**_T, "properties": {"step": 2**31, "quantity": 2**62}},
        {**_T, "properties": {"step": 3, "quantity": -2}},
        {**_T, "custom": 1},
        {"type": "identify", "userId": 7, "x": None},
        {**_T, "userId": 1.5, "anonymousId": ""},
        {**_T, "context": {"page": {"url": "https://s.com/p?utm_source=ig&utm_medium=cpc&fbclid=2"}}},
        {**_T, "context": {"campaign": {"source": "nl"}, "page": {"url": "https://s.com/?utm_source=ig"}}},
        {**_T, "context": {"campaign": {}, "page": {"url": "https://s.com/?utm_source=ig"}}},
        {**_T, "context": {"referrer": {"url": "https://r.com"}, "page": {"title": 5}}},
        {"type": "page", "anonymousId": "a", "name": 3, "properties": {"url": "https://s.com/x?gclid=1", "title": "T"}},
        {"type": "page", "anonymousId": "a", "name": "N", "properties": {"name": "own"}},
        {**_T, "event": "purchase", "properties": {"value": 3, "items": [{"item_id": 1}, 2]}},
        {**_T, "properties": {"currency": "jpy", "price": "1,234.5"}},
        {**_T, "properties": {"currency": None, "price": None, "total": 0}},
        {**_T, "properties": {"price": True}},
        {**_T, "traits": {}, "context": {"traits": {"plan": "x"}}},
        {**_T, "integrations": {"All": False}, "context": {"ip": "10.1.2.3", "location": {"country": "sa"}}},
        {**_T, "context": None, "properties": None, "traits": None},
    ],
)
@pytest.mark.parametrize("defaults", [{}, {"context": {"library": {"name": "b"}, "ip": "1.2.3.4"}, "integrations": {"x": 1}}])
def test_agrees_on_edge_cases(msg, defaults):
    _compare(msg, defaults)
