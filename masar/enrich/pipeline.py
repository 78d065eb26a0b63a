"""Enrichment: normalized rows in, stored events out. The same code runs at capture and at import.

Everything here is columnar (pyarrow + numpy); per-value Python work (user-agent parsing, channel
rules, referrer hosts) runs once per *distinct* value, which a store has few of.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from masar.enrich.channels import Attribution, ChannelRules, Touch, referrer_domain
from masar.enrich.identity import IdentityStore
from masar.enrich.sessions import NO_CAMPAIGN, session_ids, sessionize_kernel
from masar.enrich.useragent import parse_user_agent
from masar.store.schema import ENRICHED, EVENTS, TS

# Touch fields joined into one key per session, so rules run once per distinct touch.
_TOUCH_COLUMNS = ("utm_source", "utm_medium", "utm_campaign", "click_id")
_SEP = "\x1f"
_NULL = "\x1e"


@dataclass(frozen=True)
class CarriedSession:
    """The last session of one person, carried between batches."""

    session_id: int
    start: int
    last: int
    campaign: str | None
    attribution: Attribution


@dataclass
class SessionState:
    """Each person's last session, keyed by person id."""

    sessions: dict[int, CarriedSession] = field(default_factory=dict)

    def carry(self, key: int, session: CarriedSession) -> None:
        existing = self.sessions.get(key)
        if existing is None or session.last >= existing.last:
            self.sessions[key] = session


@dataclass(frozen=True)
class SourceProfile:
    """What enrichment needs to know about a source (store)."""

    id: int
    rules: ChannelRules
    own_domains: tuple[str, ...] = ()


def map_distinct(values: pa.Array, fn: Callable[[Any], Sequence[Any]], types: Sequence[pa.DataType]) -> list[pa.Array]:
    """Apply ``fn`` once per distinct value of ``values`` and spread its outputs back to every row."""
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    encoded = values.dictionary_encode()
    results = [fn(value) for value in encoded.dictionary.to_pylist()]
    indices = encoded.indices
    columns = []
    for position, dtype in enumerate(types):
        dictionary = pa.array([result[position] for result in results], dtype)
        columns.append(dictionary.take(indices) if len(dictionary) else pa.nulls(len(values), dtype))
    return columns


def _campaign_keys(table: pa.Table) -> pa.Array:
    parts = [table.column(name) for name in ("utm_source", "utm_medium", "utm_campaign", "utm_content",
                                              "utm_term", "click_id")]  # fmt: skip
    any_set = pc.is_valid(parts[0])
    for part in parts[1:]:
        any_set = pc.or_(any_set, pc.is_valid(part))
    joined = pc.binary_join_element_wise(*parts, "|", null_handling="replace", null_replacement="")
    return pc.if_else(any_set, joined, pa.scalar(None, pa.string())).combine_chunks()


