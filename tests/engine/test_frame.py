"""The event frame: (person, time) order, alignment of DuckDB expressions, incremental merging."""

from __future__ import annotations

import csv
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import masar
from masar.engine.frame import NO_NAME, build_frame
from masar.importers import import_path

EVENTS = ["Page Viewed", "Product Viewed", "Product Added", "Order Completed"]
START = datetime(2026, 2, 1, tzinfo=UTC)


def _write_csv(path, rows):
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user_id", "event", "timestamp", "shade"])
        for user, event, seconds, shade in rows:
            writer.writerow([user, event, (START + timedelta(seconds=seconds)).isoformat(), shade])


batches = st.lists(
    st.lists(
        st.tuples(st.sampled_from([f"u{i}" for i in range(6)]), st.sampled_from(EVENTS),
                  st.integers(0, 5000), st.sampled_from(["red", "blue", ""])),  # fmt: skip
        min_size=1,
        max_size=25,
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=batches)
def test_frame_grown_segment_by_segment_equals_one_built_at_once(tmp_path_factory, batches):
    directory = tmp_path_factory.mktemp("frame")
    store = masar.open(directory / "data")
    source = store.create_source("Shop")
    frames = []
    for i, rows in enumerate(batches):
        path = directory / f"batch{i}.csv"
        _write_csv(path, rows)
        import_path(store, source, path, preset="events")
        frames.append(store.frame(source))  # merged in, not rebuilt
    grown = frames[-1]
    live = store.segments.live(source.id)
    built = build_frame(source.id, live, store.identities.overrides(source.id), grown.signature)
    # Same rows in (person, time) order; ties may differ in order only among equal (person, ts).
    assert np.array_equal(grown.person, built.person)
    assert np.array_equal(grown.ts, built.ts)
    key_g = sorted(zip(grown.person.tolist(), grown.ts.tolist(), [grown.event_names[c] for c in grown.event_codes], strict=True))
    key_b = sorted(zip(built.person.tolist(), built.ts.tolist(), [built.event_names[c] for c in built.event_codes], strict=True))
    assert key_g == key_b
    order = np.lexsort((grown.ts, grown.person))
    assert np.array_equal(order, np.arange(grown.rows))  # already sorted
    # Expressions evaluated by DuckDB land on the right rows through perm.
    ctx = store.query_context(source)
    ts_expr = ctx.frame.expression(ctx.con, "epoch_us(ts)").to_numpy(zero_copy_only=False)
    assert np.array_equal(ts_expr, ctx.frame.ts)
    names = ctx.frame.expression(ctx.con, "event").to_pylist()
    assert names == [ctx.frame.event_names[c] for c in ctx.frame.event_codes]
    store.close()


def test_identity_merge_rebuilds_the_frame_under_the_surviving_person(tmp_path):
    store = masar.open(tmp_path / "data")
    source = store.create_source("Shop")
    from masar.capture.normalize import CaptureContext, normalize_message
    from masar.capture.rows import rows_to_table

    ctx = CaptureContext(received_at_us=int(START.timestamp() * 1e6) + 10**10)
    messages = [
        {"type": "track", "anonymousId": "anon-1", "event": "Product Viewed", "timestamp": START.isoformat(),
         "messageId": "m1"},
        {"type": "track", "userId": "user-1", "event": "Order Completed",
         "timestamp": (START + timedelta(hours=1)).isoformat(), "messageId": "m2"},
    ]  # fmt: skip
    store.write_events(source, rows_to_table([normalize_message(m, ctx) for m in messages]), origin="test")
    before = store.frame(source)
    assert len(set(before.person.tolist())) == 2
    link = {"type": "identify", "anonymousId": "anon-1", "userId": "user-1", "messageId": "m3",
            "timestamp": (START + timedelta(hours=2)).isoformat()}  # fmt: skip
    store.write_events(source, rows_to_table([normalize_message(link, ctx)]), origin="test")
    after = store.frame(source)
    assert after is not before
    assert len(set(after.person.tolist())) == 1  # identify calls are not actions; the two merged
    result = store.funnel(source="Shop", steps=["Product Viewed", "Order Completed"]).to_dict()
    assert [s["count"] for s in result["steps"]] == [1, 1]
    store.close()


def test_a_source_without_events_has_an_empty_frame_and_zero_counts(tmp_path):
    store = masar.open(tmp_path / "data")
    store.create_source("Empty")
    result = store.funnel(source="Empty", steps=["A", "B"]).to_dict()
    assert [s["count"] for s in result["steps"]] == [0, 0]
    assert result["steps"][1]["conversion_from_start"] is None
    store.close()


def write_actions(store, source, rows) -> None:
    """One segment of raw rows, (person_id, seconds after START, type, event[, page path]), as no
    capture or import writes them: ``event`` may be None. The segment goes live at once."""
    from masar.store.embedded.segments import level_for_rows
    from masar.store.schema import EVENTS

    rows = sorted(rows, key=lambda r: (r[0], r[1]))
    start_us = int(START.timestamp() * 1_000_000)
    given = {
        "message_id": [f"m{uuid.uuid4().hex}" for _ in rows],
        "person_id": [r[0] for r in rows],
        "ts": pa.array([start_us + r[1] * 1_000_000 for r in rows], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "type": [r[2] for r in rows],
        "event": [r[3] for r in rows],
        "path": [r[4] if len(r) > 4 else None for r in rows],
    }
    columns = [pa.array(given[f.name]).cast(f.type) if f.name in given else pa.nulls(len(rows), f.type) for f in EVENTS]
    table = pa.Table.from_arrays(columns, schema=EVENTS)
    level = level_for_rows(len(rows), 8)
    with store.engine.begin() as conn:
        segment_id, path = store.segments.write_file(source.id, table, level=level)
        store.segments.register(conn, source.id, segment_id, path, table, level=level, origin="test")


def _names_in_frame_order(store, source) -> list[str | None]:
    """Each frame row's event name as DuckDB reads it from the files (None: no name)."""
    ctx = store.query_context(source)
    return ctx.frame.expression(ctx.con, "event").to_pylist()


def test_an_action_without_an_event_name_matches_no_named_step(tmp_path):
    store = masar.open(tmp_path / "data")
    source = store.create_source("Shop")
    write_actions(store, source, [(1, 0, "track", "Product Viewed"), (2, 1, "page", None)])
    result = store.funnel(source="Shop", steps=["Product Viewed", "Product Added"]).to_dict()
    assert result["steps"][0]["count"] == 1  # person 2 only viewed a page with no name
    frame = store.frame(source)
    assert frame.rows == 2  # the nameless page is still an action
    assert np.all(frame.event_codes >= 0)
    assert [frame.event_names[c] for c in frame.event_codes] == _names_in_frame_order(store, source)
    assert frame.event_codes[frame.person == 2].tolist() == [NO_NAME]
    assert frame.event_names[NO_NAME] is None
    store.close()


def test_nameless_actions_keep_their_code_as_segments_are_merged_in(tmp_path):
    store = masar.open(tmp_path / "data")
    source = store.create_source("Shop")
    write_actions(store, source, [(1, 0, "track", "Product Viewed"), (1, 5, "page", None), (2, 0, "page", "Page Viewed")])
    first = store.frame(source)
    # A segment with new names around nameless rows (a null among a dictionary's first entries),
    # then one with no name at all (an empty dictionary).
    write_actions(store, source, [(1, 9, "track", "Order Completed"), (2, 3, "page", None), (3, 1, "track", "Product Viewed")])
    write_actions(store, source, [(3, 7, "screen", None), (4, 2, "page", None)])
    grown = store.frame(source)
    assert grown.files[: len(first.files)] == first.files  # merged into the first frame, not rebuilt
    assert grown.event_names[: len(first.event_names)] == first.event_names
    built = build_frame(source.id, store.segments.live(source.id), {}, grown.signature)
    names = _names_in_frame_order(store, source)
    assert names.count(None) == 4
    for frame in (grown, built):
        assert frame.event_names[NO_NAME] is None
        assert frame.event_names.count(None) == 1
        assert [frame.event_names[c] for c in frame.event_codes] == names
    result = store.funnel(source="Shop", steps=["Product Viewed", "Order Completed"]).to_dict()
    assert [s["count"] for s in result["steps"]] == [2, 1]
    store.close()
