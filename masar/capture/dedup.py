"""Remembers recent messageIds per source, so a retried message is stored once.

Clients retry after timeouts, and an order must never count twice. Ids are kept per source and day
of arrival; a whole day is dropped when it leaves the window. The index is rebuilt at start from
the segments and the unapplied write-ahead log, so it survives restarts.

Memory is what bounds this, so a day's ids are kept in two forms. The newest are a plain set of
strings (about 100 bytes each). Every ``freeze_at`` ids the set is frozen into a *block*: the ids'
128-bit fingerprints, sorted, in two numpy columns — 16 bytes per id. Blocks are merged so that a
day holds only a logarithmic number of them, and a batch of ids is looked up in a block with one
vectorized binary search. So the window costs ~16 bytes per event: a 5-minute run at 40,000
events/s adds ~200 MB instead of ~1.2 GB; 7 days at 100 events/s sustained are ~1 GB.

A fingerprint is the 128-bit string hash the importer's ids use (``ids.string_hashes``: two
64-bit lanes), from seeds drawn at random when the process starts, so no one can aim a message id
at another's fingerprint; the index is rebuilt at each start anyway. A false "seen" (an event
dropped as a duplicate) needs both lanes to collide: about n·m / 2^128 for n remembered and m
checked ids — never, in practice.

The rebuild at start streams the stored ids of the window from the store in Arrow batches and
fingerprints them in the compiled kernel, each under the day it arrived: it never holds the ids
as Python strings, so its peak is a few times 16 bytes per id (bench/dedup.py).
tests/capture/test_dedup.py compares it with a plain dict of sets.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from masar.importers.ids import string_hashes

DAY_US = 86_400 * 1_000_000
FREEZE_AT = 65_536
_SEED_A = np.uint64(secrets.randbits(64))
_SEED_B = np.uint64(secrets.randbits(64))


def _fingerprints(ids: Iterable[str] | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(ids, pa.Array):
        ids = pa.array(ids if isinstance(ids, list | tuple) else list(ids), pa.string())
    elif ids.type != pa.string():
        ids = ids.cast(pa.string())  # the kernel reads 32-bit offsets
    return string_hashes(ids, _SEED_A, _SEED_B)


def warm() -> None:
    """Load the fingerprint kernel from numba's cache (or compile it, once per install) now, not
    when the first block is searched on the request path."""
    _fingerprints(["warm"])


@dataclass
class _Block:
    high: np.ndarray  # sorted
    low: np.ndarray  # aligned with high

    def __len__(self) -> int:
        return len(self.high)

    def contains(self, high: np.ndarray, low: np.ndarray) -> np.ndarray:
        """For each fingerprint, whether the block holds it. ``high`` must be sorted: the binary
        searches then walk the block in one direction (a third less time on blocks of millions)."""
        found = np.zeros(len(high), bool)
        if not len(self.high):
            return found
        position = np.searchsorted(self.high, high)
        candidate = np.flatnonzero(self.high[np.minimum(position, len(self.high) - 1)] == high)
        for j in candidate.tolist():  # only true duplicates (or 2^-64 flukes) get here
            k = int(position[j])
            while k < len(self.high) and self.high[k] == high[j]:
                if self.low[k] == low[j]:
                    found[j] = True
                    break
                k += 1
        return found


def _block(high: np.ndarray, low: np.ndarray) -> _Block:
    order = np.argsort(high, kind="stable")  # merging two sorted runs: timsort makes it linear
    return _Block(high[order], low[order])


@dataclass
class _Day:
    recent: set[str] = field(default_factory=set)
    blocks: list[_Block] = field(default_factory=list)

    def freeze(self) -> None:
        if not self.recent:
            return
        self.add_block(_block(*_fingerprints(list(self.recent))))
        self.recent = set()

    def add_block(self, block: _Block) -> None:
        self.blocks.append(block)
        # Keep block sizes at least doubling from newest to oldest: O(log n) blocks.
        while len(self.blocks) > 1 and len(self.blocks[-2]) <= 2 * len(self.blocks[-1]):
            newer, older = self.blocks.pop(), self.blocks.pop()
            self.blocks.append(
                _block(np.concatenate((older.high, newer.high)), np.concatenate((older.low, newer.low)))
            )

    def size(self) -> int:
        return len(self.recent) + sum(len(b) for b in self.blocks)


class MessageIndex:
    def __init__(self, days: int = 7, *, freeze_at: int = FREEZE_AT):
        self.days = days
        self.freeze_at = freeze_at
        self._sets: dict[int, dict[int, _Day]] = {}  # source → day → ids
        self._lock = threading.Lock()

    def _expire(self, sets: dict[int, _Day], today: int) -> None:
        for day in [d for d in sets if d < today - self.days]:
            del sets[day]

    def seen(self, source_id: int, message_id: str) -> bool:
        return self.seen_many(source_id, [message_id])[0]

    def seen_many(self, source_id: int, message_ids: Sequence[str]) -> list[bool]:
        """Whether each id is remembered for the source."""
        days = self._sets.get(source_id)
        if not days:
            return [False] * len(message_ids)
        days = list(days.values())
        if len(days) == 1:
            recent = days[0].recent
            found = [mid in recent for mid in message_ids]
        else:
            found = [any(mid in day.recent for day in days) for mid in message_ids]
        blocks = [block for day in days for block in day.blocks]
        if blocks:
            high, low = _fingerprints(message_ids)
            order = np.argsort(high)
            high, low = high[order], low[order]
            sorted_hits = np.zeros(len(message_ids), bool)
            for block in blocks:
                sorted_hits |= block.contains(high, low)
            hits = np.empty_like(sorted_hits)
            hits[order] = sorted_hits
            if hits.any():
                found = [f or bool(h) for f, h in zip(found, hits.tolist(), strict=True)]
        return found

    def add(self, source_id: int, message_ids: Iterable[str], received_us: int) -> None:
        day_number = received_us // DAY_US
        with self._lock:
            sets = self._sets.setdefault(source_id, {})
            day = sets.get(day_number)
            if day is None:
                day = sets[day_number] = _Day()
            day.recent.update(message_ids)
            if len(day.recent) >= self.freeze_at:
                day.freeze()
            self._expire(sets, day_number)

    def add_stored(self, source_id: int, batches: Iterable[pa.RecordBatch], now_us: int) -> int:
        """Remember stored ids in bulk: ``batches`` of ``message_id`` (string) and ``received_us``
        (arrival, epoch microseconds), each id under the day it arrived; days already out of the
        window are skipped. Returns how many ids were remembered."""
        today = now_us // DAY_US
        highs: dict[int, list[np.ndarray]] = {}
        lows: dict[int, list[np.ndarray]] = {}
        for batch in batches:
            ids = batch.column(batch.schema.get_field_index("message_id"))
            received = batch.column(batch.schema.get_field_index("received_us"))
            days = received.cast(pa.int64()).to_numpy(zero_copy_only=False) // DAY_US
            high, low = _fingerprints(ids)
            for day in np.unique(days).tolist():
                if day < today - self.days:
                    continue
                mask = days == day
                highs.setdefault(day, []).append(high[mask])
                lows.setdefault(day, []).append(low[mask])
        count = 0
        with self._lock:
            sets = self._sets.setdefault(source_id, {})
            for day in sorted(highs):
                block = _block(np.concatenate(highs.pop(day)), np.concatenate(lows.pop(day)))
                count += len(block)
                sets.setdefault(day, _Day()).add_block(block)
            self._expire(sets, today)
        return count

    def size(self) -> int:
        return sum(day.size() for sets in self._sets.values() for day in sets.values())
