"""The ClickHouse store itself: URLs, schema, capture through an outage, replay after a lost
acknowledgement, migration from the embedded store (resumed after an interruption), and a real
``masar serve --store chdb://…`` fed by Segment's own client."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from segment.analytics.client import Client as SegmentClient

import masar
from masar.api.app import create_app
from masar.config import Settings
from masar.demo.load import load_demo
from masar.errors import InvalidInput
from masar.importers import import_path
from masar.store.clickhouse.client import ClickHouseUnavailable
from masar.store.clickhouse.migrate import migrate
from masar.store.clickhouse.schema import ddl
from masar.store.clickhouse.store import ClickHouseStore
from masar.store.url import parse_store_url
from tests.conftest import REPO, _env

pytestmark = pytest.mark.timeout(300)
_databases = itertools.count()


def chdb_store(chdb_dir: Path, **settings) -> ClickHouseStore:
    """A ClickHouse store in a database of its own on the test process's chdb engine."""
    database = f"store_{next(_databases)}"
    return masar.open(chdb_dir / "unused", store=f"chdb://{chdb_dir}?database={database}", **settings)


def test_store_urls():
    assert parse_store_url(None).kind == "embedded"
    assert parse_store_url("embedded").kind == "embedded"
    assert parse_store_url("embedded:///tmp/x").path == Path("/tmp/x")
    chdb = parse_store_url("chdb:///var/masar?database=shop")
    assert (chdb.kind, chdb.path, chdb.database) == ("chdb", Path("/var/masar"), "shop")
    server = parse_store_url("clickhouse://masar:s%40cret@ch.internal:8123/analytics?cluster=main")
    assert (server.host, server.port, server.username, server.password, server.database, server.cluster) == (
        "ch.internal", 8123, "masar", "s@cret", "analytics", "main")  # fmt: skip
    assert "s@cret" not in server.redacted() and "cret" not in server.redacted()
    assert parse_store_url("clickhouse+https://h/db").port == 8443
    for bad, words in [
        ("postgres://x/y", "is not a store"),
        ("chdb://", "needs a directory"),
        ("clickhouse://h:port/db", "not a number"),
        ("clickhouse://h/drop;table", "not a valid database"),
    ]:
        with pytest.raises(InvalidInput, match=words):
            parse_store_url(bad)


def test_cluster_ddl_shards_events_by_person_and_replicates_small_tables():
    statements = "\n".join(ddl("masar", "main"))
    assert "ReplicatedMergeTree('/clickhouse/tables/{shard}/masar/events_local', '{replica}')" in statements
    assert "Distributed(main, masar, events_local, cityHash64(source_id, person_id))" in statements
    assert "'/clickhouse/tables/all/masar/person_overrides'" in statements
    assert "ON CLUSTER main" in statements
    single = "\n".join(ddl("masar"))
    assert "ORDER BY (source_id, person_id, ts)" in single and "Distributed" not in single


def _batch(prefix: str, n: int) -> list[dict]:
    return [
        {"type": "track", "event": "Product Viewed", "anonymousId": f"{prefix}-a{i % 7}", "messageId": f"{prefix}-{i}",
         "timestamp": "2026-11-01T10:00:00Z", "properties": {"product_id": f"p{i % 3}"}}
        for i in range(n)
    ]  # fmt: skip


