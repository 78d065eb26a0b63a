"""The same data in the embedded store and in ClickHouse (chdb), for comparing results.

``twin(embedded, client)`` copies every live segment of every source of an embedded store into a
fresh ClickHouse database on the shared chdb engine and returns a function that builds the
ClickHouse context of a source. Metadata (rates, spend, targets, audiences, identities) is read
from the embedded store's catalog, as a ClickHouse store reads its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pyarrow.parquet as pq

from masar.store.clickhouse.client import Client
from masar.store.clickhouse.context import ClickHouseContext, events_sql
from masar.store.clickhouse.schema import ddl, to_clickhouse

_names = itertools.count()


def twin(embedded, client: Client) -> Callable[[str], ClickHouseContext]:
    database = f"twin_{next(_names)}"
    for statement in ddl(database):
        client.command(statement)
    for source in embedded.sources():
        for segment in embedded.segments.live(source.id):
            client.insert(f"{database}.events", to_clickhouse(pq.read_table(segment.path), source.id))
        overrides = embedded.identities.overrides(source.id)
        if overrides:
            import pyarrow as pa

            client.insert(
                f"{database}.person_overrides",
                pa.table({
                    "source_id": pa.array([source.id] * len(overrides), pa.uint32()),
                    "old_person_id": pa.array(list(overrides), pa.int64()),
                    "new_person_id": pa.array(list(overrides.values()), pa.int64()),
                    "version": pa.array([1] * len(overrides), pa.uint64()),
                }),
            )  # fmt: skip

    def context(source_name: str) -> ClickHouseContext:
        source = embedded.source(source_name)
        return ClickHouseContext(source, client, events_sql(database, source, source.timezone or "UTC"), embedded)

    return context
