"""The sales facts on ClickHouse are built once per version of a source's data and shared
(masar/store/clickhouse/facts.py, ``FactsCache``): the same tables for every query of a version,
new tables (and the right numbers) after new events, a new exchange rate or an identity merge, the
old tables dropped once nobody reads them, a vanished table built again, nothing left at close."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import masar
from masar.demo.load import load_demo
from masar.engine.facts import Rate
from masar.importers import import_path
from masar.store.clickhouse.facts import SalesFacts
from masar.store.clickhouse.migrate import migrate
from masar.store.metadata import person_overrides

pytestmark = pytest.mark.timeout(300)
SOURCE = "Masar Demo Store"
METRICS = {"kind": "metrics", "source": SOURCE, "granularity": "month"}
_databases = itertools.count()


@pytest.fixture
def stores(chdb_dir, tmp_path):
    embedded = masar.open(tmp_path / "embedded")
    load_demo(embedded, visitors=800, days=40)
    clickhouse = masar.open(embedded.root, store=f"chdb://{chdb_dir}?database=facts_{next(_databases)}")
    migrate(embedded, clickhouse)
    yield embedded, clickhouse
    embedded.close()
    clickhouse.close()


def facts_tables(store) -> set[str]:
    found = store.client.arrow(
        f"SELECT name FROM system.tables WHERE database = '{store.database}' AND name LIKE '\\_sales\\_%'"
    )
    return set(found.column("name").to_pylist())


def same(embedded, clickhouse, query=METRICS) -> dict:
    want = embedded.run(query, reuse=False).to_dict()
    got = clickhouse.run(query, reuse=False).to_dict()
    assert got == want
    return got


def add_orders(store, tmp_path, name: str, n: int, currency: str = "SAR") -> None:
    path = tmp_path / f"{name}.parquet"
    recent = datetime.now(UTC) - timedelta(days=2)  # inside the overview's last 30 days
    pq.write_table(pa.table({
        "user_id": [f"{name}-{i}" for i in range(n)],
        "event": ["Order Completed"] * n,
        "order_id": [f"{name}-order-{i}" for i in range(n)],
        "total": [100.0 + i for i in range(n)],
        "currency": [currency] * n,
        "timestamp": pa.array([recent + timedelta(minutes=i) for i in range(n)], pa.timestamp("us", tz="UTC")),
    }), path)  # fmt: skip
    import_path(store, store.source(SOURCE), path, preset="events")


def test_one_build_per_version_shared_by_every_query(stores):
    embedded, clickhouse = stores
    assert facts_tables(clickhouse) == set()
    same(embedded, clickhouse)
    built = facts_tables(clickhouse)
    assert {"orders", "sessions", "people", "spend", "rates"} <= {t.rsplit("_", 1)[-1] for t in built}
    same(embedded, clickhouse, {"kind": "cohorts", "source": SOURCE})
    same(embedded, clickhouse, {**METRICS, "breakdown": "channel"})
    assert facts_tables(clickhouse) == built  # read, not built again


def test_new_events_rates_and_merges_make_a_new_version(stores, tmp_path):
    embedded, clickhouse = stores
    first = same(embedded, clickhouse)
    built = facts_tables(clickhouse)
    for store in (embedded, clickhouse):
        add_orders(store, tmp_path, "late", 5)
    second = same(embedded, clickhouse)
    assert second != first
    assert facts_tables(clickhouse).isdisjoint(built)  # the old version's tables are gone
    built = facts_tables(clickhouse)

    for store in (embedded, clickhouse):
        add_orders(store, tmp_path, "dirham", 3, currency="AED")
    same(embedded, clickhouse)
    built = facts_tables(clickhouse)
    for store in (embedded, clickhouse):
        store.set_exchange_rates([Rate(date(2020, 1, 1), "AED", "SAR", Decimal("1.5"))])
    after_rate = same(embedded, clickhouse)
    assert facts_tables(clickhouse).isdisjoint(built)

    built = facts_tables(clickhouse)
    buyers = {"kind": "funnel_people", "source": SOURCE, "steps": ["Checkout Started", "Order Completed"],
              "step": 2, "limit": 2}
    first, second = (p["person_id"] for p in embedded.run(buyers).to_dict()["people"])
    for store in (embedded, clickhouse):
        with store.engine.begin() as conn:  # each store has its own catalog
            conn.execute(person_overrides.delete().where(person_overrides.c.old_person_id == second))
            conn.execute(person_overrides.insert().values(source_id=1, old_person_id=second, new_person_id=first,
                                                          created_at=datetime.now(UTC)))  # fmt: skip
    merged = same(embedded, clickhouse)
    assert merged != after_rate
    assert facts_tables(clickhouse).isdisjoint(built)


def test_old_tables_outlive_a_new_build_while_a_query_reads_them(stores, tmp_path):
    embedded, clickhouse = stores
    source = clickhouse.source(SOURCE)
    clickhouse.run(METRICS)
    old_context = clickhouse.query_context(source, clickhouse._inputs_version(source))
    old_context.version = ("old", 1)
    with SalesFacts(old_context) as reading:
        old_orders = reading.names["orders"]
        count = reading.arrow("SELECT count() AS n FROM {orders}").column("n")[0].as_py()
        add_orders(clickhouse, tmp_path, "meanwhile", 4)
        fresh = clickhouse.query_context(source, ("new", 2))
        with SalesFacts(fresh) as newer:
            assert newer.names["orders"] != old_orders
            assert newer.arrow("SELECT count() AS n FROM {orders}").column("n")[0].as_py() == count + 4
        # the old version is replaced, but this query still reads it
        assert reading.arrow("SELECT count() AS n FROM {orders}").column("n")[0].as_py() == count
    assert old_orders.split(".")[-1] not in facts_tables(clickhouse)


def test_a_vanished_table_is_built_again(stores):
    embedded, clickhouse = stores
    same(embedded, clickhouse)
    for table in facts_tables(clickhouse):  # what a restarted ClickHouse server leaves: no Memory tables
        clickhouse.client.command(f"DROP TABLE {clickhouse.database}.{table}")
    same(embedded, clickhouse)
    assert facts_tables(clickhouse)


def test_a_context_without_a_version_builds_for_itself_and_drops_after(stores):
    _, clickhouse = stores
    context = clickhouse.query_context(clickhouse.source(SOURCE))
    with SalesFacts(context) as facts:
        inside = facts_tables(clickhouse)
        assert facts.names["orders"].split(".")[-1] in inside
    assert facts_tables(clickhouse) == set()


def test_closing_the_store_drops_the_kept_tables(chdb_dir, stores):
    _, clickhouse = stores
    clickhouse.run(METRICS)
    database = clickhouse.database
    assert facts_tables(clickhouse)
    clickhouse.close()
    reopened = masar.open(clickhouse.root, store=f"chdb://{chdb_dir}?database={database}")
    assert facts_tables(reopened) == set()


def test_queries_arriving_together_share_one_build(stores, monkeypatch):
    """Two queries of a new version at once: one builds, the other waits for it and reads the
    same tables; both answers are the embedded store's."""
    import threading

    from masar.store.clickhouse import facts as facts_module

    embedded, clickhouse = stores
    builds = []
    real_build = facts_module._Builder.build

    def counted(self):
        builds.append(threading.current_thread().name)
        return real_build(self)

    monkeypatch.setattr(facts_module._Builder, "build", counted)
    queries = [METRICS, {"kind": "cohorts", "source": SOURCE}]
    barrier = threading.Barrier(len(queries))
    got: dict[int, dict] = {}

    def ask(i: int) -> None:
        barrier.wait()
        got[i] = clickhouse.run(queries[i], reuse=False).to_dict()

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(queries))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(builds) == 1
    for i, query in enumerate(queries):
        assert got[i] == embedded.run(query, reuse=False).to_dict()
