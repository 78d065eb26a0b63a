"""Audiences: the five examples of the issue on a hand-made store with their members written out,
the SQL compiler against the plain evaluator (tests/engine/reference_audiences.py) on generated
stores and definitions, clear errors for bad definitions, and bound values."""

from __future__ import annotations

import json
import statistics
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masar.engine.audiences import (
    AudienceDefinition,
    audience_count,
    audience_members,
    compile_audience,
    is_member,
    parse_audience,
)
from masar.errors import InvalidInput
from tests.engine.reference_audiences import World, load, people_of

AS_OF = date(2024, 3, 31)


def _ts(when: str) -> datetime:
    return datetime.strptime(when, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def event(person: int, when: str, name: str | None, *, type: str = "track", **columns: Any) -> dict[str, Any]:
    ts = _ts(when)
    props = columns.pop("props", None)
    traits = columns.pop("traits", None)
    return {
        "person": person, "ts": ts, "day": ts.date(), "type": type, "event": name,
        "properties": json.dumps(props) if props is not None else None,
        "traits": json.dumps(traits) if traits is not None else None, **columns,
    }  # fmt: skip


def identify(person: int, when: str, **traits: Any) -> dict[str, Any]:
    return event(person, when, None, type="identify", traits=traits)


class Store:
    """Rows for the hand-made fixture: an order is an orders row plus its Order Completed event."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.orders: list[dict[str, Any]] = []

    def order(
        self, key: str, person: int, when: str, value: str | None, *, refunded: str = "0", cancelled: bool = False,
        products: list[str] | None = None, category: str | None = None,
    ) -> None:  # fmt: skip
        ts = _ts(when)
        self.orders.append({
            "order_key": key, "person": person, "ts": ts, "day": ts.date(),
            "value": None if value is None else Decimal(value), "discount": Decimal(0), "items": 1,
            "refunded": Decimal(refunded), "cancelled": cancelled, "channel": "Direct",
        })  # fmt: skip
        props = {"order_id": key, "products": [{"category": c} for c in products]} if products else None
        self.events.append(event(person, when, "Order Completed", order_id=key, category=category, props=props))


def hand_store() -> Store:
    """docs/audiences.md walks through this store; each test below spells out who is in."""
    s = Store()
    e = s.events.append
    # Product views: the same product 3+ times, and whether it was added.
    for day in ("01", "02", "05"):
        e(event(1, f"2024-03-{day} 09:00", "Product Viewed", product_id="A", category="shoes"))
    e(event(1, "2024-03-28 09:00", "Product Added", product_id="A", category="shoes"))
    for day in ("10", "11", "12"):
        e(event(2, f"2024-03-{day} 09:00", "Product Viewed", product_id="B", category="bags"))
    e(event(2, "2024-03-12 09:00", "Product Viewed", product_id="A", category="shoes"))
    e(event(2, "2024-03-12 09:05", "Product Added", product_id="A", category="shoes"))
    for day, product in (("01", "A"), ("02", "A"), ("03", "B")):
        e(event(3, f"2024-03-{day} 09:00", "Product Viewed", product_id=product))
    for when in ("2024-03-30 09:00", "2024-03-30 10:00", "2024-04-02 09:00", "2024-04-02 10:00"):
        e(event(4, when, "Product Viewed", product_id="C"))
    for day in ("20", "21", "22"):
        e(event(5, f"2024-03-{day} 09:00", "Product Viewed", product_id="C"))
    e(event(5, "2024-04-01 09:00", "Product Added", product_id="C"))  # after as_of
    for day in ("20", "21", "22"):
        e(event(6, f"2024-03-{day} 09:00", "Product Viewed"))  # no product
    # Carts: added in the 7 days up to 31 March (25–31 March) and no order since.
    e(event(7, "2024-03-27 10:00", "Product Added", product_id="A"))
    s.order("o7", 7, "2024-03-28 12:00", "30")
    e(event(8, "2024-03-26 09:00", "Product Added", product_id="A"))
    s.order("o8", 8, "2024-03-27 12:00", "40")
    e(event(8, "2024-03-30 09:00", "Product Added", product_id="B"))
    e(event(9, "2024-03-29 10:00", "Product Added", product_id="A"))
    s.order("o9", 9, "2024-03-29 10:00", "20")  # the same instant as the add
    e(event(10, "2024-03-25 00:30", "Product Added", product_id="A"))
    e(event(11, "2024-03-24 23:00", "Product Added", product_id="A"))
    # Categories bought: shoes but never bags.
    s.order("o2a", 2, "2024-01-05 10:00", "100", products=["shoes"])
    s.order("o2b", 2, "2024-02-04 10:00", "50", category="hats")
    s.order("o12a", 12, "2024-02-10 10:00", "60", products=["shoes"])
    s.order("o12b", 12, "2024-02-10 15:00", "20", products=["bags"])
    s.order("o13a", 13, "2024-02-12 10:00", "70", products=["shoes"], cancelled=True)
    s.order("o14", 14, "2024-02-14 10:00", "90", products=["shoes", "bags"])
    s.order("o15a", 15, "2024-02-15 10:00", "35", products=["bags"], cancelled=True)
    s.order("o15b", 15, "2024-02-16 10:00", "45", products=["shoes"])
    s.order("o16", 16, "2024-04-03 10:00", "500", products=["shoes"])  # after as_of
    # Revenue net of refunds.
    s.order("o17", 17, "2024-01-20 10:00", "1000", refunded="900")
    s.order("o18", 18, "2024-01-21 10:00", "500")
    s.order("o19", 19, "2024-01-22 10:00", "480")
    s.order("o20", 20, "2024-01-23 10:00", None)  # no value in the reporting currency
    # Order rhythms.
    for person, days in (
        (21, ["01-01", "01-11", "01-21"]), (22, ["03-01", "03-11", "03-21"]), (24, ["01-01", "01-02", "01-30"]),
        (25, ["03-01", "03-11"]), (26, ["03-01", "03-10"]), (27, ["02-01", "02-11", "04-05"]),
        (28, ["01-01", "01-11"]),
    ):  # fmt: skip
        for i, day in enumerate(days):
            s.order(f"o{person}{'abc'[i]}", person, f"2024-{day} 10:00", "10")
    s.order("o23a", 23, "2024-02-01 09:00", "10")
    s.order("o23b", 23, "2024-02-01 18:00", "10")
    s.order("o28c", 28, "2024-03-30 10:00", "10", cancelled=True)
    # Traits: the latest value set by an identify call up to as_of.
    e(identify(1, "2024-01-01 08:00", gender="f"))
    e(identify(1, "2024-02-01 08:00", gender="m"))
    e(identify(2, "2024-01-01 08:00", gender="f", plan="pro"))
    e(identify(3, "2024-01-01 08:00", gender="f"))
    e(identify(3, "2024-02-01 08:00", plan="free"))  # says nothing about gender
    e(identify(4, "2024-04-02 08:00", gender="f"))  # after as_of
    return s


@pytest.fixture(scope="module")
def hand():
    s = hand_store()
    con = load(s.events, s.orders)
    yield s, con
    con.close()


ABANDONED_CART = {"all": [
    {"type": "did", "event": "Product Added", "within_days": 7},
    {"type": "did_not_since", "event": "Order Completed", "since": {"event": "Product Added"}},
]}  # fmt: skip
VIEWED_NOT_ADDED = {"all": [
    {"type": "did", "event": "Product Viewed", "at_least": 3, "per_property": "product_id",
     "same_value": [{"type": "did_not", "event": "Product Added"}]},
]}  # fmt: skip
SHOES_NOT_BAGS = {"all": [
    {"type": "bought_category", "categories": ["shoes"]},
    {"type": "never_bought_category", "categories": ["bags"]},
]}  # fmt: skip
TOP_10 = {"all": [{"type": "top_percent", "percent": 10}]}
LAPSED = {"all": [{"type": "lapsed", "factor": 2}]}

EVERYONE = set(range(1, 29)) - {16}  # 16 was first seen after 31 March

EXPECTED = [
    # 1 and 10 (added on 25 March, the window's first day) never ordered; 8 added again after
    # ordering. Not 7 (ordered after), 9 (ordered at the same instant), 2 and 11 (added before
    # 25 March), 5 (added after as_of).
    ("abandoned cart", ABANDONED_CART, {1, 8, 10}),
    # 2 viewed B three times and added only A; 5 added C after as_of. Not 1 (added A), 3 (three
    # views over two products), 4 (two views up to as_of), 6 (views without a product).
    ("viewed 3+ times, not added", VIEWED_NOT_ADDED, {2, 5}),
    # 15's bags order was cancelled; 12 and 14 bought bags; 13's shoes were cancelled; 16 after as_of.
    ("shoes but never bags", SHOES_NOT_BAGS, {2, 15}),
    # 19 customers up to as_of; top 10%: rank ≤ 1.9 → 18 (500) and 19 (480). 17 paid 1000 but
    # was refunded 900.
    ("top 10% by revenue", TOP_10, {18, 19}),
    # usual gap (median of gaps between order days) 10, 14.5, 9, 10, 10; days since the last order
    # 70, 61, 21, 49, 80. Not 22 (10 days), 25 (20 days: not more than 2 × 10), 2 (56 ≤ 2 × 30),
    # 23 (one order day); 27's April order and 28's cancelled one do not count.
    ("lapsed", LAPSED, {21, 24, 26, 27, 28}),
    # Variants.
    ("viewed 3+ times (any products)",
     {"all": [{"type": "did", "event": "Product Viewed", "at_least": 3}]}, {1, 2, 3, 5, 6}),
    ("viewed exactly 3 times",
     {"all": [{"type": "did", "event": "Product Viewed", "at_least": 3, "at_most": 3}]}, {1, 3, 5, 6}),
    ("viewed a shoe, between dates",
     {"all": [{"type": "did", "event": "Product Viewed", "from_date": "2024-03-02", "to_date": "2024-03-12",
               "filters": [{"property": "category", "op": "equals", "value": "shoes"}]}]}, {1, 2}),
    ("viewed 2+ times per product, in the last 2 days",
     {"all": [{"type": "did", "event": "Product Viewed", "at_least": 2, "per_property": "product_id",
               "within_days": 2}]}, {4}),
    ("never added to cart", {"all": [{"type": "did_not", "event": "Product Added"}]},
     EVERYONE - {1, 2, 7, 8, 9, 10, 11}),
    ("no order since the first add of the week",
     {"all": [{"type": "did_not_since", "event": "Order Completed", "anchor": "first",
               "since": {"event": "Product Added", "within_days": 7}}]}, {1, 10}),
    ("top 5% by revenue", {"all": [{"type": "top_percent", "percent": 5}]}, {18}),
    # 21, 22 and 24 have 3 orders each and share rank 1: ties at the edge are all in.
    ("top 10% by orders", {"all": [{"type": "top_percent", "percent": 10, "by": "orders"}]}, {21, 22, 24}),
    ("lapsed, 3 order days", {"all": [{"type": "lapsed", "min_orders": 3}]}, {21, 24}),
    ("gender f", {"all": [{"type": "trait", "trait": "gender", "value": "f"}]}, {2, 3}),
    ("gender not f", {"all": [{"type": "trait", "trait": "gender", "op": "not_equals", "value": "f"}]},
     EVERYONE - {2, 3}),
    ("gender set", {"all": [{"type": "trait", "trait": "gender", "op": "is_set"}]}, {1, 2, 3}),
    ("cart or views, not gender f",
     {"all": [{"any": [ABANDONED_CART, VIEWED_NOT_ADDED]},
              {"not": {"type": "trait", "trait": "gender", "value": "f"}}]}, {1, 5, 8, 10}),
]  # fmt: skip


@pytest.mark.parametrize(("name", "definition", "expected"), EXPECTED, ids=[e[0] for e in EXPECTED])
def test_hand_made_audiences(hand, name, definition, expected):
    s, con = hand
    sql, params = compile_audience(definition, AS_OF)
    assert {r[0] for r in con.execute(sql, params).fetchall()} == expected
    # The plain evaluator agrees, and so does the one-person version of the query.
    world = World(s.events, s.orders, people_of(s.events, s.orders), AS_OF)
    assert world.members(parse_audience(definition).model_dump(by_alias=True)) == expected
    for person in (1, 2, 5, 18, 21, 16):
        assert is_member(con, definition, AS_OF, person) == (person in expected)


def test_as_of_moves_the_windows(hand):
    _, con = hand
    # On 3 April the window is 28 March – 3 April: 10 (added on 25 March) falls out, 5 (added on
    # 1 April, never ordered) comes in.
    assert _members(con, ABANDONED_CART, date(2024, 4, 3)) == {1, 5, 8}
    # 5 added C on 1 April; 4 has now viewed C four times.
    assert _members(con, VIEWED_NOT_ADDED, date(2024, 4, 3)) == {2, 4}
    # 16's shoes order of 3 April counts from that day.
    assert _members(con, SHOES_NOT_BAGS, date(2024, 4, 3)) == {2, 15, 16}


def _members(con, definition, as_of) -> set[int]:
    sql, params = compile_audience(definition, as_of)
    return {r[0] for r in con.execute(sql, params).fetchall()}


def test_members_page_and_export(hand):
    _, con = hand
    result = audience_members(con, TOP_10, AS_OF)
    assert result.count == 2
    assert [m.person for m in result.members] == [18, 19]
    m = result.members[0]
    assert (m.user_id, m.email, m.orders, m.revenue) == ("u18", "p18@example.com", 1, Decimal("500.000"))
    assert m.last_order_ts == _ts("2024-01-21 10:00") and m.last_seen == _ts("2024-01-21 10:00")
    as_json = json.loads(json.dumps(result.to_dict()))
    assert as_json["count"] == 2 and as_json["members"][0]["revenue"] == "500.000"
    assert as_json["members"][0]["last_order_ts"] == "2024-01-21T10:00:00+00:00"
    assert as_json["definition"] == {"all": [{"type": "top_percent", "percent": 10, "by": "revenue"}]}
    table = result.table()
    assert table.num_rows == 2 and table.column("person").to_pylist() == [18, 19]
    assert table.schema.field("revenue").type == pa.decimal128(18, 3)

    # Net revenue, refunds and orders without a value; the last event seen up to as_of.
    everyone = audience_members(con, {"all": [{"type": "did", "event": "*"}]}, AS_OF)
    rows = {m.person: m for m in everyone.members}
    assert everyone.count == len(EVERYONE) and set(rows) == EVERYONE
    assert rows[17].revenue == Decimal("100.000") and rows[17].orders == 1
    assert rows[20].revenue == Decimal("0.000") and rows[20].orders == 1
    assert rows[28].orders == 2 and rows[28].last_order_ts == _ts("2024-01-11 10:00")
    assert rows[28].last_seen == _ts("2024-03-30 10:00")  # the cancelled order's event is an event
    assert rows[5].last_seen == _ts("2024-03-22 09:00") and rows[5].orders == 0
    assert rows[27].orders == 2  # the April order is after as_of

    # Pages by person id, the count whatever the page; past the end; count only.
    page = audience_members(con, LAPSED, AS_OF, limit=2, offset=1)
    assert page.count == 5 and [m.person for m in page.members] == [24, 26]
    past = audience_members(con, LAPSED, AS_OF, limit=10, offset=10)
    assert past.count == 5 and past.members == []
    only = audience_members(con, LAPSED, AS_OF, limit=0)
    assert only.count == 5 and only.members == [] and only.table().num_rows == 0
    assert audience_count(con, LAPSED, AS_OF) == 5
    assert audience_members(con, LAPSED, AS_OF, offset=3).members[0].person == 27


def test_empty_audience_and_empty_store():
    con = load([], [])
    result = audience_members(con, ABANDONED_CART, AS_OF)
    assert result.count == 0 and result.members == [] and result.table().num_rows == 0
    assert result.table().schema.names == ["person", "user_id", "email", "orders", "revenue", "last_order_ts",
                                           "last_seen"]


# -- filters --------------------------------------------------------------------------------------


def _filter_store():
    events = [
        event(1, "2024-03-01 10:00", "Product Viewed", product_id="A", price=Decimal("19.990"), quantity=2,
              props={"size": "XL", "stock": 12, "sale": True, "name": "Red Shoe"}),
        event(2, "2024-03-01 10:00", "Product Viewed", product_id="B", price=Decimal("120.000"), quantity=1,
              props={"size": "S", "stock": "3", "name": "Blue Bag", "a.b": "dotted"}),
        event(3, "2024-03-01 10:00", "Product Viewed", product_id=None, price=None,
              props={"size": None, "name": "it's \"quoted\"; DROP TABLE events; --"}),
    ]  # fmt: skip
    return load(events, [])


FILTERS = [
    ({"property": "price", "op": "gt", "value": 19.99}, {2}),
    ({"property": "price", "op": "gte", "value": "19.99"}, {1, 2}),
    ({"property": "price", "op": "equals", "value": 19.99}, {1}),
    ({"property": "price", "op": "lt", "value": 100}, {1}),
    ({"property": "price", "op": "not_equals", "value": 120}, {1, 3}),
    ({"property": "quantity", "op": "in", "value": [2, 5]}, {1}),
    ({"property": "price", "op": "contains", "value": "19.9"}, {1}),  # in the text 19.990
    ({"property": "product_id", "op": "in", "value": ["A", "B"]}, {1, 2}),
    ({"property": "product_id", "op": "not_in", "value": ["A"]}, {2, 3}),
    ({"property": "product_id", "op": "is_set"}, {1, 2}),
    ({"property": "product_id", "op": "is_not_set"}, {3}),
    ({"property": "size", "op": "equals", "value": "XL"}, {1}),
    ({"property": "properties.size", "op": "is_set"}, {1, 2}),  # JSON null is not set
    ({"property": "stock", "op": "gt", "value": 5}, {1}),  # numbers in JSON, as text or not
    ({"property": "stock", "op": "lte", "value": 5}, {2}),
    ({"property": "stock", "op": "equals", "value": 12}, {1}),
    ({"property": "sale", "op": "equals", "value": True}, {1}),
    ({"property": "name", "op": "contains", "value": "SHOE"}, {1}),  # case-insensitive
    ({"property": "name", "op": "not_contains", "value": "shoe"}, {2, 3}),
    ({"property": "name", "op": "contains", "value": '"; drop table'}, {3}),
    ({"property": "name", "op": "equals", "value": "it's \"quoted\"; DROP TABLE events; --"}, {3}),
    ({"property": "a.b", "op": "equals", "value": "dotted"}, {2}),  # one key with a dot
    ({"property": "x\"'); DROP TABLE events; --", "op": "is_set"}, set()),
    ({"property": "size", "op": "eq", "value": "S"}, {2}),  # the funnel filters' names
]  # fmt: skip


@pytest.mark.parametrize(("flt", "expected"), FILTERS, ids=[json.dumps(f[0]) for f in FILTERS])
def test_filters_and_bound_values(flt, expected):
    con = _filter_store()
    definition = {"all": [{"type": "did", "event": "Product Viewed", "filters": [flt]}]}
    assert _members(con, definition, AS_OF) == expected
    assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 3  # still there
    sql, _ = compile_audience(definition, AS_OF)
    assert "DROP" not in sql and "dotted" not in sql and "XL" not in sql


def test_injection_in_names_and_traits():
    events = [identify(1, "2024-03-01 10:00", **{"x'; DROP TABLE people; --": "v", "gender": "'; --"})]
    con = load(events, [])
    for definition, expected in (
        ({"all": [{"type": "trait", "trait": "x'; DROP TABLE people; --", "value": "v"}]}, {1}),
        ({"all": [{"type": "trait", "trait": "gender", "value": "'; --"}]}, {1}),
        ({"all": [{"type": "did", "event": "'; DROP TABLE events; --"}]}, set()),
        ({"all": [{"type": "bought_category", "categories": ["'); DROP TABLE orders; --"]}]}, set()),
        ({"all": [{"type": "did", "event": "*", "per_property": "p\"; DROP TABLE people; --"}]}, set()),
    ):
        assert _members(con, definition, AS_OF) == expected
    assert con.execute("SELECT count(*) FROM people").fetchone()[0] == 1


# -- invalid definitions --------------------------------------------------------------------------

INVALID = [
    ({}, "all"),
    ({"all": []}, "at least 1"),
    ([], "JSON object"),
    ({"all": [{"type": "did"}]}, "event"),
    ({"all": [{"type": "dud", "event": "x"}]}, "dud"),
    ({"all": [{"event": "x"}]}, "a condition is an object with a type"),
    ({"all": [{"type": "did", "event": "x", "at_least": 0}]}, "at_least"),
    ({"all": [{"type": "did", "event": "x", "at_least": 3, "at_most": 2}]}, "at_most (2) is below at_least (3)"),
    ({"all": [{"type": "did", "event": "x", "within_days": 7, "from_date": "2024-01-01"}]}, "not both"),
    ({"all": [{"type": "did", "event": "x", "from_date": "2024-02-01", "to_date": "2024-01-01"}]}, "after"),
    ({"all": [{"type": "did", "event": "x", "whithin_days": 7}]}, "whithin_days"),
    ({"all": [{"type": "did", "event": "x", "filters": [{"property": "price", "op": "gt", "value": "a"}]}]},
     "needs a number"),
    ({"all": [{"type": "did", "event": "x", "filters": [{"property": "price", "value": "cheap"}]}]},
     "needs a number"),
    ({"all": [{"type": "did", "event": "x", "filters": [{"property": "size", "op": "in", "value": "S"}]}]},
     "list"),
    ({"all": [{"type": "did", "event": "x", "filters": [{"property": "size", "op": "is_set", "value": 1}]}]},
     "takes no value"),
    ({"all": [{"type": "did", "event": "x", "filters": [{"property": "size", "op": "like", "value": 1}]}]},
     "op"),
    ({"all": [{"type": "did", "event": "x", "filters": [{"property": "size"}]}]}, "needs a text or a number"),
    ({"all": [{"type": "did", "event": "x", "filters": [{"property": "person.gender", "value": "f"}]}]},
     "use a trait condition"),
    ({"all": [{"type": "did", "event": "x", "filters": [{"property": "ts", "op": "is_set"}]}]}, "within_days"),
    ({"all": [{"type": "did", "event": "x", "filters": [{"property": "", "op": "is_set"}]}]}, "1 to 200"),
    ({"all": [{"type": "did", "event": "x", "same_value": [{"type": "did_not", "event": "y"}]}]},
     "same_value needs per_property"),
    ({"all": [{"type": "did", "event": "x", "per_property": "product_id",
               "same_value": [{"type": "did", "event": "y", "per_property": "category"}]}]}, "outer per_property"),
    ({"all": [{"type": "did", "event": "x", "per_property": "traits"}]}, "trait condition"),
    ({"all": [{"type": "did_not_since", "event": "x"}]}, "since"),
    ({"all": [{"type": "did_not_since", "event": "x", "since": {"event": "y"}, "within_days": 3}]},
     "within_days"),
    ({"all": [{"type": "top_percent", "percent": 0}]}, "greater than 0"),
    ({"all": [{"type": "top_percent", "percent": 101}]}, "less than or equal to 100"),
    ({"all": [{"type": "top_percent", "percent": 10.00001}]}, "4 decimals"),
    ({"all": [{"type": "top_percent", "percent": 10, "by": "margin"}]}, "by"),
    ({"all": [{"type": "lapsed", "min_orders": 1}]}, "min_orders"),
    ({"all": [{"type": "lapsed", "factor": -1}]}, "factor"),
    ({"all": [{"type": "bought_category", "categories": []}]}, "categories"),
    ({"all": [{"type": "trait", "trait": "gender", "op": "gt", "value": "f"}]}, "needs a number"),
    ({"all": [{"not": {"type": "lapsed"}, "any": []}]}, "a condition is an object"),
    ({"all": [{"not": [{"type": "lapsed"}]}]}, "not"),
    ({"all": [{"any": [{"any": [{"any": [{"any": [{"any": [{"any": [{"any": [{"any": [{"type": "lapsed"}]}]}]}]}]}]}]}]}]},
     "nest at most"),
    ({"all": [{"type": "lapsed"}] * 101}, "at most 100 conditions"),
]  # fmt: skip


@pytest.mark.parametrize(("definition", "message"), INVALID, ids=[str(i) for i in range(len(INVALID))])
def test_invalid_definitions(definition, message):
    with pytest.raises(InvalidInput) as info:
        compile_audience(definition, AS_OF)
    assert info.value.code == "invalid_query"
    assert message in info.value.message, info.value.message
    assert info.value.message.startswith(("invalid audience", "an audience"))
    json.dumps(info.value.to_dict())


def test_invalid_arguments(hand):
    _, con = hand
    for bad in (datetime(2024, 3, 31), "2024-03-31", None):
        with pytest.raises(InvalidInput, match="as_of is a date"):
            compile_audience(LAPSED, bad)
    for limit, offset in ((-1, 0), (True, 0), (10, -1), (1.5, 0)):
        with pytest.raises(InvalidInput, match="limit|offset"):
            audience_members(con, LAPSED, AS_OF, limit=limit, offset=offset)


def test_definition_round_trips():
    definition = parse_audience({"all": [ABANDONED_CART, VIEWED_NOT_ADDED, {"not": TOP_10}]})
    again = AudienceDefinition.model_validate(json.loads(json.dumps(definition.to_dict())))
    assert again == definition
    assert definition.to_dict()["all"][0]["all"][0] == {
        "type": "did", "event": "Product Added", "filters": [], "within_days": 7, "at_least": 1, "same_value": []
    }  # fmt: skip
    assert compile_audience(definition, AS_OF) == compile_audience(definition.to_dict(), AS_OF)


# -- the compiler against the plain evaluator -----------------------------------------------------

_DAY0 = date(2024, 3, 1)
_DAYS = 12
_EVENTS = ["Product Viewed", "Product Added", "Order Completed"]
_PRODUCTS = ["A", "B", "C", None]
_CATEGORIES = ["x", "y", "z", None]
_WORDS = ["red", "Red", "blue", "12", "7", "3.5"]


def _moment(day: int, hour: int) -> datetime:
    return datetime.combine(_DAY0 + timedelta(days=day), datetime.min.time(), UTC) + timedelta(hours=hour)


# Strategies built once (building them per draw is what makes generation slow). Two hours on few
# days: ties in time and the edges of windows come up often.
_HOURS = st.sampled_from([0, 12])
_VALUES = st.one_of(st.sampled_from(_WORDS), st.none(), st.integers(0, 20))
_ORDER = st.tuples(
    st.integers(0, 8),  # earlier than most as_of days: some customers lapse
    _HOURS,
    st.one_of(st.none(), st.integers(0, 50).map(Decimal)),
    st.sampled_from([Decimal(0), Decimal(0), Decimal(5), None]),
    st.sampled_from([False, False, True, None]),
)
_EVENT = st.tuples(
    st.integers(0, _DAYS),
    _HOURS,
    st.sampled_from([*_EVENTS, *_EVENTS, "identify"]),
    st.dictionaries(st.sampled_from(["color", "size"]), _VALUES, max_size=2),
    st.sampled_from(_PRODUCTS),
    st.sampled_from(_CATEGORIES),
    st.one_of(st.none(), st.sampled_from([Decimal("5.000"), Decimal("19.990")])),
    st.sampled_from(["o0", "o1", "o2", "o3", None]),
    st.lists(st.sampled_from(["x", "y", "z"]), max_size=2),
)


@st.composite
def stores(draw):
    # Few people, many events each: the conditions hold for some people and not for others.
    persons = draw(st.integers(2, 4))
    owner = st.integers(1, persons)
    orders, events = [], []
    for n, (person, (day, hour, value, refunded, cancelled)) in enumerate(
        draw(st.lists(st.tuples(owner, _ORDER), min_size=4, max_size=14))
    ):
        ts = _moment(day, hour)
        orders.append({
            "order_key": f"o{n}", "person": person, "ts": ts, "day": ts.date(), "value": value,
            "refunded": refunded, "cancelled": cancelled,
        })  # fmt: skip
    for person, (day, hour, name, props, product, category, price, order_id, products) in draw(
        st.lists(st.tuples(owner, _EVENT), min_size=10, max_size=60)
    ):
        ts = _moment(day, hour)
        row = {"person": person, "ts": ts, "day": ts.date()}
        if name == "identify":
            # The same keys and values as properties: traits of the same shapes.
            events.append({**row, "type": "identify", "event": None, "traits": json.dumps(props)})
            continue
        row.update({"type": "track", "event": name, "product_id": product, "category": category, "price": price})
        if name == "Order Completed":
            row["order_id"] = order_id
            if products:
                props = {**props, "products": [{"category": c} for c in products]}
        row["properties"] = json.dumps(props) if props else None
        events.append(row)
    return events, orders


def _windows(draw) -> dict[str, Any]:
    kind = draw(st.sampled_from(["none", "none", "none", "within", "dates"]))
    if kind == "within":
        return {"within_days": draw(st.integers(1, 8))}
    if kind == "dates":
        start = _DAY0 + timedelta(days=draw(st.integers(0, _DAYS)))
        out: dict[str, Any] = {}
        if draw(st.booleans()):
            out["from_date"] = start.isoformat()
        if draw(st.booleans()):
            out["to_date"] = (start + timedelta(days=draw(st.integers(0, 6)))).isoformat()
        return out
    return {}


_FILTERS = st.one_of(
    st.builds(lambda p, v: {"property": p, "op": "equals", "value": v},
              st.sampled_from(["product_id", "category", "color", "properties.size"]), st.sampled_from(["A", "x", *_WORDS])),
    st.builds(lambda p, v: {"property": p, "op": "not_equals", "value": v},
              st.sampled_from(["product_id", "color"]), st.sampled_from(["A", "red", "7"])),
    st.builds(lambda p, v: {"property": p, "op": "in", "value": v},
              st.sampled_from(["product_id", "category", "size"]), st.lists(st.sampled_from(["A", "B", "x", *_WORDS]), min_size=1, max_size=3)),
    st.builds(lambda p, v: {"property": p, "op": "contains", "value": v},
              st.sampled_from(["color", "size", "category"]), st.sampled_from(["re", "RED", "1", "x"])),
    st.builds(lambda p, op, v: {"property": p, "op": op, "value": v},
              st.sampled_from(["price", "color", "size"]), st.sampled_from(["gt", "lt", "gte", "lte"]),
              st.sampled_from([5, 7, 12, 19.99, 3.5])),
    st.builds(lambda p, op: {"property": p, "op": op},
              st.sampled_from(["product_id", "price", "color", "size"]), st.sampled_from(["is_set", "is_not_set"])),
)  # fmt: skip


_SOME_FILTERS = st.one_of(st.just([]), st.just([]), st.lists(_FILTERS, min_size=1, max_size=1))


@st.composite
def event_specs(draw) -> dict[str, Any]:
    return {
        "event": draw(st.sampled_from([*_EVENTS, "*"])),
        "filters": draw(_SOME_FILTERS),
        **_windows(draw),
    }


@st.composite
def conditions(draw) -> dict[str, Any]:
    kind = draw(st.sampled_from(["did", "did", "did", "did_not", "did_not", "did_not_since", "bought_category",
                                 "never_bought_category", "top_percent", "lapsed", "trait"]))  # fmt: skip
    if kind in ("did", "did_not"):
        c = {"type": kind, **draw(event_specs())}
        if kind == "did":
            c["at_least"] = draw(st.integers(1, 2))
            if draw(st.booleans()):
                c["at_most"] = c["at_least"] + draw(st.integers(0, 2))
            if draw(st.booleans()):
                c["per_property"] = draw(st.sampled_from(["product_id", "category", "color", "price"]))
                inner = st.builds(
                    lambda t, spec, n: {"type": t, **spec, **({"at_least": n} if t == "did" else {})},
                    st.sampled_from(["did", "did_not"]), event_specs(), st.integers(1, 2),
                )
                c["same_value"] = draw(st.lists(inner, max_size=2))
        return c
    if kind == "did_not_since":
        return {"type": kind, "event": draw(st.sampled_from(_EVENTS)), "filters": draw(_SOME_FILTERS),
                "since": draw(event_specs()), "anchor": draw(st.sampled_from(["last", "first"]))}  # fmt: skip
    if kind in ("bought_category", "never_bought_category"):
        return {"type": kind, "categories": draw(st.lists(st.sampled_from(["x", "y", "z", "w"]), min_size=1,
                                                          max_size=2)), **_windows(draw)}  # fmt: skip
    if kind == "top_percent":
        return {"type": kind, "percent": draw(st.sampled_from([5, 10, 25, 33.3333, 50, 100])),
                "by": draw(st.sampled_from(["revenue", "orders"])), **_windows(draw)}  # fmt: skip
    if kind == "lapsed":
        return {"type": kind, "factor": draw(st.sampled_from([0.5, 1, 1.5, 2, 3])),
                "min_orders": draw(st.integers(2, 3))}  # fmt: skip
    op = draw(st.sampled_from(["equals", "not_equals", "in", "contains", "gt", "is_set", "is_not_set"]))
    value = {"in": ["red", "12", "blue"], "contains": "e", "gt": 7, "is_set": None, "is_not_set": None}
    return {"type": "trait", "trait": draw(st.sampled_from(["color", "size"])), "op": op,
            "value": value.get(op, draw(st.sampled_from(_WORDS)))}  # fmt: skip


nodes = st.recursive(
    conditions(),
    lambda children: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda xs: {"any": xs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, children),
    ),
    max_leaves=4,
)


_AS_OF = st.integers(5, _DAYS + 2).map(lambda d: _DAY0 + timedelta(days=d))
_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]


def _agrees(store, definition, as_of) -> None:
    events, orders = store
    people = people_of(events, orders)
    con = load(events, orders, people)
    try:
        parsed = parse_audience(definition)
        expected = World(events, orders, people, as_of).members(parsed.model_dump(by_alias=True))
        sql, params = compile_audience(parsed, as_of)
        got = [r[0] for r in con.execute(sql, params).fetchall()]
        assert len(got) == len(set(got))  # one row per member
        assert set(got) == expected
        for person in {p["person"] for p in people}:
            assert is_member(con, parsed, as_of, person) == (person in expected)
    finally:
        con.close()


@settings(max_examples=400, deadline=None, suppress_health_check=_SLOW)
@given(store=stores(), condition=conditions(), as_of=_AS_OF)
def test_each_condition_agrees_with_the_plain_evaluator(store, condition, as_of):
    _agrees(store, {"all": [condition]}, as_of)


@settings(max_examples=150, deadline=None, suppress_health_check=_SLOW)
@given(store=stores(), definition=st.lists(nodes, min_size=1, max_size=2).map(lambda xs: {"all": xs}), as_of=_AS_OF)
def test_definitions_agree_with_the_plain_evaluator(store, definition, as_of):
    _agrees(store, definition, as_of)


# Rankings, rhythms and latest values are decided at edges the general stores rarely reach:
# each gets stores built for it (many customers with few distinct amounts; many order days;
# identify calls at the same instant).
_AMOUNTS = st.sampled_from([None, Decimal(0), Decimal(10), Decimal(20), Decimal(30)])


@st.composite
def order_stores(draw, persons: int, days: int) -> tuple[list, list]:
    rows = draw(st.lists(
        st.tuples(st.integers(1, persons), st.integers(0, days), _AMOUNTS,
                  st.sampled_from([Decimal(0), Decimal(0), Decimal(10), None]), st.sampled_from([False, False, True])),
        min_size=1, max_size=3 * persons,
    ))  # fmt: skip
    orders = []
    for n, (person, day, value, refunded, cancelled) in enumerate(rows):
        ts = _moment(day, 12)
        orders.append({"order_key": f"o{n}", "person": person, "ts": ts, "day": ts.date(), "value": value,
                       "refunded": refunded, "cancelled": cancelled})  # fmt: skip
    return [], orders


@settings(max_examples=150, deadline=None, suppress_health_check=_SLOW)
@given(store=order_stores(12, 12), percent=st.sampled_from([5, 10, 12.5, 20, 25, 33.3333, 50, 75, 100]),
       by=st.sampled_from(["revenue", "orders"]), within=st.one_of(st.none(), st.integers(1, 10)), as_of=_AS_OF)
def test_top_percent_agrees_with_the_plain_evaluator(store, percent, by, within, as_of):
    condition = {"type": "top_percent", "percent": percent, "by": by}
    if within is not None:
        condition["within_days"] = within
    _agrees(store, {"all": [condition]}, as_of)


@st.composite
def rhythms(draw) -> tuple[tuple[list, list], float, date]:
    """Customers with order days a few days apart, some cancelled, and an as_of placed around
    factor × the first customer's median gap after their last order (the edge of "lapsed")."""
    factor = draw(st.sampled_from([0.5, 1, 1.5, 2, 2.5, 3]))
    orders, first_gaps, first_last = [], [], 0
    for person in range(1, draw(st.integers(1, 3)) + 1):
        day = draw(st.integers(0, 5))
        gaps = draw(st.lists(st.sampled_from([0, 1, 2, 3, 5, 8]), min_size=1 if person == 1 else 0, max_size=5))
        for gap in [0, *gaps]:
            day += gap
            ts = _moment(day, 12)
            orders.append({"order_key": f"o{len(orders)}", "person": person, "ts": ts, "day": ts.date(),
                           "value": Decimal(10), "refunded": Decimal(0),
                           "cancelled": draw(st.sampled_from([False, False, False, True]))})  # fmt: skip
        if person == 1:
            first_gaps, first_last = [g for g in gaps if g], day
    edge = factor * statistics.median(first_gaps) if first_gaps else 0
    as_of = _DAY0 + timedelta(days=first_last + int(edge) + draw(st.integers(-1, 1)))
    return ([], orders), factor, max(as_of, _DAY0 + timedelta(days=first_last))


@settings(max_examples=200, deadline=None, suppress_health_check=_SLOW)
@given(case=rhythms(), min_orders=st.integers(2, 4))
def test_lapsed_agrees_with_the_plain_evaluator(case, min_orders):
    store, factor, as_of = case
    _agrees(store, {"all": [{"type": "lapsed", "factor": factor, "min_orders": min_orders}]}, as_of)


@settings(max_examples=150, deadline=None, suppress_health_check=_SLOW)
@given(calls=st.lists(st.tuples(st.integers(1, 3), st.integers(0, 2),
                                st.dictionaries(st.just("gender"), st.sampled_from(["f", "m", "x", None, 3]))),
                      min_size=1, max_size=12),
       op=st.sampled_from(["equals", "not_equals", "in", "is_set", "is_not_set", "gt"]))  # fmt: skip
def test_trait_agrees_with_the_plain_evaluator(calls, op):
    events = [{"person": p, "ts": _moment(day, 0), "day": _moment(day, 0).date(), "type": "identify",
               "event": None, "traits": json.dumps(traits)} for p, day, traits in calls]  # fmt: skip
    value = {"in": ["m", "x"], "is_set": None, "is_not_set": None, "gt": 2}.get(op, "m")
    _agrees((events, []), {"all": [{"type": "trait", "trait": "gender", "op": op, "value": value}]}, _DAY0 + timedelta(5))


def test_times_are_utc_whatever_the_connection_time_zone():
    s = hand_store()
    con = load(s.events, s.orders)
    con.execute("SET TimeZone = 'Asia/Riyadh'")
    m = audience_members(con, TOP_10, AS_OF).members[0]
    assert m.last_order_ts == _ts("2024-01-21 10:00")
    assert m.to_dict()["last_order_ts"] == "2024-01-21T10:00:00+00:00"
    assert _members(con, ABANDONED_CART, AS_OF) == {1, 8, 10}
