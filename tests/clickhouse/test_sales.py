"""The sales query kinds on ClickHouse (masar/store/clickhouse/sales.py) give the embedded store's
results exactly: the same ``to_dict()``, money to the last minor unit, floats to the last bit.

Stores are built through the real import path (tests/engine/sales_fixtures.py: the hand store of
the metrics tests, the returning customers of the lifetime-value tests) and the demo generator
(masar/demo/load.py), then copied into chdb (tests/clickhouse/twins.py). Each query runs on the
embedded store (``run(reuse=False)``) and on the ClickHouse runner with the same query object.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import masar
from masar.demo.load import DEMO_SOURCE, load_demo
from masar.engine import parse_query
from masar.engine.metrics import DIMENSIONS, METRICS
from masar.engine.rfm import SEGMENTS
from masar.errors import InvalidInput
from masar.store.clickhouse.facts import SalesFacts
from masar.store.clickhouse.sales import RUNNERS
from tests.clickhouse.twins import twin
from tests.engine.sales_fixtures import hand_store, ltv_store, plan_store
from tests.engine.test_metrics import _plans

GRANULARITIES = ("day", "week", "month")


class Twin:
    """An embedded store and its copy in ClickHouse, for one source."""

    def __init__(self, store: Any, client: Any, source: str):
        self.store, self.source = store, source
        self.context = twin(store, client)(source)

    def both(self, query: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        query = {"source": self.source, **query}
        expected = self.store.run(query, reuse=False).to_dict()
        got = RUNNERS[query["kind"]](self.context, parse_query(query)).to_dict()
        return expected, got

    def same(self, query: dict[str, Any]) -> dict[str, Any]:
        expected, got = self.both(query)
        assert got == expected, query
        return got


@pytest.fixture(scope="module")
def hand(tmp_path_factory, chdb_client) -> Iterator[Twin]:
    store = hand_store(tmp_path_factory.mktemp("hand"))
    source = store.source("S")
    store.set_target(source, "2026-03", revenue=Decimal("1500"), orders=20)
    store.set_target(source, "2026-04", revenue=Decimal("900.5"), orders=None)
    yield Twin(store, chdb_client, "S")
    store.close()


@pytest.fixture(scope="module")
def customers(tmp_path_factory, chdb_client) -> Iterator[Twin]:
    store = ltv_store(tmp_path_factory.mktemp("ltv"))
    yield Twin(store, chdb_client, "S")
    store.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory, chdb_client) -> Iterator[Twin]:
    store = masar.open(tmp_path_factory.mktemp("demo") / "data")
    load_demo(store, visitors=1500, days=60)
    source = store.source(DEMO_SOURCE)
    today = date.today()
    store.set_target(source, today.strftime("%Y-%m"), revenue=Decimal("25000"), orders=150)
    store.set_target(source, (today.replace(day=1) - timedelta(days=1)).strftime("%Y-%m"), revenue=None, orders=90)
    yield Twin(store, chdb_client, DEMO_SOURCE)
    store.close()


@pytest.fixture(params=["hand", "customers", "demo"])
def any_store(request) -> Twin:
    return request.getfixturevalue(request.param)


# -- the facts --------------------------------------------------------------------------------------


@pytest.mark.parametrize("store_name", ["hand", "demo"])
def test_facts_are_the_embedded_facts(request, store_name):
    """Every row of orders, refunds, sessions, people and spend, built in ClickHouse, equals the
    embedded store's (money exact, conversions as of the order's local day)."""
    from masar.engine.kpis import sales_facts

    t: Twin = request.getfixturevalue(store_name)
    embedded = sales_facts(t.store.query_context(t.store.source(t.source)))

    def rows(table) -> list[tuple]:
        columns = [[bool(v) if isinstance(v, int) and name in _BOOLS else v for v in table[name].to_pylist()]
                   for name in table.column_names]  # fmt: skip
        return sorted(zip(*columns, strict=True), key=repr)

    with SalesFacts(t.context) as facts:
        for name in ("orders", "refunds", "sessions", "people", "spend"):
            expected = getattr(embedded, name)
            got = facts.arrow(f"SELECT {', '.join(expected.column_names)} FROM {{{name}}}")
            assert got.num_rows == expected.num_rows, name
            assert rows(got) == rows(expected), name
            assert expected.num_rows > 0 or name == "refunds", name


_BOOLS = {"cancelled", "unconvertible", "known_order", "named_channel", "cart_bought", "checkout_bought"}


def test_facts_tables_are_dropped(hand, chdb_client):
    before = _scratch_tables(chdb_client)
    hand.same({"kind": "metrics", "breakdown": "age_band", "from": "2026-03-01", "to": "2026-03-31"})
    hand.same({"kind": "rfm"})
    assert _scratch_tables(chdb_client) == before


def _scratch_tables(client) -> set[str]:
    table = client.arrow("SELECT database || '.' || name AS name FROM system.tables WHERE name LIKE '%sales_%'")
    return set(table["name"].to_pylist())


# -- metrics ----------------------------------------------------------------------------------------

BREAKDOWNS = [*DIMENSIONS, "person.gender", "person.email"]


@pytest.mark.parametrize("dimension", BREAKDOWNS)
def test_every_metric_by_every_dimension(hand, dimension):
    """Every metric, broken down by each dimension (top 2, "$other", the null row), by period (the
    granularities in turn) and against the previous range."""
    granularity = GRANULARITIES[BREAKDOWNS.index(dimension) % 3]
    got = hand.same({"kind": "metrics", "metrics": list(METRICS), "breakdown": dimension, "breakdown_limit": 2,
                     "granularity": granularity, "compare": True, "from": "2026-03-01", "to": "2026-03-31"})  # fmt: skip
    assert got["breakdown"] and got["series"]


def test_a_trait_key_that_looks_like_a_table_name(hand):
    got = hand.same({"kind": "metrics", "metrics": ["orders"], "breakdown": "person.{orders}",
                     "from": "2026-02-01", "to": "2026-03-31"})  # fmt: skip
    assert "gold" in [row["value"] for row in got["breakdown"]]


@pytest.mark.parametrize("dimension", ["channel", "first_campaign", "customer_type", "age_band", "city"])
def test_every_metric_of_the_demo_by_dimension(demo, dimension):
    got = demo.same({"kind": "metrics", "metrics": list(METRICS), "breakdown": dimension, "breakdown_limit": 3})
    assert len(got["breakdown"]) > 1


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_every_metric_by_period(demo, granularity):
    got = demo.same({"kind": "metrics", "metrics": list(METRICS), "granularity": granularity,
                          "compare": True, "churn_days": 20})  # fmt: skip
    assert got["series"]


@pytest.mark.parametrize(
    "options",
    [
        {},  # the headline metrics of the data's last 30 days, its own churn days
        {"from": "2026-03-01"},  # an open end closes on the data
        {"to": "2026-03-14", "metrics": ["net_revenue", "sales_growth_rate", "churn_rate"]},
        {"from": "2027-01-01", "to": "2027-01-31", "metrics": list(METRICS)},  # no data at all
        {"from": "2026-03-10", "to": "2026-03-10", "breakdown": "first_channel", "breakdown_limit": 1},
    ],
)
def test_metrics_ranges(hand, options):
    hand.same({"kind": "metrics", **options})


@settings(max_examples=4, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])  # fmt: skip
@given(plan=_plans, dimension=st.sampled_from(BREAKDOWNS + ["person.tier"]), limit=st.integers(1, 3),
       granularity=st.sampled_from(GRANULARITIES))  # fmt: skip
def test_generated_stores(tmp_path_factory, chdb_client, plan, dimension, limit, granularity):
    """Random small stores (duplicates, updates, cancellations, refunds with and without an
    amount, AED carts and spend around the rate change): the metrics, cohorts and RFM agree."""
    store, _ = plan_store(tmp_path_factory.mktemp("plan"), plan)
    try:
        t = Twin(store, chdb_client, "S")
        t.same({"kind": "metrics", "metrics": list(METRICS), "from": "2026-03-01", "to": "2026-03-14",
                "compare": True, "churn_days": 10, "breakdown": dimension, "breakdown_limit": limit,
                "granularity": granularity})  # fmt: skip
        t.same({"kind": "cohorts", "by": "first_visit", "period": "week", "measure": "revenue", "periods": 5})
        t.same({"kind": "rfm", "as_of": "2026-03-14"})
    finally:
        store.close()


# -- forecast and targets ---------------------------------------------------------------------------


@pytest.mark.parametrize("measure", ["revenue", "orders"])
def test_forecast(demo, measure):
    demo.same({"kind": "forecast", "measure": measure, "horizon": 14, "level": 0.8})


def test_forecast_of_a_range(hand):
    hand.same({"kind": "forecast", "measure": "revenue", "from": "2026-02-01", "to": "2026-03-31", "horizon": 7})


def test_targets(hand, demo):
    got = hand.same({"kind": "targets", "as_of": "2026-03-20"})
    assert [m["month"] for m in got["months"]] == ["2026-03", "2026-04"]
    hand.same({"kind": "targets", "as_of": "2026-03-31", "month": "2026-04", "level": 0.95})
    assert demo.same({"kind": "targets"})["months"]


# -- table reports ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        {"kind": "products"},
        {"kind": "products", "by": "category", "limit": 3},
        {"kind": "email"},
        {"kind": "email", "attribution_days": 1, "from": "2020-01-01", "to": "2030-12-31"},
        {"kind": "acquisition"},
        {"kind": "platforms"},
    ],
    ids=lambda q: "-".join(str(v) for v in q.values()),
)
@pytest.mark.parametrize("store_name", ["customers", "demo"])
def test_reports(request, store_name, query):
    request.getfixturevalue(store_name).same(query)


def test_reports_have_rows(demo):
    for kind in ("products", "email", "acquisition", "platforms"):
        assert demo.same({"kind": kind})["rows"], kind


# -- cohorts ----------------------------------------------------------------------------------------

COHORTS = [
    {"by": by, "measure": measure, "period": ("week", "month")[(i + j) % 2]}
    for i, by in enumerate(("first_order", "first_visit", "signup"))
    for j, measure in enumerate(("active", "purchasing", "revenue"))
]


@pytest.mark.parametrize("options", COHORTS, ids=lambda o: "-".join(o.values()))
def test_cohorts(demo, options):
    demo.same({"kind": "cohorts", "periods": 6, **options})


@pytest.mark.parametrize(
    "options",
    [
        {"mode": "recurring", "by": "first_order", "period": "week", "group": "channel", "periods": 8},
        {"mode": "recurring", "by": "first_visit", "measure": "revenue", "periods": 4},
        {"group": "channel", "measure": "revenue"},
        {"channel": "Paid Search", "measure": "purchasing", "from": "2025-01-01", "to": "2025-06-30"},
        {"by": "signup", "period": "week", "as_of": "2025-09-30", "periods": 10},
    ],
)
def test_cohort_options(customers, options):
    customers.same({"kind": "cohorts", **options})


# -- RFM and lifetime value -------------------------------------------------------------------------


@pytest.mark.parametrize("options", [{}, {"as_of": "2025-10-01"}, {"as_of": "2025-12-31", "since": "2025-04-01"}])
def test_rfm(customers, options):
    customers.same({"kind": "rfm", **options})


def test_rfm_of_every_store(any_store):
    any_store.same({"kind": "rfm"})


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"limit": 7, "offset": 3},
        {"limit": None},
        {"limit": 5, "offset": 10_000},  # past the end: the total still counts
        {"segment": SEGMENTS[0]},
        {"segment": "Hibernating", "since": "2025-03-01"},
    ],
)
def test_rfm_customers(customers, options):
    customers.same({"kind": "rfm_customers", **options})


def test_ltv_fit(customers):
    got = customers.same({"kind": "ltv_fit", "calibration_end": "2025-12-31"})
    assert got["customers"] == 40
    customers.same({"kind": "ltv_fit", "calibration_end": "2025-12-31", "unit": "day"})


@pytest.mark.parametrize("group_by", [None, "cohort_month", "first_channel", "rfm_segment"])
@pytest.mark.parametrize("mode", ["predicted", "historical"])
def test_ltv(customers, mode, group_by):
    customers.same({"kind": "ltv", "mode": mode, "group_by": group_by, "limit": 6, "offset": 2})


@pytest.mark.parametrize(
    "options",
    [
        {"mode": "predicted", "sort": "p_alive", "ascending": True, "limit": None, "discount_rate": 0.01,
         "horizon_days": 180, "unit": "day"},
        {"mode": "historical", "sort": "value_3m", "limit": 10},
        {"mode": "historical", "customer": "c4"},
        {"mode": "historical", "as_of": "2025-08-31", "group_by": "rfm_segment"},
    ],
)
def test_ltv_options(customers, options):
    customers.same({"kind": "ltv", **options})


def test_ltv_of_one_customer_by_person_id(customers):
    first = customers.same({"kind": "ltv", "mode": "historical", "limit": 1})["rows"][0]
    got = customers.same({"kind": "ltv", "mode": "predicted", "customer": first["person"]})
    assert [row["person"] for row in got["rows"]] == [first["person"]]


def test_ltv_of_the_demo(demo):
    """Too few repeat buyers for the models: the same refusal on both backends."""
    demo.same({"kind": "ltv", "mode": "historical", "group_by": "first_channel"})
    as_of = demo.same({"kind": "rfm"})["as_of"]
    for query in ({"kind": "ltv_fit", "calibration_end": as_of}, {"kind": "ltv", "mode": "predicted"}):
        with pytest.raises(InvalidInput) as embedded:
            demo.store.run({"source": demo.source, **query}, reuse=False)
        with pytest.raises(InvalidInput) as clickhouse:
            RUNNERS[query["kind"]](demo.context, parse_query({"source": demo.source, **query}))
        assert clickhouse.value.message == embedded.value.message
        assert "repeat purchase" in embedded.value.message
