"""The default funnel (ordered, uniques) equals ClickHouse's ``windowFunnel(window)`` — run by
chdb over the very rows imported into a real store — on randomized data with many ties, steps
exactly a window apart, events that match several steps, a date range and a property filter."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import masar
from masar.importers import import_path

BASE = datetime(2025, 3, 1, tzinfo=UTC)
WINDOW = 60  # seconds
NAMES = ["A", "B", "C", "D", "E"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    store, ch_path, rows = tie_store(tmp_path_factory.mktemp("chdb"))
    yield store, ch_path, rows
    store.close()


def tie_store(root):
    """~4000 events over 400 people: each person's events on a 10-second grid within two
    minutes of their own start, so many share an instant and many are exactly a window apart.
    Starts spread over four days, some just before midnight (the date range's edges). Returns the
    store (source "Shop"), the rows as Parquet for ClickHouse and their number."""
    rng = np.random.default_rng(20250301)
    rows = []
    for p in range(400):
        start = int(rng.integers(0, 4 * 86400 // 10)) * 10
        if p % 10 == 0:
            start = int(rng.integers(1, 4)) * 86400 - 10 * int(rng.integers(1, 6))
        for _ in range(int(rng.integers(1, 20))):
            rows.append({
                "user_id": f"u{p}",
                "event": NAMES[int(rng.choice(5, p=[0.3, 0.25, 0.2, 0.15, 0.1]))],
                "ts_us": (int(BASE.timestamp()) + start + 10 * int(rng.integers(0, 13))) * 1_000_000,
                "amount": int(rng.integers(0, 100)),
            })  # fmt: skip
    ch_path = root / "ch.parquet"
    pq.write_table(pa.Table.from_pylist(rows), ch_path)
    imported = pa.table({
        "user_id": [r["user_id"] for r in rows],
        "event": [r["event"] for r in rows],
        "timestamp": pa.array([r["ts_us"] for r in rows], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "amount": [r["amount"] for r in rows],
    })  # fmt: skip
    events_path = root / "events.parquet"
    pq.write_table(imported, events_path)
    store = masar.open(root / "data")
    source = store.create_source("Shop")
    report = import_path(store, source, events_path, preset="events")
    assert report.imported == len(rows)
    return store, ch_path, len(rows)


def clickhouse_levels(client, path, conditions: list[str], window_s: int) -> dict[str, int]:
    """Per user: windowFunnel's level (0 = never did step 1)."""
    sql = (
        f"SELECT user_id, windowFunnel({window_s * 1_000_000})(toUInt64(ts_us), {', '.join(conditions)}) AS level "
        f"FROM file('{path}', Parquet) GROUP BY user_id"
    )
    table = client.arrow(sql)
    return dict(zip(table.column("user_id").to_pylist(), table.column("level").to_pylist(), strict=True))


def masar_people(store, query: dict, steps: int) -> dict[str, int]:
    """Per user: the deepest step (1-based) from funnel_people, step by step."""
    levels: dict[str, int] = {}
    for k in range(1, steps + 1):
        result = store.run(
            {**query, "kind": "funnel_people", "step": k, "status": "reached", "limit": 100_000}
        )
        data = result.to_dict()
        assert data["total"] == len(data["people"])
        for person in data["people"]:
            levels[person["user_id"]] = max(levels.get(person["user_id"], 0), k)
            assert person["deepest_step"] >= k
    return levels


def compare(store, ch_path, query: dict, conditions: list[str], client) -> None:
    steps = len(query["steps"])
    want = clickhouse_levels(client, ch_path, conditions, query["window"])
    result = store.run({**query, "kind": "funnel"}).to_dict()
    counts = [s["count"] for s in result["steps"]]
    expected = [sum(1 for level in want.values() if level >= k) for k in range(1, steps + 1)]
    assert counts == expected
    assert expected[0] > 50 and expected[-1] > 5, expected  # the data exercises the whole funnel
    got = masar_people(store, query, steps)
    assert got == {user: level for user, level in want.items() if level > 0}


def test_window_funnel_equality(data, chdb_client):
    store, ch_path, _ = data
    query = {"source": "Shop", "steps": ["A", "B", "C", "D"], "window": WINDOW}
    compare(store, ch_path, query, ["event = 'A'", "event = 'B'", "event = 'C'", "event = 'D'"], chdb_client)


def test_repeated_and_overlapping_steps(data, chdb_client):
    # "*" matches every event: one event may be two consecutive steps, as in windowFunnel.
    store, ch_path, _ = data
    query = {"source": "Shop", "steps": ["A", "*", "A", "B", "*"], "window": WINDOW}
    compare(store, ch_path, query, ["event = 'A'", "1", "event = 'A'", "event = 'B'", "1"], chdb_client)


def test_property_filter_step(data, chdb_client):
    store, ch_path, _ = data
    query = {
        "source": "Shop",
        "steps": ["A", {"event": "B", "filters": [{"property": "amount", "op": "gt", "value": 50}]}, "C"],
        "window": WINDOW,
    }
    compare(store, ch_path, query, ["event = 'A'", "event = 'B' AND amount > 50", "event = 'C'"], chdb_client)


def test_date_range_only_limits_step_one(data, chdb_client):
    store, ch_path, _ = data
    low = int(datetime(2025, 3, 2, tzinfo=UTC).timestamp()) * 1_000_000
    high = int(datetime(2025, 3, 4, tzinfo=UTC).timestamp()) * 1_000_000  # "to" 3 March, inclusive
    query = {"source": "Shop", "steps": ["A", "B", "C"], "window": WINDOW,
             "from": date(2025, 3, 2).isoformat(), "to": date(2025, 3, 3).isoformat()}  # fmt: skip
    in_range = f"event = 'A' AND ts_us >= {low} AND ts_us < {high}"
    compare(store, ch_path, query, [in_range, "event = 'B'", "event = 'C'"], chdb_client)


def test_ties_at_the_same_instant_in_step_order(tmp_path, chdb_client):
    """A hand-made person whose steps all share one instant, stored in reverse step order."""
    store = masar.open(tmp_path / "data")
    source = store.create_source("Shop")
    t = pa.array([BASE.timestamp() * 1_000_000] * 3, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    path = tmp_path / "tie.parquet"
    pq.write_table(pa.table({"user_id": ["x"] * 3, "event": ["C", "B", "A"], "timestamp": t}), path)
    import_path(store, source, path, preset="events")
    result = store.funnel(source="Shop", steps=["A", "B", "C"], window=1).to_dict()
    assert [s["count"] for s in result["steps"]] == [1, 1, 1]
    ch = chdb_client.arrow(
        "SELECT windowFunnel(1)(t, e = 'A', e = 'B', e = 'C') AS level "
        "FROM values('t UInt32, e String', (5, 'C'), (5, 'B'), (5, 'A'))"
    )
    assert ch.column("level").to_pylist() == [3]
    store.close()
