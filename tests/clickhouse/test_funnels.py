"""Funnels on ClickHouse (masar/store/clickhouse/funnels.py) against the embedded engine.

Two levels:

* the per-unit state machine (one ``arrayFold``) against the plain reference
  (tests/engine/reference_funnel.py) on randomized units with many ties, window edges, events
  matching several steps and exclusions at the same instant — as tests/engine/test_funnel_kernel.py
  does for the numba kernel;
* whole queries: the same store in the embedded engine and in ClickHouse (chdb), every option of
  FunnelQuery and FunnelPeopleQuery, ``to_dict()`` identical.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

import masar
from masar.demo.load import load_demo
from masar.engine import parse_query
from masar.errors import InvalidInput
from masar.store.clickhouse.funnels import RUNNERS, _Compiler, _totals, units_sql
from masar.store.clickhouse.predicates import Predicates
from tests.clickhouse.twins import twin
from tests.engine import reference_funnel as ref
from tests.engine.test_funnel_clickhouse import tie_store
from tests.engine.test_funnel_kernel import Case, cases

pytestmark = pytest.mark.timeout(300)
_HEALTH = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
# Every example is one ClickHouse query (the larger the SQL, the longer ClickHouse takes to plan
# it): fewer examples than the numba kernel's tests, different ones every run.
FAST = settings(max_examples=80, deadline=None, suppress_health_check=_HEALTH)
SLOW = settings(max_examples=30, deadline=None, suppress_health_check=_HEALTH)


# -- the state machine against the reference --------------------------------------------------------


def _compiler(case: Case, counting: str = "uniques") -> _Compiler:
    """A compiler whose window, gaps, optional steps and exclusions are the case's (µs units)."""
    f = case.funnel
    steps = [{"event": f"s{k}", "optional": f.optional[k]} for k in range(f.steps)]
    q = parse_query({"kind": "funnel", "source": "x", "steps": steps, "order": f.order, "counting": counting})
    c = _Compiler(None, q, [], Predicates())
    c.window = f.window
    c.gaps = list(f.gaps)
    c.ex = list(f.exclusions)
    return c


def _grouped(case: Case) -> str | None:
    """The case's units as the compiler's grouped relation (``person``, ``evs``): each event's
    message id is its position, so ties fall in the stored order, as in the reference."""
    rows = []
    for u, (ts, mask, exmask) in enumerate(case.units):
        for i, (t, m, x) in enumerate(zip(ts, mask, exmask, strict=True)):
            rows.append(f"({u}, {t}, '{i:03d}', {m}, {x})")
    if not rows:
        return None
    low = "if(m = 0, 64, bitCount(bitXor(m, m - 1)) - 1)"
    sort = "(e.1, e.2, e.3)" if case.funnel.order != "unordered" else "(e.1, e.3)"
    return (
        f"SELECT person, arraySort(e -> {sort}, groupArray((t, toUInt8({low}), mid, m, x, "
        f"CAST(NULL AS Nullable(String))))) AS evs FROM values('person UInt32, t Int64, mid String, m UInt64, x UInt64', "
        f"{', '.join(rows)}) GROUP BY person"
    )


def fold_attempts(client, case: Case) -> dict[int, list[tuple[int, list[int]]]]:
    """Counting totals: (level, chain) of each attempt per unit, in order, from the SQL fold."""
    grouped = _grouped(case)
    if grouped is None:
        return {}
    c = _compiler(case, "totals")
    table = client.arrow(
        f"SELECT person, level, arrayMap(i -> if(i > 0, toInt32(evs[i].3), -1), pos) AS chain "
        f"FROM ({_totals(c, grouped, ['person'])})"
    )
    out: dict[int, list[tuple[int, list[int]]]] = {}
    for r in table.to_pylist():
        out.setdefault(r["person"], []).append((r["level"], r["chain"]))
    return out


def check_attempts(client, case: Case) -> None:
    got = fold_attempts(client, case)
    for g, (ts, mask, exmask) in enumerate(case.units):
        want = ref.attempts(ts, mask, exmask, case.funnel)
        mine = got.get(g, [])
        assert [lv for lv, _ in mine] == [lv for lv, _ in want], (g, mine, want, case)
        for (level, chain), (_, allowed) in zip(mine, want, strict=True):
            assert chain[: level + 1] in allowed, (g, chain, allowed, case)


