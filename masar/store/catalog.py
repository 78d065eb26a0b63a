"""What every store keeps besides events: sources, keys, identities, exchange rates, ad spend,
targets, saved audiences and funnels, accounts, rejected input. SQLAlchemy over SQLite in the data
directory (``metadata.db``); the embedded and the ClickHouse stores both build on it.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import re
import secrets
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import sqlalchemy as sa

from masar.config import Settings
from masar.engine.audiences import check_audience_name, parse_audience
from masar.engine.facts import Rate
from masar.engine.saved_funnels import check_funnel_name, funnel_definition
from masar.engine.templates import validate_steps
from masar.enrich.channels import ChannelRules
from masar.enrich.identity import IdentityStore
from masar.enrich.pipeline import Enricher, SourceProfile
from masar.errors import Conflict, InvalidInput, NotFound
from masar.model.money import MoneyError, normalize_currency
from masar.store.accounts import Accounts
from masar.store.base import ApiKey, SavedAudience, SavedFunnel, Source
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


class Catalog:
    """Metadata, shared by every backend; subclasses add events and analyses (``run``)."""

    def __init__(self, settings: Settings, root: Path):
        self.settings = settings
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(self.root / "metadata.db")
        migrate(self.engine)
        self.identities = IdentityStore(self.engine)
        self.enricher = Enricher(self.identities, settings.session_timeout_seconds)
        self.accounts = Accounts(self.engine)

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


    @functools.lru_cache(maxsize=64)  # noqa: B019 - the store lives as long as its caches should

    def _rules(self, rules_json: str) -> ChannelRules:
        return ChannelRules.from_overrides(orjson.loads(rules_json) if rules_json else None)

    def profile(self, source: Source) -> SourceProfile:
        rules = self._rules(orjson.dumps(source.channel_rules).decode() if source.channel_rules else "")
        return SourceProfile(source.id, rules, source.own_domains)

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

    def _overrides_signature(self, source_id: int) -> tuple[int, int]:
        with self.engine.connect() as conn:
            count, checksum = conn.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.coalesce(sa.func.sum(person_overrides.c.old_person_id * 7 + person_overrides.c.new_person_id), 0),
                ).where(person_overrides.c.source_id == source_id)
            ).one()
        return int(count), int(checksum)

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