def _wait(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_capture_keeps_accepting_while_clickhouse_is_down_and_catches_up(chdb_dir, tmp_path):
    store = chdb_store(chdb_dir, flush_interval_seconds=0.05)
    source = store.create_source("Outage Shop")
    settings = Settings(data_dir=tmp_path / "unused", flush_interval_seconds=0.05)
    app = create_app(settings, store=store)
    auth = (source.write_key, "")
    with TestClient(app) as http:
        assert http.post("/v1/batch", json={"batch": _batch("up", 40)}, auth=auth).status_code == 200
        _wait(lambda: store.count_events(source) == 40)

        store.client.fail("connection refused (test outage)")
        try:
            for round_ in range(3):
                response = http.post("/v1/batch", json={"batch": _batch(f"down{round_}", 50)}, auth=auth)
                assert response.status_code == 200, response.text  # acknowledged: it is in the log
            time.sleep(0.5)  # the ingestor tries, fails, keeps the log and retries
            health = http.get("/health").json()
            assert health["applied_position"] != health["wal_position"]  # nothing applied while down
        finally:
            store.client.fail(None)
        _wait(lambda: store.count_events(source) == 190, timeout=60)
        health = http.get("/health").json()
        _wait(lambda: http.get("/health").json()["applied_position"] == health["wal_position"])
    assert store.count_events(source) == 190  # every acknowledged event once, none twice
    ids = store.client.arrow(
        f"SELECT uniqExact(message_id) AS n FROM {store.database}.events WHERE source_id = {source.id}"
    )
    assert ids.column("n")[0].as_py() == 190
    store.close()


def test_a_restarted_server_remembers_the_stored_message_ids(chdb_dir, tmp_path):
    """The dedup window is rebuilt at start from what ClickHouse holds: a retry after a restart
    is answered as duplicates and stored nothing."""
    store = chdb_store(chdb_dir, flush_interval_seconds=0.05)
    source = store.create_source("Restart Shop")
    settings = Settings(data_dir=tmp_path / "unused", flush_interval_seconds=0.05)
    batch, auth = _batch("r", 30), (source.write_key, "")
    with TestClient(create_app(settings, store=store)) as http:
        assert http.post("/v1/batch", json={"batch": batch}, auth=auth).json()["accepted"] == 30
        _wait(lambda: store.count_events(source) == 30)
    with TestClient(create_app(settings, store=store)) as http:
        answer = http.post("/v1/batch", json={"batch": batch + _batch("s", 5)}, auth=auth).json()
        assert (answer["accepted"], answer["duplicates"]) == (5, 30)
        _wait(lambda: store.count_events(source) == 35)
    batches = list(store.recent_message_ids(source.id, 0))
    assert sum(b.num_rows for b in batches) == 35
    assert set(batches[0].schema.names) == {"message_id", "received_us"}
    store.close()


class AckLost:
    """The network edge failing after ClickHouse took an insert: the insert happened, the answer
    never came back (a timeout). The writer must not store the batch twice when it retries."""

    def __init__(self, client):
        self.inner = client
        self.database = client.database
        self.cluster = client.cluster
        self.lose_next = True

    def insert(self, table, data, *, settings=None):
        self.inner.insert(table, data, settings=settings)
        if self.lose_next and table.endswith(".events"):
            self.lose_next = False
            raise ClickHouseUnavailable("ClickHouse did not answer: read timed out")

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_batch_whose_acknowledgement_was_lost_is_stored_once(chdb_dir, tmp_path):
    from masar.capture.service import WAL_NAME

    store = chdb_store(chdb_dir)
    source = store.create_source("Lost Ack Shop")
    # A slow retry (4 × the interval after a failure) lets more events reach the log first.
    app = create_app(Settings(data_dir=tmp_path / "unused", flush_interval_seconds=0.5), store=store)
    auth = (source.write_key, "")
    with TestClient(app) as http:
        store.client = AckLost(store.client)
        assert http.post("/v1/batch", json={"batch": _batch("ack", 30)}, auth=auth).status_code == 200
        _wait(lambda: not store.client.lose_next)  # inserted, and the writer was told it failed
        assert store.pending_checkpoint(WAL_NAME) is not None
        assert http.post("/v1/batch", json={"batch": _batch("later", 20)}, auth=auth).status_code == 200
        _wait(lambda: store.pending_checkpoint(WAL_NAME) is None and store.count_events(source) >= 50)
        health = http.get("/health").json()
        _wait(lambda: http.get("/health").json()["applied_position"] == health["wal_position"])
    assert store.count_events(source) == 50  # the replayed batch was recognized, not stored again
    store.close()


def test_migrate_copies_everything_and_resumes_after_an_interruption(chdb_dir, tmp_path):
    embedded = masar.open(tmp_path / "embedded")
    load_demo(embedded, visitors=1500, days=20)
    source = embedded.sources()[0]
    for part in range(3):  # more segments, so the copy can stop between two of them
        path = tmp_path / f"more-{part}.parquet"
        pq.write_table(pa.table({
            "user_id": [f"late-{part}-{i}" for i in range(100)],
            "event": ["Product Viewed"] * 100,
            "timestamp": pa.array([1_790_000_000_000_000 + i for i in range(100)], pa.int64()).cast(
                pa.timestamp("us", tz="UTC")),
        }), path)  # fmt: skip
        import_path(embedded, source, path, preset="events")
    assert len(embedded.segments.live(source.id)) >= 4
    want_total = embedded.count_events(source)
    want_counts = embedded.event_counts(source)
    target = chdb_store(chdb_dir)
    seen: list[int] = []

    def stop_midway(done: int, total: int) -> None:
        seen.append(done)
        if len(seen) == 3:  # the second segment is in; ClickHouse goes before it is recorded
            target.client.fail("connection reset (test interruption)")

    with pytest.raises(ClickHouseUnavailable):
        migrate(embedded, target, on_progress=stop_midway)
    target.client.fail(None)
    partial = target.count_events(target.source(source.name))
    assert 0 < partial < want_total

    report = migrate(embedded, target)
    # The first segment was recorded; the second is copied again and ClickHouse drops the repeat.
    assert report.segments_skipped == 1 and not report.catalog_copied  # the catalog came the first time
    copied = target.source(source.name)
    assert (copied.id, copied.write_key, copied.currency) == (source.id, source.write_key, source.currency)
    assert target.count_events(copied) == want_total
    assert target.event_counts(copied) == want_counts
    assert target.exchange_rates() == embedded.exchange_rates()
    assert target.ad_spend(copied) == embedded.ad_spend(source)
    again = migrate(embedded, target)
    assert again.rows_copied == 0 and again.segments_copied == 0
    # A segment copied but not yet recorded (a crash between the two) is not copied twice.
    target.client.command(f"TRUNCATE TABLE {target.database}.migrations")
    migrate(embedded, target)
    assert target.count_events(copied) == want_total
    embedded.close()
    target.close()


def test_bad_rows_on_clickhouse_are_quarantined_not_lost(chdb_dir, tmp_path):
    store = chdb_store(chdb_dir)
    source = store.create_source("Bad Input Shop")
    app = create_app(Settings(data_dir=tmp_path / "unused", flush_interval_seconds=0.05), store=store)
    good = _batch("good", 3)
    bad = {"type": "track", "anonymousId": "x", "messageId": "bad-1", "timestamp": "2026-11-01T10:00:00Z"}
    with TestClient(app) as http:
        response = http.post("/v1/batch", json={"batch": [*good, bad]}, auth=(source.write_key, ""))
        assert response.status_code == 200
        assert [r["code"] for r in response.json()["rejected"]] == ["missing_event"]
        _wait(lambda: store.count_events(source) == 3)
        _wait(lambda: store.rejected_count(source) == 1)
    store.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "masar.cli", *args], capture_output=True, text=True,
                          timeout=120, env=_env(), cwd=REPO)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


