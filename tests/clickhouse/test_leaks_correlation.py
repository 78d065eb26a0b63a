"""The leak finder and correlation on ClickHouse (masar/store/clickhouse/leaks.py, correlation.py)
against the embedded engine: the same store in both, ``to_dict()`` identical.

Stores: synthetic sessions with a planted break (tests/engine/leak_stores.py, found and clean),
the hand-built store of tests/engine/test_leaks.py (every number worked by hand), the demo store
(identify calls with traits, sessions, channels, products and orders) and the hand-worked shop
of tests/engine/test_correlation.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import masar
from masar.demo.load import load_demo
from masar.engine import parse_query
from masar.engine.leaks import recent_horizon
from masar.errors import InvalidInput
from masar.store.clickhouse.correlation import RUNNERS as CORRELATION
from masar.store.clickhouse.leaks import RUNNERS as LEAKS
from tests.clickhouse.twins import twin
from tests.engine.leak_stores import STEPS, Break, synthetic_events, write_store
from tests.engine.test_correlation import SHOP, _store
from tests.engine.test_leaks import _hand_built

pytestmark = pytest.mark.timeout(300)
RUNNERS = {**LEAKS, **CORRELATION}
DEMO = "Masar Demo Store"
SHOP_STEPS = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed"]
PAYMENT = [{"event": "Checkout Step Completed", "filters": [{"property": "step", "op": "eq", "value": 2}]},
           "Payment Info Entered", "Order Completed"]  # fmt: skip


def same(store, ctx, query: dict) -> dict:
    """The query's result from both backends; they must be identical."""
    want = store.run(query, reuse=False).to_dict()
    got = RUNNERS[query["kind"]](ctx, parse_query(query)).to_dict()
    assert got == want
    return want


# -- the recent horizon: numpy's quantile from two order statistics ---------------------------------


def test_recent_horizon_equals_numpys_quantile():
    rng = np.random.default_rng(5)
    q = parse_query({"kind": "leaks", "source": "x", "steps": ["a", "b"], "window": "30d"})
    for n in [1, 2, 3, 7, 99, 100, 101, 1000, 4321]:
        for _ in range(20):
            took = rng.integers(0, 10**11, size=n)
            want = min(q.window * 1_000_000, int(np.quantile(took, 0.99)))
            assert recent_horizon(q, n, lambda ranks, took=took: np.sort(took)[ranks]) == want
    assert recent_horizon(q, 0, lambda ranks: []) == q.window * 1_000_000


# -- the leak finder ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broken(tmp_path_factory, chdb_client):
    """40 days, 300 sessions a day; Android breaks checkout → order on days 12–22."""
    data = synthetic_events(3, days=40, sessions_per_day=300, broken=Break(device=1, step=2, first=12, last=22,
                                                                             rate=0.2))  # fmt: skip
    store, _ = write_store(tmp_path_factory.mktemp("broken"), data)
    yield store, twin(store, chdb_client)("Shop")
    store.close()


BROKEN = {
    "default": {},
    "uniques": {"counting": "uniques"},
    "totals": {"counting": "totals", "min_sample": 30},
    "holm_small_effect": {"correction": "holm", "min_effect": 0.1, "alpha": 0.2},
    "few_values_short_periods": {"max_values": 2, "min_days": 1, "min_sample": 20},
    "no_default_segments": {"default_segments": False, "segment_by": ["browser", "country"]},
    "dated": {"from": "2026-03-05", "to": "2026-03-30"},
    "window_and_limit": {"window": "2h", "limit": 1, "min_effect": 0.05},
    "optional_step": {"steps": [STEPS[0], {"event": STEPS[1], "optional": True}, STEPS[2], STEPS[3]]},
    "no_orders_at_the_end": {"steps": STEPS[:3], "min_effect": 0.1},
    "strict": {"order": "strict"},
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_leaks_on_a_planted_break(broken, name):
    store, ctx = broken
    result = same(store, ctx, {"kind": "leaks", "source": "Shop", "steps": STEPS, **BROKEN[name]})
    assert result["transitions"] and result["tests"] > 0
    if name == "default":
        assert result["findings"], "the planted break is found"


def test_leaks_by_hand_store(tmp_path, chdb_client):
    store, _ = _hand_built(tmp_path)
    ctx = twin(store, chdb_client)("Shop")
    query = {"kind": "leaks", "source": "Shop", "steps": ["Product Added", "Checkout Started", "Order Completed"]}
    [f] = same(store, ctx, query)["findings"]
    assert f["lost_revenue"] == pytest.approx(9000)
    same(store, ctx, {**query, "min_sample": 5, "min_effect": 0.05, "alpha": 0.5})
    store.close()


def test_leaks_on_data_without_a_break(tmp_path, chdb_client):
    # Smaller than the engine's clean stores (tests/engine/test_leaks.py): one stable difference
    # (Paid Social at checkout) passes here, on both backends alike.
    store, _ = write_store(tmp_path / "data", synthetic_events(11, days=30, sessions_per_day=300))
    ctx = twin(store, chdb_client)("Shop")
    result = same(store, ctx, {"kind": "leaks", "source": "Shop", "steps": STEPS})
    assert result["tests"] > 100 and len(result["findings"]) <= 1
    store.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory, chdb_client):
    store = masar.open(tmp_path_factory.mktemp("demo"))
    load_demo(store, visitors=3000, days=30)
    yield store, twin(store, chdb_client)(DEMO)
    store.close()


