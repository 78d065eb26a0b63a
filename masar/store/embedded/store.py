"""The embedded store: Parquet segments read by DuckDB for events, SQLite for metadata.

Nothing to install and safe to share: ``masar serve`` and CLI commands may open the same data
directory at once. Events are immutable segment files (readers never lock), and every change of
shared state is a short SQLite transaction.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import re
import secrets
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import sqlalchemy as sa

from masar.config import Settings
from masar.engine import RUNNERS, QueryContext, parse_query
from masar.engine.audiences import check_audience_name, parse_audience
from masar.engine.facts import Rate
from masar.engine.frame import EventFrame, build_frame, extend_frame
from masar.engine.saved_funnels import check_funnel_name, funnel_definition
from masar.engine.templates import expand_template, validate_steps
from masar.enrich.channels import Attribution, ChannelRules
from masar.enrich.identity import IdentityStore
from masar.enrich.pipeline import CarriedSession, Enricher, SessionState, SourceProfile
from masar.errors import Conflict, InvalidInput, NotFound
from masar.model.money import MoneyError, normalize_currency
from masar.store.accounts import Accounts
from masar.store.base import ApiKey, SavedAudience, SavedFunnel, Source, WriteResult
from masar.store.embedded.segments import ROW_GROUP_ROWS, Segment, SegmentStore, level_for_rows
from masar.store.metadata import (
    ad_spend,
    api_keys,
    audiences,
    create_engine,
    exchange_rates,
    funnel_templates,
    identities,
    person_overrides,
    rejected,
    sales_targets,
    saved_funnels,
    sources,
)
from masar.store.migrations import migrate

_SOURCE_COLUMNS = (sources.c.id, sources.c.name, sources.c.write_key, sources.c.currency, sources.c.timezone,
                   sources.c.own_domains, sources.c.channel_rules, sources.c.created_at)  # fmt: skip


def _source(row: Any) -> Source:
    return Source(
        id=int(row.id),
        name=row.name,
        write_key=row.write_key,
        currency=row.currency,
        timezone=row.timezone,
        own_domains=tuple(row.own_domains or ()),
        channel_rules=row.channel_rules,
        created_at=row.created_at,
    )


def _saved_audience(row: Any) -> SavedAudience:
    # SQLite hands back naive datetimes; every time Masar writes is UTC.
    updated = row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=UTC)
    return SavedAudience(row.name, row.definition, updated)


def _saved_funnel(row: Any) -> SavedFunnel:
    updated = row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=UTC)
    return SavedFunnel(row.name, row.definition, row.saved_by, updated)


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


def _rejected_row(source_id: int | None, item: dict[str, Any]) -> dict[str, Any]:
    payload = item.get("payload")
    if payload is not None and not isinstance(payload, str):
        payload = orjson.dumps(payload, default=str).decode()
    received = item.get("received_at")
    if isinstance(received, int):
        received = datetime.fromtimestamp(received / 1_000_000, UTC)
    return {
        "source_id": source_id,
        "received_at": received or datetime.now(UTC),
        "origin": str(item.get("origin") or "capture")[:200],
        "code": item["code"],
        "message": item["message"],
        "payload": payload[:65536] if payload else None,
    }


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _api_key(row: Any) -> ApiKey:
    return ApiKey(int(row.id), row.name, row.prefix, row.source_id, _utc(row.created_at), _utc(row.revoked_at))


def check_timezone(name: str) -> str:
    """An IANA time zone name (``Asia/Riyadh``), as the reports will read it."""
    name = (name or "").strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidInput(f"{name!r} is not a time zone name such as Asia/Riyadh", code="invalid_timezone") from None
    return name


def _hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def sql_list(paths: list[Path]) -> str:
    """A DuckDB list literal of file paths (paths are ours, but quote them properly anyway)."""
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


class EmbeddedStore:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.root: Path = settings.resolved_data_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(self.root / "metadata.db")
        migrate(self.engine)
        self.identities = IdentityStore(self.engine)
        self.enricher = Enricher(self.identities, settings.session_timeout_seconds)
        self.segments = SegmentStore(self.root, self.engine)
        self.accounts = Accounts(self.engine)
        self._duck = duckdb.connect()
        self._duck.execute("SET TimeZone = 'UTC'")
        self._duck_lock = threading.Lock()
        self._frames: dict[int, EventFrame] = {}
        self._frames_lock = threading.Lock()

    # -- sources and keys ----------------------------------------------------------------------

    def create_source(
        self,
        name: str,
        *,
        currency: str = "USD",
        timezone: str = "UTC",
        own_domains: tuple[str, ...] = (),
    ) -> Source:
        name = name.strip()
        if not name:
            raise InvalidInput("a source needs a name", code="invalid_name")
        if len(name) > 200:
            raise InvalidInput("a source's name is at most 200 characters", code="invalid_name")
        try:
            currency = normalize_currency(currency)
        except MoneyError as exc:
            raise InvalidInput(str(exc), code="invalid_currency") from None
        timezone = check_timezone(timezone)
        with self.engine.begin() as conn:
            if conn.execute(sa.select(sources.c.id).where(sources.c.name == name)).first():
                raise Conflict(f"a source named {name!r} already exists", code="source_exists")
            conn.execute(
                sources.insert().values(
                    name=name,
                    write_key=secrets.token_urlsafe(24),
                    currency=currency,
                    timezone=timezone,
                    own_domains=list(own_domains),
                    channel_rules=None,
                    created_at=datetime.now(UTC),
                )
            )
        return self.source(name)

    def set_channel_rules(self, source: Source, rules: dict[str, Any] | None) -> Source:
        try:
            ChannelRules.from_overrides(rules)
        except ValueError as exc:
            raise InvalidInput(f"channel rules: {exc}") from None
        with self.engine.begin() as conn:
            conn.execute(sources.update().where(sources.c.id == source.id).values(channel_rules=rules))
        return self.source(source.id)

    def sources(self) -> list[Source]:
        with self.engine.connect() as conn:
            return [_source(row) for row in conn.execute(sa.select(*_SOURCE_COLUMNS).order_by(sources.c.id))]

    def source(self, name_or_id: str | int) -> Source:
        column = sources.c.id if isinstance(name_or_id, int) else sources.c.name
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(*_SOURCE_COLUMNS).where(column == name_or_id)).first()
        if row is None:
            raise NotFound(f"no source named {name_or_id!r}; `masar sources list` shows them")
        return _source(row)

    def source_for_write_key(self, write_key: str) -> Source | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(*_SOURCE_COLUMNS).where(sources.c.write_key == write_key)).first()
        return _source(row) if row else None

    def create_api_key(self, *, source: str | None, name: str = "default") -> tuple[ApiKey, str]:
        source_id = self.source(source).id if source is not None else None
        secret = "msk_" + secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            result = conn.execute(
                api_keys.insert().values(
                    source_id=source_id,
                    name=name,
                    prefix=secret[:12],
                    key_hash=_hash_key(secret),
                    created_at=datetime.now(UTC),
                )
            )
            key_id = int(result.inserted_primary_key[0])
        return ApiKey(key_id, name, secret[:12], source_id), secret

    def verify_api_key(self, secret: str) -> ApiKey | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(api_keys).where(api_keys.c.key_hash == _hash_key(secret), api_keys.c.revoked_at.is_(None))
            ).first()
        return ApiKey(int(row.id), row.name, row.prefix, row.source_id) if row else None

    def api_keys(self) -> list[ApiKey]:
        """Every secret key, revoked ones too (their secrets are not kept: only a prefix)."""
        with self.engine.connect() as conn:
            return [_api_key(row) for row in conn.execute(sa.select(api_keys).order_by(api_keys.c.id))]

    def revoke_api_key(self, key_id: int) -> ApiKey:
        """Revoke a key for good; revoking it again changes nothing."""
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).first()
            if row is None:
                raise NotFound(f"no secret key with id {key_id}", code="unknown_key")
            if row.revoked_at is None:
                conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(revoked_at=datetime.now(UTC)))
            row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).first()
        return _api_key(row)

    # -- writing -------------------------------------------------------------------------------

    @functools.lru_cache(maxsize=64)  # noqa: B019 - the store lives as long as its caches should
    def _rules(self, rules_json: str) -> ChannelRules:
        return ChannelRules.from_overrides(orjson.loads(rules_json) if rules_json else None)

    def profile(self, source: Source) -> SourceProfile:
        rules = self._rules(orjson.dumps(source.channel_rules).decode() if source.channel_rules else "")
        return SourceProfile(source.id, rules, source.own_domains)

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

    def quarantine(self, source_id: int | None, items: list[dict[str, Any]], *, origin: str) -> None:
        """Keep rejected input with its reason, so nothing disappears silently."""
        if items:
            self.commit([], rejected_items=[(source_id, {"origin": origin, **item}) for item in items])

    # -- reading -------------------------------------------------------------------------------

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

    def rejected(self, source: Source | None, *, limit: int = 20) -> list[dict[str, Any]]:
        query = sa.select(rejected).order_by(rejected.c.id.desc()).limit(limit)
        if source is not None:
            query = query.where(rejected.c.source_id == source.id)
        with self.engine.connect() as conn:
            return [{str(key): value for key, value in row._mapping.items()} for row in conn.execute(query)]

    def rejected_count(self, source: Source | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(rejected)
        if source is not None:
            query = query.where(rejected.c.source_id == source.id)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

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

    def recent_message_ids(self, source_id: int, since_us: int) -> list[str]:
        live = self.segments.live(source_id, received_from=since_us)
        if not live:
            return []
        rows = self.query(
            f"SELECT message_id FROM read_parquet({sql_list([s.path for s in live])}) "
            "WHERE epoch_us(received_at) >= ?",
            [since_us],
        ).fetchall()
        return [row[0] for row in rows]

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

    # -- analyses ------------------------------------------------------------------------------

    def _overrides_signature(self, source_id: int) -> tuple[int, int]:
        with self.engine.connect() as conn:
            count, checksum = conn.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.coalesce(sa.func.sum(person_overrides.c.old_person_id * 7 + person_overrides.c.new_person_id), 0),
                ).where(person_overrides.c.source_id == source_id)
            ).one()
        return int(count), int(checksum)

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

    def _inputs_version(self, source: Source) -> int:
        """A hash of the metadata results read besides the events."""
        return hash((
            repr(source), tuple((r.day, r.base, r.quote, r.rate) for r in self.exchange_rates()),
            tuple(tuple(sorted(r.items())) for r in self.ad_spend(source)),
            tuple(tuple(sorted(t.items())) for t in self.targets(source)),
            tuple(repr(a) for a in self.audiences(source)),
        ))  # fmt: skip

    def funnel(self, *, reuse: bool = True, **fields: Any) -> Any:
        """``store.funnel(source="My Store", steps=[...], window="7d")`` → a result with ``to_dict()``."""
        return self.run({"kind": "funnel", **fields}, reuse=reuse)

    def funnel_template(self, source: Source, name: str) -> list[dict[str, Any]] | None:
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(funnel_templates.c.definition).where(
                    funnel_templates.c.source_id == source.id, funnel_templates.c.name == name
                )
            ).scalar()
        return found

    def funnel_template_names(self, source: Source) -> list[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(funnel_templates.c.name).where(funnel_templates.c.source_id == source.id))
            return [r[0] for r in rows]

    def set_funnel_template(self, source: Source, name: str, steps: list[dict[str, Any]] | None) -> None:
        """Store a source's own definition of a template (None: back to the built-in)."""
        with self.engine.begin() as conn:
            conn.execute(
                funnel_templates.delete().where(
                    funnel_templates.c.source_id == source.id, funnel_templates.c.name == name
                )
            )
            if steps is not None:
                conn.execute(
                    funnel_templates.insert().values(
                        source_id=source.id, name=name, definition=validate_steps(steps), updated_at=datetime.now(UTC)
                    )
                )

    # -- sales settings: exchange rates, ad spend, targets ----------------------------------------

    def exchange_rates(self) -> list[Rate]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(exchange_rates).order_by(exchange_rates.c.day))
            return [Rate(r.day, r.base, r.quote, Decimal(r.rate)) for r in rows]

    def set_exchange_rates(self, rates: list[Rate]) -> int:
        """Insert or replace rates (one per day and currency pair)."""
        with self.engine.begin() as conn:
            for r in rates:
                conn.execute(
                    exchange_rates.delete().where(
                        exchange_rates.c.day == r.day, exchange_rates.c.base == r.base, exchange_rates.c.quote == r.quote
                    )
                )
            if rates:
                conn.execute(
                    exchange_rates.insert(),
                    [{"day": r.day, "base": r.base, "quote": r.quote, "rate": str(r.rate)} for r in rates],
                )
        return len(rates)

    def ad_spend(self, source: Source) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(ad_spend).where(ad_spend.c.source_id == source.id).order_by(ad_spend.c.day)
            )
            return [
                {"day": r.day, "channel": r.channel, "campaign": r.campaign, "spend": r.spend, "currency": r.currency}
                for r in rows
            ]

    def set_ad_spend(self, source: Source, rows: list[dict[str, Any]]) -> int:
        """Insert or replace spend rows (one per day, channel and campaign): importing again adds nothing."""
        with self.engine.begin() as conn:
            for r in rows:
                conn.execute(
                    ad_spend.delete().where(
                        ad_spend.c.source_id == source.id, ad_spend.c.day == r["day"],
                        ad_spend.c.channel == r["channel"], ad_spend.c.campaign == r["campaign"],
                    )
                )  # fmt: skip
            if rows:
                conn.execute(ad_spend.insert(), [{"source_id": source.id, **r, "spend": str(r["spend"])} for r in rows])
        return len(rows)

    def targets(self, source: Source) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(sales_targets).where(sales_targets.c.source_id == source.id).order_by(sales_targets.c.month)
            )
            return [
                {"month": r.month, "revenue": Decimal(r.revenue) if r.revenue is not None else None, "orders": r.orders}
                for r in rows
            ]

    def set_target(self, source: Source, month: str, *, revenue: Decimal | None, orders: int | None) -> None:
        """Set a month's targets; with neither a revenue nor an orders target, clear them."""
        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month or ""):
            raise InvalidInput(f"{month!r} is not a month: use YYYY-MM", code="invalid_month")
        if revenue is not None and (not revenue.is_finite() or revenue <= 0):
            raise InvalidInput("a revenue target must be a positive amount", code="invalid_revenue")
        if orders is not None and orders <= 0:
            raise InvalidInput("an orders target must be a positive whole number", code="invalid_orders")
        with self.engine.begin() as conn:
            conn.execute(
                sales_targets.delete().where(sales_targets.c.source_id == source.id, sales_targets.c.month == month)
            )
            if revenue is not None or orders is not None:
                conn.execute(
                    sales_targets.insert().values(
                        source_id=source.id, month=month, revenue=str(revenue) if revenue is not None else None,
                        orders=orders, updated_at=datetime.now(UTC),
                    )
                )  # fmt: skip

    # -- saved audiences -------------------------------------------------------------------------

    def save_audience(self, source: Source, name: str, definition: Any) -> SavedAudience:
        """Save an audience under a name, replacing one of the same name. The definition is checked
        first and kept as parsed, defaults spelt out, so it reads back meaning what it meant."""
        name = check_audience_name(name)
        parsed = parse_audience(definition).to_dict()
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(audiences.delete().where(audiences.c.source_id == source.id, audiences.c.name == name))
            conn.execute(
                audiences.insert().values(source_id=source.id, name=name, definition=parsed, updated_at=now)
            )
        return SavedAudience(name, parsed, now)

    def audiences(self, source: Source) -> list[SavedAudience]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(audiences).where(audiences.c.source_id == source.id).order_by(audiences.c.name)
            )
            return [_saved_audience(r) for r in rows]

    def audience(self, source: Source, name: str) -> SavedAudience:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(audiences).where(audiences.c.source_id == source.id, audiences.c.name == name.strip())
            ).first()
        if row is None:
            raise self._no_audience(source, name)
        return _saved_audience(row)

    def delete_audience(self, source: Source, name: str) -> None:
        with self.engine.begin() as conn:
            deleted = conn.execute(
                audiences.delete().where(audiences.c.source_id == source.id, audiences.c.name == name.strip())
            ).rowcount
        if not deleted:
            raise self._no_audience(source, name)

    def _no_audience(self, source: Source, name: str) -> NotFound:
        names = [a.name for a in self.audiences(source)]
        close = difflib.get_close_matches(name.strip(), names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; `masar audiences list --source {source.name!r}` shows them"
        return NotFound(f"{source.name!r} has no audience named {name!r}{hint}", code="audience_not_found")

    # -- saved funnels ---------------------------------------------------------------------------

    def save_funnel(self, source: Source, name: str, definition: Any, *, saved_by: str | None = None) -> SavedFunnel:
        """Save a funnel under a name, replacing one of the same name; the definition is checked
        as a funnel query first and kept as parsed."""
        name = check_funnel_name(name)
        parsed = funnel_definition(self, source.name, definition)
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(saved_funnels.delete().where(saved_funnels.c.source_id == source.id,
                                                      saved_funnels.c.name == name))  # fmt: skip
            conn.execute(saved_funnels.insert().values(source_id=source.id, name=name, definition=parsed,
                                                       saved_by=saved_by, updated_at=now))  # fmt: skip
        return SavedFunnel(name, parsed, saved_by, now)

    def saved_funnels(self, source: Source) -> list[SavedFunnel]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(saved_funnels).where(saved_funnels.c.source_id == source.id).order_by(saved_funnels.c.name)
            )
            return [_saved_funnel(r) for r in rows]

    def saved_funnel(self, source: Source, name: str) -> SavedFunnel:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(saved_funnels).where(saved_funnels.c.source_id == source.id,
                                               saved_funnels.c.name == name.strip())  # fmt: skip
            ).first()
        if row is None:
            raise NotFound(f"{source.name!r} has no saved funnel named {name!r}", code="funnel_not_found")
        return _saved_funnel(row)

    def delete_saved_funnel(self, source: Source, name: str) -> None:
        with self.engine.begin() as conn:
            deleted = conn.execute(
                saved_funnels.delete().where(saved_funnels.c.source_id == source.id,
                                             saved_funnels.c.name == name.strip())  # fmt: skip
            ).rowcount
        if not deleted:
            raise NotFound(f"{source.name!r} has no saved funnel named {name!r}", code="funnel_not_found")

    def identities_of(self, source: Source, persons: list[int]) -> dict[int, dict[str, Any]]:
        """user id and anonymous ids of persons (through merges), for people lists."""
        if not persons:
            return {}
        overrides = self.identities.overrides(source.id)
        wanted = set(persons)
        members = {p: p for p in persons}
        for old, new in overrides.items():
            if new in wanted:
                members[old] = new
        out: dict[int, dict[str, Any]] = {p: {"user_id": None, "anonymous_ids": []} for p in persons}
        with self.engine.connect() as conn:
            ids = list(members)
            for start in range(0, len(ids), 500):
                rows = conn.execute(
                    sa.select(identities.c.distinct_id, identities.c.person_id).where(
                        identities.c.source_id == source.id, identities.c.person_id.in_(ids[start : start + 500])
                    )
                )
                for distinct_id, person in rows:
                    entry = out[members[int(person)]]
                    kind, _, value = distinct_id.partition(":")
                    if kind == "u" and entry["user_id"] is None:
                        entry["user_id"] = value
                    elif kind == "a" and len(entry["anonymous_ids"]) < 20:
                        entry["anonymous_ids"].append(value)
        return out

    # -- maintenance ---------------------------------------------------------------------------

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
        self.query(
            f"COPY (SELECT * FROM read_parquet({sql_list([s.path for s in group])}) ORDER BY person_id, ts) "
            f"TO '{tmp}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {ROW_GROUP_ROWS})"
        )
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
