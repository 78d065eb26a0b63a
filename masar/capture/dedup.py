"""Remembers recent messageIds per source, so a retried message is stored once.

Clients retry after timeouts, and an order must never count twice. Ids are kept per source and day
of arrival; a whole day is dropped when it leaves the window.

Memory is what bounds this, so a day's ids are kept in two forms. The newest are a plain set of
strings (about 100 bytes each). Every ``freeze_at`` ids the set is frozen into a *block*: the ids'
128-bit fingerprints, sorted, in two numpy columns — 16 bytes per id. Blocks are merged so that a
day holds only a logarithmic number of them, and a batch of ids is looked up in a block with one
vectorized binary search. So today costs ~16 bytes per event.

With a ``directory`` (``masar serve`` gives ``<data>/dedup``), each day that has ended is written
there, one file per block, and read back memory-mapped: the process then holds only today's ids,
and the older days are file pages the kernel keeps in its cache or drops (a week at 1,000 events/s
is ~10 GB of fingerprints; in memory it would not fit). A day's files count only once its
``.done`` marker is written, after them. At start the days on disk are mapped again, and only the
days that are not (today, and any day a crash left unfinished) are rebuilt from the store, which
streams the stored ids in Arrow batches: they are fingerprinted in the compiled kernel and never
held as Python strings. The unapplied write-ahead log is replayed on top.

A fingerprint is the 128-bit string hash the importer's ids use (``ids.string_hashes``: two 64-bit
lanes) from seeds drawn at random when a directory is first used (kept in its ``SEED`` file; new
seeds void the old files), so no one can aim a message id at another's fingerprint. A false
"seen" (an event dropped as a duplicate) needs both lanes to collide: about n·m / 2^128 for n
remembered and m checked ids — never, in practice. tests/capture/test_dedup.py compares the index
with a plain dict of sets, across restarts.
"""

from __future__ import annotations

import os
import secrets
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np
import pyarrow as pa

from masar.capture.wal import fsync_directory
from masar.importers.ids import string_hashes

DAY_US = 86_400 * 1_000_000
FREEZE_AT = 65_536
SEED_FILE = "SEED"


def _fingerprints(ids: Iterable[str] | pa.Array, seeds: tuple[np.uint64, np.uint64]) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(ids, pa.Array):
        ids = pa.array(ids if isinstance(ids, list | tuple) else list(ids), pa.string())
    elif ids.type != pa.string():
        ids = ids.cast(pa.string())  # the kernel reads 32-bit offsets
    return string_hashes(ids, *seeds)


def warm() -> None:
    """Load the fingerprint kernel from numba's cache (or compile it, once per install) now, not
    when the first block is searched on the request path."""
    high, low = _fingerprints(["warm"], (np.uint64(0), np.uint64(0)))
    _Block(high, low).contains(high, low)


BLOOM_BITS_PER_ID = 10  # with 4 probes: ~1.2% of absent ids go on to the binary search
_BLOOM_PROBES = 4


@numba.njit(cache=True, nogil=True)
def _bloom_build(high, low, words):
    mask = np.uint64(words.shape[0] * 64 - 1)  # a power of two, less one
    for i in range(high.shape[0]):
        step = high[i] | np.uint64(1)
        bit = low[i]
        for _ in range(_BLOOM_PROBES):
            p = bit & mask
            words[p >> np.uint64(6)] |= np.uint64(1) << (p & np.uint64(63))
            bit += step


@numba.njit(cache=True, nogil=True)
def _bloom_test(words, high, low, maybe):
    mask = np.uint64(words.shape[0] * 64 - 1)
    for i in range(high.shape[0]):
        step = high[i] | np.uint64(1)
        bit = low[i]
        hit = True
        for _ in range(_BLOOM_PROBES):
            p = bit & mask
            if not (words[p >> np.uint64(6)] >> (p & np.uint64(63))) & np.uint64(1):
                hit = False
                break
            bit += step
        maybe[i] = hit