@given(cases("ordered", totals=True))
@SLOW
def test_ordered_totals_fold_against_reference(chdb_client, case):
    check_attempts(chdb_client, case)


@given(cases("strict", totals=True))
@SLOW
def test_strict_totals_fold_against_reference(chdb_client, case):
    check_attempts(chdb_client, case)


def fold_levels(client, case: Case, vectorized: bool = False) -> list[tuple[int, list[int]]]:
    """(level, chain as indices into the unit's events) per unit, from the SQL fold (or the
    whole-array computation of ordered funnels without exclusions and optional steps)."""
    grouped = _grouped(case)
    if grouped is None:
        return []
    c = _compiler(case)
    if vectorized:
        assert c.vectorized()
        vector = c.ordered_sql(grouped) if case.funnel.order == "ordered" else c.strict_vector_sql(grouped)
        table = client.arrow(
            f"SELECT person, r.1 AS level, arrayMap(i -> if(i > 0, toInt32(evs[i].3), -1), r.3) AS chain "
            f"FROM ({vector}) ORDER BY person"
        )
        got = {r["person"]: (r["level"], r["chain"]) for r in table.to_pylist()}
        return [got.get(u, (-1, [])) for u in range(len(case.units))]
    fold = c.unordered() if case.funnel.order == "unordered" else c.fold()
    level, pos = ("r.1", "r.3") if case.funnel.order == "unordered" else ("r.6", "r.8")
    table = client.arrow(
        f"SELECT person, {level} AS level, arrayMap(i -> if(i > 0, toInt32(evs[i].3), -1), {pos}) AS chain "
        f"FROM (SELECT person, evs, {fold} AS r FROM ({grouped})) ORDER BY person"
    )
    got = {r["person"]: (r["level"], r["chain"]) for r in table.to_pylist()}
    return [got.get(u, (-1, [])) for u in range(len(case.units))]


def check_units(client, case: Case, vectorized: bool = False) -> None:
    got = fold_levels(client, case, vectorized)
    for g, (ts, mask, exmask) in enumerate(case.units):
        want = ref.unit(ts, mask, exmask, case.funnel)
        level, chain = got[g] if g < len(got) else (-1, [])
        if not ts:
            level = -1
        assert level == want.level, (g, level, want.level, case)
        if want.level >= 0:
            assert chain[: want.level + 1] in want.reported, (g, chain, want.reported, case)
            assert all(e == -1 for e in chain[want.level + 1 :]), (g, chain, case)


@given(cases("ordered"))
@FAST
def test_ordered_fold_against_reference(chdb_client, case):
    check_units(chdb_client, case)


@given(cases("ordered", plain=True))
@FAST
def test_plain_ordered_fold_against_reference(chdb_client, case):
    check_units(chdb_client, case)


@given(cases("ordered", plain=True))
@FAST
def test_plain_ordered_arrays_against_reference(chdb_client, case):
    check_units(chdb_client, case, vectorized=True)


@given(cases("ordered"))
@FAST
def test_ordered_with_options_arrays_against_reference(chdb_client, case):
    # optional steps, time limits between steps, exclusions
    check_units(chdb_client, case, vectorized=True)


@given(cases("strict"))
@FAST
def test_strict_arrays_against_reference(chdb_client, case):
    check_units(chdb_client, case, vectorized=True)


@given(cases("strict"))
@SLOW
def test_strict_fold_against_reference(chdb_client, case):
    check_units(chdb_client, case)


@given(cases("unordered"))
@FAST
def test_unordered_fold_against_reference(chdb_client, case):
    check_units(chdb_client, case)


@given(cases("ordered", skipping=True))
@SLOW
def test_ordered_skipping_optional_from_steps_against_reference(chdb_client, case):
    # An exclusion from an optional step in every case: both SQL paths (the kernel's ``blocked``).
    check_units(chdb_client, case)
    check_units(chdb_client, case, vectorized=True)


@given(cases("strict", skipping=True))
@SLOW
def test_strict_skipping_optional_from_steps_against_reference(chdb_client, case):
    # The rule never applies in strict order (strict_vector_sql says why): both paths must agree.
    check_units(chdb_client, case)
    check_units(chdb_client, case, vectorized=True)


@given(cases("ordered", totals=True, skipping=True))
@SLOW
def test_ordered_totals_skipping_optional_from_steps_against_reference(chdb_client, case):
    check_attempts(chdb_client, case)


@given(cases("strict", totals=True, skipping=True))
@SLOW
def test_strict_totals_skipping_optional_from_steps_against_reference(chdb_client, case):
    check_attempts(chdb_client, case)


def test_strict_exclusions_case_the_numba_kernel_misses(chdb_client):
    # tests/engine/test_funnel_kernel.py pins this case as the numba kernel's bug; both SQL paths
    # follow the reference (level 2 for the second unit).
    case = Case(
        ref.Funnel(steps=5, window=1, order="strict", gaps=[0, 0, 0, 0, 0], optional=[False] * 5,
                   exclusions=[(0, 1), (0, 2)]),
        [([0, 0, 0, 0, 0, 0, 0], [1, 0, 1, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0]), ([0, 1, 2, 2], [0, 1, 2, 4], [0, 0, 2, 0])],
    )  # fmt: skip
    check_units(chdb_client, case)
    check_units(chdb_client, case, vectorized=True)




# -- whole queries: the embedded engine and ClickHouse on the same store ----------------------------


DEMO = "Masar Demo Store"
SHOP = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory, chdb_client):
    """The demo store (3,000 visitors over 30 days: identify calls with traits, sessions, channels,
    products, e-commerce properties) in the embedded store and twinned into ClickHouse."""
    store = masar.open(tmp_path_factory.mktemp("funnels") / "data")
    load_demo(store, visitors=3000, days=30)
    context = twin(store, chdb_client)
    days = store.run({"kind": "funnel", "source": DEMO, "steps": ["Page Viewed", "Page Viewed"], "trend": "day"})
    periods = [row["period"] for row in days.to_dict()["trend"]]
    yield store, context(DEMO), periods
    store.close()


def same(demo, query: dict) -> dict:
    """The query's result from both engines, asserted identical; returns it."""
    store, ctx, _ = demo
    query = {"kind": "funnel", "source": DEMO, **query}
    embedded = store.run(query, reuse=False).to_dict()
    parsed = parse_query(query)
    clickhouse = RUNNERS[parsed.kind](ctx, parsed).to_dict()
    assert clickhouse == embedded
    return embedded


def _alternatives():
    return {"name": "Browse", "any_of": [
        {"event": "Page Viewed", "filters": [{"property": "channel", "op": "eq", "value": "Direct"}]},
        {"event": "Product List Viewed", "filters": [{"property": "device_type", "op": "in", "value": ["mobile", "tablet"]}]},
    ]}  # fmt: skip


