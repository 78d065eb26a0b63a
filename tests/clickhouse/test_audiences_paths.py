"""Audiences, the customer profile and journeys (paths) on ClickHouse equal the embedded store's:
the same stores twinned into chdb (tests/clickhouse/twins.py), every query run by both, results
compared whole (``to_dict()``)."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import masar
from masar.demo.load import load_demo
from masar.engine import parse_query
from masar.errors import InvalidInput
from masar.store.clickhouse.paths import run_paths
from masar.store.clickhouse.regex import re2_pattern
from tests.clickhouse.twins import twin
from tests.engine.test_paths import SHOP, START, _store


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


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=journeys())
def test_random_journeys(tmp_path_factory, chdb_client, case):
    rows, query = case
    store = _store(tmp_path_factory.mktemp("journeys"), rows)
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


@pytest.mark.xfail(strict=True, reason="needs the ClickHouse funnel compiler (ch-funnels branch)")
def test_paths_after_dropping_out_of_a_funnel_step(shop):
    store, context = shop
    q = {"kind": "paths", "source": "Shop",
         "funnel": {"steps": ["Product Viewed", "Cart Viewed", "Order Completed"], "dropped_after": 2, "window": "1d"}}  # fmt: skip
    assert run_paths(context("Shop"), parse_query(q)).to_dict() == store.run(q, reuse=False).to_dict()
