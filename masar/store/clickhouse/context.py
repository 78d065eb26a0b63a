"""What a ClickHouse runner needs to answer one query about one source."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from masar.engine.context import SourceClock
from masar.store.base import Source
from masar.store.clickhouse.client import Client


@dataclass
class ClickHouseContext(SourceClock):
    """The ClickHouse counterpart of ``QueryContext``: SQL over the source's events instead of a
    warm frame. ``events`` is a subquery of every event of the source (identify calls included)
    with ``person`` (after identity merges) and ``day`` (the local date) added; runners compile
    their query object into SQL over it and only aggregates come back."""

    source: Source
    client: Client
    events: str
    store: Any  # metadata: rates, spend, targets, audiences, identities of persons
    # The version of the source's events and metadata this query reads (``ClickHouseStore.run``
    # sets it): derived tables built for one version (the sales facts) are kept and shared by the
    # queries of that version. None: build them for this query alone.
    version: Hashable | None = None
    facts_cache: Any = None  # masar.store.clickhouse.facts.FactsCache, with ``version``

    def arrow(self, sql: str, params: dict[str, Any] | None = None):
        return self.client.arrow(sql, params)


def events_sql(database: str, source: Source, timezone: str) -> str:
    """The source's events with ``person`` after identity merges and the local ``day``."""
    tz = timezone.replace("\\", "\\\\").replace("'", "\\'")
    return f"""(
        SELECT e.*, coalesce(o.new_person_id, e.person_id) AS person, toDate(e.ts, '{tz}') AS day
        FROM {database}.events AS e
        LEFT JOIN (
            SELECT old_person_id, argMax(new_person_id, version) AS new_person_id
            FROM {database}.person_overrides WHERE source_id = {int(source.id)} GROUP BY old_person_id
        ) AS o ON o.old_person_id = e.person_id
        WHERE e.source_id = {int(source.id)}
    )"""