QUERIES = {
    "plain": {"steps": SHOP},
    "window 1 hour": {"steps": SHOP, "window": "1h"},
    "any_of and filters": {"steps": [
        _alternatives(),
        {"event": "Product Added", "filters": [{"property": "price", "op": "gt", "value": 100}]},
        {"event": "Order Completed", "filters": [{"property": "revenue", "op": "gte", "value": 50}]},
    ]},  # fmt: skip
    "event property filters": {"steps": [
        {"event": "Product Viewed", "filters": [{"property": "category", "op": "contains", "value": "PERF"}]},
        {"event": "Product Added", "filters": [{"property": "properties.brand", "op": "not_in", "value": ["Bayt"]}]},
        {"event": "Order Completed", "filters": [{"property": "coupon", "op": "is_not_set"}]},
    ]},  # fmt: skip
    "person traits": {"steps": [
        {"event": "Product Viewed", "filters": [{"property": "person.gender", "op": "eq", "value": "female"}]},
        {"event": "Product Added", "filters": [{"property": "person.city", "op": "neq", "value": "Riyadh"}]},
        "Order Completed",
    ]},  # fmt: skip
    "numbers as text": {"steps": [
        {"event": "Product Viewed", "filters": [{"property": "price", "op": "eq", "value": 119}]},
        {"event": "Product Added", "filters": [{"property": "quantity", "op": "neq", "value": "2"}]},
    ]},  # fmt: skip
    "any event": {"steps": ["Product Viewed", "*", "Product Added", "*"], "window": "1h"},
    "optional step": {"steps": ["Product Viewed", {"event": "Cart Viewed", "optional": True}, "Checkout Started",
                                {"event": "Payment Info Entered", "optional": True}, "Order Completed"]},
    "first time": {"steps": ["Product Viewed", {"event": "Order Completed", "first_time": True}]},
    "first time step 1": {"steps": [{"event": "Page Viewed", "first_time": True}, "Product Viewed"],
                          "from": "-", "to": "-"},
    "time between steps": {"steps": ["Product Viewed", {"event": "Product Added", "max_seconds_from_previous": "10m"},
                                     {"event": "Order Completed", "max_seconds_from_previous": "1h"}]},
    "strict": {"steps": ["Page Viewed", "Product Viewed", "Product Added"], "order": "strict"},
    "strict optional": {"steps": ["Page Viewed", {"event": "Products Searched", "optional": True},
                                  "Product List Viewed", "Page Viewed"], "order": "strict"},
    "unordered": {"steps": ["Product Viewed", "Product Added", "Signed Up"], "order": "unordered", "window": "1d"},
    "sessions": {"steps": SHOP, "counting": "sessions"},
    "totals": {"steps": ["Product Viewed", "Product Added"], "counting": "totals", "window": "1h"},
    "totals strict": {"steps": ["Page Viewed", "Product Viewed", "Page Viewed"], "counting": "totals",
                      "order": "strict", "window": "1h"},
    "totals exclusions": {"steps": SHOP, "counting": "totals",
                          "exclusions": [{"event": "Product Removed", "from_step": 2}]},
    "exclusions": {"steps": SHOP, "exclusions": [{"event": "Product Removed", "from_step": 2},
                                                 {"event": "Products Searched", "from_step": 1, "to_step": 3}]},
    "strict exclusions": {"steps": ["Page Viewed", "Product Viewed", "Product Added", "Page Viewed"], "order": "strict",
                          "exclusions": [{"event": "Product Added", "from_step": 2, "to_step": 4,
                                          "filters": [{"property": "price", "op": "gt", "value": 300}]}]},
    "hold constant": {"steps": ["Product Viewed", "Product Added"], "hold_constant": ["product_id"],
                      "breakdown": "category"},
    "hold constant two": {"steps": SHOP, "hold_constant": ["device_type", "person.gender"]},
    "hold constant sessions": {"steps": ["Product Viewed", "Product Added"], "hold_constant": ["category"],
                               "counting": "sessions"},
    "breakdown first touch": {"steps": SHOP, "breakdown": "device_type"},
    "breakdown last touch with other": {"steps": SHOP, "breakdown": {"property": "channel", "attribution": "last_touch",
                                                                     "limit": 2}},
    "breakdown step": {"steps": SHOP, "breakdown": {"property": "category", "attribution": "step", "step": 2,
                                                    "limit": 3}},
    "breakdown all events": {"steps": ["Product Viewed", "Product Added"],
                             "breakdown": {"property": "product_id", "attribution": "all_events", "limit": 4}},
    "breakdown trait": {"steps": SHOP, "breakdown": "person.age_band"},
    "breakdown money": {"steps": ["Product Added", "Order Completed"], "breakdown": {"property": "price", "limit": 5}},
    "breakdown unordered": {"steps": ["Product Viewed", "Signed Up"], "order": "unordered", "breakdown": "os"},
    "trend day": {"steps": SHOP, "trend": "day"},
    "trend week sessions": {"steps": SHOP, "trend": "week", "counting": "sessions"},
    "trend month totals": {"steps": ["Product Viewed", "Product Added"], "trend": "month", "counting": "totals"},
}


def _dated(demo, query: dict) -> dict:
    """Dates from the data: "-" in from/to is the data's 10th and 20th day."""
    _, _, periods = demo
    out = dict(query)
    if out.get("from") == "-":
        out["from"], out["to"] = periods[10], periods[20]
    return out


@pytest.mark.parametrize("name", list(QUERIES))
def test_funnel_same_as_embedded(demo, name):
    result = same(demo, _dated(demo, QUERIES[name]))
    assert result["steps"][0]["count"] > 0  # the data exercises the query


