"""The message index (recent sets + frozen fingerprint blocks) against a plain dict of sets."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from masar.capture.dedup import BLOOM_BITS_PER_ID, DAY_US, MessageIndex

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


# -- days on disk ------------------------------------------------------------------------------

timeline = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(1, 2), st.lists(ids, max_size=6), st.integers(0, 2)),
        st.tuples(st.just("seen"), st.integers(1, 2), st.lists(ids, max_size=6), st.just(0)),
        st.tuples(st.just("restart"), st.just(0), st.just([]), st.integers(0, 2)),
        st.tuples(st.just("late"), st.integers(1, 2), st.lists(ids, min_size=1, max_size=3), st.integers(1, 2)),
    ),
    max_size=40,
)  # each step moves the day forward by its last number; "late" adds that many days back (a clock
# that went back), without moving the day


def _settle(index: MessageIndex) -> None:
    """Let a day's writing, started in the background by an addition, finish (determinism)."""
    if index._spiller is not None:
        index._spiller.join()


def _start(directory, stored: list[tuple[int, str, int]], day: int, freeze_at: int) -> MessageIndex:
    """What ``CaptureService.open`` does: map the days on disk, rebuild the others from the store."""
    index = MessageIndex(days=3, freeze_at=freeze_at, directory=directory)
    on_disk = index.load(day * DAY_US + 5)
    for source in (1, 2):
        first = min(set(range(day - 3, day + 1)) - on_disk.get(source, set()))
        pairs = [(m, d) for s, m, d in stored if s == source and d >= first]
        index.add_stored(source, _stored_batches(pairs), day * DAY_US + 5)
    index.spill_in_background(day)
    _settle(index)
    return index


@settings(max_examples=300, deadline=None)
@given(timeline, st.integers(1, 5))
def test_index_with_days_on_disk_agrees_across_restarts(steps, freeze_at):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "dedup"
        day = 0
        stored: list[tuple[int, str, int]] = []  # what the store holds: (source, id, day it arrived)
        index, reference = _start(directory, stored, day, freeze_at), ReferenceIndex(days=3)
        for kind, source, message_ids, step in steps:
            if kind == "late":
                index.add(source, message_ids, (day - step) * DAY_US + 5)
                reference.add(source, message_ids, (day - step) * DAY_US + 5)
                stored += [(source, m, day - step) for m in message_ids]
                continue
            day += step
            if kind == "add":
                index.add(source, message_ids, day * DAY_US + 5)
                _settle(index)
                reference.add(source, message_ids, day * DAY_US + 5)
                stored += [(source, m, day) for m in message_ids]
            elif kind == "restart":
                index = _start(directory, stored, day, freeze_at)
                for s in (1, 2):
                    reference.add(s, [], day * DAY_US + 5)
            else:
                assert index.seen_many(source, message_ids) == reference.seen_many(source, message_ids)
        for s in (1, 2):
            probe = [m for src, m, _d in stored if src == s] + ["never"]
            assert index.seen_many(s, probe) == reference.seen_many(s, probe)


def test_ended_days_leave_memory_for_files_and_come_back_at_a_start(tmp_path):
    directory = tmp_path / "dedup"
    index = MessageIndex(days=3, freeze_at=100, directory=directory)
    index.add(1, [f"a-{i}" for i in range(1000)], 10 * DAY_US)
    assert index.bytes_in_memory() > 0 and not list(directory.glob("*.npy"))
    index.add(1, ["b-0"], 11 * DAY_US)  # day 11 begins: day 10 goes to disk
    _settle(index)
    # Only the Bloom filter stays in memory: at most 2 × 10 bits per id, against 16 bytes.
    assert index.bytes_in_memory() <= 2 * BLOOM_BITS_PER_ID * 1000 // 8 and (directory / "1-10.done").exists()
    assert index.seen_many(1, ["a-0", "a-999", "b-0", "c"]) == [True, True, True, False]

    restarted = MessageIndex(days=3, freeze_at=100, directory=directory)
    assert restarted.load(11 * DAY_US) == {1: {10}}  # mapped, not rebuilt
    assert restarted.seen_many(1, ["a-0", "a-999", "b-0"]) == [True, True, False]  # today comes from the store

    # A start that finds a day's files without their marker (a crash while writing) rebuilds it.
    (directory / "1-10.done").unlink()
    again = MessageIndex(days=3, freeze_at=100, directory=directory)
    assert again.load(11 * DAY_US) == {} and not list(directory.glob("1-10-*.npy"))

    # New seeds void the old files: fingerprints under other seeds mean nothing.
    index.add(1, ["d-0"], 12 * DAY_US)
    _settle(index)
    (directory / "SEED").unlink()
    fresh = MessageIndex(days=3, freeze_at=100, directory=directory)
    assert fresh.load(12 * DAY_US) == {} and not list(directory.glob("*.npy"))


def test_days_out_of_the_window_take_their_files_along(tmp_path):
    directory = tmp_path / "dedup"
    index = MessageIndex(days=2, freeze_at=10, directory=directory)
    for day in range(10, 16):
        index.add(1, [f"{day}-{i}" for i in range(30)], day * DAY_US)
        _settle(index)
    assert sorted({p.name.split("-")[1] for p in directory.glob("*.npy")}) == ["13", "14"]  # 15 is today
    assert index.seen_many(1, ["12-0", "13-0", "15-29"]) == [False, True, True]


def test_a_block_finds_every_member_and_no_stranger():
    """The Bloom filter in front of the binary search never turns a member away."""
    from masar.capture.dedup import _block

    rng = np.random.default_rng(7)
    members = rng.integers(0, 2**63, size=(2, 200_000), dtype=np.int64).astype(np.uint64) * np.uint64(2)
    strangers = members + np.uint64(1)  # odd: never a member
    block = _block(members[0], members[1])
    for high, low, expected in ((members[0], members[1], True), (strangers[0], strangers[1], False),
                                (members[0], strangers[1], False)):  # fmt: skip
        order = np.argsort(high)
        assert (block.contains(high[order], low[order]) == expected).all()


def test_a_day_with_a_damaged_file_is_rebuilt_whole(tmp_path):
    directory = tmp_path / "dedup"
    index = MessageIndex(days=3, freeze_at=1000, directory=directory)
    index.add(1, [f"a-{i}" for i in range(1000)], 10 * DAY_US)  # a block of 1,000
    index.add(1, [f"c-{i}" for i in range(300)], 10 * DAY_US)  # a second block when the day is written
    index.add(1, ["d"], 11 * DAY_US)
    _settle(index)
    files = sorted(directory.glob("1-10-*.npy"))
    assert len(files) == 2 and (directory / "1-10.done").exists()
    files[1].write_bytes(files[1].read_bytes()[:100])  # cut short
    restarted = MessageIndex(days=3, freeze_at=1000, directory=directory)
    assert restarted.load(11 * DAY_US) == {}  # the store has to give the whole day again
    assert not list(directory.glob("1-10*")) and restarted.seen_many(1, ["a-0", "c-0"]) == [False, False]
