"""Audiences, the customer profile and journeys (paths) on ClickHouse equal the embedded store's:
the same stores twinned into chdb (tests/clickhouse/twins.py), every query run by both, results
compared whole (``to_dict()``)."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import masar
from masar.demo.load import load_demo
from masar.engine import parse_query
from masar.engine.audience_examples import example_definition
from masar.engine.audiences import parse_audience
from masar.errors import InvalidInput, NotFound
from masar.store.clickhouse.audiences import compile_audience, run_audience
from masar.store.clickhouse.client import scratch_table
from masar.store.clickhouse.customers import run_customer
from masar.store.clickhouse.paths import run_paths
from masar.store.clickhouse.regex import re2_pattern
from masar.store.clickhouse.runners import RUNNERS as COMPILED
from tests.clickhouse.twins import twin
from tests.engine.customer_stores import merge_store, random_store
from tests.engine.reference_audiences import EVENTS_SCHEMA, ORDERS_SCHEMA, PEOPLE_SCHEMA, World, people_of
from tests.engine.sales_fixtures import hand_store as sales_hand_store
from tests.engine.test_audience_queries import CASES
from tests.engine.test_audiences import (
    _AS_OF,
    _DAY0,
    _SLOW,
    AS_OF,
    EXPECTED,
    _moment,
    conditions,
    hand_store,
    nodes,
    order_stores,
    rhythms,
    stores,
)
from tests.engine.test_paths import SHOP, START, _store, nameless_store


@pytest.fixture(scope="module")
def shop(tmp_path_factory, chdb_client):
    store = _store(tmp_path_factory.mktemp("shop"), SHOP)
    yield store, twin(store, chdb_client)
    store.close()


SHOP_PATHS = [
    {"step": "Product Viewed", "label": "path", "cleaning": [{"pattern": "^/products/", "alias": "Product page"}]},
    {"step": "Product Viewed", "label": "url", "collapse_repeats": False, "length": 4},
    {"step": "Product Viewed", "length": 3, "collapse_repeats": False},
    {"step": "Order Completed", "direction": "before", "length": 3, "exclude_events": ["Page Viewed"]},
    {"step": "Product Viewed", "window": "3d"},
    {"step": "Product Viewed", "window": "session"},
    {"step": "Cart Viewed", "occurrence": "every", "length": 2},
    {"length": 2, "from": "2026-03-02", "to": "2026-03-02"},
    {"length": 2, "from": "2026-03-03"},
    {"step": "Product Viewed", "node_limit": 3, "edge_limit": 2, "limit": 1},
    {"step": "Nothing Like It"},
]


@pytest.mark.parametrize("query", SHOP_PATHS, ids=range(len(SHOP_PATHS)))
def test_shop_paths(shop, query):
    store, context = shop
    q = {"kind": "paths", "source": "Shop", **query}
    assert run_paths(context("Shop"), parse_query(q)).to_dict() == store.run(q, reuse=False).to_dict()


# Paths, strict funnels and correlation over actions stored without an event name.
NAMELESS_QUERIES = [
    {"kind": "paths", "step": "Product Viewed", "length": 4},
    {"kind": "paths", "step": "Product Viewed", "label": "path",
     "cleaning": [{"pattern": "^/products/", "alias": "Product page"}, {"pattern": "unnamed", "alias": "No name"}]},
    {"kind": "paths", "step": "Product Viewed", "exclude_events": ["", "Page Viewed"]},
    {"kind": "paths", "step": "Order Completed", "direction": "before", "label": "path"},
    {"kind": "paths", "step": "*", "length": 2},
    {"kind": "funnel", "steps": ["Product Viewed", "Product Added"], "order": "strict"},
    {"kind": "funnel", "steps": ["*", "Product Viewed", "*"], "order": "strict"},
    {"kind": "funnel", "steps": ["Product Viewed", "Product Added"]},
    {"kind": "correlation", "steps": ["Product Viewed", "Order Completed"], "min_people": 1},
]  # fmt: skip


@pytest.mark.parametrize("query", NAMELESS_QUERIES, ids=range(len(NAMELESS_QUERIES)))
def test_actions_without_a_name_on_both_backends(tmp_path, chdb_client, query):
    store = nameless_store(tmp_path)
    try:
        q = parse_query({"source": "Shop", **query})
        assert COMPILED[q.kind](twin(store, chdb_client)("Shop"), q).to_dict() == store.run(q).to_dict()
    finally:
        store.close()


# -- journeys on the demo store -------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory, chdb_client):
    store = masar.open(tmp_path_factory.mktemp("demo") / "data")
    load_demo(store, visitors=1500, days=30)
    yield store, twin(store, chdb_client)
    store.close()


def _demo_paths(today: date) -> list[dict]:
    week_ago = (today - timedelta(days=7)).isoformat()
    return [
        {"step": "Product Viewed", "label": "path",
         "cleaning": [{"pattern": r"^/products/[\w-]+$", "alias": "Product page"},
                      {"pattern": "^/collections/", "alias": "Collection"}, {"pattern": r"(?i)CART", "alias": "Cart"}]},
        {"step": {"event": "Product Viewed", "filters": [{"property": "category", "op": "eq", "value": "Abayas"}]},
         "occurrence": "every", "length": 4},
        {"step": {"any_of": [{"event": "Product Added"}, {"event": "Cart Viewed"}]}, "direction": "before",
         "length": 6, "window": "1h"},
        {"window": "session", "collapse_repeats": False, "length": 8, "from": week_ago, "to": today.isoformat()},
        {"step": {"event": "Product Viewed", "filters": [{"property": "price", "op": "gt", "value": 100},
                                                         {"property": "brand", "op": "neq", "value": "Lamsa"}]}},
        {"step": {"event": "Page Viewed", "filters": [{"property": "person.gender", "op": "eq", "value": "female"}]},
         "label": "url", "length": 3},
        {"step": {"event": "*", "filters": [{"property": "person.age_band", "op": "not_in", "value": ["55+"]}]},
         "occurrence": "every", "length": 2, "window": "10m"},
        {"step": "Product List Viewed", "exclude_events": ["Page Viewed", "Products Searched"], "label": "url",
         "node_limit": 5, "edge_limit": 7, "limit": 3},
        {"step": "Product List Viewed", "length": 10, "collapse_repeats": False, "limit": 50, "node_limit": 200,
         "edge_limit": 1000, "window": "2d"},
        {"step": "Checkout Started", "direction": "before", "window": "session", "label": "path", "length": 20,
         "occurrence": "every"},
        {"step": {"event": "Products Searched", "filters": [{"property": "query", "op": "contains", "value": "A"}]}},
        {"step": {"event": "Product Viewed", "filters": [{"property": "price", "op": "is_set"},
                                                         {"property": "properties.currency", "op": "in",
                                                          "value": ["SAR", "JOD"]}]}, "occurrence": "every"},
    ]  # fmt: skip


def test_demo_paths(demo):
    store, context = demo
    source = store.sources()[0]
    last = store.query(f"SELECT max(ts) FROM {store.events_relation(source)}").fetchone()[0]
    ctx = context(source.name)
    for query in _demo_paths(last.astimezone(ctx.tz).date()):
        q = {"kind": "paths", "source": source.name, **query}
        want = store.run(q, reuse=False).to_dict()
        assert want["total"] > 0, query  # every query finds paths
        assert run_paths(ctx, parse_query(q)).to_dict() == want, query


def _demo_funnels(today: date) -> list[dict]:
    week_ago = (today - timedelta(days=7)).isoformat()
    buy = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed"]
    return [
        {"funnel": {"steps": buy, "dropped_after": 2}, "label": "path",
         "cleaning": [{"pattern": r"^/products/", "alias": "Product page"}]},
        {"funnel": {"steps": buy, "dropped_after": 3, "window": "1d",
                    "exclusions": [{"event": "Cart Viewed", "from_step": 2, "to_step": 3}]}, "length": 6},
        {"funnel": {"steps": ["Product List Viewed", {"event": "Products Searched", "optional": True}, *buy],
                    "dropped_after": 3, "window": "2h"}, "window": "session", "collapse_repeats": False},
        {"funnel": {"steps": buy[:3], "dropped_after": 1, "order": "strict", "window": "1h"},
         "from": week_ago, "to": today.isoformat(), "exclude_events": ["Page Viewed"]},
        {"funnel": {"steps": [{"event": "Product Viewed", "filters": [{"property": "price", "op": "gt", "value": 100}]},
                              "Product Added", "Order Completed"], "dropped_after": 1, "order": "strict"},
         "length": 3, "limit": 3, "node_limit": 4, "edge_limit": 3},
    ]  # fmt: skip


def test_demo_paths_after_funnel_drop_outs(demo):
    store, context = demo
    source = store.sources()[0]
    last = store.query(f"SELECT max(ts) FROM {store.events_relation(source)}").fetchone()[0]
    ctx = context(source.name)
    for query in _demo_funnels(last.astimezone(ctx.tz).date()):
        q = {"kind": "paths", "source": source.name, **query}
        want = store.run(q, reuse=False).to_dict()
        assert want["total"] > 0, query  # every funnel has drop-outs
        assert run_paths(ctx, parse_query(q)).to_dict() == want, query


# -- journeys on random small stores (hypothesis) -------------------------------------------------

_WHAT = [("track", "A"), ("track", "B"), ("track", "C"), ("page", "/"), ("page", "/p/1"), ("page", "/p/2")]
# The window edges and the 30-minute session edge; every event within a day of START (capture
# refuses events more than a day after they were received).
_GAPS = [1, 60, 600, 1799, 1800, 1801, 3600]


@st.composite
def journeys(draw):
    rows = []
    for p in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, 2)) * 15 * 3600 + p
        for _ in range(draw(st.integers(1, 9))):
            kind, what = draw(st.sampled_from(_WHAT))
            rows.append((f"u{p}", kind, what, at))
            at += draw(st.sampled_from(_GAPS))  # one person's events never share an instant
    before = draw(st.booleans())
    query = {
        "step": draw(st.sampled_from(["A", "B", "*", "Page Viewed"] if before else [None, "A", "B", "*"])),
        "direction": "before" if before else "after",
        "window": draw(st.sampled_from([600, 1800, 3600, "session", 7200])),
        "length": draw(st.integers(2, 6)),
        "occurrence": draw(st.sampled_from(["first", "every"])),
        "label": draw(st.sampled_from(["event", "path"])),
        "collapse_repeats": draw(st.booleans()),
        "exclude_events": draw(st.lists(st.sampled_from(["A", "C", "Page Viewed"]), max_size=2, unique=True)),
        "cleaning": draw(st.sampled_from([[], [{"pattern": r"^/p/\d$", "alias": "Product"}]])),
        "limit": draw(st.integers(1, 4)), "node_limit": draw(st.integers(2, 8)), "edge_limit": draw(st.integers(1, 8)),
    }  # fmt: skip
    if query["step"] is None:
        del query["step"]
    if draw(st.booleans()):
        query["from"] = (START + timedelta(hours=draw(st.sampled_from([5, 15, 17])))).isoformat()
    return rows, query


@st.composite
def drop_out_journeys(draw):
    """A random journey with a funnel anchor over A, B, C (every order, windows at the gaps' edges,
    exclusions) in place of the step."""
    rows, query = draw(journeys())
    query.pop("step", None)
    query.pop("occurrence")
    query["direction"] = "after"
    steps = draw(st.lists(st.sampled_from(["A", "B", "C", "Page Viewed"]), min_size=2, max_size=4))
    funnel = {"steps": steps, "dropped_after": draw(st.integers(1, len(steps) - 1)),
              "window": draw(st.sampled_from([60, 1800, 3600, 86400])), "order": draw(st.sampled_from(["ordered", "strict"]))}  # fmt: skip
    if len(steps) > 2 and draw(st.booleans()):
        funnel["exclusions"] = [{"event": draw(st.sampled_from(["A", "B", "C"])), "from_step": 1, "to_step": len(steps)}]
    query["funnel"] = funnel
    return rows, query


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=journeys())
def test_random_journeys(tmp_path_factory, chdb_client, case):
    rows, query = case
    store = _store(tmp_path_factory.mktemp("journeys"), rows)
    try:
        q = {"kind": "paths", "source": "Shop", **query}
        assert run_paths(twin(store, chdb_client)("Shop"), parse_query(q)).to_dict() == store.run(q).to_dict()
    finally:
        store.close()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=drop_out_journeys())
def test_random_drop_out_journeys(tmp_path_factory, chdb_client, case):
    rows, query = case
    store = _store(tmp_path_factory.mktemp("drop-outs"), rows)
    try:
        q = {"kind": "paths", "source": "Shop", **query}
        assert run_paths(twin(store, chdb_client)("Shop"), parse_query(q)).to_dict() == store.run(q).to_dict()
    finally:
        store.close()


# -- cleaning patterns: Python's meaning in RE2, or a clear refusal -------------------------------

PATTERNS = [
    r"^/products/", r"shoe$", r"^/p/\d+$", r"(?i)CART", r"a.b", r"[^/]+\.html?$", r"\w+-\w+", r"^\s*$", r"(?s)a.b",
    r"x{2,3}?", r"[\d.]+", r"[^\W]", r"\Aa|b\Z", r"(?P<n>ab)+c", r"(?a)\bshoe\b", r"[\D]", r"café", r"^/é/ت$", r"\.",
    r"a b", r"[-a]", r"[\]]", r"\x41", r"(?i:é)X", r"^(a|b$)",
]  # fmt: skip
TEXTS = [
    "/products/red", "shoe\n", "shoe", "/p/12", "/p/١٢", "my cart", "a\nb", "axb", "x.htm", "red-shoe", "ü-ß", "",
    "  ", "\u3000", "\x1c", "xxx", "1.5", "_", "Ab", "b", "b\n", "a shoe!", "café", "/é/ت", "/é/ت\n", ".", "a b", "-",
    "]", "A", "ÉX", "abab c",
]  # fmt: skip


@pytest.mark.parametrize("pattern", PATTERNS)
def test_cleaning_patterns_mean_in_clickhouse_what_they_mean_in_python(chdb_client, pattern):
    texts = ", ".join(f"{{t{i}:String}}" for i in range(len(TEXTS)))
    found = chdb_client.arrow(
        f"SELECT t, match(t, {{p:String}}) AS m FROM (SELECT arrayJoin([{texts}]) AS t)",
        {"p": re2_pattern(pattern), **{f"t{i}": t for i, t in enumerate(TEXTS)}},
    ).to_pylist()
    assert {row["t"]: bool(row["m"]) for row in found} == {t: re.search(pattern, t) is not None for t in TEXTS}


@pytest.mark.parametrize(
    ("pattern", "why"),
    [(r"(a)\1", "backreference"), (r"(?=a)", "lookahead"), (r"(?<!a)b", "lookbehind"), (r"a$b", r"\$ before the end"),
     (r"(?m)^a", "MULTILINE"), (r"a{2000}", "above 1000"), (r"\bx", "word boundaries"), (r"(?>a)", "atomic"),
     (r"a*+", "possessive"), (r"[\w\S]", "beside other characters")],
)  # fmt: skip
def test_patterns_re2_cannot_run_are_refused_naming_the_rule(shop, pattern, why):
    _, context = shop
    q = {"kind": "paths", "source": "Shop", "label": "path",
         "cleaning": [{"pattern": "^/products/", "alias": "P"}, {"pattern": pattern, "alias": "X"}]}  # fmt: skip
    with pytest.raises(InvalidInput, match=f"cleaning rule 2: .*{why}") as raised:
        run_paths(context("Shop"), parse_query(q))
    assert raised.value.code == "invalid_query"


def test_paths_after_dropping_out_of_a_funnel_step(shop):
    store, context = shop
    q = {"kind": "paths", "source": "Shop",
         "funnel": {"steps": ["Product Viewed", "Cart Viewed", "Order Completed"], "dropped_after": 2, "window": "1d"}}  # fmt: skip
    want = store.run(q, reuse=False).to_dict()
    assert want["funnel"]["dropped"] == 2  # u2 and u3 viewed the cart and never bought
    assert run_paths(context("Shop"), parse_query(q)).to_dict() == want


_BUY = ["Product Viewed", "Cart Viewed", "Shipping", "Order Completed"]
SHOP_FUNNELS = [
    # Strict: u1's product pages break its attempt after Product Viewed; u2 and u3 go on to Shipping.
    {"funnel": {"steps": _BUY, "dropped_after": 1, "order": "strict", "window": "1d"}, "window": "3d"},
    {"funnel": {"steps": _BUY, "dropped_after": 3, "order": "strict"}, "collapse_repeats": False, "length": 3},
    # Exclusions: Shipping between the product and the cart, Order Completed anywhere.
    {"funnel": {"steps": _BUY, "dropped_after": 2, "window": "1d",
                "exclusions": [{"event": "Shipping", "from_step": 1, "to_step": 2},
                               {"event": "Order Completed", "from_step": 1}]},
     "length": 3, "exclude_events": ["Cart Viewed"]},
    # The range is the entry range: u3's cart (09:00:05) is before it, u2 enters at its second cart
    # and drops out after its second Shipping; u1 buys.
    {"funnel": {"steps": ["Cart Viewed", "Shipping", "Order Completed"], "dropped_after": 2, "window": "1h"},
     "from": "2026-03-02T09:00:15", "to": "2026-03-03", "window": "3d", "length": 3},
    {"funnel": {"steps": ["Product Viewed", "Order Completed"], "dropped_after": 1}, "from": "2026-03-03"},  # nobody
]  # fmt: skip


@pytest.mark.parametrize("query", SHOP_FUNNELS, ids=range(len(SHOP_FUNNELS)))
def test_shop_paths_after_funnel_drop_outs(shop, query):
    store, context = shop
    q = {"kind": "paths", "source": "Shop", **query}
    assert run_paths(context("Shop"), parse_query(q)).to_dict() == store.run(q, reuse=False).to_dict()


# -- the audience compiler on plain relations ----------------------------------------------------
#
# The relations of tests/engine/test_audiences.py (hand-made and generated by hypothesis) loaded
# into ClickHouse as they are: the compiled query must select the plain evaluator's members, one
# row each, and the one-person query must agree for every person.


def _ch_members(client, store, definition, as_of) -> tuple[list[int], dict[int, bool]]:
    events, orders = store
    people = people_of(events, orders)
    with (
        scratch_table(client, _table(events, EVENTS_SCHEMA), prefix="events") as e,
        scratch_table(client, _table(orders, ORDERS_SCHEMA), prefix="orders") as o,
        scratch_table(client, _table(people, PEOPLE_SCHEMA), prefix="people") as p,
    ):
        relations = f"WITH events AS (SELECT * FROM {e}), orders AS (SELECT * FROM {o}), people AS (SELECT * FROM {p})"
        sql, params = compile_audience(definition, as_of)
        got = client.arrow(f"{relations} {sql}", params).column("person").to_pylist()
        one = {}
        for person in {row["person"] for row in people}:
            sql, params = compile_audience(definition, as_of, person)
            one[person] = client.arrow(f"{relations} SELECT count() AS n FROM ({sql})", params).column("n")[0].as_py() > 0
    return got, one


def _table(rows, schema):
    return pa.Table.from_pylist([{name: row.get(name) for name in schema.names} for row in rows], schema=schema)


def _agrees_on_clickhouse(client, store, definition, as_of) -> None:
    events, orders = store
    parsed = parse_audience(definition)
    expected = World(events, orders, people_of(events, orders), as_of).members(parsed.model_dump(by_alias=True))
    got, one = _ch_members(client, store, parsed, as_of)
    assert len(got) == len(set(got))  # one row per member
    assert set(got) == expected
    assert {person for person, member in one.items() if member} == expected


@pytest.mark.parametrize(("name", "definition", "expected"), EXPECTED, ids=[e[0] for e in EXPECTED])
def test_hand_made_audiences(chdb_client, name, definition, expected):
    s = hand_store()
    got, one = _ch_members(chdb_client, (s.events, s.orders), definition, AS_OF)
    assert sorted(got) == sorted(expected)
    assert {person for person, member in one.items() if member} == expected


@settings(max_examples=80, deadline=None, suppress_health_check=_SLOW)
@given(store=stores(), condition=conditions(), as_of=_AS_OF)
def test_each_condition_agrees_with_the_plain_evaluator(chdb_client, store, condition, as_of):
    _agrees_on_clickhouse(chdb_client, store, {"all": [condition]}, as_of)


@settings(max_examples=40, deadline=None, suppress_health_check=_SLOW)
@given(store=stores(), definition=st.lists(nodes, min_size=1, max_size=2).map(lambda xs: {"all": xs}), as_of=_AS_OF)
def test_definitions_agree_with_the_plain_evaluator(chdb_client, store, definition, as_of):
    _agrees_on_clickhouse(chdb_client, store, definition, as_of)


@settings(max_examples=30, deadline=None, suppress_health_check=_SLOW)
@given(store=order_stores(12, 12), percent=st.sampled_from([5, 10, 12.5, 20, 25, 33.3333, 50, 75, 100]),
       by=st.sampled_from(["revenue", "orders"]), within=st.one_of(st.none(), st.integers(1, 10)), as_of=_AS_OF)
def test_top_percent_agrees_with_the_plain_evaluator(chdb_client, store, percent, by, within, as_of):
    condition = {"type": "top_percent", "percent": percent, "by": by}
    if within is not None:
        condition["within_days"] = within
    _agrees_on_clickhouse(chdb_client, store, {"all": [condition]}, as_of)


@settings(max_examples=30, deadline=None, suppress_health_check=_SLOW)
@given(case=rhythms(), min_orders=st.integers(2, 4))
def test_lapsed_agrees_with_the_plain_evaluator(chdb_client, case, min_orders):
    store, factor, as_of = case
    _agrees_on_clickhouse(chdb_client, store, {"all": [{"type": "lapsed", "factor": factor, "min_orders": min_orders}]},
                          as_of)  # fmt: skip


@settings(max_examples=30, deadline=None, suppress_health_check=_SLOW)
@given(calls=st.lists(st.tuples(st.integers(1, 3), st.integers(0, 2),
                                st.dictionaries(st.just("gender"), st.sampled_from(["f", "m", "x", None, 3]))),
                      min_size=1, max_size=12),
       op=st.sampled_from(["equals", "not_equals", "in", "is_set", "is_not_set", "gt"]))  # fmt: skip
def test_trait_agrees_with_the_plain_evaluator(chdb_client, calls, op):
    events = [{"person": p, "ts": _moment(day, 0), "day": _moment(day, 0).date(), "type": "identify",
               "event": None, "traits": json.dumps(traits)} for p, day, traits in calls]  # fmt: skip
    value = {"in": ["m", "x"], "is_set": None, "is_not_set": None, "gt": 2}.get(op, "m")
    _agrees_on_clickhouse(chdb_client, (events, []), {"all": [{"type": "trait", "trait": "gender", "op": op,
                                                               "value": value}]}, _DAY0 + timedelta(5))  # fmt: skip


# -- the audience and customer queries on imported stores -----------------------------------------

AUDIENCE_SEEDS = (1, 4)  # seed 1's lifetime-value fit gives no figure, seed 4's does
CUSTOM = [
    {"all": [{"type": "did", "event": "Product Viewed", "at_least": 2, "within_days": 30,
              "filters": [{"property": "price", "op": "gte", "value": 45}]},
             {"not": {"type": "trait", "trait": "gender", "value": "f"}}]},
    {"all": [{"any": [{"type": "bought_category", "categories": ["Hats"], "within_days": 60},
                      {"type": "did", "event": "Product Added", "per_property": "category", "at_least": 2}]},
             {"type": "trait", "trait": "email", "op": "contains", "value": "EXAMPLE"}]},
    {"all": [{"type": "top_percent", "percent": 25, "by": "orders", "from_date": "2026-02-01"},
             {"type": "did_not_since", "event": "Product Viewed", "anchor": "first",
              "since": {"event": "Order Completed", "filters": [{"property": "total", "op": "gt", "value": 100}]}}]},
]  # fmt: skip


@pytest.fixture(scope="module")
def shops(tmp_path_factory, chdb_client):
    built = {}
    for seed in AUDIENCE_SEEDS:
        store = random_store(tmp_path_factory.mktemp(f"shop{seed}"), seed)
        for key, params in (("cart_abandoners", {}), ("top_customers", {}), ("lapsed", {})):
            store.save_audience(store.source("S"), key, example_definition(key, **params))
        built[seed] = (store, twin(store, chdb_client)("S"))
    yield built
    for store, _ in built.values():
        store.close()


def _same(store, ctx, runner, query) -> dict:
    q = {"source": "S", **query}
    want = store.run(q, reuse=False).to_dict()
    assert runner(ctx, parse_query(q)).to_dict() == want, query
    return want


@pytest.mark.parametrize("seed", AUDIENCE_SEEDS)
def test_audiences_on_random_stores(shops, seed):
    store, ctx = shops[seed]
    last = store.run({"kind": "audience", "source": "S", "definition": CUSTOM[0], "limit": 0}).as_of
    counts = []
    earlier = (last - timedelta(days=20)).isoformat()
    for n, (key, params) in enumerate(CASES):
        for as_of in (None, earlier) if n % 2 else (None,):
            q = {"kind": "audience", "definition": example_definition(key, **params), "as_of": as_of}
            counts.append(_same(store, ctx, run_audience, q)["count"])
    for definition in CUSTOM:
        counts.append(_same(store, ctx, run_audience, {"kind": "audience", "definition": definition})["count"])
    assert sum(1 for n in counts if n > 0) >= len(counts) // 2  # the audiences select people
    for page in ({"limit": 0}, {"limit": 3, "offset": 2}, {"limit": None}, {"limit": 5, "offset": 1000}):
        _same(store, ctx, run_audience, {"kind": "audience", "name": "top_customers", **page})
    result = run_audience(ctx, parse_query({"kind": "audience", "source": "S", "name": "lapsed", "limit": None}))
    assert result.table().equals(store.run({"kind": "audience", "source": "S", "name": "lapsed", "limit": None}).table())


@pytest.mark.parametrize("seed", AUDIENCE_SEEDS)
def test_customers_on_random_stores(shops, seed):
    store, ctx = shops[seed]
    predicted = 0
    for person in range(1, 41, 6):
        answer = _same(store, ctx, run_customer, {"kind": "customer", "person": person, "timeline_limit": 12})
        predicted += answer["prediction"] is not None
    _same(store, ctx, run_customer, {"kind": "customer", "person": 2, "predict": False, "as_of": "2026-02-15",
                                     "timeline_limit": 0})  # fmt: skip
    assert predicted > 0 or seed != 4  # seed 4's fit predicts numbers, so that path is compared


def test_customers_with_rates_refunds_and_updates(tmp_path_factory, chdb_client):
    """The metrics' hand-made store: orders in currencies with rates (one an inverted quote, one
    before its currency's first rate, one without any), partial and full refunds, an updated
    order, a cancelled one, an order sent twice."""
    store = sales_hand_store(tmp_path_factory.mktemp("rates"))
    try:
        ctx = twin(store, chdb_client)("S")
        for person in range(1, 11):
            _same(store, ctx, run_customer, {"kind": "customer", "person": person, "timeline_limit": 30,
                                             "predict": False})  # fmt: skip
        _same(store, ctx, run_audience, {"kind": "audience", "limit": None,
                                         "definition": {"all": [{"type": "did", "event": "Order Completed"}]}})  # fmt: skip
    finally:
        store.close()


def test_a_merged_customer_is_found_every_way(tmp_path_factory, chdb_client):
    store = merge_store(tmp_path_factory.mktemp("merged"))
    try:
        ctx = twin(store, chdb_client)("S")
        (old, new), = store.identities.overrides(store.source("S").id).items()
        ways = [("shopper-7", None), ("phone-7", None), ("Shopper7@Example.com", None), ("shopper7@example.COM", None),
                (new, None), (str(new), None), (old, None), ("shopper-7", "user_id"), ("phone-7", "anonymous_id"),
                ("shopper7@example.com", "email"), (old, "person")]  # fmt: skip
        for person, by in ways:
            answer = _same(store, ctx, run_customer, {"kind": "customer", "person": person, "by": by})
            assert answer["person"] == new
        for query, error in [
            ({"person": "x@y.z"}, NotFound), ({"person": "other-0", "by": "email"}, NotFound),
            ({"person": "99999999999999999999", "by": "person"}, NotFound),
            ({"person": "other-0", "as_of": "2026-03-01"}, NotFound),
        ]:
            q = {"kind": "customer", "source": "S", **query}
            with pytest.raises(error) as embedded:
                store.run(q)
            with pytest.raises(error) as clickhouse:
                run_customer(ctx, parse_query(q))
            assert (clickhouse.value.code, clickhouse.value.message) == (embedded.value.code, embedded.value.message)
    finally:
        store.close()