def test_date_range_compare_and_trend(demo):
    _, _, periods = demo
    result = same(demo, {"steps": SHOP, "from": periods[8], "to": periods[15], "trend": "day",
                         "compare": {"from": periods[0], "to": periods[7]}, "breakdown": "device_type"})  # fmt: skip
    assert result["compare"]["steps"][0]["count"] > 0 and result["time_to_convert"]["converted"] > 0
    # datetimes, read in the source's time zone
    same(demo, {"steps": SHOP, "from": f"{periods[3]}T06:30:00", "to": f"{periods[9]}T18:00:00", "window": "2d"})


PEOPLE = {
    "reached 2": {"steps": SHOP, "step": 2},
    "dropped 3": {"steps": SHOP, "step": 3, "status": "dropped"},
    "page 2": {"steps": SHOP, "step": 1, "limit": 25, "offset": 30},
    "past the end": {"steps": SHOP, "step": 1, "offset": 100_000},
    "breakdown value": {"steps": SHOP, "step": 2, "breakdown": "device_type", "breakdown_value": "desktop"},
    "optional step": {"steps": ["Product Viewed", {"event": "Cart Viewed", "optional": True}, "Order Completed"],
                      "step": 2},
    "sessions": {"steps": SHOP, "step": 2, "counting": "sessions", "limit": 500},
    "totals": {"steps": ["Product Viewed", "Product Added"], "step": 2, "counting": "totals", "limit": 500},
    "unordered dropped": {"steps": ["Product Viewed", "Product Added", "Signed Up"], "order": "unordered",
                          "step": 2, "status": "dropped"},
}


@pytest.mark.parametrize("name", list(PEOPLE))
def test_funnel_people_same_as_embedded(demo, name):
    result = same(demo, {"kind": "funnel_people", **PEOPLE[name]})
    if name != "past the end":
        assert result["people"]


def test_bad_people_steps_are_refused(demo):
    store, ctx, _ = demo
    for query, words in [({"step": 9}, "between 1 and 4"), ({"step": 1, "status": "dropped"}, "nobody drops out")]:
        parsed = parse_query({"kind": "funnel_people", "source": DEMO, "steps": SHOP, **query})
        with pytest.raises(InvalidInput, match=words):
            RUNNERS["funnel_people"](ctx, parsed)


# -- many ties: persons whose events sit on a 10-second grid (tests/engine/test_funnel_clickhouse.py) --

TIES = {
    "ordered": {"steps": ["A", "B", "C", "D"]},
    "repeated steps": {"steps": ["A", "*", "A", "B", "*"]},
    "optional and gaps": {"steps": ["A", {"event": "B", "optional": True}, {"event": "C", "max_seconds_from_previous": 20},
                                    "D"]},
    "exclusions": {"steps": ["A", "B", "C"], "exclusions": [{"event": "D", "from_step": 1}, {"event": "E", "from_step": 2}]},
    "strict": {"steps": ["A", "B", "C"], "order": "strict", "exclusions": [{"event": "D", "from_step": 1}]},
    "unordered": {"steps": ["A", "B", "C", "D"], "order": "unordered"},
    "totals": {"steps": ["A", "B", "C"], "counting": "totals", "exclusions": [{"event": "E", "from_step": 2}]},
    "totals strict": {"steps": ["A", "B"], "counting": "totals", "order": "strict"},
    "first time": {"steps": [{"event": "A", "first_time": True}, "B", {"event": "C", "first_time": True}]},
    "hold constant": {"steps": ["A", "B", "C"], "hold_constant": ["amount"],
                      "breakdown": {"property": "amount", "attribution": "step", "step": 2}},
}


@pytest.fixture(scope="module")
def ties(tmp_path_factory, chdb_client):
    store, _, _ = tie_store(tmp_path_factory.mktemp("ties"))
    yield store, twin(store, chdb_client)("Shop")
    store.close()


@pytest.mark.parametrize("name", list(TIES))
def test_ties_same_as_embedded(ties, name):
    store, ctx = ties
    for kind, extra in [("funnel", {"trend": "day"}), ("funnel_people", {"step": 2, "limit": 1000}),
                        ("funnel_people", {"step": 3, "status": "dropped", "limit": 1000})]:  # fmt: skip
        query = {"kind": kind, "source": "Shop", "window": 60, **TIES[name], **extra}
        if kind == "funnel_people" and len(query["steps"]) < 3:
            query["step"] = 2
            query.pop("status", None)
        parsed = parse_query(query)
        assert RUNNERS[kind](ctx, parsed).to_dict() == store.run(query, reuse=False).to_dict(), (name, kind)


