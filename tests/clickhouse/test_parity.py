"""Every analysis on both stores, through the store interface a user has: the demo store built in
the embedded store, copied with ``masar store migrate`` into ClickHouse (chdb), and every query
kind run with ``store.run`` on each; the results must be identical.

The per-area modules beside this one (test_funnels, test_sales, test_leaks_correlation,
test_audiences_paths) compare each option in depth on hand-made and random data; this one is the
whole product end to end, identity merges included, and it fails if any kind the embedded store
answers has no ClickHouse compiler.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import pytest

import masar
from masar.demo.load import load_demo
from masar.engine import RUNNERS as EMBEDDED
from masar.store.clickhouse.migrate import migrate
from masar.store.clickhouse.runners import RUNNERS as COMPILED
from masar.store.metadata import person_overrides

pytestmark = pytest.mark.timeout(600)
SOURCE = "Masar Demo Store"
_databases = itertools.count()


@pytest.fixture(scope="module")
def stores(chdb_dir, tmp_path_factory):
    embedded = masar.open(tmp_path_factory.mktemp("parity") / "embedded")
    load_demo(embedded, visitors=6000, days=120)
    clickhouse = masar.open(embedded.root, store=f"chdb://{chdb_dir}?database=parity_{next(_databases)}")
    report = migrate(embedded, clickhouse)
    assert report.catalog_copied and report.rows_copied == embedded.count_events(embedded.source(SOURCE))
    yield embedded, clickhouse
    embedded.close()
    clickhouse.close()


FUNNEL = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed"]


def queries(end: date, person: int) -> list[dict]:
    start = end - timedelta(days=30)
    return [
        {"kind": "funnel", "steps": FUNNEL, "window": "7d"},
        {"kind": "funnel", "steps": FUNNEL, "window": "1d", "order": "strict", "breakdown": "channel"},
        {"kind": "funnel", "steps": FUNNEL, "counting": "sessions", "trend": "week",
         "from": start.isoformat(), "to": end.isoformat()},
        {"kind": "funnel", "steps": FUNNEL, "exclusions": [{"event": "Cart Viewed", "from_step": 2, "to_step": 3}],
         "hold_constant": ["device_type"]},
        {"kind": "funnel", "steps": ["Product Viewed", "Order Completed"], "order": "unordered"},
        {"kind": "funnel_people", "steps": FUNNEL, "step": 2, "status": "dropped", "limit": 50},
        {"kind": "leaks", "steps": FUNNEL},
        {"kind": "paths", "step": "Product Viewed", "length": 4},
        {"kind": "paths", "step": "Checkout Started", "direction": "before", "window": "session"},
        {"kind": "correlation", "steps": FUNNEL[:2] + ["Order Completed"], "properties": ["device_type", "country"]},
        {"kind": "metrics", "granularity": "day", "compare": True},
        {"kind": "metrics", "breakdown": "channel", "from": start.isoformat(), "to": end.isoformat()},
        {"kind": "products"},
        {"kind": "email"},
        {"kind": "acquisition"},
        {"kind": "platforms"},
        {"kind": "cohorts"},
        {"kind": "rfm"},
        {"kind": "rfm_customers", "limit": 20},
        {"kind": "ltv_fit", "calibration_end": (end - timedelta(days=30)).isoformat()},
        {"kind": "ltv"},
        {"kind": "forecast", "horizon": 14},
        {"kind": "targets"},
        {"kind": "audience", "definition": {"all": [
            {"type": "did", "event": "Product Added", "within_days": 14},
            {"type": "did_not_since", "event": "Order Completed", "since": {"event": "Product Added"}},
        ]}},  # fmt: skip
        {"kind": "customer", "person": person},
    ]


def test_every_kind_has_a_clickhouse_compiler():
    assert sorted(set(EMBEDDED) - set(COMPILED)) == []


def test_every_analysis_gives_identical_results(stores):
    embedded, clickhouse = stores
    end = date.fromisoformat(embedded.run({"kind": "metrics", "source": SOURCE}).to_dict()["range"]["to"])
    buyer = embedded.run({"kind": "rfm_customers", "source": SOURCE, "limit": 1}).to_dict()
    person = buyer["customers"][0]["person"]
    covered = set()
    mismatched = []
    for query in queries(end, person):
        query = {"source": SOURCE, **query}
        want = embedded.run(query, reuse=False).to_dict()
        got = clickhouse.run(query, reuse=False).to_dict()
        covered.add(query["kind"])
        if got != want:
            mismatched.append(query)
    assert mismatched == []
    assert covered == set(EMBEDDED)  # the list above runs every kind


def test_identity_merges_reach_clickhouse_without_rewriting_events(stores):
    """Two persons merged in the catalog after the copy: ClickHouse gets the override, and the
    people counts agree with the embedded store's on the merged data."""
    embedded, clickhouse = stores
    query = {"kind": "funnel", "source": SOURCE, "steps": FUNNEL[:2], "window": "30d"}
    before = clickhouse.run(query, reuse=False).to_dict()
    people = embedded.run({**query, "kind": "funnel_people", "step": 1, "limit": 2}).to_dict()["people"]
    first, second = people[0]["person_id"], people[1]["person_id"]
    for store in (embedded, clickhouse):
        with store.engine.begin() as conn:  # each store has its own catalog
            conn.execute(person_overrides.delete().where(person_overrides.c.old_person_id == second))
            conn.execute(person_overrides.insert().values(source_id=1, old_person_id=second, new_person_id=first,
                                                          created_at=datetime.now(UTC)))  # fmt: skip
    after_embedded = embedded.run(query, reuse=False).to_dict()
    after_clickhouse = clickhouse.run(query, reuse=False).to_dict()
    assert after_clickhouse == after_embedded
    assert after_clickhouse["steps"][0]["count"] == before["steps"][0]["count"] - 1
    rows = clickhouse.client.arrow(
        f"SELECT count() AS n FROM {clickhouse.database}.events WHERE person_id = {second}"
    ).column("n")[0].as_py()
    assert rows > 0  # the merged person's events still carry their own id: nothing was rewritten
