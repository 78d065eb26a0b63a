"""Segment's own Python client (segment-analytics-python) against a real ``masar serve``."""

from __future__ import annotations

import itertools
import logging
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from segment.analytics.client import Client

import masar
from tests.conftest import make_source, wait_for_count

pytestmark = pytest.mark.timeout(180)

TOTAL = 1000
TRACK_EVENTS = ("Product Viewed", "Product Added", "Checkout Started", "Order Completed")


def _client(write_key: str, url: str, *, gzip: bool, errors: list) -> Client:
    return Client(
        write_key,
        host=url,
        gzip=gzip,
        max_retries=3,
        on_error=lambda exc, batch: errors.append((repr(exc), len(batch))),
        upload_interval=0.05,
    )


def _send_mixed(client: Client, total: int, prefix: str) -> Counter:
    """``total`` track/page/identify calls in a fixed mix; returns the expected stored count per event name."""
    expected: Counter = Counter()
    names = itertools.cycle(TRACK_EVENTS)
    for i in range(total):
        anonymous_id = f"{prefix}-anon-{i % 97}"
        kind = i % 5
        if kind in (0, 1, 2):
            event = next(names)
            props = {"product_id": f"sku-{i % 13}", "price": 19.99}
            if event == "Order Completed":
                props = {"order_id": f"{prefix}-order-{i}", "revenue": 59.97, "currency": "EUR"}
            ok, _msg = client.track(anonymous_id=anonymous_id, event=event, properties=props)
            expected[event] += 1
        elif kind == 3:
            ok, _msg = client.page(
                anonymous_id=anonymous_id, name="Home", properties={"url": f"https://shop.example/p/{i}"}
            )
            expected["Page Viewed"] += 1
        else:
            ok, _msg = client.identify(
                user_id=f"{prefix}-user-{i % 97}", anonymous_id=anonymous_id, traits={"plan": "x"}
            )
            expected["Identify"] += 1
        assert ok, "the client's queue refused a message"
    return expected


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_segment_client_batches_are_stored_exactly(data_dir, server, gzip):
    src = make_source(data_dir, "Segment Shop")
    srv = server(data_dir)
    errors: list = []
    client = _client(src["write_key"], srv.url, gzip=gzip, errors=errors)
    try:
        expected = _send_mixed(client, TOTAL, "g" if gzip else "p")
        client.flush()
    finally:
        client.join()
    assert errors == [], f"the client reported upload errors: {errors}"
    assert sum(expected.values()) == TOTAL

    store = masar.open(data_dir)
    try:
        assert wait_for_count(store, "Segment Shop", TOTAL, timeout=30) == TOTAL
        srv.wait_ingested()
        source = store.source("Segment Shop")
        assert store.count_events(source) == TOTAL
        assert dict(store.event_counts(source)) == dict(expected)
        for name, n in expected.items():
            assert store.count_events(source, event=name) == n, name
        # Segment's client stamps every message with a messageId and the library in the context.
        relation = store.events_relation(source)
        distinct, library = store.query(
            f"SELECT count(DISTINCT message_id), any_value(library_name) FROM {relation}"
        ).fetchone()
        assert distinct == TOTAL
        assert library == "analytics-python"
        # Money from the client survives exactly; the currency of the message wins over the source's.
        revenue, currency = store.query(
            f"SELECT sum(revenue), any_value(currency) FROM {relation} WHERE event = 'Order Completed'"
        ).fetchone()
        assert revenue == Decimal("59.97") * expected["Order Completed"]
        assert currency == "EUR"
        # Every event time is the client's own time, clock-corrected: close to now, not in the future.
        lo, hi = store.query(f"SELECT epoch_us(min(ts)), epoch_us(max(ts)) FROM {relation}").fetchone()
        now_us = int(datetime.now(UTC).timestamp() * 1_000_000)
        assert now_us - 120_000_000 < lo <= hi <= now_us + 1_000_000
    finally:
        store.close()


def test_segment_client_identify_and_track_resolve_to_one_person(data_dir, server):
    src = make_source(data_dir, "Identity Shop")
    srv = server(data_dir)
    errors: list = []
    client = _client(src["write_key"], srv.url, gzip=False, errors=errors)
    try:
        # Anonymous browsing is flushed on its own first, so it is stored before the link exists.
        client.track(anonymous_id="anon-7", event="Product Viewed", properties={"product_id": "sku-1"})
        client.page(anonymous_id="anon-7", name="Cart")
        client.flush()
        store = masar.open(data_dir)
        try:
            wait_for_count(store, "Identity Shop", 2)
        finally:
            store.close()
        client.identify(user_id="user-7", anonymous_id="anon-7", traits={"email": "seven@example.com"})
        client.track(user_id="user-7", event="Order Completed", properties={"order_id": "o-7", "revenue": 10})
        client.flush()
    finally:
        client.join()
    assert errors == []

    store = masar.open(data_dir)
    try:
        wait_for_count(store, "Identity Shop", 4)
        srv.wait_ingested()
        source = store.source("Identity Shop")
        person = store.identities.person_of(source.id, user_id="user-7")
        assert person is not None
        assert store.identities.person_of(source.id, anonymous_id="anon-7") == person
        overrides = store.identities.overrides(source.id)
        rows = store.tail(source, limit=10)
        assert sorted(r["event"] for r in rows) == [
            "Identify",
            "Order Completed",
            "Page Viewed",
            "Product Viewed",
        ]
        resolved = {r["event"]: overrides.get(r["person_id"], r["person_id"]) for r in rows}
        assert set(resolved.values()) == {person}, (resolved, overrides)
    finally:
        store.close()


def test_segment_client_sync_mode_and_retry_dedup(data_dir, server):
    """sync_mode posts each call at once; a retried message (same messageId) is stored once."""
    src = make_source(data_dir, "Sync Shop")
    srv = server(data_dir)
    client = Client(src["write_key"], host=srv.url, sync_mode=True, max_retries=0)
    for _ in range(3):
        client.track(
            user_id="u-1", event="Order Completed", properties={"order_id": "o-1"}, message_id="fixed-id-1"
        )
    client.track(
        user_id="u-1", event="Order Completed", properties={"order_id": "o-2"}, message_id="fixed-id-2"
    )
    store = masar.open(data_dir)
    try:
        wait_for_count(store, "Sync Shop", 2)
        srv.wait_ingested()
        time.sleep(0.6)  # one more ingestor interval: nothing else may show up
        source = store.source("Sync Shop")
        assert store.count_events(source) == 2
        ids = sorted(r["message_id"] for r in store.tail(source, limit=10))
        assert ids == ["fixed-id-1", "fixed-id-2"]
    finally:
        store.close()


@pytest.fixture(autouse=True)
def _quiet_segment_logs():
    logging.getLogger("segment").setLevel(logging.CRITICAL)
    yield