def test_levels_equal_window_funnel(ties):
    """Where ClickHouse's windowFunnel applies (ordered, uniques, no exclusions, optional steps,
    first-time steps or times between steps), the fold's level is windowFunnel's."""
    _, ctx = ties
    q = parse_query({"kind": "funnel", "source": "Shop", "steps": ["A", "*", "B", "C"], "window": 30})
    units = units_sql(ctx, q)
    conditions = "event = 'A', true, event = 'B', event = 'C'"
    table = ctx.arrow(
        f"SELECT count() AS n, countIf(ifNull(u.level + 1, 0) != w.level) AS different FROM ("
        f"SELECT person, windowFunnel(30000000)(toUInt64(toUnixTimestamp64Micro(ts)), {conditions}) AS level "
        f"FROM {ctx.events} WHERE type IN ('track', 'page', 'screen') GROUP BY person) AS w "
        f"LEFT JOIN ({units.sql}) AS u ON u.person = w.person",
        units.params,
    ).to_pylist()[0]
    assert table["n"] == 400 and table["different"] == 0


# -- predicates: filters and values event by event ---------------------------------------------------

FILTERS = [
    {"property": "device_type", "op": "eq", "value": "mobile"},
    {"property": "device_type", "op": "neq", "value": "mobile"},
    {"property": "channel", "op": "in", "value": ["Direct", "Paid Social"]},
    {"property": "channel", "op": "not_in", "value": ["Direct"]},
    {"property": "url", "op": "contains", "value": "PRODUCTS"},
    {"property": "title", "op": "not_contains", "value": "a"},
    {"property": "price", "op": "gt", "value": 150},
    {"property": "price", "op": "lte", "value": 119},
    {"property": "price", "op": "eq", "value": 119},
    {"property": "price", "op": "eq", "value": "119.000"},
    {"property": "price", "op": "in", "value": ["119.000", "149"]},
    {"property": "quantity", "op": "gte", "value": 1},
    {"property": "category", "op": "eq", "value": "Perfumes"},
    {"property": "properties.price", "op": "eq", "value": 119},
    {"property": "properties.price", "op": "eq", "value": "119.0"},
    {"property": "properties.price", "op": "contains", "value": ".0"},
    {"property": "products", "op": "contains", "value": "product_id"},
    {"property": "products", "op": "is_set"},
    {"property": "utm_campaign", "op": "is_not_set"},
    {"property": "cart_id", "op": "is_set"},
    {"property": "person.gender", "op": "eq", "value": "female"},
    {"property": "person.age_band", "op": "not_in", "value": ["25-34"]},
    {"property": "person.email", "op": "contains", "value": "EXAMPLE.ORG"},
    {"property": "person.created_at", "op": "is_set"},
    {"property": "step", "op": "gte", "value": 2},
]


def test_filters_pass_the_same_events(demo):
    from masar.engine.matching import filter_true
    from masar.model.queries import PropertyFilter

    store, ctx, _ = demo
    embedded = store.query_context(store.source(DEMO))
    p = Predicates()
    conditions = [p.filter(PropertyFilter(**f)) for f in FILTERS]
    columns = ", ".join(f"countIf({c}) AS c{i}" for i, c in enumerate(conditions))
    row = ctx.arrow(
        f"SELECT {columns} FROM {ctx.events} AS e {p.joins(ctx.events, 'e')} WHERE e.type IN ('track', 'page', 'screen')",
        p.params,
    ).to_pylist()[0]
    for i, f in enumerate(FILTERS):
        want = int(filter_true(embedded, PropertyFilter(**f)).sum())
        assert row[f"c{i}"] == want, f
        assert 0 < want < embedded.frame.rows or f["op"] in ("neq", "not_in", "not_contains", "is_not_set"), f


@pytest.mark.parametrize("name", ["device_type", "price", "quantity", "category", "products", "person.age_band",
                                  "properties.price"])  # fmt: skip
