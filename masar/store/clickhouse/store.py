"""The ClickHouse store: events in ClickHouse (a server, a cluster, or chdb in process), metadata and
the capture write-ahead log in the local data directory, analyses compiled to ClickHouse SQL.

Writes come in batches from the ingestor (or an import), each inserted with a deduplication token
derived from its place in the log, so a batch replayed after a crash or an outage is stored once.
While ClickHouse is down, inserts fail, the log keeps every acknowledged event, and the ingestor
retries until ClickHouse is back (docs/scaling.md, "Capture").
"""

from __future__ import annotations

import functools
import threading
import uuid
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from masar.config import Settings
from masar.engine import parse_query
from masar.engine.templates import expand_template
from masar.enrich.channels import Attribution
from masar.enrich.pipeline import CarriedSession, SessionState
from masar.errors import MasarError
from masar.store.base import Source, WriteResult
from masar.store.catalog import Catalog, _rejected_row
from masar.store.clickhouse.client import ChdbClient, Client, HttpClient
from masar.store.clickhouse.context import ClickHouseContext, events_sql
from masar.store.clickhouse.facts import FactsCache
from masar.store.clickhouse.runners import RUNNERS
from masar.store.clickhouse.schema import SCHEMA_VERSION, ddl, to_clickhouse
from masar.store.embedded.segments import SegmentStore
from masar.store.metadata import rejected
from masar.store.url import StoreUrl

_RESULTS = 256


class NotSupported(MasarError):
    code = "not_supported_on_clickhouse"
    status = 501


@dataclass
class PreparedBatch:
    source_id: int
    id: str
    events: pa.Table
    origin: str

    @property
    def rows(self) -> int:
        return self.events.num_rows


class CaptureLog(SegmentStore):
    """The capture log's checkpoints, kept in the catalog as for the embedded store; events are not
    segment files here, so there are none to list (a catalog copied from an embedded store may
    still name its files)."""

    def live(self, source_id: int, **_: Any) -> list[Any]:
        return []


def connect(url: StoreUrl) -> Client:
    if url.kind == "chdb":
        assert url.path is not None
        return ChdbClient(url.path, database=url.database)
    return HttpClient(host=url.host, port=url.port, username=url.username, password=url.password,
                      database=url.database, secure=url.secure, cluster=url.cluster)  # fmt: skip


