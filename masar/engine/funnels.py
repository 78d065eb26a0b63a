"""The funnel runner: a FunnelQuery → masks per event → the kernel → counts, times, breakdown.

docs/funnels.md defines every number this returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numba
import numpy as np
import pyarrow as pa

from masar.engine.context import QueryContext
from masar.engine.kernels.funnel import (
    ORDERED,
    STRICT,
    UNORDERED,
    funnel_attempts,
    funnel_units,
    funnel_units_by_event,
)
from masar.engine.matching import build_masks, step_lut
from masar.engine.properties import resolve
from masar.errors import InvalidInput
from masar.model.queries import EventMatcher, Exclusion, FunnelPeopleQuery, FunnelQuery

_MODES = {"ordered": ORDERED, "strict": STRICT, "unordered": UNORDERED}
OTHER = "$other"
# Time-to-convert buckets a store owner reads at a glance (upper bounds, seconds).
_TTC_EDGES = [60, 300, 900, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 3 * 86400, 7 * 86400,
              14 * 86400, 30 * 86400, 60 * 86400, 90 * 86400]  # fmt: skip


@dataclass
class Counted:
    """One row per counted unit (person, session or attempt): its deepest step (-1: none), the
    frame index of each of its steps (-1: not reached or skipped) and its person."""

    levels: np.ndarray
    chains: np.ndarray
    persons: np.ndarray


@numba.njit(cache=True, nogil=True)
def _keep_first(starts: np.ndarray, mask: np.ndarray, bit: np.uint64) -> None:
    """Clear ``bit`` on every event but the first that has it, per group (first-time steps)."""
    for g in range(starts.shape[0] - 1):
        seen = False
        for e in range(starts[g], starts[g + 1]):
            if mask[e] & bit:
                if seen:
                    mask[e] &= ~bit
                seen = True


@numba.njit(cache=True, nogil=True, parallel=True)
def _entered(levels, chains, person, starts):
    """The units that did step 1 (level ≥ 0): their levels, chains and persons, in chunks over the
    cores (count, then each chunk copies into its own range)."""
    groups = levels.shape[0]
    chunks = _STAT_CHUNKS
    found = np.zeros(chunks + 1, dtype=np.int64)
    for c in numba.prange(chunks):
        n = 0
        for g in range(groups * c // chunks, groups * (c + 1) // chunks):
            if levels[g] >= 0:
                n += 1
        found[c + 1] = n
    for c in range(chunks):
        found[c + 1] += found[c]
    steps = chains.shape[1]
    out_levels = np.empty(found[chunks], dtype=np.int64)
    out_chains = np.empty((found[chunks], steps), dtype=chains.dtype)
    out_persons = np.empty(found[chunks], dtype=np.int64)
    for c in numba.prange(chunks):
        k = found[c]
        for g in range(groups * c // chunks, groups * (c + 1) // chunks):
            if levels[g] >= 0:
                out_levels[k] = levels[g]
                for s in range(steps):
                    out_chains[k, s] = chains[g, s]
                out_persons[k] = person[starts[g]]
                k += 1
    return out_levels, out_chains, out_persons


@numba.njit(cache=True, nogil=True)
def _best_per_person(persons: np.ndarray, levels: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """Index of each person's best unit (rows grouped by person): deepest, then reached first."""
    n = persons.shape[0]
    out = np.empty(n, dtype=np.int64)
    count = 0
    i = 0
    while i < n:
        j = i
        best = i
        while j < n and persons[j] == persons[i]:
            if levels[j] > levels[best] or (levels[j] == levels[best] and reach[j] < reach[best]):
                best = j
            j += 1
        out[count] = best
        count += 1
        i = j
    return out[:count]