def test_values_read_the_same(demo, name):
    from collections import Counter

    from masar.engine.properties import resolve

    store, ctx, _ = demo
    embedded = store.query_context(store.source(DEMO))
    codes, values = embedded.codes(resolve(name))
    want = Counter(values[c] if c >= 0 else None for c in codes.tolist())
    p = Predicates()
    rows = ctx.arrow(
        f"SELECT {p.text(name)} AS v, count() AS n FROM {ctx.events} AS e {p.joins(ctx.events, 'e')} "
        f"WHERE e.type IN ('track', 'page', 'screen') GROUP BY v",
        p.params,
    ).to_pylist()
    assert {r["v"]: r["n"] for r in rows} == dict(want)
    assert len(want) > 2


def test_a_stopped_attempt_takes_no_later_step(chdb_client):
    # A@0, exclusion X (between steps 1 and 3) @1, B@2: the attempt stopped at X cannot take B,
    # as the numba kernel has it (docs/funnels.md, Exclusions). Both SQL paths, and the kernel.
    from tests.engine.test_funnel_kernel import levels_of

    funnel = ref.Funnel(3, 10, exclusions=[(0, 2)])
    case = Case(funnel, [([0, 1, 2], [1, 0, 2], [0, 1, 0])])
    assert fold_levels(chdb_client, case) == fold_levels(chdb_client, case, vectorized=True) == [(0, [0, -1, -1])]
    assert levels_of(funnel, [0, 1, 2], [1, 0, 2], [0, 1, 0]) == (0, [0, -1, -1])


# Found by hypothesis: an exclusion whose from-step is an optional step that the attempt skips.
# docs/funnels.md: "If from_step was an optional step that was skipped, the last step done before
# it is used" — so X below stops the attempt A → (B skipped) → C, and the reference says level 0
# (step 1). The numba kernel marks such chains ``blocked``; the SQL carries the same rule (the
# fold's field 1, the whole-array exclusion counts since the skipped-from chain's instant).
_SKIPPED_FROM = ref.Funnel(steps=3, window=10, optional=[False, True, False], exclusions=[(1, 2)])


def test_exclusion_from_a_skipped_optional_step(chdb_client):
    # A, X, C: stopped at A. A, X, B, C: B after the exclusion is the from-step, C counts. A, then
    # X and C at one instant: X is not strictly before C, C counts. (tests/engine/test_funnel_kernel.py)
    case = Case(_SKIPPED_FROM, [([0, 1, 2], [1, 0, 4], [0, 1, 0]), ([0, 1, 2, 3], [1, 0, 2, 4], [0, 1, 0, 0]),
                                ([0, 2, 2], [1, 0, 4], [0, 1, 0])])  # fmt: skip
    assert [ref.unit(*u, _SKIPPED_FROM).level for u in case.units] == [0, 2, 2]
    check_units(chdb_client, case)
    check_units(chdb_client, case, vectorized=True)


def test_exclusion_from_a_skipped_optional_step_totals(chdb_client):
    case = Case(ref.Funnel(steps=3, window=2, optional=[False, True, False], exclusions=[(1, 2), (0, 1)]),
                [([0, 1, 1, 2], [1, 1, 1, 4], [0, 1, 0, 0])])  # fmt: skip
    assert [level for level, _ in ref.attempts(*case.units[0], case.funnel)] == [0]
    check_attempts(chdb_client, case)
    found = Case(ref.Funnel(steps=4, window=2, optional=[False, True, False, False], exclusions=[(1, 2), (0, 1)]),
                 [([0, 0, 0, 0, 0, 1, 2], [0, 1, 1, 1, 0, 1, 4], [0, 0, 0, 0, 0, 1, 0])])  # fmt: skip
    assert [level for level, _ in ref.attempts(*found.units[0], found.funnel)] == [0]
    check_attempts(chdb_client, found)


def test_exclusion_from_a_skipped_optional_step_sql_agrees_with_kernel(chdb_client):
    from tests.engine.test_funnel_kernel import levels_of

    case = Case(_SKIPPED_FROM, [([0, 1, 2], [1, 0, 4], [0, 1, 0])])
    kernel = levels_of(_SKIPPED_FROM, [0, 1, 2], [1, 0, 4], [0, 1, 0])
    assert kernel == (0, [0, -1, -1])
    assert fold_levels(chdb_client, case) == fold_levels(chdb_client, case, vectorized=True) == [kernel]
