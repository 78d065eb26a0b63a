"""Validation and flattening of single messages: timestamps, money, identity, context."""

from __future__ import annotations

import pytest

from masar.capture.normalize import (
    CaptureContext,
    MessageRejected,
    normalize_message,
    parse_time_us,
    truncate_ip,
)

RECEIVED = parse_time_us("2026-03-01T12:00:00Z", "x")
CTX = CaptureContext(received_at_us=RECEIVED, default_currency="SAR")


def norm(**msg):
    base = {"type": "track", "event": "Product Viewed", "anonymousId": "a1"}
    base.update(msg)
    return normalize_message(base, CTX)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-03-01T12:00:00Z", "2026-03-01T12:00:00Z"),
        ("2026-03-01T15:00:00+03:00", "2026-03-01T12:00:00Z"),  # Riyadh offset
        ("2026-03-01T12:00:00", "2026-03-01T12:00:00Z"),  # naive means UTC
        ("2026-03-01T12:00:00.123456Z", "2026-03-01T12:00:00.123456Z"),
        (1772366400, "2026-03-01T12:00:00Z"),  # epoch seconds
        (1772366400000, "2026-03-01T12:00:00Z"),  # epoch milliseconds
    ],
)
def test_time_formats(value, expected):
    assert parse_time_us(value, "t") == parse_time_us(expected, "t")


@pytest.mark.parametrize(
    ("msg", "expected_ts"),
    [
        ({}, RECEIVED),  # no time: receivedAt
        ({"timestamp": "2026-02-01T00:00:00Z"}, parse_time_us("2026-02-01T00:00:00Z", "t")),
        # device clock 1 h fast: its sentAt is 1 h ahead too, so the event lands 10 min before receipt
        ({"originalTimestamp": "2026-03-01T12:50:00Z", "sentAt": "2026-03-01T13:00:00Z"}, RECEIVED - 10 * 60 * 1_000_000),
        ({"timestamp": "2026-03-01T12:59:00Z", "sentAt": "2026-03-01T13:00:00Z"}, RECEIVED - 60 * 1_000_000),
    ],
)
def test_event_time(msg, expected_ts):
    row = norm(**msg)
    assert row["ts"] == expected_ts
    assert row["received_at"] == RECEIVED


@pytest.mark.parametrize(
    ("msg", "code"),
    [
        ({"type": "nope"}, "invalid_type"),
        ({"anonymousId": None}, "missing_identity"),
        ({"event": ""}, "missing_event"),
        ({"event": None}, "missing_event"),
        ({"messageId": "x" * 101}, "invalid_message_id"),
        ({"messageId": 5}, "invalid_message_id"),
        ({"timestamp": "yesterday"}, "invalid_timestamp"),
        ({"timestamp": "2026-03-03T12:00:01Z"}, "timestamp_in_future"),
        ({"timestamp": "1969-12-31T00:00:00Z"}, "invalid_timestamp"),
        ({"properties": [1, 2]}, "invalid_field"),
        ({"userId": {"a": 1}}, "invalid_field"),
        ({"properties": {"price": "abc"}}, "invalid_amount"),
        ({"properties": {"total": 10, "currency": "RIYAL"}}, "invalid_amount"),
    ],
)
def test_rejections(msg, code):
    with pytest.raises(MessageRejected) as info:
        norm(**msg)
    assert info.value.code == code
    assert info.value.message


def test_non_object_message_rejected():
    with pytest.raises(MessageRejected) as info:
        normalize_message([1], CTX)
    assert info.value.code == "invalid_message"


def test_alias_and_group_need_their_ids():
    with pytest.raises(MessageRejected, match="previousId"):
        normalize_message({"type": "alias", "userId": "u"}, CTX)
    with pytest.raises(MessageRejected, match="groupId"):
        normalize_message({"type": "group", "userId": "u"}, CTX)


def test_message_id_generated_when_missing():
    a, b = norm(), norm()
    assert a["message_id"] and a["message_id"] != b["message_id"]
    assert norm(messageId="m-1")["message_id"] == "m-1"


def test_money_is_exact_with_currency():
    row = norm(event="Order Completed", properties={"order_id": 77, "total": 59.970000000000006, "revenue": "50",
                                                    "tax": 7.5, "currency": "kwd"})  # fmt: skip
    assert row["currency"] == "KWD"
    assert (row["total"], row["revenue"], row["tax"]) == ("59.970", "50.000", "7.500")
    assert row["order_id"] == "77"
    assert norm(properties={"price": 10})["currency"] == "SAR"  # the source's default
    assert norm(properties={"color": "red"})["currency"] is None


def test_ga4_names_map_to_segment():
    row = norm(event="purchase", properties={"transaction_id": "T1", "value": 25, "items": [{"item_id": "p1"}]})
    assert row["event"] == "Order Completed"
    assert row["order_id"] == "T1" and row["revenue"] == "25.00"
    assert row["properties"]["products"] == [{"product_id": "p1"}]
    assert row["context"]["masar"]["original_event"] == "purchase"


def test_page_and_screen_become_events():
    page = normalize_message({"type": "page", "name": "Home", "anonymousId": "a",
                              "properties": {"url": "https://s.com/p?utm_source=ig&utm_medium=influencer"
                                                    "&utm_campaign=noura&utm_term=oud&utm_content=reel&gclid=x"}},
                             CTX)  # fmt: skip
    assert page["event"] == "Page Viewed" and page["properties"]["name"] == "Home"
    assert (page["utm_source"], page["utm_medium"], page["click_id"], page["path"]) == ("ig", "influencer", "gclid", "/p")
    assert (page["utm_campaign"], page["utm_term"], page["utm_content"]) == ("noura", "oud", "reel")
    assert normalize_message({"type": "screen", "userId": "u"}, CTX)["event"] == "Screen Viewed"


def test_context_campaign_wins_over_url():
    row = norm(context={"campaign": {"source": "newsletter", "medium": "email", "name": "ramadan"},
                        "page": {"url": "https://s.com/?utm_source=other"}})  # fmt: skip
    assert (row["utm_source"], row["utm_medium"], row["utm_campaign"]) == ("newsletter", "email", "ramadan")


@pytest.mark.parametrize(
    ("ip", "expected"),
    [("203.0.113.77", "203.0.113.0"), ("2001:db8:1234:5678::1", "2001:db8:1234::"), ("garbage", None), (None, None)],
)
def test_ip_truncated(ip, expected):
    assert truncate_ip(ip) == expected


def test_raw_ip_never_kept():
    row = norm(context={"ip": "198.51.100.23"})
    assert row["ip"] == "198.51.100.0"
    assert row["context"]["ip"] == "198.51.100.0"


@pytest.mark.parametrize(
    ("context", "country"),
    [
        ({"location": {"country": "sa"}}, "SA"),
        ({"timezone": "Asia/Riyadh"}, "SA"),
        ({"timezone": "Africa/Cairo"}, "EG"),
        ({"locale": "ar-KW"}, "KW"),
        ({"locale": "en_AE"}, "AE"),
        ({}, None),
    ],
)
def test_country(context, country):
    assert norm(context=context)["country"] == country


def test_properties_kept_whole_and_unknown_fields_preserved():
    props = {"nested": {"a": [1, 2, {"b": "ب"}]}, "price": 3}
    row = norm(properties=props, custom_top="x")
    assert row["properties"] == props
    assert row["context"]["masar"]["custom_top"] == "x"