class ClickHouseStore(Catalog):
    def __init__(self, settings: Settings, url: StoreUrl, *, client: Client | None = None):
        if url.kind == "chdb":
            assert url.path is not None
            root = chdb_root(url.path, url.database)
        else:
            root = settings.resolved_data_dir()
        super().__init__(settings, root)
        self.url = url
        self.client = client or connect(url)
        self.database = url.database
        self.segments = CaptureLog(self.root, self.engine)
        self._results: OrderedDict[Any, Any] = OrderedDict()
        self._results_lock = threading.Lock()
        self._facts = FactsCache()
        self._synced_overrides: dict[int, tuple[int, int]] = {}
        if url.kind == "chdb":
            self.init_schema()  # in process and on local disk: nothing to ask anyone

    # -- schema ----------------------------------------------------------------------------------

    @property
    def ingest_in_process(self) -> bool:
        """chdb runs in one process per data directory: the server's ingestor is a thread of it."""
        return self.url.kind == "chdb"

    def init_schema(self) -> list[str]:
        """Create the database and tables (idempotent); returns the statements run."""
        statements = ddl(self.database, self.url.cluster)
        for statement in statements:
            self.client.command(statement)
        found = self.client.arrow(f"SELECT count() AS n FROM {self.database}.schema_version WHERE version = {SCHEMA_VERSION}")
        if found.column("n")[0].as_py() == 0:
            self.client.command(
                f"INSERT INTO {self.database}.schema_version (version, applied_at) VALUES ({SCHEMA_VERSION}, now64(6))"
            )
        return statements

    # -- writing ---------------------------------------------------------------------------------

    def write_events(self, source: Source, normalized: pa.Table, *, origin: str = "api",
                     state: SessionState | None = None) -> WriteResult:  # fmt: skip
        prepared = self.prepare_segment(source, normalized, origin=origin, state=state)
        self.commit([prepared] if prepared else [])
        return WriteResult(written=prepared.rows if prepared else 0, segments=[prepared.id] if prepared else [])

    def prepare_segment(self, source: Source, normalized: pa.Table, *, origin: str,
                        state: SessionState | None = None, load: bool = False) -> PreparedBatch | None:  # fmt: skip
        """Enrich a batch; ``commit`` inserts it."""
        if normalized.num_rows == 0:
            return None
        loader = functools.partial(self.session_state_for, source) if (load or state is None) else None
        if state is None:
            state = SessionState()
        events = self.enricher.enrich(self.profile(source), normalized, state, loader)
        return self.prepare_events(source, events, origin=origin)

    def enrich_sorted(self, source: Source, normalized: pa.Table, persons: np.ndarray, *,
                      state: SessionState, stored: Any) -> pa.Table:  # fmt: skip
        """As the embedded store's: sessions continue from ``state`` and from what ClickHouse holds."""
        loader = functools.partial(self.session_state_for, source)
        return self.enricher.enrich_sorted(self.profile(source), normalized, persons, state, loader, carry="last")

    def prepare_events(self, source: Source, events: pa.Table, *, origin: str) -> PreparedBatch:
        return PreparedBatch(source.id, uuid.uuid4().hex, events, origin)

    def commit(self, prepared: list[PreparedBatch], *, checkpoint: tuple[str, int, int] | None = None,
               rejected_items: list[tuple[int | None, dict[str, Any]]] = ()) -> None:  # fmt: skip
        """Insert the batches, then record the log checkpoint and rejected input.

        A batch from the log is named by where it ends in the log; that end is written down before
        the insert, so a replay after a crash reads exactly the same records, builds the same
        batches and ClickHouse drops the repeated inserts by their deduplication token."""
        if not prepared and checkpoint is None and not rejected_items:
            return
        if checkpoint is not None and prepared:
            name, seq, offset = checkpoint
            with self.engine.begin() as conn:
                self.segments.save_checkpoint(conn, pending_name(name), seq, offset)
        for i, batch in enumerate(prepared):
            token = f"{checkpoint[0]}:{checkpoint[1]}:{checkpoint[2]}:{batch.source_id}:{i}" if checkpoint else batch.id
            self.client.insert(
                f"{self.database}.events",
                to_clickhouse(batch.events, batch.source_id),
                settings={"insert_deduplication_token": token},
            )
        with self.engine.begin() as conn:
            if rejected_items:
                conn.execute(rejected.insert(), [_rejected_row(source_id, item) for source_id, item in rejected_items])
            if checkpoint is not None:
                self.segments.save_checkpoint(conn, *checkpoint)
                self.segments.save_checkpoint(conn, pending_name(checkpoint[0]), 0, 0)

    def pending_checkpoint(self, name: str) -> tuple[int, int] | None:
        """Where the batch being inserted when the ingestor last stopped ends, if it was not committed."""
        found = self.segments.checkpoint(pending_name(name))
        return found if found != (0, 0) else None

    def quarantine(self, source_id: int | None, items: list[dict[str, Any]], *, origin: str) -> None:
        if items:
            self.commit([], rejected_items=[(source_id, {"origin": origin, **item}) for item in items])

    def limit_for_background(self, memory_mb: int) -> None:
        """ClickHouse's own settings bound its memory; this process only enriches and sends."""

    def maintain(self) -> None:
        """ClickHouse merges its parts itself."""

    # -- reading ---------------------------------------------------------------------------------

    def _events(self) -> str:
        return f"{self.database}.events"

    def count_events(self, source: Source, *, event: str | None = None) -> int:
        where = "source_id = {s:UInt32}" + (" AND event = {e:String}" if event is not None else "")
        found = self.client.arrow(f"SELECT count() AS n FROM {self._events()} WHERE {where}", {"s": source.id, "e": event})
        return int(found.column("n")[0].as_py())

    def event_counts(self, source: Source) -> list[tuple[str, int]]:
        found = self.client.arrow(
            f"SELECT event, count() AS n FROM {self._events()} WHERE source_id = {{s:UInt32}} "
            "GROUP BY event ORDER BY n DESC, event",
            {"s": source.id},
        )
        return [(e, int(n)) for e, n in zip(found.column("event").to_pylist(), found.column("n").to_pylist(), strict=True)]

    def tail(self, source: Source, *, limit: int = 20) -> list[dict[str, Any]]:
        found = self.client.arrow(
            f"""SELECT message_id, type, event, ts, received_at, person_id, anonymous_id, user_id, session_id,
                       channel, device_type, country, currency, revenue, total, properties
                FROM {self._events()} WHERE source_id = {{s:UInt32}}
                ORDER BY received_at DESC, ts DESC LIMIT {{n:UInt32}}""",
            {"s": source.id, "n": limit},
        )
        return found.to_pylist()

    def existing_message_ids(self, source: Source, message_ids: pa.Array) -> set[str]:
        if len(message_ids) == 0:
            return set()
        found = self.client.arrow(
            f"SELECT DISTINCT message_id FROM {self._events()} "
            "WHERE source_id = {s:UInt32} AND message_id IN {ids:Array(String)}",
            {"s": source.id, "ids": [m for m in message_ids.to_pylist() if m is not None]},
        )
        return set(found.column("message_id").to_pylist())

    def recent_message_ids(self, source_id: int, since_us: int) -> Iterator[pa.RecordBatch]:
        """As the embedded store's: ``message_id`` and ``received_us`` (epoch µs) in Arrow batches."""
        found = self.client.arrow(
            f"SELECT message_id, toUnixTimestamp64Micro(received_at) AS received_us FROM {self._events()} "
            "WHERE source_id = {s:UInt32} AND received_at >= fromUnixTimestamp64Micro({t:Int64}, 'UTC')",
            {"s": source_id, "t": since_us},
        )
        yield from found.to_batches()

    def session_state_for(self, source: Source, persons: np.ndarray | None = None, *,
                          since_us: int | None = None, segments: Any = None) -> SessionState:  # fmt: skip
        """Each person's last stored session: for ``persons``, or for everyone active since ``since_us``."""
        state = SessionState()
        params: dict[str, Any] = {"s": source.id}
        if persons is not None:
            if len(persons) == 0:
                return state
            where = "person_id IN {p:Array(Int64)}"
            params["p"] = [int(p) for p in persons]
        else:
            where = "ts >= fromUnixTimestamp64Micro({t:Int64}, 'UTC')"
            params["t"] = int(since_us or 0)
        campaign = (
            "if(coalesce(utm_source, utm_medium, utm_campaign, utm_content, utm_term, click_id) IS NULL, NULL, "
            "concatWithSeparator('|', coalesce(utm_source, ''), coalesce(utm_medium, ''), coalesce(utm_campaign, ''), "
            "coalesce(utm_content, ''), coalesce(utm_term, ''), coalesce(click_id, '')))"
        )
        found = self.client.arrow(
            f"""
            WITH ev AS (SELECT person_id, session_id, ts, session_start, {campaign} AS campaign, channel,
                               session_source, session_medium, session_campaign
                        FROM {self._events()} WHERE source_id = {{s:UInt32}} AND {where}),
                 last AS (SELECT person_id, argMax(session_id, ts) AS sid, max(ts) AS last_ts FROM ev GROUP BY person_id)
            SELECT last.person_id AS person, last.sid AS sid,
                   toUnixTimestamp64Micro(min(ev.session_start)) AS start, toUnixTimestamp64Micro(any(last.last_ts)) AS last,
                   argMin(ev.campaign, ev.ts) AS campaign, any(ev.channel) AS channel, any(ev.session_source) AS source,
                   any(ev.session_medium) AS medium, any(ev.session_campaign) AS session_campaign
            FROM last JOIN ev ON ev.person_id = last.person_id AND ev.session_id = last.sid
            GROUP BY last.person_id, last.sid
            """,
            params,
        )
        for row in found.to_pylist():
            state.sessions[int(row["person"])] = CarriedSession(
                session_id=row["sid"],
                start=int(row["start"]),
                last=int(row["last"]),
                campaign=row["campaign"],
                attribution=Attribution(source=row["source"], medium=row["medium"],
                                        campaign=row["session_campaign"], channel=row["channel"]),  # fmt: skip
            )
        return state

    # -- analyses --------------------------------------------------------------------------------

    def _sync_overrides(self, source: Source) -> None:
        """Identity merges happen in the catalog; ClickHouse gets each new version of them, as rows
        of an override table (never a rewrite of events)."""
        signature = self._overrides_signature(source.id)
        if self._synced_overrides.get(source.id) == signature:
            return
        overrides = self.identities.overrides(source.id)
        if overrides:
            version = int(uuid.uuid1().time)
            self.client.insert(
                f"{self.database}.person_overrides",
                pa.table({
                    "source_id": pa.array([source.id] * len(overrides), pa.uint32()),
                    "old_person_id": pa.array(list(overrides), pa.int64()),
                    "new_person_id": pa.array(list(overrides.values()), pa.int64()),
                    "version": pa.array([version] * len(overrides), pa.uint64()),
                }),
            )  # fmt: skip
        self._synced_overrides[source.id] = signature

    def query_context(self, source: Source, version: Hashable | None = None) -> ClickHouseContext:
        """What a runner needs for ``source``; with ``version`` (of its events and metadata), the
        derived tables of that version are shared with the other queries reading it."""
        self._sync_overrides(source)
        events = events_sql(self.database, source, source.timezone or "UTC")
        return ClickHouseContext(source, self.client, events, self, version=version, facts_cache=self._facts)

    def _events_version(self, source: Source) -> tuple[Any, ...]:
        found = self.client.arrow(
            f"SELECT count() AS n, max(received_at) AS r FROM {self._events()} WHERE source_id = {{s:UInt32}}",
            {"s": source.id},
        )
        return (found.column("n")[0].as_py(), found.column("r")[0].as_py(), self._overrides_signature(source.id))

    def run(self, query: Any, *, reuse: bool = True) -> Any:
        """Run a query object (or its JSON) inside ClickHouse; results are kept per version of the
        source's events and metadata, as in the embedded store."""
        parsed = parse_query(expand_template(self, query) if isinstance(query, dict) else query)
        runner = RUNNERS.get(parsed.kind)
        if runner is None:
            raise NotSupported(f"the {parsed.kind} analysis does not run on ClickHouse yet")
        source = self.source(parsed.source)
        version = (self._inputs_version(source), self._events_version(source))
        context = self.query_context(source, version)
        key = (parsed.model_dump_json(), *version, date.today())
        if reuse:
            with self._results_lock:
                if key in self._results:
                    self._results.move_to_end(key)
                    return self._results[key]
        result = runner(context, parsed)
        with self._results_lock:
            self._results[key] = result
            while len(self._results) > _RESULTS:
                self._results.popitem(last=False)
        return result

    def close(self) -> None:
        try:
            self._facts.clear(self.client)
        finally:
            self.client.close()
        self.engine.dispose()


def pending_name(name: str) -> str:
    return f"{name}#pending"


def chdb_root(path: Path, database: str) -> Path:
    return path.expanduser().resolve() / f"masar-{database}"
