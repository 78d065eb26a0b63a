"""The embedded store: Parquet segments read by DuckDB for events, SQLite for metadata.

Nothing to install and safe to share: ``masar serve`` and CLI commands may open the same data
directory at once. Events are immutable segment files (readers never lock), and every change of
shared state is a short SQLite transaction.
"""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from masar.config import Settings
from masar.engine import RUNNERS, QueryContext, parse_query
from masar.engine.frame import EventFrame, build_frame, extend_frame
from masar.engine.templates import expand_template
from masar.enrich.channels import Attribution
from masar.enrich.pipeline import CarriedSession, SessionState
from masar.store.base import Source, WriteResult
from masar.store.catalog import Catalog, _rejected_row
from masar.store.embedded.segments import Segment, SegmentStore, level_for_rows
from masar.store.metadata import rejected

# A compaction's writer takes the sorted rows from DuckDB in batches and writes row groups of
# half ROW_GROUP_ROWS: with wide rows (~1.4 KB of JSON each) a 256k-row group held in memory
# raised the ingestor's peak by ~1 GB in a 5-minute capture run.
MERGE_BATCH_ROWS = 64 * 1024
MERGE_ROW_GROUP_ROWS = 128 * 1024
RECENT_ID_BATCH_ROWS = 1 << 20


@dataclass
class PreparedSegment:
    source_id: int
    id: str
    path: Path
    events: pa.Table
    origin: str

    @property
    def rows(self) -> int:
        return self.events.num_rows


def sql_list(paths: list[Path]) -> str:
    """A DuckDB list literal of file paths (paths are ours, but quote them properly anyway)."""
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


