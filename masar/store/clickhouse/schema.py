"""Masar's tables in ClickHouse, for one node or a cluster (docs/scaling.md shows the DDL).

* ``events``: every enriched event, the same columns as the embedded store's segments plus
  ``source_id``. MergeTree ordered by (source_id, person_id, ts): a person's events are contiguous
  and in time order, which is what funnels, journeys and per-person facts scan. Partitioned by
  month, so retention drops whole partitions.
* ``person_overrides``: identity merges, as (old person → new person) rows with a version. A merge
  never rewrites history: analyses read ``coalesce(new, old)`` through a join, as PostHog does.
* ``migrations``: which embedded segments ``masar store migrate`` has copied (resumable).

On a cluster each table is a ReplicatedMergeTree ``*_local`` on every shard with a Distributed
table in front, events sharded by a hash of the person, so a person's events sit on one shard.
The small tables (overrides, bookkeeping) are replicated whole to every node, so the override
join runs locally on each shard.
"""

from __future__ import annotations

import pyarrow as pa

from masar.store.clickhouse.client import clickhouse_type
from masar.store.schema import EVENTS

# Never NULL once enriched: the sort key and the event's identity.
_REQUIRED = {"message_id", "type", "ts", "person_id"}
# Few distinct values: dictionary-encoded on disk and in memory.
_LOW_CARDINALITY = {
    "type", "event", "currency", "channel", "session_source", "session_medium", "device_type", "browser", "os",
    "country", "library_name", "library_version", "locale", "timezone", "utm_source", "utm_medium",
}  # fmt: skip
SCHEMA_VERSION = 1


def event_columns() -> list[tuple[str, str]]:
    columns = [("source_id", "UInt32")]
    for field in EVENTS:
        columns.append(
            (field.name, clickhouse_type(field.type, nullable=field.name not in _REQUIRED,
                                         low_cardinality=field.name in _LOW_CARDINALITY))  # fmt: skip
        )
    return columns


def _engine(cluster: str | None, database: str, table: str, *, replacing: str | None = None,
            everywhere: bool = False) -> str:  # fmt: skip
    """The table engine; on a cluster, replicated per shard, or (``everywhere``) one replication
    group across all nodes, so every shard holds the whole (small) table."""
    kind = "ReplacingMergeTree" if replacing else "MergeTree"
    args = f"({replacing})" if replacing else ""
    if cluster is None:
        return f"{kind}{args}"
    if everywhere:
        path = f"'/clickhouse/tables/all/{database}/{table}', '{{shard}}-{{replica}}'"
    else:
        path = f"'/clickhouse/tables/{{shard}}/{database}/{table}', '{{replica}}'"
    return f"Replicated{kind}({path}{', ' + replacing if replacing else ''})"


def ddl(database: str, cluster: str | None = None) -> list[str]:
    """CREATE statements, in order, idempotent (IF NOT EXISTS)."""
    on = f" ON CLUSTER {cluster}" if cluster else ""
    local = "_local" if cluster else ""
    columns = ",\n    ".join(f"`{name}` {kind}" for name, kind in event_columns())
    statements = [
        f"CREATE DATABASE IF NOT EXISTS {database}{on}",
        f"""CREATE TABLE IF NOT EXISTS {database}.events{local}{on} (
    {columns}
) ENGINE = {_engine(cluster, database, "events" + local)}
PARTITION BY toYYYYMM(ts)
ORDER BY (source_id, person_id, ts)
SETTINGS non_replicated_deduplication_window = 100000""",
        f"""CREATE TABLE IF NOT EXISTS {database}.person_overrides{on} (
    `source_id` UInt32,
    `old_person_id` Int64,
    `new_person_id` Int64,
    `version` UInt64
) ENGINE = {_engine(cluster, database, "person_overrides", everywhere=True, replacing="version")}
ORDER BY (source_id, old_person_id)""",
        f"""CREATE TABLE IF NOT EXISTS {database}.migrations{on} (
    `segment_id` String,
    `source_id` UInt32,
    `rows` UInt64,
    `copied_at` DateTime64(6, 'UTC')
) ENGINE = {_engine(cluster, database, "migrations", everywhere=True, replacing="copied_at")}
ORDER BY segment_id""",
        f"""CREATE TABLE IF NOT EXISTS {database}.schema_version{on} (
    `version` UInt32,
    `applied_at` DateTime64(6, 'UTC')
) ENGINE = {_engine(cluster, database, "schema_version", everywhere=True, replacing="applied_at")}
ORDER BY version""",
    ]
    if cluster:
        statements += [
            f"CREATE TABLE IF NOT EXISTS {database}.events{on} AS {database}.events_local "
            f"ENGINE = Distributed({cluster}, {database}, events_local, cityHash64(source_id, person_id))",
        ]
    return statements


def to_clickhouse(events: pa.Table, source_id: int) -> pa.Table:
    """Enriched events as the events table's columns, in its order."""
    columns = [pa.array([source_id] * events.num_rows, type=pa.uint32())]
    for field in EVENTS:
        column = events.column(field.name) if field.name in events.column_names else pa.nulls(events.num_rows, field.type)
        columns.append(column.cast(field.type) if column.type != field.type else column)
    return pa.Table.from_arrays(columns, names=["source_id", *EVENTS.names])