def _bloom(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    bits = 64
    while bits < BLOOM_BITS_PER_ID * len(high):
        bits *= 2
    words = np.zeros(bits // 64, np.uint64)
    _bloom_build(np.ascontiguousarray(high), np.ascontiguousarray(low), words)
    return words


@dataclass
class _Block:
    """Fingerprints sorted by their first lane, and a Bloom filter over them (kept in memory, also
    for a block read back from disk). A week of ids is many blocks of millions: a binary search
    in each is a chain of cache misses (~5 µs per id for 20M ids in 7 days), while the filter's
    probes are 4 independent ones, and only the ids it lets through are searched."""

    high: np.ndarray  # sorted
    low: np.ndarray  # aligned with high
    bloom: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.bloom is None:
            self.bloom = _bloom(self.high, self.low)

    def __len__(self) -> int:
        return len(self.high)

    def contains(self, high: np.ndarray, low: np.ndarray) -> np.ndarray:
        """For each fingerprint, whether the block holds it. ``high`` must be sorted: the binary
        searches then walk the block in one direction."""
        found = np.zeros(len(high), bool)
        if not len(self.high):
            return found
        maybe = np.empty(len(high), np.bool_)
        _bloom_test(self.bloom, high, low, maybe)
        if not maybe.any():
            return found
        which = np.flatnonzero(maybe)
        position = np.searchsorted(self.high, high[which])
        candidate = np.flatnonzero(self.high[np.minimum(position, len(self.high) - 1)] == high[which])
        for c in candidate.tolist():  # only true duplicates (or 2^-64 flukes) get here
            j = int(which[c])
            k = int(position[c])
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
    blocks: list[_Block] = field(default_factory=list)  # in memory
    mapped: list[_Block] = field(default_factory=list)  # on disk, read back memory-mapped

    def freeze(self, seeds: tuple[np.uint64, np.uint64]) -> None:
        if not self.recent:
            return
        self.add_block(_block(*_fingerprints(list(self.recent), seeds)))
        self.recent = set()

    def add_block(self, block: _Block) -> None:
        blocks = [*self.blocks, block]
        # Keep block sizes at least doubling from newest to oldest: O(log n) blocks.
        while len(blocks) > 1 and len(blocks[-2]) <= 2 * len(blocks[-1]):
            newer, older = blocks.pop(), blocks.pop()
            blocks.append(_block(np.concatenate((older.high, newer.high)), np.concatenate((older.low, newer.low))))
        self.blocks = blocks  # a new list: a reader in another thread keeps the one it took

    def size(self) -> int:
        return len(self.recent) + sum(len(b) for b in self.blocks) + sum(len(b) for b in self.mapped)


class MessageIndex:
    def __init__(self, days: int = 7, *, freeze_at: int = FREEZE_AT, directory: Path | None = None):
        self.days = days
        self.freeze_at = freeze_at
        self.directory = directory
        self._sets: dict[int, dict[int, _Day]] = {}  # source → day → ids
        self._on_disk: set[tuple[int, int]] = set()  # (source, day) wholly in files
        self._lock = threading.Lock()
        self._today = -1
        self._spiller: threading.Thread | None = None
        self._seeds = _seeds(directory)

    # -- look-ups and additions (the log's writer thread) ----------------------------------------

    def seen(self, source_id: int, message_id: str) -> bool:
        return self.seen_many(source_id, [message_id])[0]

    def seen_many(self, source_id: int, message_ids: Sequence[str]) -> list[bool]:
        """Whether each id is remembered for the source."""
        days = self._sets.get(source_id)
        if not days:
            return [False] * len(message_ids)
        days = list(days.values())
        recents = [day.recent for day in days if day.recent]  # ended days have none left
        if not recents:
            found = [False] * len(message_ids)
        elif len(recents) == 1:
            recent = recents[0]
            found = [mid in recent for mid in message_ids]
        else:
            found = [any(mid in recent for recent in recents) for mid in message_ids]
        blocks = [block for day in days for block in (*day.blocks, *day.mapped)]
        if blocks:
            high, low = _fingerprints(message_ids, self._seeds)
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
            if (source_id, day_number) in self._on_disk:
                # Late ids for a day already written (a clock that went back): until the day is
                # written again, a start rebuilds it from the store, not from its files.
                self._on_disk.discard((source_id, day_number))
                if self.directory is not None:
                    (self.directory / f"{source_id}-{day_number}.done").unlink(missing_ok=True)
            if len(day.recent) >= self.freeze_at:
                day.freeze(self._seeds)
            self._expire(source_id, sets, day_number)
            new_day = day_number > self._today
            self._today = max(self._today, day_number)
        if new_day and self.directory is not None:
            self.spill_in_background(day_number)

    def _expire(self, source_id: int, sets: dict[int, _Day], today: int) -> None:
        for day in [d for d in sets if d < today - self.days]:
            del sets[day]
            self._on_disk.discard((source_id, day))
            if self.directory is not None:
                self._discard_day(source_id, day)  # a reader still mapping a file keeps its pages

    # -- a start: the days on disk, then the rest from the store ---------------------------------

    def load(self, now_us: int) -> dict[int, set[int]]:
        """Map the days written before (``.done``) that are still in the window; remove the files
        of every other day, and of a day with a damaged file (it is rebuilt from the store).
        Returns the days mapped, per source."""
        loaded: dict[int, set[int]] = {}
        if self.directory is None:
            return loaded
        today = now_us // DAY_US
        for path in self.directory.glob("*.tmp"):
            path.unlink(missing_ok=True)  # a write cut off by a crash
        done = {key for key in map(_day_key, self.directory.glob("*.done")) if key is not None}
        files: dict[tuple[int, int], list[Path]] = {}
        for path in self.directory.glob("*.npy"):
            key = _day_key(path)
            if key is None or key not in done or not today - self.days <= key[1] < today:
                path.unlink(missing_ok=True)  # out of the window, or a day whose writing did not finish
                continue
            files.setdefault(key, []).append(path)
        for key in done - files.keys():
            self._discard_day(*key)
        for key, paths in files.items():
            blocks = [_read_block(path) for path in sorted(paths)]
            if any(block is None for block in blocks):
                self._discard_day(*key)
                continue
            day = self._sets.setdefault(key[0], {}).setdefault(key[1], _Day())
            day.mapped = [*day.mapped, *blocks]
            self._on_disk.add(key)
            loaded.setdefault(key[0], set()).add(key[1])
        return loaded

    def _discard_day(self, source_id: int, day: int) -> None:
        assert self.directory is not None
        for path in self.directory.glob(f"{source_id}-{day}-*.npy"):
            path.unlink(missing_ok=True)
        (self.directory / f"{source_id}-{day}.done").unlink(missing_ok=True)

    def add_stored(self, source_id: int, batches: Iterable[pa.RecordBatch], now_us: int) -> int:
        """Remember stored ids in bulk: ``batches`` of ``message_id`` (string) and ``received_us``
        (arrival, epoch microseconds), each id under the day it arrived; days already out of the
        window, or already on disk, are skipped. Returns how many ids were remembered."""
        today = now_us // DAY_US
        highs: dict[int, list[np.ndarray]] = {}
        lows: dict[int, list[np.ndarray]] = {}
        for batch in batches:
            ids = batch.column(batch.schema.get_field_index("message_id"))
            received = batch.column(batch.schema.get_field_index("received_us"))
            days = received.cast(pa.int64()).to_numpy(zero_copy_only=False) // DAY_US
            high, low = _fingerprints(ids, self._seeds)
            for day in np.unique(days).tolist():
                if day < today - self.days or (source_id, day) in self._on_disk:
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
            self._expire(source_id, sets, today)
            self._today = max(self._today, today)
        return count

    def close(self) -> None:
        """Let a day being written finish (what is cut off is cleaned at the next start anyway)."""
        if self._spiller is not None:
            self._spiller.join(timeout=60)

    # -- days that have ended, to disk -----------------------------------------------------------

    def spill_in_background(self, today: int) -> None:
        if self._spiller is not None and self._spiller.is_alive():
            return  # it takes the next days too when it next runs; they are safe in memory meanwhile
        self._spiller = threading.Thread(target=self.spill, args=(today,), name="masar-dedup-spill", daemon=True)
        self._spiller.start()

    def spill(self, today: int) -> int:
        """Write every day before ``today`` still held in memory to files, and map them back in
        place of the memory; returns how many ids moved. Safe beside look-ups and additions: a day
        changes only by swapping in new lists under the lock."""
        if self.directory is None:
            return 0
        moved = 0
        with self._lock:
            closed = [(s, d, day) for s, days in self._sets.items() for d, day in days.items()
                      if d < today and (s, d) not in self._on_disk]  # fmt: skip
        for source_id, number, day in closed:
            with self._lock:
                day.freeze(self._seeds)
                blocks = day.blocks
            mapped = [self._write(source_id, number, block) for block in blocks]
            fsync_directory(self.directory)
            with self._lock:
                if self._sets.get(source_id, {}).get(number) is not day:
                    for block in mapped:
                        Path(block.high.filename).unlink(missing_ok=True)  # the day left the window meanwhile
                    continue
                day.mapped = [*day.mapped, *mapped]
                day.blocks = [b for b in day.blocks if not any(b is written for written in blocks)]
                if not day.blocks and not day.recent:  # all of it in files: they count from now on
                    _write_marker(self.directory / f"{source_id}-{number}.done")
                    self._on_disk.add((source_id, number))
            moved += sum(len(b) for b in blocks)
        if moved:
            _release_free_memory()
        return moved

    def _write(self, source_id: int, day: int, block: _Block) -> _Block:
        assert self.directory is not None
        path = self.directory / f"{source_id}-{day}-{uuid.uuid4().hex}.npy"
        tmp = path.with_suffix(".tmp")
        # Written through the page cache: no copy of the block in memory on the way.
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint64, shape=(2, len(block)))
        out[0] = block.high
        out[1] = block.low
        out.flush()
        del out
        _fsync_file(tmp)
        tmp.rename(path)
        columns = np.load(path, mmap_mode="r")
        return _Block(columns[0], columns[1], block.bloom)

    def size(self) -> int:
        return sum(day.size() for sets in self._sets.values() for day in sets.values())

    def bytes_in_memory(self) -> int:
        """What the index holds outside the mapped files: blocks and every block's Bloom filter
        (the strings of the newest ids not counted)."""
        days = [day for sets in self._sets.values() for day in sets.values()]
        return sum(b.high.nbytes + b.low.nbytes for day in days for b in day.blocks) + sum(
            b.bloom.nbytes for day in days for b in (*day.blocks, *day.mapped)
        )


def _read_block(path: Path) -> _Block | None:
    """A day file memory-mapped, or None if it is not one (damaged, or not ours)."""
    try:
        columns = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if columns.dtype != np.uint64 or columns.ndim != 2 or columns.shape[0] != 2:
        return None
    return _Block(columns[0], columns[1])


def _day_key(path: Path) -> tuple[int, int] | None:
    parts = path.name.split(".")[0].split("-")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


def _seeds(directory: Path | None) -> tuple[np.uint64, np.uint64]:
    """The fingerprint seeds: a directory's own (made on first use), else fresh for this process."""
    if directory is None:
        data = secrets.token_bytes(16)
    else:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / SEED_FILE
        data = path.read_bytes() if path.exists() else b""
        if len(data) != 16:
            for stale in [*directory.glob("*.npy"), *directory.glob("*.done"), *directory.glob("*.tmp")]:
                stale.unlink(missing_ok=True)  # fingerprints under other seeds mean nothing now
            data = secrets.token_bytes(16)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            _fsync_file(tmp)
            tmp.rename(path)
            fsync_directory(directory)
    return np.uint64(int.from_bytes(data[:8], "little")), np.uint64(int.from_bytes(data[8:], "little"))


def _release_free_memory() -> None:
    """Hand the freed blocks' memory back to the system (glibc keeps large freed areas otherwise,
    and the process would look as big as before the day went to disk)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _write_marker(path: Path) -> None:
    path.touch()
    _fsync_file(path)
    fsync_directory(path.parent)


def _fsync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())
