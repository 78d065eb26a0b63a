"""The message index (recent sets + frozen fingerprint blocks) against a plain dict of sets."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from masar.capture.dedup import DAY_US, MessageIndex

ids = st.text(alphabet="abcdef0123", min_size=1, max_size=4)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(1, 2), st.lists(ids, max_size=6), st.integers(0, 12)),
        st.tuples(st.just("seen"), st.integers(1, 2), st.lists(ids, max_size=6), st.integers(0, 12)),
        # ids read back from the store at a start: (id, how many days before the start it arrived)
        st.tuples(st.just("stored"), st.integers(1, 2), st.lists(st.tuples(ids, st.integers(0, 6)), max_size=8),
                  st.integers(0, 12)),
    ),
    max_size=60,
)


class ReferenceIndex:
    """The plain version: every id in a set per source and day; days leave the window whole."""

    def __init__(self, days: int):
        self.days = days
        self.sets: dict[int, dict[int, set[str]]] = {}

    def add(self, source: int, message_ids: list[str], received_us: int) -> None:
        day = received_us // DAY_US
        by_day = self.sets.setdefault(source, {})
        by_day.setdefault(day, set()).update(message_ids)
        for old in [d for d in by_day if d < day - self.days]:
            del by_day[old]

    def seen_many(self, source: int, message_ids: list[str]) -> list[bool]:
        by_day = self.sets.get(source, {})
        return [any(m in s for s in by_day.values()) for m in message_ids]


def _stored_batches(pairs: list[tuple[str, int]], size: int = 3) -> list[pa.RecordBatch]:
    """As a store gives them: message_id and received_us, in small batches."""
    table = pa.table({"message_id": pa.array([m for m, _d in pairs], pa.string()),
                      "received_us": pa.array([d * DAY_US + 7 for _m, d in pairs], pa.int64())})  # fmt: skip
    return table.to_batches(max_chunksize=size)


@settings(max_examples=600, deadline=None)
@given(operations, st.integers(1, 5))
def test_index_agrees_with_a_plain_dict_of_sets(ops, freeze_at):
    index, reference = MessageIndex(days=3, freeze_at=freeze_at), ReferenceIndex(days=3)
    for kind, source, items, day in ops:
        if kind == "stored":
            pairs = [(message_id, day - ago) for message_id, ago in items]  # arrived before the start
            index.add_stored(source, _stored_batches(pairs), day * DAY_US + 5)
            for message_id, arrived in sorted(pairs, key=lambda pair: pair[1]):
                reference.add(source, [message_id], arrived * DAY_US + 7)
            reference.add(source, [], day * DAY_US + 5)  # the start's day ends the days before the window
        elif kind == "add":
            index.add(source, items, day * DAY_US + 5)
            reference.add(source, items, day * DAY_US + 5)
        else:
            assert index.seen_many(source, items) == reference.seen_many(source, items)
            assert [index.seen(source, m) for m in items] == reference.seen_many(source, items)


def test_stored_ids_are_kept_under_the_day_they_arrived():
    index = MessageIndex(days=2)
    pairs = [(f"old-{i}", 5) for i in range(1000)] + [(f"new-{i}", 9) for i in range(1000)] + [("gone", 6)]
    assert index.add_stored(1, _stored_batches(pairs, size=300), 10 * DAY_US) == 1000
    assert sorted(index._sets[1]) == [9]  # day 5 and 6 are out of a 2-day window on day 10
    assert index.seen_many(1, ["new-0", "new-999", "old-0", "gone", "new-1000"]) == [True, True, False, False, False]
    index.add(1, ["x"], 12 * DAY_US)  # day 12: day 9 leaves the window whole
    assert index.seen_many(1, ["new-0", "x"]) == [False, True]


def test_large_day_is_frozen_into_few_compact_blocks():
    index = MessageIndex(days=7, freeze_at=1000)
    for start in range(0, 50_000, 500):
        index.add(1, [f"id-{i}" for i in range(start, start + 500)], 10 * DAY_US)
    day = index._sets[1][10]
    assert index.size() == 50_000 and len(day.recent) < 1000 and len(day.blocks) <= 8
    probe = [f"id-{i}" for i in range(0, 60_000, 7)]
    assert index.seen_many(1, probe) == [int(p[3:]) < 50_000 for p in probe]
    assert index.seen_many(2, probe[:3]) == [False] * 3
