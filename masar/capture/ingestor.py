"""Moves the write-ahead log into segments: enrich, write, commit with the log position.

Runs as its own process beside the server (``run_ingestor_process``). Each flush takes the durable records after the last
checkpoint, enriches them per source, writes the segments and commits them together with the new
checkpoint in one metadata transaction, so a crash at any point replays exactly what is missing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from masar.capture.normalize import now_us
from masar.capture.records import CaptureRecord, read_records, table_of
from masar.capture.wal import WalPosition, remove_consumed
from masar.enrich.pipeline import SessionState

log = logging.getLogger("masar.ingestor")

# Bounded so a backlog is worked off in steps of steady memory (records arrive as tables: about
# 1 KB per row, several times that while enrichment runs).
MAX_ROWS_PER_FLUSH = 50_000


class Ingestor:
    def __init__(
        self,
        store: Any,
        wal_directory: Any,
        *,
        name: str,
        session_gap_seconds: int,
        interval: float = 0.5,
        durable_position: Callable[[], WalPosition] | None = None,
        maintenance_every: float = 10.0,
    ):
        self.store = store
        self.directory = wal_directory
        self.name = name
        self.gap_us = session_gap_seconds * 1_000_000
        self.interval = interval
        self.durable_position = durable_position
        self.maintenance_every = maintenance_every
        self._states: dict[int, SessionState] = {}
        self.applied = WalPosition(*store.segments.checkpoint(name))
        self.errors = 0

    def _state(self, source: Any) -> SessionState:
        state = self._states.get(source.id)
        if state is None:
            state = self.store.session_state_for(source, since_us=now_us() - 2 * self.gap_us)
            self._states[source.id] = state
        return state

    def flush(self) -> int:
        """Apply the next durable records; returns how many events were written."""
        upto = self.durable_position() if self.durable_position else None
        pending = self.store.pending_checkpoint(self.name)
        if pending is not None and WalPosition(*pending) > self.applied:
            # A batch was being stored when the last run stopped: read exactly it again, so the
            # store recognizes the repeated insert (ClickHouse's deduplication token).
            upto = WalPosition(*pending) if upto is None else min(upto, WalPosition(*pending))
        records_by_source: dict[int, list[CaptureRecord]] = {}
        rejected: list[tuple[int | None, dict[str, Any]]] = []
        last: WalPosition | None = None
        total = 0
        for position, record in read_records(self.directory, self.applied, upto):
            records_by_source.setdefault(record.source_id, []).append(record)
            for item in record.rejected:
                rejected.append((record.source_id, {"origin": "capture", **item}))
            total += record.num_rows
            last = position
            if total >= MAX_ROWS_PER_FLUSH:
                break
        if last is None:
            if upto is not None and upto > self.applied:
                # Nothing durable lies between (a fresh log, a rotation boundary): say so, so that
                # "applied == written" holds when there is nothing left to do.
                self.store.commit([], checkpoint=(self.name, upto.file_seq, upto.offset))
                self.applied = upto
            return 0
        prepared = []
        try:
            for source_id, batch in records_by_source.items():
                table = table_of(batch)
                if table.num_rows == 0:
                    continue
                source = self.store.source(source_id)
                prepared.append(
                    self.store.prepare_segment(source, table, origin="capture", state=self._state(source))
                )
            self.store.commit(
                [p for p in prepared if p is not None],
                checkpoint=(self.name, last.file_seq, last.offset),
                rejected_items=rejected,
            )
        except BaseException:
            # Sessions carried in memory may have moved ahead of what was committed: reload them.
            self._states.clear()
            for segment in prepared:
                if segment is not None:
                    segment.path.unlink(missing_ok=True)
            raise
        self.applied = last
        remove_consumed(self.directory, last)
        return total

    def drain(self) -> int:
        total = 0
        while True:
            written = self.flush()
            total += written
            if written == 0:
                upto = self.durable_position() if self.durable_position else None
                if upto is None or self.applied >= upto:
                    return total
                if not any(True for _ in read_records(self.directory, self.applied, upto)):
                    return total

    def run(self, stop: Any, keep_going: Callable[[], bool] = lambda: True) -> None:
        """Flush every ``interval`` until ``stop`` is set, then drain; compaction runs beside it.

        Compaction has its own thread (DuckDB works without the interpreter lock): merging millions
        of rows takes minutes, and run inline it stopped every flush meanwhile (a 5-minute capture
        run left 700 MB of log unapplied while one merge ran).
        """
        done = threading.Event()
        compactor = threading.Thread(target=self._compact_until, args=(done,), name="masar-compactor", daemon=True)
        compactor.start()
        try:
            while not stop.is_set() and keep_going():
                try:
                    while self.flush() >= MAX_ROWS_PER_FLUSH:
                        pass
                except Exception:  # keep going: the log still holds everything not committed
                    self.errors += 1
                    log.exception("ingestor flush failed; will retry")
                    time.sleep(min(5.0, self.interval * 4))
                stop.wait(self.interval)
            self.drain()
        finally:
            done.set()
            # A merge cut off by the process's end is safe: its file is registered only on commit.
            compactor.join(timeout=5)

    def _compact_until(self, done: threading.Event) -> None:
        while not done.wait(self.maintenance_every):
            try:
                self.store.maintain()
            except Exception:
                log.exception("compaction failed; will retry")


INGEST_LOCK = "INGEST.LOCK"


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies, so a killed server's ingestor never runs
    beside the next server's."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def hold_ingest_lock(directory: Any) -> Any:
    """One ingestor per log: blocks until a previous holder (even a dying orphan) is gone."""
    import fcntl

    handle = open(directory / INGEST_LOCK, "a+")  # noqa: SIM115 - held for the process lifetime
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def run_ingestor_process(settings_data: dict[str, Any], name: str, stop: Any, parent_pid: int) -> None:
    """The ingestor as its own process: enrichment gets its own core and interpreter lock."""
    import os

    from masar.capture.wal import read_durable
    from masar.config import Settings, tune_gc_for_service
    from masar.store.open import open_store

    _die_with_parent()
    settings = Settings(**settings_data)
    store = open_store(settings)
    tune_gc_for_service()
    store.limit_for_background(settings.ingest_memory_mb)
    directory = store.root / "wal"
    lock = hold_ingest_lock(directory)
    ingestor = Ingestor(
        store,
        directory,
        name=name,
        session_gap_seconds=settings.session_timeout_seconds,
        interval=settings.flush_interval_seconds,
        durable_position=lambda: read_durable(directory) or WalPosition(0, 0),
    )
    try:
        ingestor.run(stop, keep_going=lambda: os.getppid() == parent_pid)
    finally:
        store.close()
        lock.close()
