"""The event frame: a source's actions as flat arrays ordered by (person, time), kept warm.

Per-person analyses (funnels, paths, the leak finder) are single linear passes over events
grouped by person and ordered by time. Segments are each sorted by (person_id, ts), so the frame
is built by reading the few columns every analysis needs straight from the Parquet files, mapping
persons through the identity overrides, and merging the sorted runs (a stable sort of the person
column, which exploits the runs, then a fix-up of the persons whose events span segments out of
time order).

Anything else an analysis needs — a property for a filter, a breakdown, a held-constant value —
is an *expression* evaluated by DuckDB over the same rows in the same file order, then put in
frame order through ``perm``; results are cached per expression. The frame is rebuilt when the
source's live segments or its overrides change; an acknowledged event is in the next query's
frame as soon as the ingestor has committed it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from masar.store.embedded.segments import Segment

# Identify, group and alias calls say who someone is, not what they did: funnels and paths see
# only actions.
ACTION_TYPES = ("track", "page", "screen")
_ACTIONS_SQL = "type IN ('track', 'page', 'screen')"
_EXPRESSION_CACHE = 64
_RESULT_CACHE = 256  # query results (small) kept apart, so they never evict expressions or facts
# The event code of an action stored without an event name (a NULL ``event``, e.g. a page row
# imported with none). It is reserved in every frame, its entry in ``event_names`` is None: no
# name looks it up, so no named step, exclusion or filter matches it, while the action is still
# in the frame for what looks at every action (``*`` steps, strict funnels, journeys). Code 0 in
# every frame, so it stays put as segments are merged in and the names grow.
NO_NAME = 0


@numba.njit(cache=True, nogil=True)
def _fix_time_order(person: np.ndarray, ts: np.ndarray, order: np.ndarray) -> None:
    """Within each person, put events in time order (stable), in place; most persons already are."""
    n = order.shape[0]
    a = 0
    while a < n:
        b = a + 1
        sorted_run = True
        while b < n and person[order[b]] == person[order[a]]:
            if ts[order[b]] < ts[order[b - 1]]:
                sorted_run = False
            b += 1
        if not sorted_run:
            keys = np.empty(b - a, dtype=np.int64)
            for i in range(a, b):
                keys[i - a] = ts[order[i]]
            local = np.argsort(keys, kind="mergesort")
            block = order[a:b].copy()
            for i in range(b - a):
                order[a + i] = block[local[i]]
        a = b


@numba.njit(cache=True, nogil=True)
def _group_starts(keys: np.ndarray) -> np.ndarray:
    n = keys.shape[0]
    count = 1 if n > 0 else 0
    for i in range(1, n):
        if keys[i] != keys[i - 1]:
            count += 1
    starts = np.empty(count + 1, dtype=np.int64)
    g = 0
    for i in range(n):
        if i == 0 or keys[i] != keys[i - 1]:
            starts[g] = i
            g += 1
    starts[count] = n
    return starts


def map_persons(person: np.ndarray, overrides: dict[int, int]) -> np.ndarray:
    """Persons through the identity overrides (old → surviving person), vectorized."""
    if not overrides or len(person) == 0:
        return person
    old = np.fromiter(overrides.keys(), dtype=np.int64, count=len(overrides))
    new = np.fromiter(overrides.values(), dtype=np.int64, count=len(overrides))
    by_old = np.argsort(old)
    old, new = old[by_old], new[by_old]
    at = np.clip(np.searchsorted(old, person), 0, len(old) - 1)
    return np.where(old[at] == person, new[at], person)


def group_starts(keys: np.ndarray) -> np.ndarray:
    """Start offsets of runs of equal keys, plus the end: ``[starts[g], starts[g+1])`` is group g."""
    return _group_starts(np.ascontiguousarray(keys))


@dataclass
class EventFrame:
    """Arrays in frame order (by person, then time). ``perm[i]`` is row i's position in file order."""

    source_id: int
    signature: tuple[Any, ...]
    files: list[str]
    person: np.ndarray  # int64, persons after identity overrides
    ts: np.ndarray  # int64 microseconds since the epoch, UTC
    event_codes: np.ndarray  # int32 into event_names
    event_names: list[str | None]  # event_names[NO_NAME] is None
    perm: np.ndarray  # int64
    person_starts: np.ndarray  # int64, group offsets of persons
    _cache: OrderedDict[tuple[Any, ...], Any] = field(default_factory=OrderedDict)
    _results: OrderedDict[tuple[Any, ...], Any] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def rows(self) -> int:
        return int(self.ts.shape[0])

    def event_code(self, name: str) -> int | None:
        """The code of the events named ``name`` (None: no event has that name). Never
        ``NO_NAME``: a name is a string, the nameless entry is None."""
        try:
            return self.event_names.index(name)
        except ValueError:
            return None

    def _relation(self) -> str:
        files = ", ".join("'" + f.replace("'", "''") + "'" for f in self.files)
        return f"read_parquet([{files}], union_by_name = true)"

    def expression(self, con: duckdb.DuckDBPyConnection, sql: str, params: tuple[Any, ...] = ()) -> pa.Array:
        """``sql`` (an expression over event columns, with ``?`` parameters) for every row, in
        frame order, as an Arrow array; cached."""
        key = ("expr", sql, params)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        if not self.files:
            values = pa.array([], type=pa.string())
        else:
            table = con.sql(
                f"SELECT {sql} AS v FROM {self._relation()} WHERE {_ACTIONS_SQL}", params=list(params)
            ).to_arrow_table()
            column = table.column("v").combine_chunks()
            if len(column) != self.rows:
                raise RuntimeError("the frame and its expression disagree on the rows; rebuild the frame")
            values = column.take(pa.array(self.perm))
        return self.remember(key, values)

    def remember(self, key: tuple[Any, ...], value: Any) -> Any:
        with self._lock:
            self._cache[key] = value
            self._cache.move_to_end(key)
            while len(self._cache) > _EXPRESSION_CACHE:
                self._cache.popitem(last=False)
        return value

    def result(self, key: tuple[Any, ...]) -> Any | None:
        """A query's result computed on this version of the events (None: not yet)."""
        with self._lock:
            value = self._results.get(key)
            if value is not None:
                self._results.move_to_end(key)
            return value

    def keep_result(self, key: tuple[Any, ...], value: Any) -> Any:
        with self._lock:
            self._results[key] = value
            self._results.move_to_end(key)
            while len(self._results) > _RESULT_CACHE:
                self._results.popitem(last=False)
        return value

    def cached(self, key: tuple[Any, ...]) -> Any | None:
        with self._lock:
            value = self._cache.get(key)
            if value is not None:
                self._cache.move_to_end(key)
            return value