def _event_masks(ctx: QueryContext, q: FunnelQuery) -> tuple[np.ndarray, np.ndarray]:
    mask = build_masks(ctx, [step.matchers for step in q.steps])
    exclusions = [[_exclusion_matcher(ex)] for ex in q.exclusions]
    exmask = build_masks(ctx, exclusions) if exclusions else np.zeros(ctx.frame.rows, dtype=np.uint64)
    starts = ctx.frame.person_starts
    for k, step in enumerate(q.steps):
        if step.first_time:
            # First ever, over all data, before the date range narrows entries.
            _keep_first(starts, mask, np.uint64(1) << np.uint64(k))
    return mask, exmask


def _exclusion_matcher(ex: Exclusion) -> EventMatcher:
    return EventMatcher(event=ex.event, filters=ex.filters)


_MIN_US = np.iinfo(np.int64).min
_MAX_US = np.iinfo(np.int64).max


def _by_event_lut(ctx: QueryContext, q: FunnelQuery, held: list[str]) -> np.ndarray | None:
    """Step bits per event code when the funnel is a plain ordered one over event names (the common
    case): the kernel then reads event codes, and no mask per event is built."""
    plain = (
        q.order == "ordered" and q.counting == "uniques" and not held and not q.exclusions
        and all(not s.optional and not s.first_time and not s.max_seconds_from_previous for s in q.steps)
        and all(not m.filters for s in q.steps for m in s.matchers)
    )  # fmt: skip
    if not plain:
        return None
    return step_lut(ctx.frame, [[m.event for m in s.matchers] for s in q.steps])


def _entry_range(ctx: QueryContext, mask: np.ndarray, date_from, date_to) -> np.ndarray:
    """Only step-1 events inside the range start attempts; later steps may run past its end."""
    low = ctx.bound_us(date_from, end=False)
    high = ctx.bound_us(date_to, end=True)
    if low is None and high is None:
        return mask
    ts = ctx.frame.ts
    outside = np.zeros(len(ts), dtype=bool)
    if low is not None:
        outside |= ts < low
    if high is not None:
        outside |= ts >= high
    out = mask.copy()
    out[outside] &= ~np.uint64(1)
    return out


def _units(ctx: QueryContext, q: FunnelQuery, held: list[str]) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """(order of events or None for frame order, group starts, value code per group or None)."""
    frame = ctx.frame
    keys: list[np.ndarray] = []
    if q.counting == "sessions":
        keys.append(_session_codes(ctx))
    for name in held:
        codes, _ = ctx.codes(resolve(name))
        keys.append(codes)
    if not keys:
        return None, frame.person_starts, frame.person
    cache_key = ("units", q.counting == "sessions", tuple(held))
    cached = frame.cached(cache_key)
    if cached is None:
        order = np.lexsort((*reversed(keys), frame.person))
        bounds = np.ones(len(order), dtype=bool)
        if len(order):
            bounds[1:] = frame.person[order][1:] != frame.person[order][:-1]
            for key in keys:
                sorted_key = key[order]
                bounds[1:] |= sorted_key[1:] != sorted_key[:-1]
        starts = np.flatnonzero(bounds).astype(np.int64)
        starts = np.append(starts, len(order)).astype(np.int64)
        cached = frame.remember(cache_key, (order.astype(np.int64), starts))
    order, starts = cached
    return order, starts, frame.person[order]


def _session_codes(ctx: QueryContext) -> np.ndarray:
    key = ("session_codes",)
    cached = ctx.frame.cached(key)
    if cached is not None:
        return cached
    values = ctx.frame.expression(ctx.con, "session_id")
    codes = values.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    return ctx.frame.remember(key, codes)