class EmbeddedStore(Catalog):
    def __init__(self, settings: Settings):
        super().__init__(settings, settings.resolved_data_dir())
        self.segments = SegmentStore(self.root, self.engine)
        self._duck = duckdb.connect()
        self._duck.execute("SET TimeZone = 'UTC'")
        self._duck_lock = threading.Lock()
        self._frames: dict[int, EventFrame] = {}
        self._frames_lock = threading.Lock()

    def write_events(
        self,
        source: Source,
        normalized: pa.Table,
        *,
        origin: str = "api",
        state: SessionState | None = None,
    ) -> WriteResult:
        """Enrich normalized rows and commit them as one segment."""
        prepared = self.prepare_segment(source, normalized, origin=origin, state=state)
        self.commit([prepared] if prepared else [])
        return WriteResult(written=prepared.rows if prepared else 0, segments=[prepared.id] if prepared else [])

    def prepare_segment(
        self,
        source: Source,
        normalized: pa.Table,
        *,
        origin: str,
        state: SessionState | None = None,
        load: bool = False,
    ) -> PreparedSegment | None:
        """Enrich and write a segment file, not yet visible: ``commit`` makes it so.

        ``state`` carries sessions between calls; with ``load`` (or without a state), the last stored
        session of persons not in it is read from the store first.
        """
        if normalized.num_rows == 0:
            return None
        loader = functools.partial(self.session_state_for, source) if (load or state is None) else None
        if state is None:
            state = SessionState()
        events = self.enricher.enrich(self.profile(source), normalized, state, loader)
        return self.prepare_events(source, events, origin=origin)

    def enrich_sorted(
        self,
        source: Source,
        normalized: pa.Table,
        persons: np.ndarray,
        *,
        state: SessionState,
        stored: list[Segment],
    ) -> pa.Table:
        """Event rows for rows already resolved to ``persons`` and sorted by (person, ts), handed
        over person by person (an import sorted as a whole): sessions continue from ``state`` and
        from the last sessions in ``stored`` (the segments that existed before), and only the last
        person's session needs carrying to the next call."""
        loader = functools.partial(self.session_state_for, source, segments=stored) if stored else None
        return self.enricher.enrich_sorted(self.profile(source), normalized, persons, state, loader, carry="last")

    def prepare_events(self, source: Source, events: pa.Table, *, origin: str) -> PreparedSegment:
        """Write enriched events (sorted by person and time) as a segment file, not yet visible."""
        segment_id, path = self.segments.write_file(
            source.id, events, level=level_for_rows(events.num_rows, self.settings.compact_fanout)
        )
        return PreparedSegment(source.id, segment_id, path, events, origin)

    def commit(
        self,
        prepared: list[PreparedSegment],
        *,
        checkpoint: tuple[str, int, int] | None = None,
        rejected_items: list[tuple[int | None, dict[str, Any]]] = (),
    ) -> None:
        """Make segments visible, record quarantined input and a log checkpoint: all or nothing."""
        if not prepared and checkpoint is None and not rejected_items:
            return
        with self.engine.begin() as conn:
            for segment in prepared:
                self.segments.register(
                    conn,
                    segment.source_id,
                    segment.id,
                    segment.path,
                    segment.events,
                    level=level_for_rows(segment.rows, self.settings.compact_fanout),
                    origin=segment.origin,
                )
            if rejected_items:
                conn.execute(rejected.insert(), [_rejected_row(source_id, item) for source_id, item in rejected_items])
            if checkpoint is not None:
                self.segments.save_checkpoint(conn, *checkpoint)

    # Segments are files: the ingestor may run in its own process, beside the server's readers.
    ingest_in_process = False

    def limit_for_background(self, memory_mb: int) -> None:
        """Bound this process's DuckDB for background work (the ingestor): compaction sorts millions
        of wide rows; unbounded, DuckDB took 4.7 GB in a 5-minute capture run. Bounded, it spills
        to disk and the server's memory stays flat; one thread leaves the other core to the server."""
        spill = self.root / "tmp"
        self.query(f"SET memory_limit = '{memory_mb}MB'")
        self.query("SET temp_directory = '" + str(spill).replace("'", "''") + "'")
        self.query("SET threads = 1")

    def pending_checkpoint(self, name: str) -> tuple[int, int] | None:
        """None: a segment and its checkpoint are committed together, nothing is ever half done."""
        return None

    def quarantine(self, source_id: int | None, items: list[dict[str, Any]], *, origin: str) -> None:
        """Keep rejected input with its reason, so nothing disappears silently."""
        if items:
            self.commit([], rejected_items=[(source_id, {"origin": origin, **item}) for item in items])

    def events_relation(self, source: Source, segments: list[Segment] | None = None) -> str | None:
        """SQL for a relation over the source's live events, or None when there are none yet."""
        live = segments if segments is not None else self.segments.live(source.id)
        if not live:
            return None
        return f"read_parquet({sql_list([s.path for s in live])}, union_by_name = true)"

    def query(self, sql: str, params: list[Any] | None = None) -> duckdb.DuckDBPyConnection:
        cursor = self._duck.cursor()
        return cursor.execute(sql, params or [])

    def count_events(self, source: Source, *, event: str | None = None) -> int:
        if event is None:
            return self.segments.total_rows(source.id)
        relation = self.events_relation(source)
        if relation is None:
            return 0
        return int(self.query(f"SELECT count(*) FROM {relation} WHERE event = ?", [event]).fetchone()[0])

    def event_counts(self, source: Source) -> list[tuple[str, int]]:
        relation = self.events_relation(source)
        if relation is None:
            return []
        rows = self.query(f"SELECT event, count(*) AS n FROM {relation} GROUP BY event ORDER BY n DESC, event").fetchall()
        return [(name, int(n)) for name, n in rows]

    def tail(self, source: Source, *, limit: int = 20) -> list[dict[str, Any]]:
        relation = self.events_relation(source)
        if relation is None:
            return []
        cursor = self.query(
            f"""SELECT message_id, type, event, ts, received_at, person_id, anonymous_id, user_id, session_id,
                       channel, device_type, country, currency, revenue, total, properties
                FROM {relation} ORDER BY received_at DESC, ts DESC LIMIT ?""",
            [limit],
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def existing_message_ids(self, source: Source, message_ids: pa.Array) -> set[str]:
        """Which of these ids are already stored (makes re-imports add nothing)."""
        relation = self.events_relation(source)
        if relation is None or len(message_ids) == 0:
            return set()
        wanted = pa.table({"message_id": message_ids})
        with self._duck_lock:
            cursor = self._duck.cursor()
            cursor.register("wanted_ids", wanted)
            rows = cursor.execute(
                f"SELECT e.message_id FROM {relation} e SEMI JOIN wanted_ids w ON e.message_id = w.message_id"
            ).fetchall()
            cursor.unregister("wanted_ids")
        return {row[0] for row in rows}

    def recent_message_ids(self, source_id: int, since_us: int) -> Iterator[pa.RecordBatch]:
        """The source's stored ids that arrived since ``since_us``, in Arrow batches of ``message_id``
        and ``received_us`` (arrival, epoch µs): a week of a busy store is hundreds of millions of ids, too
        many to hold at once as Python strings."""
        live = self.segments.live(source_id, received_from=since_us)
        if not live:
            return
        cursor = self._duck.cursor()
        try:
            yield from cursor.sql(
                f"SELECT message_id, epoch_us(received_at) AS received_us FROM read_parquet({sql_list([s.path for s in live])}) "
                "WHERE epoch_us(received_at) >= ?",
                params=[since_us],
            ).to_arrow_reader(RECENT_ID_BATCH_ROWS)
        finally:
            cursor.close()

    def session_state_for(
        self,
        source: Source,
        persons: np.ndarray | None = None,
        *,
        since_us: int | None = None,
        segments: list[Segment] | None = None,
    ) -> SessionState:
        """Each person's last stored session: for ``persons``, or for everyone active since ``since_us``
        (in ``segments``, else in all live segments)."""
        state = SessionState()
        if segments is None:
            segments = self.segments.live(source.id, ts_from=since_us)
        relation = self.events_relation(source, segments)
        if relation is None:
            return state
        campaign_expr = (
            "CASE WHEN coalesce(utm_source, utm_medium, utm_campaign, utm_content, utm_term, click_id) IS NULL "
            "THEN NULL ELSE concat_ws('|', coalesce(utm_source, ''), coalesce(utm_medium, ''), "
            "coalesce(utm_campaign, ''), coalesce(utm_content, ''), coalesce(utm_term, ''), "
            "coalesce(click_id, '')) END"
        )
        with self._duck_lock:
            cursor = self._duck.cursor()
            if persons is not None:
                cursor.register("wanted_persons", pa.table({"p": pa.array(persons, pa.int64())}))
                where = "person_id IN (SELECT p FROM wanted_persons)"
            else:
                where = f"ts >= to_timestamp({int(since_us or 0)} / 1000000)"
            rows = cursor.execute(
                f"""
                WITH ev AS (SELECT * FROM {relation} WHERE {where}),
                     last AS (SELECT person_id, arg_max(session_id, ts) AS sid, max(ts) AS last_ts
                              FROM ev GROUP BY person_id)
                SELECT last.person_id, last.sid, epoch_us(min(ev.session_start)), epoch_us(last.last_ts),
                       arg_min({campaign_expr}, ev.ts), any_value(ev.channel), any_value(ev.session_source),
                       any_value(ev.session_medium), any_value(ev.session_campaign)
                FROM last JOIN ev ON ev.person_id = last.person_id AND ev.session_id = last.sid
                GROUP BY last.person_id, last.sid, last.last_ts
                """
            ).fetchall()
            if persons is not None:
                cursor.unregister("wanted_persons")
        for person, sid, start, last, campaign, channel, s_source, s_medium, s_campaign in rows:
            state.sessions[int(person)] = CarriedSession(
                session_id=sid,
                start=int(start),
                last=int(last),
                campaign=campaign,
                attribution=Attribution(source=s_source, medium=s_medium, campaign=s_campaign, channel=channel),
            )
        return state

    def frame(self, source: Source) -> EventFrame:
        """The source's warm event frame: new segments are merged in; a compaction or an identity
        merge rebuilds it."""
        live = self.segments.live(source.id)
        overrides_signature = self._overrides_signature(source.id)
        signature = (tuple(s.id for s in live), overrides_signature)
        with self._frames_lock:
            frame = self._frames.get(source.id)
            if frame is not None and frame.signature == signature:
                return frame
            overrides = self.identities.overrides(source.id)
            known = set(frame.signature[0]) if frame is not None else set()
            if frame is not None and frame.signature[1] == overrides_signature and known <= set(signature[0]):
                frame = extend_frame(frame, [s for s in live if s.id not in known], overrides, signature)
            else:
                frame = build_frame(source.id, live, overrides, signature)
            self._frames[source.id] = frame
            return frame

    def query_context(self, source: Source) -> QueryContext:
        frame = self.frame(source)
        relation = self.events_relation(source, self.segments.live(source.id)) if frame.files else None
        cursor = self._duck.cursor()
        return QueryContext(source, frame, cursor, relation, self.identities.overrides(source.id), self)

    def run(self, query: Any, *, reuse: bool = True) -> Any:
        """Run a query object (or its JSON as a dict): the one entry of the CLI, the API and Python.

        Results are kept per version of the source's events (on its frame: new segments or an
        identity merge make a new frame, and a new cache) and of everything else a result reads —
        the source's settings, rates, spend, targets, saved audiences, today's date — so the same
        question on the same data is answered once. ``reuse=False`` computes it again
        (benchmarks time the computation, not the memory)."""
        parsed = parse_query(expand_template(self, query) if isinstance(query, dict) else query)
        source = self.source(parsed.source)
        context = self.query_context(source)
        key = (parsed.model_dump_json(), self._inputs_version(source), date.today())
        found = context.frame.result(key) if reuse else None
        if found is not None:
            return found
        return context.frame.keep_result(key, RUNNERS[parsed.kind](context, parsed))

    def compact(self, source: Source) -> int:
        """Merge ``compact_fanout`` segments of one level into one sorted segment of a larger level.

        Keeps the number of files a query opens logarithmic in the data, and each file sorted by
        (person_id, ts) for per-person scans. Returns how many segments were merged.
        """
        fanout = self.settings.compact_fanout
        by_level: dict[int, list[Segment]] = {}
        for segment in self.segments.live(source.id):
            by_level.setdefault(segment.level, []).append(segment)
        merged = 0
        level = 0
        while level <= max(by_level, default=-1):
            pending = by_level.get(level, [])
            while len(pending) >= fanout:
                group, pending = pending[:fanout], pending[fanout:]
                target = max(level + 1, level_for_rows(sum(s.rows for s in group), fanout))
                result = self._merge(source, group, target)
                if result is None:
                    return merged  # another compactor is at work
                merged += len(group)
                by_level.setdefault(target, []).append(result)
            level += 1
        return merged

    def _merge(self, source: Source, group: list[Segment], level: int) -> Segment | None:
        directory = self.segments.directory(source.id)
        segment_id = uuid.uuid4().hex
        path = directory / f"L{level}-{segment_id}.parquet"
        tmp = path.with_suffix(".tmp")
        # DuckDB sorts within its memory limit (spilling if it must); pyarrow writes, with the
        # options of every other segment, in about a third of the CPU of DuckDB's COPY writer
        # (docs/performance.md), and one row group at a time.
        cursor = self._duck.cursor()
        try:
            sorted_rows = cursor.sql(
                f"SELECT * FROM read_parquet({sql_list([s.path for s in group])}) ORDER BY person_id, ts"
            )
            self.segments.write_stream(
                sorted_rows.to_arrow_reader(MERGE_BATCH_ROWS), tmp, pq.read_schema(group[0].path), MERGE_ROW_GROUP_ROWS
            )
        except BaseException:
            tmp.unlink(missing_ok=True)  # a half-written merge; its inputs are untouched
            raise
        finally:
            cursor.close()
        tmp.rename(path)
        stats = self.query(
            "SELECT count(*), epoch_us(min(ts)), epoch_us(max(ts)), epoch_us(min(received_at)), "
            "epoch_us(max(received_at)), min(person_id), max(person_id) FROM read_parquet(?)",
            [str(path)],
        ).fetchone()
        with self.engine.begin() as conn:
            if not self.segments.retire(conn, [s.id for s in group]):
                conn.rollback()
                path.unlink(missing_ok=True)
                return None
            self.segments.register_stats(conn, source.id, segment_id, path, stats, level=level, origin="compaction")
        return Segment(segment_id, source.id, path, int(stats[0]), level, stats[1], stats[2])

    def maintain(self) -> None:
        for source in self.sources():
            while self.compact(source):
                pass
        self.segments.reap()

    def close(self) -> None:
        self._duck.close()
        self.engine.dispose()
