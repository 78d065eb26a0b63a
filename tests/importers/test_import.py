"""Bulk import: each format and preset, bad rows, idempotency — into a real embedded store."""

from __future__ import annotations

import csv
import json
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import masar
from masar.errors import InvalidInput
from masar.importers import import_path

EVENTS = [
    {"user_id": "u1", "event": "Product Viewed", "timestamp": "2026-01-01T10:00:00Z", "price": "19.99",
     "currency": "SAR", "product_id": "p1", "color": "red"},
    {"user_id": "u1", "event": "Product Added", "timestamp": "2026-01-01T10:05:00Z", "price": "19.99",
     "currency": "SAR", "product_id": "p1", "color": "red"},
    {"user_id": "u1", "event": "Product Added", "timestamp": "2026-01-01T10:05:00Z", "price": "19.99",
     "currency": "SAR", "product_id": "p1", "color": "red"},  # an identical row is a real second event
    {"user_id": "u2", "event": "Order Completed", "timestamp": "1767261600", "price": "100.5",
     "currency": "KWD", "product_id": "", "color": ""},
]  # fmt: skip
BAD = [
    {"user_id": "u3", "event": "Bad time", "timestamp": "not a time", "price": "1", "currency": "SAR",
     "product_id": "", "color": ""},
    {"user_id": "u4", "event": "Bad price", "timestamp": "2026-01-02T00:00:00Z", "price": "abc", "currency": "SAR",
     "product_id": "", "color": ""},
    {"user_id": "", "event": "No user", "timestamp": "2026-01-02T00:00:00Z", "price": "", "currency": "",
     "product_id": "", "color": ""},
    {"user_id": "u5", "event": "Future", "timestamp": "2099-01-01T00:00:00Z", "price": "", "currency": "",
     "product_id": "", "color": ""},
]  # fmt: skip


@pytest.fixture
def store(tmp_path):
    s = masar.open(tmp_path / "data")
    s.create_source("Shop", currency="SAR")
    yield s
    s.close()


def write_csv(path, rows):
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps({k: (v if v != "" else None) for k, v in r.items()}) for r in rows))


def write_parquet(path, rows):
    pq.write_table(pa.Table.from_pylist([{k: (v if v != "" else None) for k, v in r.items()} for r in rows]), path)


@pytest.mark.parametrize(("suffix", "writer"), [(".csv", write_csv), (".jsonl", write_jsonl), (".parquet", write_parquet)])
def test_events_preset_each_format(store, tmp_path, suffix, writer):
    path = tmp_path / f"events{suffix}"
    writer(path, EVENTS + BAD)
    source = store.source("Shop")
    report = import_path(store, source, path, preset="events")
    assert (report.rows, report.imported, report.rejected) == (8, 4, 4)
    assert store.count_events(source) == 4
    assert store.count_events(source, event="Product Added") == 2
    rejects = list(csv.DictReader(open(report.rejects_path)))
    reasons = " | ".join(r["reason"] for r in rejects)
    for expected in ("timestamp: not a valid time", "price: not an amount", "no user_id", "in the future"):
        assert expected in reasons
    again = import_path(store, source, path, preset="events")
    assert (again.imported, again.skipped_existing) == (0, 4)
    assert store.count_events(source) == 4


def test_properties_money_and_sessions(store, tmp_path):
    path = tmp_path / "events.csv"
    write_csv(path, EVENTS)
    source = store.source("Shop")
    import_path(store, source, path, preset="events")
    rows = store.query(
        f"SELECT event, price, currency, properties, session_id, person_id FROM {store.events_relation(source)} "
        "ORDER BY ts, event"
    ).fetchall()
    viewed = [r for r in rows if r[0] == "Product Viewed"][0]
    assert viewed[1] == Decimal("19.990") and viewed[2] == "SAR"
    assert json.loads(viewed[3]) == {"price": 19.99, "product_id": "p1", "color": "red"}
    order = [r for r in rows if r[0] == "Order Completed"][0]
    assert order[1] == Decimal("100.500") and order[2] == "KWD"  # KWD keeps 3 decimals
    u1_sessions = {r[4] for r in rows if r[0] != "Order Completed"}
    assert len(u1_sessions) == 1  # five minutes apart: one session