def _read_actions(files: list[str], names: list[str | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(person_id, ts, event code) of the actions in ``files``, in file order. Event codes index
    ``names`` (a frame's, from ``build_frame`` on), which grows with names not seen before; an
    action without a name gets ``NO_NAME``."""
    index = {name: code for code, name in enumerate(names)}
    persons, times, codes = [], [], []
    for path in files:
        table = pq.read_table(
            path, columns=["person_id", "ts", "event", "type"], read_dictionary=["event", "type"], use_threads=True
        )
        actions = pc.is_in(table.column("type").cast(pa.string()), value_set=pa.array(ACTION_TYPES))
        table = table.filter(actions)
        persons.append(table.column("person_id").to_numpy())
        times.append(table.column("ts").cast(pa.int64()).to_numpy())
        for chunk in table.column("event").chunks:
            # Parquet hands the event column dictionary-encoded: remap each chunk's small
            # dictionary to the frame's codes instead of touching every string. A NULL name has
            # a null index: it points one past the dictionary, where the remap holds NO_NAME (a
            # null entry of the dictionary itself is None, whose code is NO_NAME too).
            dictionary = chunk.dictionary.to_pylist()
            remap = np.array([index.setdefault(name, len(index)) for name in dictionary] + [NO_NAME], dtype=np.int32)
            indices = chunk.indices.fill_null(len(dictionary)).to_numpy(zero_copy_only=False)
            codes.append(remap[indices] if len(indices) else np.empty(0, dtype=np.int32))
    names[:] = list(index)
    if not files:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int32)
    person = np.concatenate(persons).astype(np.int64, copy=False)
    ts = np.concatenate(times).astype(np.int64, copy=False)
    code = np.concatenate(codes).astype(np.int32, copy=False) if codes else np.empty(0, dtype=np.int32)
    return person, ts, code


def _order(person: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Positions in (person, ts) order, stable. Segments are sorted runs: a stable sort of the
    person column merges them, then persons whose events span segments get their time order."""
    perm = np.argsort(person, kind="stable").astype(np.int64)
    _fix_time_order(person, ts, perm)
    return perm


@numba.njit(cache=True, nogil=True)
def _merge(p1: np.ndarray, t1: np.ndarray, p2: np.ndarray, t2: np.ndarray) -> np.ndarray:
    """Positions into concat(run 1, run 2) of both runs merged by (person, ts); run 1 first on ties."""
    n1 = p1.shape[0]
    n2 = p2.shape[0]
    out = np.empty(n1 + n2, dtype=np.int64)
    i = 0
    j = 0
    k = 0
    while i < n1 and j < n2:
        if p2[j] < p1[i] or (p2[j] == p1[i] and t2[j] < t1[i]):
            out[k] = n1 + j
            j += 1
        else:
            out[k] = i
            i += 1
        k += 1
    while i < n1:
        out[k] = i
        i += 1
        k += 1
    while j < n2:
        out[k] = n1 + j
        j += 1
        k += 1
    return out


def build_frame(
    source_id: int, segments: list[Segment], overrides: dict[int, int], signature: tuple[Any, ...]
) -> EventFrame:
    """Read (person_id, ts, event, type) of every live segment and order them by (person, ts)."""
    files = [str(s.path) for s in segments]
    names: list[str | None] = [None]  # the entry of NO_NAME
    person, ts, codes = _read_actions(files, names)
    person = map_persons(person, overrides)
    perm = _order(person, ts)
    person = person[perm]
    return EventFrame(
        source_id=source_id,
        signature=signature,
        files=files,
        person=person,
        ts=ts[perm],
        event_codes=codes[perm],
        event_names=names,
        perm=perm,
        person_starts=group_starts(person),
    )


def extend_frame(
    frame: EventFrame, added: list[Segment], overrides: dict[int, int], signature: tuple[Any, ...]
) -> EventFrame:
    """The frame with new segments merged in, in time linear in the frame (no re-sort): what keeps
    funnels fresh while capture commits a segment every second. Cached expressions are dropped."""
    files = [str(s.path) for s in added]
    names = list(frame.event_names)
    person, ts, codes = _read_actions(files, names)
    person = map_persons(person, overrides)
    local = _order(person, ts)
    take = _merge(frame.person, frame.ts, person[local], ts[local])
    natural = np.concatenate([frame.perm, frame.rows + local])
    merged_person = np.concatenate([frame.person, person[local]])[take]
    return EventFrame(
        source_id=frame.source_id,
        signature=signature,
        files=frame.files + files,
        person=merged_person,
        ts=np.concatenate([frame.ts, ts[local]])[take],
        event_codes=np.concatenate([frame.event_codes, codes[local]])[take],
        event_names=names,
        perm=natural[take],
        person_starts=group_starts(merged_person),
    )