class Enricher:
    def __init__(self, identities: IdentityStore, session_gap_seconds: int):
        self.identities = identities
        self.gap_us = np.int64(session_gap_seconds * 1_000_000)

    def enrich(
        self,
        source: SourceProfile,
        table: pa.Table,
        state: SessionState,
        load_state: Callable[[np.ndarray], SessionState] | None = None,
    ) -> pa.Table:
        """Normalized rows → event rows sorted by (person_id, ts); ``state`` is updated in place.

        Sessions are per person (not per device), so a server-side Order Completed sent with only a
        userId lands in the session of the browsing that led to it. ``load_state`` fetches the last
        stored session of persons not in ``state`` (imports use it; the live ingestor keeps its
        state in memory).
        """
        if table.num_rows == 0:
            return EVENTS.empty_table()
        table = table.sort_by([("ts", "ascending")]).combine_chunks()
        n = table.num_rows

        persons = self.identities.resolve(
            source.id,
            table.column("anonymous_id").combine_chunks(),
            table.column("user_id").combine_chunks(),
            table.column("previous_id").combine_chunks(),
            table.column("type").combine_chunks(),
        )

        # Sessions, per person, in (person, ts) order.
        unique_persons, inverse = np.unique(persons, return_inverse=True)
        key_names: list[int] = unique_persons.tolist()
        key_codes = inverse.astype(np.int64)
        if load_state is not None:
            missing = np.array([p for p in key_names if p not in state.sessions], dtype=np.int64)
            if len(missing):
                state.sessions.update(load_state(missing).sessions)
        ts = table.column("ts").combine_chunks().cast(pa.int64()).to_numpy(zero_copy_only=False)

        campaign_keys = _campaign_keys(table)
        campaign_names: dict[str, int] = {}
        for carried_key in key_names:
            carried = state.sessions.get(carried_key)
            if carried is not None and carried.campaign is not None:
                campaign_names.setdefault(carried.campaign, len(campaign_names))
        for name in pc.unique(campaign_keys.drop_null()).to_pylist():
            campaign_names.setdefault(name, len(campaign_names))
        campaign_codes = np.full(n, NO_CAMPAIGN, dtype=np.int64)
        if campaign_names:
            found = pc.index_in(campaign_keys, value_set=pa.array(list(campaign_names), pa.string()))
            campaign_codes = found.fill_null(NO_CAMPAIGN).to_numpy(zero_copy_only=False).astype(np.int64)

        k = len(key_names)
        has_state = np.zeros(k, dtype=np.bool_)
        state_start = np.zeros(k, dtype=np.int64)
        state_last = np.zeros(k, dtype=np.int64)
        state_campaign = np.full(k, NO_CAMPAIGN, dtype=np.int64)
        for code, name in enumerate(key_names):
            carried = state.sessions.get(name)
            if carried is not None:
                has_state[code] = True
                state_start[code] = carried.start
                state_last[code] = carried.last
                if carried.campaign is not None:
                    state_campaign[code] = campaign_names[carried.campaign]

        order = np.lexsort((ts, key_codes))
        s_keys, s_ts = key_codes[order], ts[order]
        starts, from_state = sessionize_kernel(
            s_keys, s_ts, campaign_codes[order], has_state, state_start, state_last, state_campaign, self.gap_us
        )

        # One attribution per session, from its first row (or carried from earlier data).
        first = np.ones(n, dtype=np.bool_)
        if n > 1:
            first[1:] = (s_keys[1:] != s_keys[:-1]) | (starts[1:] != starts[:-1]) | (from_state[1:] != from_state[:-1])
        session_index = np.cumsum(first) - 1
        first_rows = pa.array(order[first])
        first_persons = unique_persons[s_keys[first]]
        first_state = from_state[first]
        referrer_domains = map_distinct(table.column("referrer"), lambda r: (referrer_domain(r),), [pa.string()])[0]
        touch_parts = [table.column(name).take(first_rows) for name in _TOUCH_COLUMNS] + [referrer_domains.take(first_rows)]
        touch_keys = pc.binary_join_element_wise(*touch_parts, _SEP, null_handling="replace", null_replacement=_NULL)

        def attribute(key: str) -> tuple[str, str, str | None, str]:
            parts = [None if part == _NULL else part for part in key.split(_SEP)]
            touch = Touch(parts[0], parts[1], parts[2], parts[3], parts[4])
            found = source.rules.attribute(touch, source.own_domains)
            return found.channel, found.source, found.medium, found.campaign

        per_session = map_distinct(touch_keys, attribute, [pa.string()] * 4)
        ids = session_ids(source.id, first_persons, starts[first])
        carried_sessions = np.flatnonzero(first_state)
        if len(carried_sessions):
            carried = [state.sessions[int(first_persons[j])] for j in carried_sessions]
            ids[carried_sessions] = [c.session_id for c in carried]
            mask = pa.array(first_state)
            replacements = (
                [c.attribution.channel for c in carried],
                [c.attribution.source for c in carried],
                [c.attribution.medium for c in carried],
                [c.attribution.campaign for c in carried],
            )
            per_session = [
                pc.replace_with_mask(column, mask, pa.array(values, pa.string()))
                for column, values in zip(per_session, replacements, strict=True)
            ]
        channel_s, source_s, medium_s, campaign_s = per_session

        # Carry each person's latest session forward.
        last_rows = np.flatnonzero(np.append(s_keys[:-1] != s_keys[1:], True))
        last_sessions = session_index[last_rows]
        first_campaign_codes = campaign_codes[order[first]]
        campaign_list = list(campaign_names)
        columns = [c.take(pa.array(last_sessions)).to_pylist() for c in per_session]
        for i, row in enumerate(last_rows):
            sess = int(last_sessions[i])
            person = int(unique_persons[s_keys[row]])
            if first_state[sess]:
                carried_campaign = state.sessions[person].campaign
            else:
                code = int(first_campaign_codes[sess])
                carried_campaign = campaign_list[code] if code != NO_CAMPAIGN else None
            state.carry(
                person,
                CarriedSession(
                    session_id=int(ids[sess]),
                    start=int(starts[row]),
                    last=int(s_ts[row]),
                    campaign=carried_campaign,
                    attribution=Attribution(columns[1][i], columns[2][i], columns[3][i], columns[0][i]),
                ),
            )

        # Spread per-session values back to rows (in original row order).
        row_session = np.empty(n, dtype=np.int64)
        row_session[order] = session_index
        row_start = np.empty(n, dtype=np.int64)
        row_start[order] = starts
        take = pa.array(row_session)
        session_id_col = pa.array(ids, pa.int64()).take(take)
        channel = channel_s.take(take)
        s_source = source_s.take(take)
        s_medium = medium_s.take(take)
        s_campaign = campaign_s.take(take)

        device_type, browser, os_name = map_distinct(
            table.column("user_agent"), parse_user_agent, [pa.string(), pa.string(), pa.string()]
        )
        enriched = {
            "person_id": pa.array(persons, pa.int64()),
            "session_id": session_id_col,
            "session_start": pa.array(row_start, pa.int64()).cast(TS),
            "channel": channel,
            "session_source": s_source,
            "session_medium": s_medium,
            "session_campaign": s_campaign,
            "referrer_domain": referrer_domains,
            "device_type": device_type,
            "browser": browser,
            "os": os_name,
        }
        columns = [table.column(name) for name in table.schema.names] + [enriched[f.name] for f in ENRICHED]
        out = pa.Table.from_arrays(columns, schema=EVENTS)
        return out.sort_by([("person_id", "ascending"), ("ts", "ascending")])