def evaluate(ctx: QueryContext, q: FunnelQuery, *, date_from=None, date_to=None, held: list[str] | None = None,
             masks: tuple[np.ndarray, np.ndarray] | None = None) -> Counted:  # fmt: skip
    """Run the kernel; one row per counted unit (per person when uniques)."""
    frame = ctx.frame
    steps = len(q.steps)
    held = list(q.hold_constant) if held is None else held
    lut = _by_event_lut(ctx, q, held)
    if lut is not None:
        low = ctx.bound_us(date_from, end=False)
        high = ctx.bound_us(date_to, end=True)
        levels, chains = funnel_units_by_event(
            frame.person_starts, frame.ts, frame.event_codes, lut,
            np.int64(_MIN_US if low is None else low), np.int64(_MAX_US if high is None else high),
            steps, np.int64(q.window) * 1_000_000,
        )  # fmt: skip
        return Counted(*_entered(levels, chains, frame.person, frame.person_starts))
    mask, exmask = masks if masks is not None else _event_masks(ctx, q)
    mask = _entry_range(ctx, mask, date_from, date_to)
    order, starts, unit_person = _units(ctx, q, held)
    if held:
        # An event without the held value cannot be a step of any attempt.
        for name in held:
            codes, _ = ctx.codes(resolve(name))
            mask = np.where(codes >= 0, mask, np.uint64(0))
    ts = frame.ts if order is None else frame.ts[order]
    m = mask if order is None else mask[order]
    x = exmask if order is None else exmask[order]
    window = np.int64(q.window) * 1_000_000
    gaps = np.array([int(s.max_seconds_from_previous or 0) * 1_000_000 for s in q.steps], dtype=np.int64)
    optional = np.array([s.optional for s in q.steps], dtype=np.bool_)
    ex_from = np.array([ex.from_step - 1 for ex in q.exclusions], dtype=np.int64)
    ex_to = np.array([(ex.to_step or steps) - 1 for ex in q.exclusions], dtype=np.int64)
    mode = _MODES[q.order]
    if q.counting == "totals":
        units, levels, chains = funnel_attempts(starts, ts, m, x, mode, steps, window, gaps, optional, ex_from, ex_to)
        group_person = unit_person[starts[:-1]] if len(starts) > 1 else np.empty(0, dtype=np.int64)
        persons = group_person[units]
    else:
        levels, chains = funnel_units(starts, ts, m, x, mode, steps, window, gaps, optional, ex_from, ex_to)
        persons = unit_person[starts[:-1]] if len(starts) > 1 else np.empty(0, dtype=np.int64)
    if order is not None:
        chains = np.where(chains >= 0, order[np.maximum(chains, 0)], -1)
    entered = levels >= 0
    levels, chains, persons = levels[entered], chains[entered], persons[entered]
    if held and q.counting == "uniques":
        # A person counts once, by their best value (deepest step, reached first).
        reach = frame.ts[np.take_along_axis(chains, levels.astype(np.int64)[:, None], axis=1)[:, 0]]
        by_person = np.lexsort((reach, persons))
        levels, chains, persons = levels[by_person], chains[by_person], persons[by_person]
        best = _best_per_person(persons, levels, reach[by_person])
        levels, chains, persons = levels[best], chains[best], persons[best]
    return Counted(levels.astype(np.int64), chains, persons)


# -- results --------------------------------------------------------------------------------------


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def _seconds(values: np.ndarray) -> dict[str, float | None]:
    if len(values) == 0:
        return {"median": None, "average": None, "p90": None}
    median, p90 = np.quantile(values, [0.5, 0.9])
    return {"median": round(float(median), 3), "average": round(float(np.mean(values)), 3), "p90": round(float(p90), 3)}


_STAT_CHUNKS = 16


