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
from masar.store.schema import ENRICHED, EVENTS, NORMALIZED, TS

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


def _campaign_keys(table: pa.Table) -> pa.Array | None:
    """One key per row naming its campaign (UTM fields and click id), or None when no row has one."""
    parts = [table.column(name) for name in ("utm_source", "utm_medium", "utm_campaign", "utm_content",
                                              "utm_term", "click_id")]  # fmt: skip
    if all(part.null_count == len(part) for part in parts):
        return None
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
        persons = self.identities.resolve(
            source.id,
            table.column("anonymous_id").combine_chunks(),
            table.column("user_id").combine_chunks(),
            table.column("previous_id").combine_chunks(),
            table.column("type").combine_chunks(),
        )
        ts = table.column("ts").combine_chunks().cast(pa.int64()).to_numpy(zero_copy_only=False)
        order = np.lexsort((ts, persons))
        table = table.take(pa.array(order))
        return self.enrich_sorted(source, table, persons[order], state, load_state)

    def enrich_sorted(
        self,
        source: SourceProfile,
        table: pa.Table,
        persons: np.ndarray,
        state: SessionState,
        load_state: Callable[[np.ndarray], SessionState] | None = None,
        *,
        carry: str = "all",
    ) -> pa.Table:
        """Rows already sorted by (person, ts), with their persons → event rows in the same order.

        ``carry="last"`` keeps only the last person's session in ``state``: for a caller that
        hands over all of a person's rows in order (an import sorted by person), no other
        person's session is ever needed again.
        """
        n = table.num_rows
        if n == 0:
            return EVENTS.empty_table()
        table = table.combine_chunks()
        persons = np.ascontiguousarray(persons, dtype=np.int64)
        ts = table.column("ts").cast(pa.int64()).to_numpy(zero_copy_only=False)
        new_person = np.ones(n, dtype=np.bool_)
        new_person[1:] = persons[1:] != persons[:-1]
        unique_persons = persons[new_person]
        keys = np.cumsum(new_person) - 1
        if load_state is not None:
            missing = unique_persons[~_in_state(unique_persons, state)]
            if len(missing):
                state.sessions.update(load_state(missing).sessions)

        # Campaign codes: carried campaigns first, then the batch's own (none when it has no UTM data).
        campaign_keys = _campaign_keys(table)
        k = len(unique_persons)
        has_state = np.zeros(k, dtype=np.bool_)
        state_start = np.zeros(k, dtype=np.int64)
        state_last = np.zeros(k, dtype=np.int64)
        state_campaign = np.full(k, NO_CAMPAIGN, dtype=np.int64)
        campaign_names: dict[str, int] = {}
        for code, carried in _carried(unique_persons, state):
            has_state[code] = True
            state_start[code] = carried.start
            state_last[code] = carried.last
            if carried.campaign is not None:
                state_campaign[code] = campaign_names.setdefault(carried.campaign, len(campaign_names))
        campaign_codes = np.full(n, NO_CAMPAIGN, dtype=np.int64)
        if campaign_keys is not None:
            for name in pc.unique(campaign_keys.drop_null()).to_pylist():
                campaign_names.setdefault(name, len(campaign_names))
            found = pc.index_in(campaign_keys, value_set=pa.array(list(campaign_names), pa.string()))
            campaign_codes = found.fill_null(NO_CAMPAIGN).to_numpy(zero_copy_only=False).astype(np.int64)

        starts, from_state = sessionize_kernel(
            keys, ts, campaign_codes, has_state, state_start, state_last, state_campaign, self.gap_us
        )

        # One attribution per session, from its first row (or carried from earlier data).
        first = new_person.copy()
        first[1:] |= (starts[1:] != starts[:-1]) | (from_state[1:] != from_state[:-1])
        session_index = np.cumsum(first) - 1
        first_rows = np.flatnonzero(first)
        first_persons = persons[first_rows]
        first_state = from_state[first_rows]
        referrer_domains = map_distinct(table.column("referrer"), lambda r: (referrer_domain(r),), [pa.string()])[0]
        per_session = self._attribute(source, table, referrer_domains, first_rows)
        ids = session_ids(source.id, first_persons, starts[first_rows])
        carried_sessions = np.flatnonzero(first_state)
        if len(carried_sessions):
            carried = [state.sessions[int(first_persons[j])] for j in carried_sessions]
            ids[carried_sessions] = [c.session_id for c in carried]
            mask = np.zeros(len(first_rows), dtype=np.bool_)
            mask[carried_sessions] = True
            replacements = (
                [c.attribution.channel for c in carried],
                [c.attribution.source for c in carried],
                [c.attribution.medium for c in carried],
                [c.attribution.campaign for c in carried],
            )
            per_session = [
                pc.replace_with_mask(column, pa.array(mask), pa.array(values, pa.string()))
                for column, values in zip(per_session, replacements, strict=True)
            ]

        # Carry each person's latest session forward (or only the last person's, see above).
        last_rows = np.flatnonzero(np.append(persons[:-1] != persons[1:], True))
        if carry == "last":
            last_rows = last_rows[-1:]
        last_sessions = session_index[last_rows]
        campaign_list = list(campaign_names)
        columns = [c.take(pa.array(last_sessions)).to_pylist() for c in per_session]
        for i, row in enumerate(last_rows.tolist()):
            sess = int(last_sessions[i])
            person = int(persons[row])
            if first_state[sess]:
                carried_campaign = state.sessions[person].campaign
            else:
                code = int(campaign_codes[first_rows[sess]])
                carried_campaign = campaign_list[code] if code != NO_CAMPAIGN else None
            state.carry(
                person,
                CarriedSession(
                    session_id=int(ids[sess]),
                    start=int(starts[row]),
                    last=int(ts[row]),
                    campaign=carried_campaign,
                    attribution=Attribution(columns[1][i], columns[2][i], columns[3][i], columns[0][i]),
                ),
            )

        take = pa.array(session_index)
        channel, s_source, s_medium, s_campaign = (column.take(take) for column in per_session)
        device_type, browser, os_name = map_distinct(
            table.column("user_agent"), parse_user_agent, [pa.string(), pa.string(), pa.string()]
        )
        enriched = {
            "person_id": pa.array(persons, pa.int64()),
            "session_id": pa.array(ids[session_index], pa.int64()),
            "session_start": pa.array(starts, pa.int64()).cast(TS),
            "channel": channel,
            "session_source": s_source,
            "session_medium": s_medium,
            "session_campaign": s_campaign,
            "referrer_domain": referrer_domains,
            "device_type": device_type,
            "browser": browser,
            "os": os_name,
        }
        columns = [table.column(name) for name in NORMALIZED.names] + [enriched[f.name] for f in ENRICHED]
        return pa.Table.from_arrays(columns, schema=EVENTS)

    @staticmethod
    def _attribute(source: SourceProfile, table: pa.Table, referrer_domains: pa.Array, first_rows: np.ndarray) -> list[pa.Array]:
        """(channel, source, medium, campaign) of each session, from its first row's touch.

        The rules run once per distinct touch; a batch without any touch data (many imports) has
        one: direct.
        """
        touch_columns = [table.column(name) for name in _TOUCH_COLUMNS] + [referrer_domains]
        if all(column.null_count == len(column) for column in touch_columns):
            found = source.rules.attribute(Touch(None, None, None, None, None), source.own_domains)
            return [
                pa.repeat(pa.scalar(value, pa.string()), len(first_rows))
                for value in (found.channel, found.source, found.medium, found.campaign)
            ]
        take = pa.array(first_rows)
        touch_parts = [column.take(take) for column in touch_columns]
        touch_keys = pc.binary_join_element_wise(*touch_parts, _SEP, null_handling="replace", null_replacement=_NULL)

        def attribute(key: str) -> tuple[str, str, str | None, str]:
            parts = [None if part == _NULL else part for part in key.split(_SEP)]
            touch = Touch(parts[0], parts[1], parts[2], parts[3], parts[4])
            found = source.rules.attribute(touch, source.own_domains)
            return found.channel, found.source, found.medium, found.campaign

        return map_distinct(touch_keys, attribute, [pa.string()] * 4)