DEMO_LEAKS = {
    "shop_category": {"steps": SHOP_STEPS, "segment_by": ["category"], "min_sample": 20},
    "payment": {"steps": PAYMENT, "min_sample": 15, "alpha": 0.2, "min_effect": 0.2},
    "traits_and_properties": {"steps": SHOP_STEPS, "segment_by": ["person.plan", "properties.size", "category"],
                              "min_sample": 10, "min_effect": 0.1, "alpha": 0.5},
    "uniques_first_time": {"steps": [{"event": "Product Viewed", "first_time": True}, *SHOP_STEPS[1:]],
                           "counting": "uniques", "min_sample": 10, "alpha": 0.5},
    "exclusion_and_hold": {"steps": SHOP_STEPS, "exclusions": [{"event": "Product Removed", "from_step": 2}],
                           "hold_constant": ["device_type"], "min_sample": 10, "alpha": 0.5},
    "totals_filtered": {"steps": [{"event": "Product Added", "filters": [{"property": "price", "op": "gt",
                                                                         "value": 50}]}, *SHOP_STEPS[2:]],
                        "counting": "totals", "min_sample": 10, "alpha": 0.5},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(DEMO_LEAKS))
def test_leaks_on_the_demo_store(demo, name):
    store, ctx = demo
    result = same(store, ctx, {"kind": "leaks", "source": DEMO, **DEMO_LEAKS[name]})
    assert result["tests"] > 0


# -- correlation ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shop(tmp_path_factory, chdb_client):
    """The hand-worked shop of tests/engine/test_correlation.py (journey bounds, traits, codes)."""
    store = _store(tmp_path_factory.mktemp("shop"), SHOP)
    yield store, twin(store, chdb_client)("Shop")
    store.close()


SHOP_QUERY = {"kind": "correlation", "source": "Shop", "steps": ["Product Viewed", "Order Completed"], "window": "1d"}
SHOP_CORRELATION = {
    "plain": {},
    "properties": {"properties": ["code", "person.plan"]},
    "support": {"min_share": 0.5},
    "with_steps": {"exclude_steps": False},
    "excluded": {"exclude_events": ["Coupon Applied"]},
    "limit": {"properties": ["code"], "limit": 1},
    "no_events": {"events": False, "properties": ["code"]},
    "nobody_in_range": {"from": "2027-01-01"},
    "nobody_converts": {"steps": ["Product Viewed", "Refund Requested"]},
    "short_window": {"window": "5s", "properties": ["code"]},
    "strict": {"order": "strict", "alpha": 0.5},
}


@pytest.mark.parametrize("name", sorted(SHOP_CORRELATION))
def test_correlation_on_the_hand_worked_shop(shop, name):
    store, ctx = shop
    same(store, ctx, {**SHOP_QUERY, **SHOP_CORRELATION[name]})


def test_correlation_hand_worked_numbers(shop):
    store, ctx = shop
    result = same(store, ctx, {**SHOP_QUERY, "properties": ["code", "person.plan"]})
    rows = {(r.get("event") or f"{r['property']}={r['value']}"): r for r in result["success"] + result["failure"]}
    assert (rows["Coupon Applied"]["success_count"], rows["Coupon Applied"]["failure_count"]) == (5, 1)
    assert (rows["Error Shown"]["success_count"], rows["Error Shown"]["failure_count"]) == (1, 4)
    assert rows["person.plan=pro"]["type"] == "person_property"


def test_correlation_refuses_what_the_engine_refuses(shop):
    _, ctx = shop
    with pytest.raises(InvalidInput, match="cannot be used"):
        CORRELATION["correlation"](ctx, parse_query({**SHOP_QUERY, "properties": ["ip"]}))


DEMO_CORRELATION = {
    "shop": {"steps": SHOP_STEPS, "window": "7d"},
    "properties": {"steps": ["Product Viewed", "Order Completed"], "window": "3d",
                   "properties": ["device_type", "category", "person.plan", "browser", "properties.size"]},
    "strict_min_people": {"steps": ["Product Added", "Checkout Started"], "order": "strict", "min_people": 5,
                          "properties": ["channel"]},
    "dated_excluded": {"steps": SHOP_STEPS[1:], "exclude_steps": False, "exclude_events": ["Page Viewed"],
                       "from": "{d5}", "to": "{d20}", "properties": ["session_source"]},
    "filters_exclusions_hold": {"steps": [{"event": "Product Viewed", "filters": [{"property": "price", "op": "gt",
                                                                                   "value": 20}]}, "Order Completed"],
                                "exclusions": [{"event": "Product Removed"}], "hold_constant": ["device_type"],
                                "properties": ["country"]},
    "optional_first_time": {"steps": [{"event": "Product Viewed", "first_time": True},
                                      {"event": "Product Added", "optional": True}, "Checkout Started"],
                            "properties": ["os"]},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(DEMO_CORRELATION))
def test_correlation_on_the_demo_store(demo, name):
    store, ctx = demo
    query = {"kind": "correlation", "source": DEMO, **DEMO_CORRELATION[name]}
    days = [r["period"] for r in store.run({"kind": "funnel", "source": DEMO, "steps": SHOP_STEPS[:2],
                                             "trend": "day"}).to_dict()["trend"]]  # fmt: skip
    for key in ("from", "to"):
        if key in query:
            query[key] = days[int(query[key][2:-1])]
    result = same(store, ctx, query)
    assert result["people"] > 0 and result["tested"] > 0
