"""Capture: validate a request's messages, make them durable, answer the client.

The request path does only what must happen before the answer: authenticate, validate and
normalize each message, drop duplicates, append to the write-ahead log and wait for its fsync.
Enrichment and segment writing happen after, in the ingestor.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from masar.capture import dedup, records
from masar.capture.dedup import DAY_US, MessageIndex
from masar.capture.normalize import CaptureContext, MessageRejected, normalize_values, now_us
from masar.capture.records import CaptureBatch
from masar.capture.wal import WalPosition, WriteAheadLog
from masar.config import Settings
from masar.errors import TooManyRequests, Unauthorized
from masar.store.base import Source

MAX_MESSAGE_BYTES = 32 * 1024
MAX_REQUEST_BYTES = 500 * 1024
MAX_BATCH_MESSAGES = 2500
WAL_NAME = "capture"


@dataclass
class CaptureResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"success": True, "accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


class _Bucket:
    """A token bucket per source: ``rate`` events per second, bursts up to 10 seconds' worth."""

    def __init__(self, rate: float):
        self.rate = rate
        self.tokens = rate * 10
        self.stamp = time.monotonic()

    def take(self, count: int) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate * 10, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < count:
            return False
        self.tokens -= count
        return True


class CaptureService:
    def __init__(self, store: Any, settings: Settings, *, rate_limit: float = 0.0):
        self.store = store
        self.settings = settings
        self.index = MessageIndex(settings.dedup_days, directory=store.root / "dedup")
        self._pending: dict[int, set[str]] = {}
        self.wal = WriteAheadLog(
            store.root / "wal",
            max_file_bytes=settings.wal_segment_bytes,
            prepare=self._prepare,
            encode=records.encode,
            after_group=self._after_group,
        )
        self._sources: dict[str, Source] = {}
        self._rate_limit = rate_limit
        self._buckets: dict[int, _Bucket] = {}
        self._lock = threading.Lock()

    def open(self) -> None:
        self.wal.open()
        dedup.warm()
        now = now_us()
        today = now // DAY_US
        on_disk = self.index.load(now)
        for source in self.store.sources():
            # The window's days, whole, from the first that is not on disk (today never is).
            first = min(set(range(today - self.settings.dedup_days, today + 1)) - on_disk.get(source.id, set()))
            self.index.add_stored(source.id, self.store.recent_message_ids(source.id, first * DAY_US), now)
        checkpoint = WalPosition(*self.store.segments.checkpoint(WAL_NAME))
        for _position, record in records.read_records(self.wal.directory, checkpoint):
            self.index.add(record.source_id, record.message_ids(), record.received_us)
        self.index.spill_in_background(today)  # days that ended while no server ran

    def close(self) -> None:
        self.wal.close()
        self.index.close()

    # -- auth ----------------------------------------------------------------------------------

    def source_for_key(self, write_key: str | None) -> Source:
        if not write_key:
            raise Unauthorized(
                "missing write key: send it as the HTTP Basic user name or as writeKey in the body",
                code="missing_write_key",
            )
        source = self._sources.get(write_key)
        if source is None:
            source = self.store.source_for_write_key(write_key)
            if source is None:
                raise Unauthorized("unknown write key", code="invalid_write_key")
            self._sources[write_key] = source
        return source

    # -- capture -------------------------------------------------------------------------------

    def normalize(
        self,
        source: Source,
        messages: list[Any],
        *,
        defaults: dict[str, Any],
        request_ip: str | None,
        body_bytes: int,
        forced_type: str | None = None,
    ) -> tuple[CaptureBatch, list[dict[str, Any]]]:
        received = now_us()
        ctx = CaptureContext(
            received_at_us=received,
            default_currency=source.currency,
            max_future_us=self.settings.max_future_seconds * 1_000_000,
            request_ip=request_ip,
        )
        rows: list[tuple[Any, ...]] = []
        rejected: list[dict[str, Any]] = []
        sent_at = defaults.get("sentAt")
        check_sizes = body_bytes > MAX_MESSAGE_BYTES
        dumps = orjson.dumps
        for index, raw in enumerate(messages):
            try:
                if check_sizes and len(dumps(raw)) > MAX_MESSAGE_BYTES:
                    raise MessageRejected("message_too_large", f"a message may be at most {MAX_MESSAGE_BYTES} bytes")
                message = raw
                if forced_type is not None and isinstance(message, dict):
                    message = {**message, "type": forced_type}
                rows.append(normalize_values(message, ctx, batch_sent_at=sent_at, defaults=defaults))
            except MessageRejected as exc:
                rejected.append({"index": index, "code": exc.code, "message": exc.message, "payload": raw})
        return CaptureBatch(source.id, received, rows, rejected), rejected

    def check_rate(self, source: Source, count: int) -> None:
        if self._rate_limit <= 0:
            return
        with self._lock:
            bucket = self._buckets.setdefault(source.id, _Bucket(self._rate_limit))
            allowed = bucket.take(count)
        if not allowed:
            raise TooManyRequests(f"more than {self._rate_limit:g} events per second for this source; retry later")

    async def capture(self, batch: CaptureBatch, rejected: list[dict[str, Any]]) -> CaptureResult:
        accepted, duplicates = await self.wal.append(batch)
        return CaptureResult(
            accepted=accepted,
            duplicates=duplicates,
            rejected=[{k: item[k] for k in ("index", "code", "message")} for item in rejected],
        )

    # -- in the log's writer thread ------------------------------------------------------------

    def _prepare(self, batch: CaptureBatch) -> tuple[CaptureBatch | None, Any]:
        """Drop messageIds already stored or already in this group (rows carry the id first)."""
        source_id = batch.source_id
        pending = self._pending.setdefault(source_id, set())
        known = self.index.seen_many(source_id, [row[0] for row in batch.rows])
        fresh = []
        duplicates = 0
        for row, seen in zip(batch.rows, known, strict=True):
            message_id = row[0]
            if seen or message_id in pending:
                duplicates += 1
                continue
            pending.add(message_id)
            fresh.append(row)
        if not fresh and not batch.rejected:
            return None, (0, duplicates)
        if duplicates:
            batch = CaptureBatch(source_id, batch.received_us, fresh, batch.rejected)
        return batch, (len(fresh), duplicates)

    def _after_group(self, written: list[CaptureBatch]) -> None:
        """Remember the ids that reached the disk; an id whose write failed stays unknown, so the
        client's retry is not taken for a duplicate."""
        for batch in written:
            if batch.rows:
                self.index.add(batch.source_id, [row[0] for row in batch.rows], batch.received_us)
        self._pending = {}