@numba.njit(cache=True, nogil=True, parallel=True)
def _grouped_step_stats(group, n_groups, levels, chains, ts, optional):
    """Per group and step: the count of units at the step, and the seconds from the previous step
    done to this one (flat, ``offsets[g * steps + k]`` onwards) — two passes over the units, each
    split in chunks over the cores (every chunk writes its own part of each slot)."""
    rows, steps = chains.shape
    slots = n_groups * steps
    chunks = _STAT_CHUNKS
    counts_by = np.zeros((chunks, n_groups, steps), dtype=np.int64)
    sizes_by = np.zeros((chunks, slots), dtype=np.int64)
    for c in numba.prange(chunks):
        for r in range(rows * c // chunks, rows * (c + 1) // chunks):
            g = group[r]
            level = levels[r]
            for k in range(steps):
                if level >= k and (not optional[k] or chains[r, k] >= 0):
                    counts_by[c, g, k] += 1
                    if k > 0 and chains[r, k] >= 0:
                        sizes_by[c, g * steps + k] += 1
    counts = np.zeros((n_groups, steps), dtype=np.int64)
    for c in range(chunks):
        counts += counts_by[c]
    offsets = np.zeros(slots + 1, dtype=np.int64)
    at_by = np.zeros((chunks, slots), dtype=np.int64)
    for i in range(slots):
        at = offsets[i]
        for c in range(chunks):
            at_by[c, i] = at
            at += sizes_by[c, i]
        offsets[i + 1] = at
    values = np.empty(offsets[slots], dtype=np.float64)
    for c in numba.prange(chunks):
        at = at_by[c]
        for r in range(rows * c // chunks, rows * (c + 1) // chunks):
            g = group[r]
            level = levels[r]
            prev = chains[r, 0]
            for k in range(1, steps):
                e = chains[r, k]
                if e >= 0 and level >= k:
                    values[at[g * steps + k]] = (ts[e] - ts[prev]) / 1e6
                    at[g * steps + k] += 1
                if e >= 0:
                    prev = e
    return counts, offsets, values


def reached_step(counted: Counted, q: FunnelQuery, k: int) -> np.ndarray:
    """Rows that reached step k (0-based); an optional step counts only when it was done."""
    if q.order == "unordered":
        return counted.levels >= k
    reached = counted.levels >= k
    if q.steps[k].optional:
        reached &= counted.chains[:, k] >= 0
    return reached


def _optional(q: FunnelQuery) -> np.ndarray:
    return np.array([s.optional and q.order != "unordered" for s in q.steps], dtype=np.bool_)


def grouped_step_rows(ctx: QueryContext, q: FunnelQuery, counted: Counted, group: np.ndarray, n_groups: int) -> list[list[dict]]:
    """``step_rows`` for each of ``n_groups`` groups of the counted units at once."""
    counts, offsets, values = _grouped_step_stats(
        group.astype(np.int64), n_groups, counted.levels, counted.chains, ctx.frame.ts, _optional(q)
    )
    steps = len(q.steps)
    return [
        _rows(q, counts[g], [values[offsets[g * steps + k] : offsets[g * steps + k + 1]] for k in range(steps)])
        for g in range(n_groups)
    ]


def step_rows(ctx: QueryContext, q: FunnelQuery, counted: Counted) -> list[dict]:
    return grouped_step_rows(ctx, q, counted, np.zeros(len(counted.levels), dtype=np.int64), 1)[0]


def _rows(q: FunnelQuery, counts: np.ndarray, seconds: list[np.ndarray]) -> list[dict]:
    return rows_from_stats(q, [int(c) for c in counts], [_seconds(s) if k else _NO_SECONDS for k, s in enumerate(seconds)])


_NO_SECONDS: dict[str, float | None] = {"median": None, "average": None, "p90": None}


def rows_from_stats(q: FunnelQuery, counts: list[int], stats: list[dict[str, float | None]]) -> list[dict]:
    """The step rows from each step's count and its seconds-from-previous statistics (``median``,
    ``average``, ``p90``; None when no unit did the step): every backend's last stage."""
    total_steps = len(q.steps)
    out = []
    first = previous = int(counts[0])
    for k, step in enumerate(q.steps):
        count = int(counts[k])
        row: dict[str, Any] = {
            "step": k + 1,
            "name": step.label if q.order != "unordered" else f"Completed {k + 1} of {total_steps} steps",
            "event": step.event if q.order != "unordered" else None,
            "group": step.group if q.order != "unordered" else None,
            "count": count,
            "conversion_from_start": _ratio(count, first) if k else (1.0 if count else None),
            "conversion_from_previous": _ratio(count, previous) if k else (1.0 if count else None),
            "drop_off": previous - count if k else 0,
            "drop_off_rate": (round(1 - count / previous, 6) if previous else None) if k else 0.0,
        }
        row["median_seconds_from_previous"] = stats[k]["median"]
        row["average_seconds_from_previous"] = stats[k]["average"]
        row["p90_seconds_from_previous"] = stats[k]["p90"]
        out.append(row)
        if not step.optional or q.order == "unordered":
            previous = count
    return out


def time_to_convert(ctx: QueryContext, q: FunnelQuery, counted: Counted) -> dict[str, Any]:
    last = len(q.steps) - 1
    done = counted.levels == last
    seconds = (ctx.frame.ts[counted.chains[done, last]] - ctx.frame.ts[counted.chains[done, 0]]) / 1e6
    bins = []
    for low, high in ttc_bins(q):
        inside = (seconds >= low) & ((seconds < high) if high != q.window else (seconds <= high))
        bins.append({"from_seconds": low, "to_seconds": high, "count": int(inside.sum())})
    return {"converted": int(done.sum()), **{f"{k}_seconds": v for k, v in _seconds(seconds).items()}, "bins": bins}


def ttc_bins(q: FunnelQuery) -> list[tuple[int, int]]:
    """(from, to) seconds of each time-to-convert bin; the last one includes its end (the window)."""
    edges = [e for e in _TTC_EDGES if e < q.window] + [q.window]
    return list(zip([0, *edges[:-1]], edges, strict=True))


def trend(ctx: QueryContext, q: FunnelQuery, counted: Counted) -> list[dict[str, Any]]:
    if q.trend is None or len(counted.levels) == 0:
        return []
    entry_us = ctx.frame.ts[counted.chains[:, 0]]
    table = pa.table({"t": entry_us, "converted": counted.levels == len(q.steps) - 1})
    cursor = ctx.con.cursor()
    cursor.register("entries", table)
    rows = cursor.execute(
        # make_timestamp gives a UTC wall time: mark it UTC first, or timezone() would read it as
        # the source's wall time and shift it the wrong way.
        "SELECT CAST(date_trunc(?, timezone(?, timezone('UTC', make_timestamp(t)))) AS DATE) AS period, "
        "count(*) AS entered, "
        "count(*) FILTER (WHERE converted) AS converted FROM entries GROUP BY period ORDER BY period",
        [q.trend, ctx.tz.key],
    ).fetchall()
    return [
        {"period": period.isoformat(), "entered": int(entered), "converted": int(done), "conversion": _ratio(done, entered)}
        for period, entered, done in rows
    ]


def breakdown_values(ctx: QueryContext, q: FunnelQuery, counted: Counted) -> tuple[np.ndarray, list[str | None]]:
    """Per counted row, a code into the returned values (-1: no value)."""
    bd = q.breakdown
    assert bd is not None
    codes, values = ctx.codes(resolve(bd.property))
    chains = counted.chains
    if bd.attribution in ("first_touch", "all_events"):
        at = chains[:, 0]
    elif bd.attribution == "last_touch":
        at = np.full(len(chains), -1, dtype=np.int64)
        for k in range(chains.shape[1]):
            at = np.where((chains[:, k] >= 0) & (counted.levels >= k), chains[:, k], at)
    else:
        at = chains[:, bd.step - 1]
    row_codes = np.where(at >= 0, codes[np.maximum(at, 0)], -1)
    return row_codes, values


def breakdown_rows(ctx: QueryContext, q: FunnelQuery, counted: Counted) -> list[dict[str, Any]]:
    bd = q.breakdown
    assert bd is not None
    row_codes, values = breakdown_values(ctx, q, counted)
    if len(row_codes) == 0:
        return []
    present, sizes = np.unique(row_codes, return_counts=True)
    ranked = sorted(zip(present.tolist(), sizes.tolist(), strict=True), key=lambda cs: (-cs[1], _label(values, cs[0])))
    top = [code for code, _ in ranked[: bd.limit]]
    rest = len(ranked) - len(top)
    # Group of each unit: its value's rank among the top values, or the "Other" group after them.
    lookup = np.full(len(values) + 1, len(top), dtype=np.int64)  # index -1 (no value) is the last slot
    for rank, code in enumerate(top):
        lookup[code] = rank
    groups = grouped_step_rows(ctx, q, counted, lookup[row_codes], len(top) + (1 if rest else 0))
    out = [{"value": values[code] if code >= 0 else None, "steps": groups[rank]} for rank, code in enumerate(top)]
    if rest:
        out.append({"value": OTHER, "other_values": rest, "steps": groups[len(top)]})
    return out


def _label(values: list[str | None], code: int) -> str:
    return "" if code < 0 else str(values[code])


def _range_dict(date_from, date_to) -> dict[str, str | None]:
    return {"from": date_from.isoformat() if date_from else None, "to": date_to.isoformat() if date_to else None}


_STEP_COLUMNS = ("step", "name", "event", "count", "conversion_from_start", "conversion_from_previous", "drop_off",
                 "drop_off_rate", "median_seconds_from_previous", "average_seconds_from_previous",
                 "p90_seconds_from_previous")  # fmt: skip
_STEP_SCHEMA = pa.schema(
    [("period", pa.string()), ("segment", pa.string()), ("breakdown_value", pa.string()),
     ("step", pa.int64()), ("name", pa.string()), ("event", pa.string()), ("count", pa.int64()),
     *[(c, pa.float64()) for c in ("conversion_from_start", "conversion_from_previous")],
     ("drop_off", pa.int64()),
     *[(c, pa.float64()) for c in _STEP_COLUMNS[7:]]]
)  # fmt: skip
_TABLES = {
    "trend": pa.schema([("period", pa.string()), ("entered", pa.int64()), ("converted", pa.int64()),
                        ("conversion", pa.float64())]),  # fmt: skip
    "time_to_convert": pa.schema([("period", pa.string()), ("from_seconds", pa.int64()), ("to_seconds", pa.int64()),
                                  ("count", pa.int64())]),  # fmt: skip
    "people": pa.schema([("person_id", pa.int64()), ("user_id", pa.string()), ("anonymous_ids", pa.string()),
                         ("deepest_step", pa.int64()), ("last_step_at", pa.string())]),  # fmt: skip
}
FUNNEL_TABLES = ("steps", "trend", "time_to_convert")


@dataclass
class FunnelResult:
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.data

    def table(self, part: str = "steps") -> pa.Table:
        """One table of the result, for CSV and Excel: a people list's people; a funnel's ``steps``
        (the whole funnel, then each breakdown value, then the compared range: ``period`` is
        ``this`` or ``previous``, ``segment`` is ``all`` or ``breakdown``), ``trend`` or
        ``time_to_convert``."""
        data = self.data
        if data["kind"] == "funnel_people":
            rows = [{**p, "anonymous_ids": " ".join(p["anonymous_ids"])} for p in data["people"]]
            return pa.Table.from_pylist(rows, schema=_TABLES["people"])
        if part == "steps":
            compared = data["compare"]["steps"] if data["compare"] else []
            rows = [{"period": "this", "segment": "all", "breakdown_value": None, **s} for s in data["steps"]]
            rows += [{"period": "this", "segment": "breakdown", "breakdown_value": _text(b["value"]), **s}
                     for b in data["breakdown"] for s in b["steps"]]  # fmt: skip
            rows += [{"period": "previous", "segment": "all", "breakdown_value": None, **s} for s in compared]
            return pa.Table.from_pylist([{c: r.get(c) for c in _STEP_SCHEMA.names} for r in rows], schema=_STEP_SCHEMA)
        if part == "trend":
            return pa.Table.from_pylist(data["trend"], schema=_TABLES["trend"])
        if part == "time_to_convert":
            periods = [("this", data["time_to_convert"])]
            if data["compare"]:
                periods.append(("previous", data["compare"]["time_to_convert"]))
            rows = [{"period": name, **b} for name, ttc in periods for b in ttc["bins"]]
            return pa.Table.from_pylist(rows, schema=_TABLES["time_to_convert"])
        raise InvalidInput(f"a funnel's tables are {', '.join(FUNNEL_TABLES)}, not {part!r}", code="invalid_table")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _held_for(q: FunnelQuery) -> list[str]:
    held = list(q.hold_constant)
    if q.breakdown is not None and q.breakdown.attribution == "all_events":
        held.append(q.breakdown.property)
    return held


def run_funnel(ctx: QueryContext, q: FunnelQuery) -> FunnelResult:
    held = _held_for(q)
    masks = None if _by_event_lut(ctx, q, held) is not None else _event_masks(ctx, q)
    counted = evaluate(ctx, q, date_from=q.date_from, date_to=q.date_to, held=held, masks=masks)
    data: dict[str, Any] = {
        "kind": "funnel",
        "source": ctx.source.name,
        "order": q.order,
        "counting": q.counting,
        "window_seconds": q.window,
        "range": _range_dict(q.date_from, q.date_to),
        "steps": step_rows(ctx, q, counted),
        "breakdown": breakdown_rows(ctx, q, counted) if q.breakdown is not None else [],
        "breakdown_property": q.breakdown.property if q.breakdown is not None else None,
        "time_to_convert": time_to_convert(ctx, q, counted),
        "trend": trend(ctx, q, counted),
        "compare": None,
    }
    if q.compare is not None:
        other = evaluate(ctx, q, date_from=q.compare.date_from, date_to=q.compare.date_to, held=held, masks=masks)
        data["compare"] = {
            "range": _range_dict(q.compare.date_from, q.compare.date_to),
            "steps": step_rows(ctx, q, other),
            "time_to_convert": time_to_convert(ctx, q, other),
        }
    return FunnelResult(data)


def run_funnel_people(ctx: QueryContext, q: FunnelPeopleQuery) -> FunnelResult:
    """The people who reached step ``q.step`` or dropped out just before it (reached the step
    before, not this one), with the time they reached their last step."""
    if q.step > len(q.steps):
        raise InvalidInput(f"step must be between 1 and {len(q.steps)}", code="invalid_query")
    if q.status == "dropped" and q.step == 1:
        raise InvalidInput("nobody drops out before step 1: ask for step 2 or later", code="invalid_query")
    held = _held_for(q)
    counted = evaluate(ctx, q, date_from=q.date_from, date_to=q.date_to, held=held)
    k = q.step - 1
    if q.status == "reached":
        rows = reached_step(counted, q, k)
    else:
        rows = reached_step(counted, q, k - 1) & ~reached_step(counted, q, k)
    if q.breakdown is not None and q.breakdown_value is not None:
        codes, values = breakdown_values(ctx, q, counted)
        wanted = [i for i, v in enumerate(values) if v == q.breakdown_value]
        rows &= np.isin(codes, wanted)
    persons = counted.persons[rows]
    levels = counted.levels[rows]
    chains = counted.chains[rows]
    last = np.take_along_axis(chains, levels[:, None], axis=1)[:, 0]
    last_ts = ctx.frame.ts[last]
    order = np.lexsort((persons, -last_ts))
    total = int(len(persons))
    page = order[q.offset : q.offset + q.limit]
    ids = ctx.store.identities_of(ctx.source, [int(p) for p in persons[page]])
    people = []
    for i in page:
        person = int(persons[i])
        known = ids.get(person, {})
        people.append({
            "person_id": person,
            "user_id": known.get("user_id"),
            "anonymous_ids": known.get("anonymous_ids", []),
            "deepest_step": int(levels[i]) + 1,
            "last_step_at": _iso(int(last_ts[i])),
        })  # fmt: skip
    return FunnelResult({
        "kind": "funnel_people",
        "source": ctx.source.name,
        "step": q.step,
        "status": q.status,
        "total": total,
        "offset": q.offset,
        "people": people,
    })  # fmt: skip


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, tz=UTC).isoformat().replace("+00:00", "Z")
