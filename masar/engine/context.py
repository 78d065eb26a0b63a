"""What a runner needs from the store to answer one query about one source."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb
import numpy as np
import pyarrow as pa

from masar.engine.frame import EventFrame
from masar.engine.properties import PropertyRef, person_values, spread_to_events
from masar.store.base import Source


class SourceClock:
    """A source's time zone and date bounds: what every backend's context shares."""

    source: Source

    @property
    def tz(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.source.timezone or "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            return ZoneInfo("UTC")

    def bound_us(self, value: date | datetime | None, *, end: bool) -> int | None:
        """A date range bound in microseconds: dates are whole days in the source's time zone,
        ``to`` inclusive; naive datetimes are read in the source's time zone."""
        if value is None:
            return None
        if isinstance(value, datetime):
            moment = value if value.tzinfo is not None else value.replace(tzinfo=self.tz)
        else:
            day = value + timedelta(days=1) if end else value
            moment = datetime.combine(day, time(0), tzinfo=self.tz)
        return int(moment.timestamp() * 1_000_000)


@dataclass
class QueryContext(SourceClock):
    source: Source
    frame: EventFrame
    con: duckdb.DuckDBPyConnection
    relation: str | None  # SQL over all of the source's events (identify calls included)
    overrides: dict[int, int]
    store: Any  # for metadata lookups (identities of persons)

    def text_values(self, ref: PropertyRef) -> pa.Array:
        """A property as text for every event of the frame (frame order)."""
        key = ("text", ref.name)
        cached = self.frame.cached(key)
        if cached is not None:
            return cached
        if ref.scope == "person":
            persons, values = person_values(self.con, self.relation, ref, self.overrides)
            result = spread_to_events(self.frame.person, persons, values)
        else:
            sql, params = ref.text_sql()
            result = self.frame.expression(self.con, sql, params)
        return self.frame.remember(key, result)

    def codes(self, ref: PropertyRef) -> tuple[np.ndarray, list[str | None]]:
        """A property dictionary-encoded: int32 codes per event (-1 where unset) and the values."""
        key = ("codes", ref.name)
        cached = self.frame.cached(key)
        if cached is not None:
            return cached
        encoded = self.text_values(ref).dictionary_encode()
        codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
        result = (codes, encoded.dictionary.to_pylist())
        return self.frame.remember(key, result)