def _in_state(persons: np.ndarray, state: SessionState) -> np.ndarray:
    """Which of ``persons`` have a carried session."""
    if not state.sessions:
        return np.zeros(len(persons), dtype=np.bool_)
    if len(state.sessions) < len(persons):
        known = np.fromiter(state.sessions, dtype=np.int64, count=len(state.sessions))
        return np.isin(persons, known)
    return np.fromiter((int(p) in state.sessions for p in persons), dtype=np.bool_, count=len(persons))


def _carried(persons: np.ndarray, state: SessionState) -> list[tuple[int, CarriedSession]]:
    """(position in ``persons``, carried session) for every person with one; walks the smaller side."""
    if not state.sessions:
        return []
    if len(state.sessions) < len(persons):
        known = np.fromiter(state.sessions, dtype=np.int64, count=len(state.sessions))
        positions = np.searchsorted(persons, known)  # persons are sorted and distinct
        inside = positions < len(persons)
        hit = np.zeros(len(known), dtype=np.bool_)
        hit[inside] = persons[positions[inside]] == known[inside]
        return [(int(positions[i]), state.sessions[int(known[i])]) for i in np.flatnonzero(hit)]
    return [(code, state.sessions[p]) for code, p in enumerate(persons.tolist()) if p in state.sessions]