def test_masar_serve_on_chdb_takes_segment_client_batches(server, tmp_path):
    """A real server process on chdb (its own engine and data directory), fed by Segment's client."""
    url = f"chdb://{tmp_path / 'ch'}"
    created = json.loads(_cli("sources", "create", "Segment CH Shop", "--store", url, "--json").stdout)
    srv = server(tmp_path / "unused", env={"MASAR_STORE": url})
    errors: list = []
    client = SegmentClient(created["write_key"], host=srv.url, max_retries=3, upload_interval=0.05,
                           on_error=lambda exc, batch: errors.append(repr(exc)))  # fmt: skip
    expected: Counter = Counter()
    try:
        for i in range(300):
            event = ("Product Viewed", "Product Added", "Order Completed")[i % 3]
            props = {"order_id": f"o{i}", "revenue": 10.5, "currency": "USD"} if event == "Order Completed" else {}
            assert client.track(anonymous_id=f"anon-{i % 41}", event=event, properties=props)[0]
            expected[event] += 1
        client.flush()
    finally:
        client.join()
    assert errors == []
    srv.wait_ingested(timeout=60)
    srv.stop()
    listed = json.loads(_cli("sources", "list", "--store", url, "--json").stdout)
    assert [(s["name"], s["events"]) for s in listed] == [("Segment CH Shop", 300)]


def test_a_clickhouse_server_store_opens_while_the_server_is_down(tmp_path):
    """clickhouse:// connects on first use: ``masar serve`` starts (and capture accepts) while the
    server is unreachable; a query then says ClickHouse did not answer."""
    from tests.conftest import free_port

    store = masar.open(tmp_path / "data", store=f"clickhouse://default@127.0.0.1:{free_port()}/masar")
    source = store.create_source("Down Shop")  # the catalog is local
    with pytest.raises(ClickHouseUnavailable, match="did not answer"):
        store.count_events(source)
    store.close()
