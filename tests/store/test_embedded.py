"""The embedded store: segments, compaction, reopening, and sharing a data directory."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import masar
from masar.capture.normalize import CaptureContext, normalize_message, parse_time_us
from masar.capture.rows import rows_to_table
from masar.errors import Conflict, InvalidInput, NotFound
from masar.store.embedded.segments import level_for_rows

T0 = parse_time_us("2026-05-01T08:00:00Z", "t")


def batch(n, start=0, user_prefix="u"):
    ctx = CaptureContext(received_at_us=T0 + 10**9, default_currency="SAR")
    rows = [
        normalize_message(
            {"type": "track", "event": "Product Viewed" if i % 3 else "Order Completed", "userId": f"{user_prefix}{i % 7}",
             "messageId": f"m{start + i}", "timestamp": T0 + (start + i) * 60_000_000,
             "properties": {"total": 10 + i} if i % 3 == 0 else {}},
            ctx,
        )
        for i in range(n)
    ]  # fmt: skip
    return rows_to_table(rows)


@pytest.fixture
def store(tmp_path):
    s = masar.open(tmp_path / "data", compact_fanout=4)
    yield s
    s.close()


def test_sources_and_keys(store):
    source = store.create_source("Shop", currency="kwd")
    assert source.currency == "KWD" and len(source.write_key) >= 24
    assert store.source_for_write_key(source.write_key) == source
    with pytest.raises(Conflict):
        store.create_source("Shop")
    with pytest.raises(InvalidInput):
        store.create_source("Other", currency="DINAR")
    with pytest.raises(NotFound):
        store.source("Nope")
    key, secret = store.create_api_key(source="Shop", name="ci")
    assert store.verify_api_key(secret) == key
    assert store.verify_api_key(secret + "x") is None


def test_segments_sorted_by_person_and_time(store):
    source = store.create_source("Shop")
    store.write_events(source, batch(50))
    [segment] = store.segments.live(source.id)
    table = pq.read_table(segment.path)
    keys = list(zip(table.column("person_id").to_pylist(), table.column("ts").to_pylist(), strict=True))
    assert keys == sorted(keys)


def test_compaction_keeps_every_event_once(store):
    source = store.create_source("Shop")
    for i in range(9):
        store.write_events(source, batch(20, start=i * 20))
    assert len(store.segments.live(source.id)) == 9
    before = store.query(f"SELECT message_id FROM {store.events_relation(source)} ORDER BY 1").fetchall()
    merged = store.compact(source)
    assert merged == 8
    live = store.segments.live(source.id)
    assert sorted(s.level for s in live) == [0, 1, 1]
    after = store.query(f"SELECT message_id FROM {store.events_relation(source)} ORDER BY 1").fetchall()
    assert after == before and len(after) == 180
    assert store.count_events(source) == 180
    # retired files stay readable for a grace period, then go
    assert store.segments.reap() == 0
    from datetime import timedelta

    assert store.segments.reap(grace=timedelta(0)) == 8


def test_merged_segment_is_sorted_whole_and_in_row_groups(store, monkeypatch):
    """A compaction's file: every input row once, sorted by (person, time), the inputs' schema,
    written in row groups of MERGE_ROW_GROUP_ROWS (small here, so batches straddle row groups)."""
    import pyarrow.compute as pc

    monkeypatch.setattr("masar.store.embedded.store.MERGE_ROW_GROUP_ROWS", 50)
    monkeypatch.setattr("masar.store.embedded.store.MERGE_BATCH_ROWS", 37)
    source = store.create_source("Shop")
    fanout = store.settings.compact_fanout
    for i in range(fanout):
        store.write_events(source, batch(46, start=i * 46))
    inputs = store.segments.live(source.id)
    rows_in = pa.concat_tables([pq.read_table(s.path) for s in inputs])
    assert store.compact(source) == fanout and rows_in.num_rows == 46 * fanout
    (merged,) = store.segments.live(source.id)
    table = pq.read_table(merged.path)
    assert table.schema == pq.read_schema(inputs[0].path) and merged.rows == table.num_rows == rows_in.num_rows
    order = pc.sort_indices(table, [("person_id", "ascending"), ("ts", "ascending")])
    assert order.equals(pa.array(range(table.num_rows), pa.uint64()))  # already in (person, time) order
    assert table.sort_by("message_id").equals(rows_in.sort_by("message_id"))
    metadata = pq.ParquetFile(merged.path).metadata
    groups = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    assert groups == [50] * (table.num_rows // 50) + ([table.num_rows % 50] if table.num_rows % 50 else [])
    assert len(groups) >= 3


def test_failed_merge_leaves_no_file_and_keeps_its_inputs(store, monkeypatch):
    source = store.create_source("Shop")
    for i in range(store.settings.compact_fanout):
        store.write_events(source, batch(10, start=i * 10))
    before = {s.id for s in store.segments.live(source.id)}

    def broken(batches, path, schema, rows_per_group=None):
        path.write_bytes(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(store.segments, "write_stream", broken)
    with pytest.raises(OSError, match="disk full"):
        store.compact(source)
    assert {s.id for s in store.segments.live(source.id)} == before
    assert not list(store.segments.directory(source.id).glob("*.tmp"))
    assert store.count_events(source) == 10 * store.settings.compact_fanout


def test_reopen_sees_everything(tmp_path):
    s = masar.open(tmp_path / "d")
    source = s.create_source("Shop")
    s.write_events(source, batch(30))
    s.close()
    again = masar.open(tmp_path / "d")
    assert again.count_events(again.source("Shop")) == 30
    assert again.count_events(again.source("Shop"), event="Order Completed") == 10
    again.close()


def test_two_processes_share_a_data_dir(tmp_path):
    a = masar.open(tmp_path / "d")
    b = masar.open(tmp_path / "d")
    source = a.create_source("Shop")
    a.write_events(source, batch(10))
    b.write_events(b.source("Shop"), batch(10, start=100, user_prefix="v"))
    assert a.count_events(source) == b.count_events(source) == 20
    a.close()
    b.close()


@pytest.mark.parametrize(("rows", "level"), [(1, 0), (16 * 1024 * 8 - 1, 0), (16 * 1024 * 8, 1), (10**6, 1), (10**7, 3)])
def test_levels(rows, level):
    assert level_for_rows(rows, 8) == level


def test_session_state_carried_from_store(store):
    source = store.create_source("Shop")
    ctx = CaptureContext(received_at_us=T0 + 10**9, default_currency="SAR")
    first = rows_to_table([normalize_message({"type": "page", "anonymousId": "a", "timestamp": T0,
                                              "context": {"campaign": {"source": "google", "medium": "cpc"}}}, ctx)])
    later = rows_to_table([normalize_message({"type": "track", "event": "Product Viewed", "anonymousId": "a",
                                              "timestamp": T0 + 5 * 60_000_000}, ctx)])  # fmt: skip
    store.write_events(source, first)
    store.write_events(source, later)  # a separate write: the session is continued from what is stored
    rows = store.query(f"SELECT session_id, channel FROM {store.events_relation(source)}").fetchall()
    assert len({r[0] for r in rows}) == 1 and {r[1] for r in rows} == {"Paid Search"}