def test_orders_preset_with_refunds_and_guests(store, tmp_path):
    path = tmp_path / "orders.csv"
    write_csv(path, [
        {"order_id": "1001", "customer_id": "c1", "created_at": "2026-02-01T09:00:00Z", "total": "115.00",
         "currency": "SAR", "subtotal": "100.00", "tax": "15.00", "shipping": "0", "discount": "5", "coupon": "EID",
         "status": "paid"},
        {"order_id": "1002", "customer_id": "", "created_at": "2026-02-02T09:00:00Z", "total": "20.125",
         "currency": "KWD", "subtotal": "", "tax": "", "shipping": "2", "discount": "", "coupon": "",
         "status": "refunded"},
        {"order_id": "1003", "customer_id": "c1", "created_at": "2026-02-03T09:00:00Z", "total": "50",
         "currency": "SAR", "subtotal": "", "tax": "", "shipping": "", "discount": "", "coupon": "",
         "status": "cancelled"},
    ])  # fmt: skip
    source = store.source("Shop")
    report = import_path(store, source, path, preset="orders")
    assert report.rejected == 0
    assert store.count_events(source, event="Order Completed") == 3
    assert store.count_events(source, event="Order Refunded") == 1
    assert store.count_events(source, event="Order Cancelled") == 1
    rows = dict(
        store.query(
            f"SELECT order_id, revenue FROM {store.events_relation(source)} WHERE event = 'Order Completed'"
        ).fetchall()
    )
    assert rows["1001"] == Decimal("100.000")  # subtotal
    assert rows["1002"] == Decimal("18.125")  # total - shipping when there is no subtotal
    guest = store.query(
        f"SELECT anonymous_id, user_id FROM {store.events_relation(source)} WHERE order_id = '1002' LIMIT 1"
    ).fetchone()
    assert guest == ("guest:1002", None)
    # the same export again, with an order's status changed: only the new refund is added
    assert import_path(store, source, path, preset="orders").imported == 0


def test_map_option(store, tmp_path):
    path = tmp_path / "custom.csv"
    write_csv(path, [{"who": "x", "what": "Signed Up", "when": "2026-01-05 10:00:00", "plan": "pro"}])
    source = store.source("Shop")
    report = import_path(store, source, path, preset="events", mapping="user_id=who,event=what,timestamp=when")
    assert report.imported == 1
    assert store.count_events(source, event="Signed Up") == 1
    with pytest.raises(InvalidInput, match="no column"):
        import_path(store, source, path, preset="events", mapping="user_id=nobody,event=what,timestamp=when")
    with pytest.raises(InvalidInput, match="unknown field"):
        import_path(store, source, path, preset="events", mapping="colour=who")


def test_segment_preset(store, tmp_path):
    path = tmp_path / "export.jsonl"
    messages = [
        {"type": "page", "anonymousId": "a9", "messageId": "s1", "timestamp": "2026-01-03T10:00:00Z",
         "receivedAt": "2026-01-03T10:00:01Z", "context": {"page": {"url": "https://shop.sa/?utm_source=tiktok&utm_medium=cpc"}}},
        {"type": "identify", "anonymousId": "a9", "userId": "u9", "messageId": "s2", "timestamp": "2026-01-03T10:01:00Z"},
        {"type": "track", "userId": "u9", "event": "Order Completed", "messageId": "s3",
         "timestamp": "2026-01-03T10:02:00Z", "properties": {"order_id": "o9", "total": 99.5, "currency": "AED"}},
    ]  # fmt: skip
    path.write_text("\n".join(json.dumps(m) for m in messages) + "\n{not json\n" + json.dumps({"type": "track"}) + "\n")
    source = store.source("Shop")
    report = import_path(store, source, path, preset="segment")
    assert (report.imported, report.rejected) == (3, 2)
    rows = store.query(
        f"SELECT person_id, session_id, channel, epoch(ts) FROM {store.events_relation(source)} ORDER BY ts"
    ).fetchall()
    assert len({r[0] for r in rows}) == 1 and len({r[1] for r in rows}) == 1
    assert rows[0][2] == "Paid Social"
    assert rows[0][3] == 1767434400  # the export's own timestamp
    assert import_path(store, source, path, preset="segment").imported == 0


def test_unreadable_and_unknown(store, tmp_path):
    source = store.source("Shop")
    with pytest.raises(InvalidInput, match="no such file"):
        import_path(store, source, tmp_path / "missing.csv")
    odd = tmp_path / "data.xlsx"
    odd.write_text("x")
    with pytest.raises(InvalidInput, match="format"):
        import_path(store, source, odd)
    path = tmp_path / "e.csv"
    write_csv(path, [{"user": "x"}])
    with pytest.raises(InvalidInput, match="timestamp"):
        import_path(store, source, path)


def _history(n_users=30, n_events=400, seed=3):
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(n_events):
        user = f"u{rng.randrange(n_users)}"
        minute = rng.randrange(0, 600)
        rows.append({"user_id": user, "event": rng.choice(["Product Viewed", "Product Added", "Order Completed"]),
                     "timestamp": f"2026-03-01T{minute // 60:02d}:{minute % 60:02d}:00Z",
                     "price": str(rng.choice([5, 10, 99.5])), "product_id": f"p{i % 7}"})  # fmt: skip
    rows += rows[:25]  # identical rows: each a second event
    return rows


def _stored_rows(store, source):
    return sorted(
        store.query(
            f"SELECT message_id, person_id, session_id, epoch_us(session_start), user_id, epoch_us(ts) "
            f"FROM {store.events_relation(source)}"
        ).fetchall()
    )


def test_small_chunks_store_the_same_events(tmp_path, monkeypatch):
    """Chunk boundaries (whole persons, written by two threads) change nothing that is stored."""
    from masar.importers import run

    path = tmp_path / "history.csv"
    write_csv(path, _history())
    results = []
    for chunk in (1_000_000, 7):
        monkeypatch.setattr(run, "CHUNK_ROWS", chunk)
        s = masar.open(tmp_path / f"data-{chunk}")
        try:
            source = s.create_source("Shop")
            report = import_path(s, source, path, preset="events")
            assert (report.imported, report.rejected) == (425, 0)
            results.append(_stored_rows(s, source))
            if chunk == 7:
                assert len(s.segments.live(source.id)) > 10
                for segment in s.segments.live(source.id):  # each segment sorted by (person, ts)
                    keys = s.query(f"SELECT person_id, ts FROM read_parquet('{segment.path}')").fetchall()
                    assert keys == sorted(keys)
        finally:
            s.close()
    assert results[0] == results[1]
    ids = [row[0] for row in results[0]]
    assert len(set(ids)) == len(ids) == 425


def test_overlapping_import_adds_only_new_rows_and_continues_sessions(tmp_path, monkeypatch):
    from masar.importers import run

    monkeypatch.setattr(run, "CHUNK_ROWS", 50)
    rows = _history()[:400]  # no identical rows: their occurrence numbers count per file
    first, second, whole = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "all.csv"
    write_csv(first, rows[:250])
    write_csv(second, rows[150:])
    write_csv(whole, rows)
    s = masar.open(tmp_path / "data")
    try:
        source = s.create_source("Shop")
        assert import_path(s, source, first).imported == 250
        again = import_path(s, source, second)
        assert (again.imported, again.skipped_existing) == (150, 100)
        assert import_path(s, source, whole).imported == 0
        assert s.count_events(source) == 400
        persons = dict(s.query(f"SELECT DISTINCT user_id, person_id FROM {s.events_relation(source)}").fetchall())
        assert len(set(persons.values())) == len(persons)
    finally:
        s.close()
