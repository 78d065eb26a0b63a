"""The store interface every backend implements; analyses and handlers only see this."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import pyarrow as pa


@dataclass(frozen=True)
class Source:
    """One online store sending events."""

    id: int
    name: str
    write_key: str
    currency: str
    timezone: str
    own_domains: tuple[str, ...] = ()
    channel_rules: dict[str, Any] | None = None
    created_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "write_key": self.write_key,
            "currency": self.currency,
            "timezone": self.timezone,
            "own_domains": list(self.own_domains),
        }


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    prefix: str
    source_id: int | None
    created_at: datetime | None = None
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class SavedAudience:
    """An audience definition saved by name for one source (docs/audiences.md)."""

    name: str
    definition: dict[str, Any]  # as parsed, every default spelt out
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "definition": self.definition, "updated_at": self.updated_at.isoformat()}


@dataclass(frozen=True)
class SavedFunnel:
    """A funnel definition saved by name for one source: the funnel query's fields but its kind
    and source, as parsed (docs/funnels.md, "Saved funnels")."""

    name: str
    definition: dict[str, Any]
    saved_by: str | None
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "definition": self.definition, "saved_by": self.saved_by,
                "updated_at": self.updated_at.isoformat()}  # fmt: skip


@dataclass
class WriteResult:
    written: int = 0
    duplicates: int = 0
    segments: list[str] = field(default_factory=list)


class Store(Protocol):
    """What the CLI, the HTTP handlers and the engine use. ``masar.open`` returns one."""

    def create_source(self, name: str, *, currency: str = "USD", timezone: str = "UTC",
                      own_domains: tuple[str, ...] = ()) -> Source: ...  # fmt: skip
    def sources(self) -> list[Source]: ...
    def source(self, name_or_id: str | int) -> Source: ...
    def source_for_write_key(self, write_key: str) -> Source | None: ...
    def create_api_key(self, *, source: str | None, name: str) -> tuple[ApiKey, str]: ...
    def verify_api_key(self, secret: str) -> ApiKey | None: ...
    def api_keys(self) -> list[ApiKey]: ...
    def revoke_api_key(self, key_id: int) -> ApiKey: ...

    def write_events(self, source: Source, normalized: pa.Table, *, origin: str) -> WriteResult: ...
    def quarantine(self, source_id: int | None, items: list[dict[str, Any]], *, origin: str) -> None: ...

    def recent_message_ids(self, source_id: int, since_us: int) -> Iterator[pa.RecordBatch]: ...
    def count_events(self, source: Source, *, event: str | None = None) -> int: ...
    def event_counts(self, source: Source) -> list[tuple[str, int]]: ...
    def tail(self, source: Source, *, limit: int = 20) -> list[dict[str, Any]]: ...
    def rejected(self, source: Source | None, *, limit: int = 20) -> list[dict[str, Any]]: ...

    def save_audience(self, source: Source, name: str, definition: Any) -> SavedAudience: ...
    def audiences(self, source: Source) -> list[SavedAudience]: ...
    def audience(self, source: Source, name: str) -> SavedAudience: ...
    def delete_audience(self, source: Source, name: str) -> None: ...

    def save_funnel(self, source: Source, name: str, definition: Any, *, saved_by: str | None = None) -> SavedFunnel: ...
    def saved_funnels(self, source: Source) -> list[SavedFunnel]: ...
    def saved_funnel(self, source: Source, name: str) -> SavedFunnel: ...
    def delete_saved_funnel(self, source: Source, name: str) -> None: ...

    def close(self) -> None: ...
