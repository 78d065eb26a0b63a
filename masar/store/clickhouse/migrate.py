"""``masar store migrate --to URL``: copy an embedded store into ClickHouse, resumably.

The catalog (sources with their ids and write keys, identities and merges, users, rates, spend,
targets, saved audiences and funnels) is copied whole when the ClickHouse store's catalog is a
different file and still empty. Events are copied segment by segment, in blocks of row groups;
each segment is inserted with a deduplication token naming it (ClickHouse numbers the blocks of
one insert), and recorded in ``migrations`` once all of it is in. Run again after an interruption, it skips the
recorded segments and ClickHouse drops the blocks of the interrupted one it already has.
"""

from __future__ import annotations

import fcntl
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from masar.errors import Conflict
from masar.store.metadata import segments as segments_table
from masar.store.metadata import sources as sources_table
from masar.store.metadata import wal_checkpoints


@dataclass
class MigrateReport:
    sources: int = 0
    segments_copied: int = 0
    segments_skipped: int = 0
    rows_copied: int = 0
    catalog_copied: bool = False
    per_source: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _capture_running(embedded: Any) -> bool:
    lock = embedded.root / "wal" / "INGEST.LOCK"
    if not lock.exists():
        return False
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def copy_catalog(embedded: Any, target: Any) -> bool:
    """The embedded catalog into the target's, when they are different files and the target has no
    sources yet (a resumed migration finds it copied). Segment registrations and log checkpoints
    stay behind: they describe the embedded store's files and log."""
    if embedded.root.resolve() == target.root.resolve():
        return False
    with target.engine.connect() as conn:
        if conn.execute(sa.select(sa.func.count()).select_from(sources_table)).scalar():
            return False
    target.engine.dispose()
    source_db = sqlite3.connect(embedded.root / "metadata.db")
    target_db = sqlite3.connect(target.root / "metadata.db")
    try:
        source_db.backup(target_db)
    finally:
        source_db.close()
        target_db.close()
    with target.engine.begin() as conn:
        conn.execute(segments_table.delete())
        conn.execute(wal_checkpoints.delete())
    return True


def migrate(embedded: Any, target: Any, *, on_progress: Callable[[int, int], None] | None = None) -> MigrateReport:
    """Copy ``embedded`` into the ClickHouse store ``target``; ``on_progress(done, total)`` in rows."""
    if _capture_running(embedded):
        raise Conflict(
            "masar serve is running on this data directory: stop it before migrating, so no new "
            "events or compactions happen during the copy",
            code="capture_running",
        )
    target.init_schema()
    report = MigrateReport(catalog_copied=copy_catalog(embedded, target))
    database = target.database
    done_found = target.client.arrow(f"SELECT segment_id FROM {database}.migrations FINAL")
    done = set(done_found.column("segment_id").to_pylist())
    work = []
    for source in embedded.sources():
        report.sources += 1
        report.per_source[source.name] = 0
        for segment in embedded.segments.live(source.id):
            if segment.id in done:
                report.segments_skipped += 1
            else:
                work.append((source, segment))
    total = sum(segment.rows for _, segment in work)
    copied = 0
    if on_progress:
        on_progress(0, total)
    for source, segment in work:
        target.client.insert_parquet(
            f"{database}.events", segment.path, constants={"source_id": source.id},
            settings={"insert_deduplication_token": f"migrate:{segment.id}"},
        )  # fmt: skip
        copied += segment.rows
        if on_progress:
            on_progress(copied, total)
        target.client.insert(
            f"{database}.migrations",
            pa.table({
                "segment_id": [segment.id],
                "source_id": pa.array([source.id], pa.uint32()),
                "rows": pa.array([segment.rows], pa.uint64()),
                "copied_at": pa.array([datetime.now(UTC)], pa.timestamp("us", tz="UTC")),
            }),
        )  # fmt: skip
        report.segments_copied += 1
        report.rows_copied += segment.rows
        report.per_source[source.name] += segment.rows
    return report
