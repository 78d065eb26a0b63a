"""Immutable Parquet segments of events, sorted by (person_id, ts), listed in the metadata registry.

A segment becomes visible when its registry row commits, never before: files are written first,
so a crash leaves at worst an unregistered file, which is cleaned up later. Compaction merges
segments of one level into one of the next and retires the inputs in the same transaction.
Readers in other processes may still be scanning a retired file, so files are deleted only after
a grace period.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from masar.store.metadata import segments, wal_checkpoints

ROW_GROUP_ROWS = 256 * 1024
RETIRED_GRACE = timedelta(minutes=5)
ORPHAN_AGE_SECONDS = 3600
LEVEL0_ROWS = 16 * 1024
_NO_DICTIONARY = frozenset({"message_id", "ts", "original_timestamp", "url", "path", "title", "properties", "context",
                            "session_id", "session_start"})  # fmt: skip
# Statistics let a reader skip row groups by a range; of the text columns only those looked up by
# value are worth the 15% of writing time that min/max over every string costs.
_STRING_STATISTICS = frozenset({"event", "user_id", "anonymous_id", "order_id"})


def level_for_rows(rows: int, fanout: int) -> int:
    """Size-tiered levels: level L holds segments of about LEVEL0_ROWS × fanout^L rows, so a large
    import lands high and is not merged again with every small flush."""
    level = 0
    size = LEVEL0_ROWS
    while rows >= size * fanout:
        size *= fanout
        level += 1
    return level


@dataclass(frozen=True)
class Segment:
    id: str
    source_id: int
    path: Path
    rows: int
    level: int
    min_ts: int | None
    max_ts: int | None


def _stat(table: pa.Table, column: str) -> tuple[int | None, int | None]:
    if table.num_rows == 0:
        return None, None
    values = table.column(column)
    if pa.types.is_timestamp(values.type):
        values = values.cast(pa.int64())
    bounds = pc.min_max(values)
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    return low, high


def _writer_options(schema: pa.Schema) -> dict[str, Any]:
    return {
        "compression": "zstd",
        "write_statistics": [f.name for f in schema if not pa.types.is_string(f.type) or f.name in _STRING_STATISTICS],
        # Dictionaries pay off for repeated values only; building one for ids and JSON (and then
        # falling back) was a third of the writing time.
        "use_dictionary": [f.name for f in schema if f.name not in _NO_DICTIONARY],
    }


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


class SegmentStore:
    def __init__(self, root: Path, engine: Engine):
        self.root = root
        self.engine = engine

    def directory(self, source_id: int) -> Path:
        return self.root / "events" / str(source_id)

    def write_file(self, source_id: int, table: pa.Table, level: int = 0) -> tuple[str, Path]:
        directory = self.directory(source_id)
        directory.mkdir(parents=True, exist_ok=True)
        segment_id = uuid.uuid4().hex
        path = directory / f"L{level}-{segment_id}.parquet"
        with pq.ParquetWriter(path, table.schema, **_writer_options(table.schema)) as writer:
            writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        _fsync(path)
        return segment_id, path

    @staticmethod
    def write_stream(
        batches: pa.RecordBatchReader, path: Path, schema: pa.Schema, rows_per_group: int | None = None
    ) -> int:
        """Write a stream of batches (a compaction's sorted rows) as one segment file, with the
        options of ``write_file``, in row groups of ``rows_per_group`` (default ``ROW_GROUP_ROWS``):
        only one row group is held in memory. Returns the rows written. Batches are cast to
        ``schema`` (DuckDB names UTC "Etc/UTC")."""
        group_rows = rows_per_group or ROW_GROUP_ROWS
        rows = 0
        pending: list[pa.RecordBatch] = []
        pending_rows = 0
        with pq.ParquetWriter(path, schema, **_writer_options(schema)) as writer:
            for batch in batches:
                pending.append(batch.cast(schema))
                pending_rows += batch.num_rows
                if pending_rows >= group_rows:
                    table = pa.Table.from_batches(pending, schema)
                    writer.write_table(table.slice(0, group_rows), row_group_size=group_rows)
                    rest = table.slice(group_rows)
                    pending, pending_rows = rest.to_batches(), rest.num_rows
                    rows += group_rows
            if pending_rows:
                writer.write_table(pa.Table.from_batches(pending, schema), row_group_size=group_rows)
                rows += pending_rows
        _fsync(path)
        return rows

    def register(
        self,
        conn: Connection,
        source_id: int,
        segment_id: str,
        path: Path,
        table: pa.Table,
        *,
        level: int,
        origin: str,
    ) -> None:
        min_ts, max_ts = _stat(table, "ts")
        min_rec, max_rec = _stat(table, "received_at")
        min_p, max_p = _stat(table, "person_id")
        stats = (table.num_rows, min_ts, max_ts, min_rec, max_rec, min_p, max_p)
        self.register_stats(conn, source_id, segment_id, path, stats, level=level, origin=origin)

    def register_stats(
        self,
        conn: Connection,
        source_id: int,
        segment_id: str,
        path: Path,
        stats: tuple,
        *,
        level: int,
        origin: str,
    ) -> None:
        rows, min_ts, max_ts, min_rec, max_rec, min_p, max_p = stats
        conn.execute(
            segments.insert().values(
                id=segment_id,
                source_id=source_id,
                path=str(path.relative_to(self.root)),
                rows=int(rows),
                bytes=path.stat().st_size,
                level=level,
                min_ts=min_ts,
                max_ts=max_ts,
                min_received=min_rec,
                max_received=max_rec,
                min_person=min_p,
                max_person=max_p,
                origin=origin[:40],
                created_at=datetime.now(UTC),
            )
        )

    @staticmethod
    def save_checkpoint(conn: Connection, name: str, file_seq: int, offset: int) -> None:
        statement = sa.dialects.sqlite.insert(wal_checkpoints).values(name=name, file_seq=file_seq, offset=offset)
        conn.execute(
            statement.on_conflict_do_update(index_elements=["name"], set_={"file_seq": file_seq, "offset": offset})
        )

    def checkpoint(self, name: str) -> tuple[int, int]:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(wal_checkpoints.c.file_seq, wal_checkpoints.c.offset).where(wal_checkpoints.c.name == name)
            ).first()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def live(
        self,
        source_id: int,
        *,
        ts_from: int | None = None,
        ts_to: int | None = None,
        received_from: int | None = None,
    ) -> list[Segment]:
        query = sa.select(
            segments.c.id, segments.c.path, segments.c.rows, segments.c.level, segments.c.min_ts, segments.c.max_ts
        ).where(segments.c.source_id == source_id, segments.c.retired_at.is_(None))
        if ts_from is not None:
            query = query.where(segments.c.max_ts >= ts_from)
        if ts_to is not None:
            query = query.where(segments.c.min_ts <= ts_to)
        if received_from is not None:
            query = query.where(segments.c.max_received >= received_from)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(segments.c.created_at)).all()
        return [
            Segment(r.id, source_id, self.root / r.path, int(r.rows), int(r.level), r.min_ts, r.max_ts) for r in rows
        ]

    def total_rows(self, source_id: int) -> int:
        with self.engine.connect() as conn:
            total = conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(segments.c.rows), 0)).where(
                    segments.c.source_id == source_id, segments.c.retired_at.is_(None)
                )
            ).scalar()
        return int(total or 0)

    def retire(self, conn: Connection, segment_ids: list[str]) -> bool:
        """Retire inputs of a compaction; False if another compactor got there first."""
        result = conn.execute(
            segments.update()
            .where(segments.c.id.in_(segment_ids), segments.c.retired_at.is_(None))
            .values(retired_at=datetime.now(UTC))
        )
        return result.rowcount == len(segment_ids)

    def reap(self, *, grace: timedelta = RETIRED_GRACE) -> int:
        """Delete files of segments retired longer ago than ``grace``, and unregistered orphans."""
        cutoff = datetime.now(UTC) - grace
        removed = 0
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.select(segments.c.id, segments.c.path).where(
                    segments.c.retired_at.is_not(None), segments.c.retired_at < cutoff
                )
            ).all()
            for row in rows:
                (self.root / row.path).unlink(missing_ok=True)
                removed += 1
            if rows:
                conn.execute(segments.delete().where(segments.c.id.in_([row.id for row in rows])))
            known = {row.path for row in conn.execute(sa.select(segments.c.path))}
        events = self.root / "events"
        if events.exists():
            now = time.time()
            for path in events.glob("*/*.parquet"):
                if str(path.relative_to(self.root)) not in known and now - path.stat().st_mtime > ORPHAN_AGE_SECONDS:
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed
