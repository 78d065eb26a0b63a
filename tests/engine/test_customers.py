"""The customer profile on the hand-made store of test_audiences.py, with every figure written
out, and against plain sums over generated stores."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masar.engine.audiences import parse_audience
from masar.engine.customers import customer_profile
from masar.errors import InvalidInput, NotFound
from tests.engine.reference_audiences import World, load, people_of
from tests.engine.test_audiences import (
    AS_OF,
    LAPSED,
    SHOES_NOT_BAGS,
    TOP_10,
    VIEWED_NOT_ADDED,
    Store,
    hand_store,
    identify,
    nodes,
    stores,
)

SAVED = {"viewed, not added": VIEWED_NOT_ADDED, "shoes, not bags": SHOES_NOT_BAGS, "top 10%": TOP_10,
         "lapsed": LAPSED}  # fmt: skip


@pytest.fixture(scope="module")
def con():
    s = hand_store()
    con = load(s.events, s.orders)
    yield con
    con.close()


def test_profile_of_a_customer(con):
    p = customer_profile(con, 2, AS_OF, anonymous_ids=["anon-1", "anon-2"], audiences=SAVED)
    d = json.loads(json.dumps(p.to_dict()))
    assert d["identity"] == {"user_id": "u2", "email": "p2@example.com", "anonymous_ids": ["anon-1", "anon-2"]}
    assert d["traits"] == {"gender": "f", "plan": "pro"}
    assert d["first_seen"] == "2024-01-01T08:00:00+00:00" and d["first_day"] == "2024-01-01"
    assert d["first_channel"] == "Direct"  # the first row with a channel: the January order
    assert d["last_seen"] == "2024-03-12T09:05:00+00:00"
    assert [(o["order_key"], o["value"], o["refunded"], o["status"]) for o in d["orders"]] == [
        ("o2b", "50.000", "0.000", "completed"), ("o2a", "100.000", "0.000", "completed"),
    ]  # fmt: skip
    assert d["value"] == {
        "orders": 2, "orders_without_value": 0, "cancelled_orders": 0, "revenue": "150.000", "refunded": "0.000",
        "lifetime_value": "150.000", "average_order_value": "75.000", "first_order_ts": "2024-01-05T10:00:00+00:00",
        "last_order_ts": "2024-02-04T10:00:00+00:00", "days_since_last_order": 56,
    }  # fmt: skip
    assert d["events"] == 8 and d["timeline_truncated"] is False
    assert [(e["ts"][:16], e["event"], e["properties"].get("product_id")) for e in d["timeline"]] == [
        ("2024-03-12T09:05", "Product Added", "A"),
        ("2024-03-12T09:00", "Product Viewed", "A"),
        ("2024-03-12T09:00", "Product Viewed", "B"),
        ("2024-03-11T09:00", "Product Viewed", "B"),
        ("2024-03-10T09:00", "Product Viewed", "B"),
        ("2024-02-04T10:00", "Order Completed", None),
        ("2024-01-05T10:00", "Order Completed", None),
        ("2024-01-01T08:00", None, None),
    ]  # fmt: skip
    assert d["timeline"][5]["order"] == {"order_key": "o2b", "value": "50.000", "status": "completed"}
    assert d["timeline"][5]["properties"] == {"category": "hats", "order_id": "o2b"}
    assert "order" not in d["timeline"][0] and d["timeline"][7]["type"] == "identify"
    assert d["audiences"] == ["viewed, not added", "shoes, not bags"]
    table = p.table()
    assert table.num_rows == 8 and table.column("is_order").to_pylist() == [False] * 5 + [True, True, False]


def test_refunds_cancellations_and_orders_without_value(con):
    p = customer_profile(con, 17, AS_OF, audiences=SAVED)
    assert p.orders[0].status == "partially_refunded"
    assert (p.revenue, p.refunded, p.lifetime_value, p.average_order_value) == (
        Decimal("1000.000"), Decimal("900.000"), Decimal("100.000"), Decimal("1000.000"))
    assert p.audiences == []  # net 100: not in the top 10%

    p = customer_profile(con, 28, AS_OF, audiences=SAVED)
    d = p.to_dict()
    assert [(o["order_key"], o["status"]) for o in d["orders"]] == [
        ("o28c", "cancelled"), ("o28b", "completed"), ("o28a", "completed")]
    assert d["value"]["orders"] == 2 and d["value"]["cancelled_orders"] == 1
    assert d["value"]["lifetime_value"] == "20.000" and d["value"]["days_since_last_order"] == 80
    assert d["timeline"][0]["order"]["status"] == "cancelled"
    assert d["audiences"] == ["lapsed"]

    d = customer_profile(con, 20, AS_OF).to_dict()["value"]
    assert (d["orders"], d["orders_without_value"], d["lifetime_value"], d["average_order_value"]) == (1, 1, "0.000", None)

    d = customer_profile(con, 5, AS_OF).to_dict()  # never ordered
    assert d["orders"] == [] and d["value"]["days_since_last_order"] is None
    assert d["value"]["average_order_value"] is None and d["value"]["lifetime_value"] == "0.000"


def test_fully_refunded_and_rounding():
    s = Store()
    s.order("a", 1, "2024-03-01 10:00", "40", refunded="40")
    s.order("b", 1, "2024-03-02 10:00", "10.001")
    s.order("c", 1, "2024-03-03 10:00", "10.000")
    con = load(s.events, s.orders)
    p = customer_profile(con, 1, AS_OF)
    assert [o.status for o in p.orders] == ["completed", "completed", "refunded"]
    assert p.lifetime_value == Decimal("20.001")
    assert p.average_order_value == Decimal("20.000")  # 60.001 / 3 = 20.000333…


def test_traits_and_as_of(con):
    assert customer_profile(con, 1, AS_OF).traits == {"gender": "m"}
    assert customer_profile(con, 1, date(2024, 1, 15)).traits == {"gender": "f"}
    assert customer_profile(con, 3, AS_OF).traits == {"gender": "f", "plan": "free"}
    assert customer_profile(con, 4, AS_OF).traits == {}  # set on 2 April
    early = customer_profile(con, 2, date(2024, 1, 31), audiences=SAVED).to_dict()
    assert [o["order_key"] for o in early["orders"]] == ["o2a"]
    assert early["value"]["days_since_last_order"] == 26 and early["events"] == 2
    assert early["audiences"] == ["shoes, not bags"]  # 8 customers by then: the top 10% is 18 alone


def test_traits_ties_and_nulls():
    events = [
        identify(1, "2024-03-01 10:00", gender="f", plan="a", score=3),
        identify(1, "2024-03-01 10:00", gender="m"),
        identify(1, "2024-03-02 10:00", plan=None, score={"x": 1}),
    ]
    p = customer_profile(load(events, []), 1, AS_OF)
    assert p.traits == {"gender": "m", "plan": "a", "score": {"x": 1}}


def test_timeline_limit(con):
    p = customer_profile(con, 2, AS_OF, timeline_limit=3)
    assert len(p.timeline) == 3 and p.events == 8 and p.to_dict()["timeline_truncated"] is True
    assert customer_profile(con, 2, AS_OF, timeline_limit=0).timeline == []


def test_unknown_people_and_bad_arguments(con):
    with pytest.raises(NotFound, match="not among"):
        customer_profile(con, 999, AS_OF)
    with pytest.raises(NotFound, match="first seen on 2024-04-03"):
        customer_profile(con, 16, AS_OF)
    assert customer_profile(con, 16, date(2024, 4, 3)).orders[0].order_key == "o16"
    for kwargs, message in (
        ({"person": "2"}, "person"), ({"person": True}, "person"), ({"as_of": "2024-03-31"}, "as_of"),
        ({"timeline_limit": -1}, "timeline_limit"), ({"timeline_limit": 10**6}, "timeline_limit"),
        ({"audiences": {"broken": {"all": [{"type": "did"}]}}}, "audience 'broken': invalid audience"),
    ):  # fmt: skip
        args = {"person": 2, "as_of": AS_OF, **kwargs}
        with pytest.raises(InvalidInput, match=message):
            customer_profile(con, **args)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(store=stores(), definition=nodes.map(lambda x: {"all": [x]}),
       as_of=st.integers(8, 22).map(lambda d: date(2024, 3, 1) + timedelta(days=d)))
def test_profile_agrees_with_plain_sums(store, definition, as_of):
    events, orders = store
    people = people_of(events, orders)
    con = load(events, orders, people)
    try:
        members = World(events, orders, people, as_of).members(parse_audience(definition).model_dump(by_alias=True))
        for row in people:
            person = row["person"]
            if row["first_day"] > as_of:
                continue
            p = customer_profile(con, person, as_of, audiences={"a": definition})
            mine = [o for o in orders if o["person"] == person and o["day"] <= as_of]
            placed = [o for o in mine if not o["cancelled"]]
            valued = [o for o in placed if o["value"] is not None]
            assert len(p.orders) == len(mine) and len(p.placed) == len(placed)
            assert p.lifetime_value == sum((o["value"] - (o["refunded"] or 0) for o in valued), Decimal(0))
            last = max((o["day"] for o in placed), default=None)
            assert p.days_since_last_order == (None if last is None else (as_of - last).days)
            seen = [e for e in events if e["person"] == person and e["day"] <= as_of]
            assert p.events == len(seen)
            assert [e["ts"] for e in p.timeline] == sorted((e["ts"] for e in seen), reverse=True)[:200]
            assert p.audiences == (["a"] if person in members else [])
    finally:
        con.close()


def test_times_are_utc_whatever_the_connection_time_zone():
    s = hand_store()
    con = load(s.events, s.orders)
    con.execute("SET TimeZone = 'America/New_York'")
    d = customer_profile(con, 2, AS_OF).to_dict()
    assert d["first_seen"] == "2024-01-01T08:00:00+00:00" and d["last_seen"] == "2024-03-12T09:05:00+00:00"
    assert d["orders"][0]["ts"] == "2024-02-04T10:00:00+00:00" and d["timeline"][0]["ts"] == "2024-03-12T09:05:00+00:00"
