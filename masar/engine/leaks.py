"""The leak finder: where, for whom and since when a funnel's step conversion fell, and what it cost.

A LeaksQuery is a funnel plus the statistics' parameters. The funnel is evaluated once
(``funnels.evaluate``: each counted unit's deepest step and the frame index of each of its step
events); every later number comes from those arrays. For each transition between consecutive
required steps a → b, the *entrants* are the units that reached a, and an entrant *converted*
when it reached b. Its day is the day (source time zone) of its step-a event; its segment values
are the values of each property on its step-a event.

Three kinds of candidate leak are tested (docs/leaks.md has every definition):

1. a segment against the rest of the traffic, over the whole range;
2. a period where the transition's conversion fell against the store's own other days
   (``changepoint.find_drops`` on daily counts);
3. a period within one segment (the same change detection on the segment's daily counts),
   compared with the rest of the traffic in that period.

Every test run takes part in one correction (Benjamini–Hochberg by default); a candidate is
kept when its adjusted p-value is at most ``alpha`` and its conversion is at least
``min_effect`` below its baseline. Candidates that only echo a stronger one (the whole store
dipping because one browser broke) are folded into it as ``related``.

Everything after the units is backend-independent (``report``): it takes, per transition, a table
of *cells* — units with the same day, segment values, conversion and completion, collapsed with a
count and the sum of their order values — so the embedded runner (one cell per unit) and the
ClickHouse runner (cells counted by GROUP BY, masar/store/clickhouse/leaks.py) share the tests,
the folding and the arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np
import pyarrow as pa

from masar.engine.changepoint import find_drops
from masar.engine.context import QueryContext
from masar.engine.funnels import Counted, evaluate, reached_step
from masar.engine.properties import resolve
from masar.engine.significance import adjust, lower_p_value
from masar.model.money import minor_units
from masar.model.queries import LEAK_SEGMENTS, LeaksQuery

CUSTOMER = "customer"  # new vs returning: a computed segment, not a stored property
# Below this many units the segment's own onward rate and order value are too noisy to use; the
# whole transition's are used instead.
_MIN_FOR_OWN_RATE = 20
# A drop is a departure from the usual: the days outside it hold at least this share of the units
# (else "a drop over 95% of the range" would really be a few unusually good days).
_MIN_OUTSIDE = 0.1
# A finding A lies within a broader finding B when this share of A's units are B's.
_WITHIN = 0.9
_LABELS = {
    "device_type": "device", "browser": "browser", "os": "OS", "channel": "channel", "session_source": "source",
    "session_campaign": "campaign", "country": "country", CUSTOMER: "customer",
}  # fmt: skip
_UNITS = {"uniques": "people", "sessions": "sessions", "totals": "attempts"}
_EPOCH = date(1970, 1, 1)
_DAY_US = 86_400_000_000
_HOUR_US = 3_600_000_000


@dataclass
class Transition:
    """The entrants of one transition a → b as cells: entrants alike in every respect the leak
    finder looks at, counted. Every array has one entry per cell."""

    a: int  # 0-based step indices
    b: int
    label_from: str
    label_to: str
    n: np.ndarray  # int64: entrants in the cell
    day: np.ndarray  # int64: 0-based day of the step-a event within the series
    converted: np.ndarray  # bool: reached step b
    finished: np.ndarray  # bool: reached the last step
    value_milli: np.ndarray  # int64: sum of the cell's order values (thousandths), finished units
    valued: np.ndarray  # int64: how many of the cell's units have an order value in the currency
    recent: int  # entrants left out because their conversions may not all be in yet
    # property → (code per cell, -1: none or not tested; the values by code)
    codes: dict[str, tuple[np.ndarray, list[str | None]]] = field(default_factory=dict)

    def count(self, mask: np.ndarray) -> int:
        return int(self.n[mask].sum())


@dataclass
class _Candidate:
    t: int  # index of the transition
    prop: str | None
    code: int  # value code within the property (-1: no segment)
    value: str | None
    period: tuple[int, int] | None  # [start, end) series days
    n: int
    x: int
    n0: int  # the comparison: rest of the traffic (same period), or the other days
    x0: int
    p: float
    adjusted: float = 1.0
    related: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.x / self.n

    @property
    def baseline(self) -> float:
        return self.x0 / self.n0

    @property
    def ratio(self) -> float:
        return self.rate / self.baseline if self.baseline > 0 else 1.0


@dataclass
class LeaksResult:
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.data

    def table(self) -> pa.Table:
        """One row per finding, for CSV and Excel (``related`` and the summary left out: the
        first is a list, the second English prose)."""
        rows = []
        for f in self.data["findings"]:
            segment, period = f["segment"] or {}, f["period"] or {}
            rows.append({
                "step_from": f["step_from"], "step_to": f["step_to"],
                "segment_property": segment.get("property"), "segment_value": segment.get("value"),
                "period_start": period.get("start"), "period_end": period.get("end"),
                "entrants": f["entrants"], "converted": f["converted"], "conversion": f["conversion"],
                "baseline_entrants": f["baseline_entrants"], "baseline_conversion": f["baseline_conversion"],
                "p_value": f["p_value"], "lost_conversions": f["lost_conversions"], "lost_orders": f["lost_orders"],
                "lost_revenue": f["lost_revenue"], "average_order_value": f["average_order_value"],
                "currency": f["currency"],
            })  # fmt: skip
        return pa.Table.from_pylist(rows, schema=_FINDINGS_SCHEMA)


_FINDINGS_SCHEMA = pa.schema([
    ("step_from", pa.string()), ("step_to", pa.string()), ("segment_property", pa.string()),
    ("segment_value", pa.string()), ("period_start", pa.string()), ("period_end", pa.string()),
    ("entrants", pa.int64()), ("converted", pa.int64()), ("conversion", pa.float64()),
    ("baseline_entrants", pa.int64()), ("baseline_conversion", pa.float64()), ("p_value", pa.float64()),
    ("lost_conversions", pa.float64()), ("lost_orders", pa.float64()), ("lost_revenue", pa.float64()),
    ("average_order_value", pa.float64()), ("currency", pa.string()),
])  # fmt: skip


def run_leaks(ctx: QueryContext, q: LeaksQuery) -> LeaksResult:
    counted = evaluate(ctx, q, date_from=q.date_from, date_to=q.date_to)
    properties = segment_properties(q)
    day0, days = _day_span(ctx, q, counted)
    money = _Money(ctx, q, counted)
    transitions = []
    for a, b in pairs(q):
        t, at = _transition(ctx, q, counted, a, b, day0, money)
        for name in properties:
            t.codes[name] = _codes_at(ctx, q, name, at)
        transitions.append(t)
    return report(q, ctx.source.name, properties, transitions, day0, days, money.totals())


@dataclass
class Money:
    """What the lost revenue needs besides the cells: whether the funnel ends in an order, the
    currency, and the order values of every counted unit that completed the funnel (a sum in
    thousandths, exact on every backend, and how many)."""

    currency: str | None
    orders: bool
    store_milli: int
    store_valued: int

    def average(self, milli: int, valued: int) -> float | None:
        if not self.orders:
            return None
        if valued >= _MIN_FOR_OWN_RATE:
            return _average(milli, valued)
        return _average(self.store_milli, self.store_valued) if self.store_valued else None


def _average(milli: int, valued: int) -> float:
    return (milli / 1000) / valued


def report(q: LeaksQuery, source: str, properties: list[str], transitions: list[Transition], day0: int, days: int,
           money: Money) -> LeaksResult:  # fmt: skip
    """The leak finder's result from the cells of each transition (backend-independent)."""
    candidates: list[_Candidate] = []
    for i, t in enumerate(transitions):
        candidates += _scan(q, i, t, days)
    for cand, adjusted in zip(candidates, adjust([c.p for c in candidates], q.correction), strict=True):
        cand.adjusted = adjusted
    passing = [c for c in candidates if c.adjusted <= q.alpha and c.baseline > 0 and c.ratio <= 1 - q.min_effect]
    kept = _fold(q, transitions, passing, day0)
    findings = [_finding(q, transitions[c.t], c, day0, money) for c in kept]
    findings.sort(key=lambda f: (-(f["lost_revenue"] or 0.0), -f["lost_conversions"]))
    return LeaksResult({
        "kind": "leaks",
        "source": source,
        "counting": q.counting,
        "range": {"from": _iso_day(day0) if days else None, "to": _iso_day(day0 + days - 1) if days else None},
        "currency": money.currency,
        "parameters": {
            "min_sample": q.min_sample, "alpha": q.alpha, "correction": q.correction, "min_effect": q.min_effect,
            "min_days": q.min_days, "max_values": q.max_values, "segments": properties,
        },
        "transitions": [
            {"step_from": t.label_from, "step_to": t.label_to, "entrants": t.count(slice(None)),
             "recent_left_out": t.recent, "converted": t.count(t.converted),
             "conversion": round(t.count(t.converted) / t.count(slice(None)), 6) if t.count(slice(None)) else None}
            for t in transitions
        ],
        "tests": len(candidates),
        "findings": findings[: q.limit],
    })  # fmt: skip


# -- the units of each transition ---------------------------------------------------------------


def segment_properties(q: LeaksQuery) -> list[str]:
    names = list(LEAK_SEGMENTS) if q.default_segments else []
    for name in q.segment_by:
        if name not in names:
            names.append(name)
    for name in names:
        if name != CUSTOMER:
            resolve(name)  # one clear error for a name that cannot be used
    return names


def pairs(q: LeaksQuery) -> list[tuple[int, int]]:
    """Consecutive required steps: an optional step is not a stage everybody passes through."""
    required = [k for k, step in enumerate(q.steps) if not step.optional]
    return list(zip(required, required[1:], strict=False))


def local_days(ctx: QueryContext, ts: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 in the source's time zone, per timestamp (µs, UTC)."""
    if len(ts) == 0:
        return np.empty(0, dtype=np.int64)
    hours, inverse = np.unique(ts // _HOUR_US, return_inverse=True)
    tz = ctx.tz
    offsets = np.array(
        [int(datetime.fromtimestamp(int(h) * 3600, UTC).astimezone(tz).utcoffset().total_seconds()) for h in hours],
        dtype=np.int64,
    )
    return (ts + offsets[inverse] * 1_000_000) // _DAY_US


def _day_span(ctx: QueryContext, q: LeaksQuery, counted: Counted) -> tuple[int, int]:
    """(first day, number of days) of the series: from the range's first day (else the first
    entry) to the last day any step event of the counted units falls on — later steps may run
    past the range's end by up to the window."""
    steps = counted.chains[counted.chains >= 0]
    if len(steps) == 0:
        return 0, 0
    times = ctx.frame.ts[steps]
    low, high = local_days(ctx, np.array([times.min(), times.max()], dtype=np.int64))
    first = day_of_bound(ctx, q.date_from, end=False)
    first = int(low) if first is None else first
    last = int(high)
    if last < first:
        return 0, 0
    return first, last - first + 1


def day_of_bound(ctx: QueryContext, value: date | datetime | None, *, end: bool) -> int | None:
    us = ctx.bound_us(value, end=end)
    if us is None:
        return None
    day = int(local_days(ctx, np.array([us - (1 if end else 0)], dtype=np.int64))[0])
    return day


def _transition(ctx: QueryContext, q: LeaksQuery, counted: Counted, a: int, b: int, day0: int,
                money: _Money) -> tuple[Transition, np.ndarray]:  # fmt: skip
    """The transition's entrants, one cell each, and the frame index of each one's step-a event."""
    ts = ctx.frame.ts
    rows = np.flatnonzero(reached_step(counted, q, a))
    converted = reached_step(counted, q, b)[rows]
    # Units too recent to have converted yet would make the last days look like a drop: those
    # that entered less than H before the source's latest event are left out, H being the time
    # from step 1 within which 99% of this transition's conversions happen (at most the window).
    entry = ts[counted.chains[rows, 0]]
    done = rows[converted]
    took = ts[counted.chains[done, b]] - ts[counted.chains[done, 0]]
    horizon = recent_horizon(q, len(took), lambda ranks: np.partition(took, ranks)[ranks])
    complete = entry <= int(ts.max()) - horizon
    rows, converted = rows[complete], converted[complete]
    at = counted.chains[rows, a]
    finished = (counted.levels[rows] >= len(q.steps) - 1)
    day = local_days(ctx, ctx.frame.ts[at]) - day0
    ones = np.ones(len(rows), dtype=np.int64)
    t = Transition(a, b, q.steps[a].label, q.steps[b].label, ones, day, converted, finished,
                   money.milli[rows], money.valued[rows].astype(np.int64), int((~complete).sum()))  # fmt: skip
    return t, at


def recent_horizon(q: LeaksQuery, n: int, order_stats) -> int:
    """H in µs: min(window, the 99th percentile of the ``n`` conversion times), the percentile as
    ``numpy.quantile`` (linear) computes it, from the two order statistics it needs
    (``order_stats(ranks)``: the values at those 0-based ranks in ascending order), so every
    backend can fetch just those two."""
    window = q.window * 1_000_000
    if n == 0:
        return window
    virtual = (n - 1) * 0.99
    if virtual >= n - 1:
        lo = hi = n - 1
    else:
        lo = math.floor(virtual)
        hi = lo + 1
    gamma = virtual - lo
    low, high = (np.int64(v) for v in order_stats([lo, hi]))
    diff = high - low
    value = high - diff * (1 - gamma) if gamma >= 0.5 else low + diff * gamma
    return min(window, int(value))


def _codes_at(ctx: QueryContext, q: LeaksQuery, name: str, at: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
    if name == CUSTOMER:
        return _customer_codes(ctx, q, at), list(CUSTOMER_VALUES)
    codes, values = ctx.codes(resolve(name))
    return codes[at], values


CUSTOMER_VALUES = ("new", "returning")


def _customer_codes(ctx: QueryContext, q: LeaksQuery, at: np.ndarray) -> np.ndarray:
    """1 (returning) when the person completed an order strictly before the step-a event, else 0
    (new). Orders before the date range count: a returning customer is one who bought before."""
    frame = ctx.frame
    code = frame.event_code(q.order_event)
    if code is None or len(at) == 0:
        return np.zeros(len(at), dtype=np.int32)
    orders = np.flatnonzero(frame.event_codes == code)
    group = np.searchsorted(frame.person_starts, orders, side="right") - 1
    # Frame order is (person, time): the first order row of a person is their first order.
    groups, first = np.unique(group, return_index=True)
    first_ts = np.full(len(frame.person_starts), np.iinfo(np.int64).max, dtype=np.int64)
    first_ts[groups] = frame.ts[orders[first]]
    at_group = np.searchsorted(frame.person_starts, at, side="right") - 1
    return (first_ts[at_group] < frame.ts[at]).astype(np.int32)


# -- the tests ------------------------------------------------------------------------------------


def _scan(q: LeaksQuery, i: int, t: Transition, days: int) -> list[_Candidate]:
    out: list[_Candidate] = []
    total_n = t.count(slice(None))
    if total_n == 0 or days == 0:
        return out
    day = np.clip(t.day, 0, days - 1)
    # Counts as float weights: exact below 2**53.
    weight = t.n.astype(np.float64)
    success = np.where(t.converted, weight, 0.0)
    all_n = np.bincount(day, weights=weight, minlength=days).astype(np.int64)
    all_x = np.bincount(day, weights=success, minlength=days).astype(np.int64)
    total_x = int(all_x.sum())
    # (2) the whole traffic against its own other days.
    for drop in find_drops(all_n, all_x, min_days=q.min_days, min_trials=q.min_sample, alpha=q.alpha,
                           min_outside=_MIN_OUTSIDE):
        out.append(_Candidate(i, None, -1, None, (drop.start, drop.end), drop.trials_in, drop.successes_in,
                              drop.trials_out, drop.successes_out, drop.p_value))  # fmt: skip
    for name, (codes, values) in t.codes.items():
        present = codes >= 0
        sizes = (np.bincount(codes[present], weights=weight[present], minlength=len(values)).astype(np.int64)
                 if present.any() else np.zeros(len(values), np.int64))
        tested = [int(c) for c in np.argsort(-sizes, kind="stable")[: q.max_values] if sizes[c] >= q.min_sample]
        if not tested:
            continue
        slot = np.full(len(values), -1, dtype=np.int64)
        slot[tested] = np.arange(len(tested))
        keep = present & (slot[np.maximum(codes, 0)] >= 0)
        key = slot[codes[keep]] * days + day[keep]
        seg_n = np.bincount(key, weights=weight[keep], minlength=len(tested) * days).reshape(len(tested), days)
        seg_n = seg_n.astype(np.int64)
        seg_x = np.bincount(key, weights=success[keep], minlength=len(tested) * days).reshape(len(tested), days)
        seg_x = seg_x.astype(np.int64)
        for s, code in enumerate(tested):
            n, x = int(seg_n[s].sum()), int(seg_x[s].sum())
            # (1) the segment against the rest of the traffic, whole range. New and returning
            # customers always convert differently; only a change over time is news for them.
            if total_n - n >= q.min_sample and name != CUSTOMER:
                out.append(_Candidate(i, name, code, values[code], None, n, x, total_n - n, total_x - x,
                                      lower_p_value(x, n, total_x - x, total_n - n)))  # fmt: skip
            # (3) periods within the segment, against the rest of the traffic in the period.
            if n < 2 * q.min_sample:
                continue
            for drop in find_drops(seg_n[s], seg_x[s], min_days=q.min_days, min_trials=q.min_sample, alpha=q.alpha,
                                   min_outside=_MIN_OUTSIDE):
                if name == CUSTOMER:
                    # Compared with the segment's own other days (see above).
                    out.append(_Candidate(i, name, code, values[code], (drop.start, drop.end), drop.trials_in,
                                          drop.successes_in, drop.trials_out, drop.successes_out, drop.p_value))
                    continue
                rest_n = int(all_n[drop.start : drop.end].sum()) - drop.trials_in
                rest_x = int(all_x[drop.start : drop.end].sum()) - drop.successes_in
                if rest_n < q.min_sample:
                    p = 1.0
                else:
                    # Both claims must hold (an intersection–union test): the segment fell
                    # against its own other days, and it is below the rest of the traffic then.
                    p = max(drop.p_value, lower_p_value(drop.successes_in, drop.trials_in, rest_x, rest_n))
                out.append(_Candidate(i, name, code, values[code], (drop.start, drop.end), drop.trials_in,
                                      drop.successes_in, max(rest_n, 0), max(rest_x, 0), p))  # fmt: skip
    return out


def _masks(t: Transition, c: _Candidate) -> tuple[np.ndarray, np.ndarray]:
    """(cells of the candidate, cells it is compared with) over the transition's entrants."""
    everyone = np.ones(len(t.n), dtype=bool)
    segment = t.codes[c.prop][0] == c.code if c.prop is not None else everyone
    if c.period is None:
        return segment, ~segment
    inside = (t.day >= c.period[0]) & (t.day < c.period[1])
    if c.prop is None:
        return inside, ~inside
    if c.prop == CUSTOMER:
        return segment & inside, segment & ~inside
    return segment & inside, ~segment & inside


def _holds(q: LeaksQuery, t: Transition, unit: np.ndarray, rest: np.ndarray) -> bool:
    n, n0 = t.count(unit), t.count(rest)
    if n < q.min_sample or n0 < q.min_sample:
        return False
    x, x0 = t.count(unit & t.converted), t.count(rest & t.converted)
    if x0 == 0 or (x / n) > (1 - q.min_effect) * (x0 / n0):
        return False
    return lower_p_value(x, n, x0, n0) <= q.alpha


def _fold(q: LeaksQuery, transitions: list[Transition], passing: list[_Candidate], day0: int) -> list[_Candidate]:
    """Keep the candidates that are leaks in their own right.

    1. Strongest first (lowest conversion relative to baseline), a candidate is kept only if it
       still holds — enough units, the minimum effect, p ≤ alpha — once the units of the
       findings already kept for the same transition are taken out of it and of its comparison.
       Otherwise it is related to the kept finding it shares most units with (the whole store
       dipping because one browser broke).
    2. A kept finding that lies within a broader passing candidate (90% of its units), and is
       no worse than the rest of it, gives way to the broader one (one TikTok campaign → "source
       tiktok", when the other TikTok campaigns are as bad).
    3. The same between two kept findings.
    """
    masks = {id(c): _masks(transitions[c.t], c) for c in passing}
    kept: list[_Candidate] = []
    for cand in sorted(passing, key=lambda c: (c.ratio, -c.n)):
        t = transitions[cand.t]
        unit, rest = masks[id(cand)]
        mine = [k for k in kept if k.t == cand.t]
        covered = np.zeros(len(t.n), dtype=bool)
        for k in mine:
            covered |= masks[id(k)][0]
        if _holds(q, t, unit & ~covered, rest & ~covered):
            kept.append(cand)
        elif mine:
            owner = max(mine, key=lambda k: t.count(masks[id(k)][0] & unit))
            owner.related.append(_describe(cand, day0))
    for pool in (passing, None):
        changed = True
        while changed:
            changed = False
            for inner in kept:
                outer = _broader(q, transitions[inner.t], inner, pool if pool is not None else kept, masks)
                if outer is None:
                    continue
                mention = _describe(outer, day0)
                outer.related = [_describe(inner, day0), *(r for r in inner.related if r != mention),
                                 *(r for r in outer.related if r not in inner.related)]  # fmt: skip
                kept = [k for k in kept if k is not inner and k is not outer] + [outer]
                changed = True
                break
    return kept


def _broader(q: LeaksQuery, t: Transition, inner: _Candidate, pool: list[_Candidate], masks: dict) -> _Candidate | None:
    """The largest candidate of ``pool`` that holds ``inner`` and of which ``inner`` is merely a
    part: the rest of it is large enough to judge, and ``inner`` is not a leak against it."""
    unit = masks[id(inner)][0]
    size = t.count(unit)
    best: _Candidate | None = None
    for outer in pool:
        if outer is inner or outer.t != inner.t:
            continue
        other = masks[id(outer)][0]
        if t.count(other) <= size or t.count(unit & other) < _WITHIN * size:
            continue
        # Too little of the broader one besides ``inner`` to tell: the narrower is the finding.
        if t.count(other & ~unit) < q.min_sample or _holds(q, t, unit, other & ~unit):
            continue
        if best is None or t.count(other) > t.count(masks[id(best)][0]):
            best = outer
    return best


def _describe(c: _Candidate, day0: int) -> dict[str, Any]:
    return {"segment": _segment(c), "period": _period(c, day0), "conversion": round(c.rate, 4)}


def _segment(c: _Candidate) -> dict[str, Any] | None:
    return None if c.prop is None else {"property": c.prop, "value": c.value}


def _period(c: _Candidate, day0: int) -> dict[str, str] | None:
    if c.period is None:
        return None
    return {"start": _iso_day(day0 + c.period[0]), "end": _iso_day(day0 + c.period[1] - 1)}


def _iso_day(day: int) -> str:
    return (_EPOCH + timedelta(days=day)).isoformat()


# -- what it cost ---------------------------------------------------------------------------------


class _Money:
    """Order values per counted unit that completed the funnel, in thousandths of the source's
    currency (exact: money is a decimal with three places)."""

    def __init__(self, ctx: QueryContext, q: LeaksQuery, counted: Counted):
        self.currency = ctx.source.currency
        self.orders = orders_at_end(q)
        self.milli = np.zeros(len(counted.levels), dtype=np.int64)
        self.valued = np.zeros(len(counted.levels), dtype=bool)
        if not self.orders or len(counted.levels) == 0:
            return
        done = counted.levels >= len(q.steps) - 1
        at = counted.chains[done, len(q.steps) - 1]
        # An order's value is its revenue (goods after discounts), else its total. Orders in
        # another currency are left out: Masar keeps no exchange rates.
        amount = ctx.frame.expression(ctx.con, "CAST(coalesce(revenue, total) * 1000 AS BIGINT)")
        has = amount.is_valid().to_numpy(zero_copy_only=False)
        amount = amount.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        codes, values = ctx.codes(resolve("currency"))
        ours = np.array([v == self.currency for v in values] + [False], dtype=bool)
        valued = ours[codes[at]] & has[at]
        self.milli[np.flatnonzero(done)] = np.where(valued, amount[at], 0)
        self.valued[np.flatnonzero(done)] = valued

    def totals(self) -> Money:
        return Money(self.currency, self.orders, int(self.milli.sum()), int(self.valued.sum()))


def orders_at_end(q: LeaksQuery) -> bool:
    """Revenue is counted only when the funnel's last step is the order event."""
    return any(m.event == q.order_event for m in q.steps[-1].matchers)


def _finding(q: LeaksQuery, t: Transition, c: _Candidate, day0: int, money: Money) -> dict:
    unit, _ = _masks(t, c)
    lost = max(0.0, (c.baseline - c.rate) * c.n)
    # Lost conversions at this step would have gone on to the end of the funnel at the segment's
    # own onward rate (the transition's when the segment has too few units to say).
    went_on = unit & t.converted
    if t.b == len(q.steps) - 1:
        onward = 1.0
    elif t.count(went_on) >= _MIN_FOR_OWN_RATE:
        onward = t.count(went_on & t.finished) / t.count(went_on)
    else:
        onward = t.count(t.converted & t.finished) / t.count(t.converted) if t.count(t.converted) else 0.0
    lost_final = lost * onward
    mine = unit & t.finished
    average = money.average(int(t.value_milli[mine].sum()), int(t.valued[mine].sum()))
    revenue = None if average is None else round(lost_final * average, minor_units(money.currency))
    data = {
        "step_from": t.label_from,
        "step_to": t.label_to,
        "segment": _segment(c),
        "period": _period(c, day0),
        "conversion": round(c.rate, 6),
        "baseline_conversion": round(c.baseline, 6),
        "p_value": float(f"{c.adjusted:.3g}"),
        "lost_conversions": round(lost, 1),
        "lost_revenue": revenue,
        "currency": money.currency if money.orders else None,
        "lost_orders": round(lost_final, 1) if money.orders else None,
        "average_order_value": None if average is None else round(average, minor_units(money.currency)),
        "entrants": c.n,
        "converted": c.x,
        "baseline_entrants": c.n0,
        "related": c.related,
    }
    data["summary"] = _summary(q, data)
    return data


def _summary(q: LeaksQuery, f: dict[str, Any]) -> str:
    unit = _UNITS[q.counting]
    seg = f["segment"]
    if seg is None:
        who = f"All {unit}"
        versus = "on other days"
    elif seg["property"] == CUSTOMER:
        who = f"{str(seg['value']).capitalize()} customers ({unit})"
        versus = "on other days"
    else:
        who = f"{unit.capitalize()} with {_LABELS.get(seg['property'], seg['property'])} {seg['value']}"
        versus = "elsewhere"
    parts = [f"{who}: {f['step_from']} → {f['step_to']} {_pct(f['conversion'])} vs {_pct(f['baseline_conversion'])} {versus}"]
    if f["period"] is not None:
        parts.append(_period_text(f["period"]))
    parts.append(f"about {_about(f['lost_conversions'])} fewer reached {f['step_to']}")
    if f["lost_orders"] is not None and f["step_to"] != q.steps[-1].label and f["lost_orders"] >= 0.5:
        parts.append(f"about {_about(f['lost_orders'])} lost orders")
    if f["lost_revenue"] is not None and f["lost_revenue"] >= 0.5:
        parts.append(f"about {f['currency']} {_about(f['lost_revenue'])}")
    return ", ".join(parts)


def _pct(value: float) -> str:
    return f"{value * 100:.0f}%"


def _about(value: float) -> str:
    """Two significant figures, with thousands separators, halves away from zero as every money
    figure (and the dashboard) rounds: 6,614.2 → 6,600; 22.4 → 22; 1,450 → 1,500."""
    if value < 1:
        return f"{value:.1f}"
    rounded = Decimal(str(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    digits = len(str(int(rounded)))
    if digits > 2:
        rounded = Decimal(int(rounded)).scaleb(-(digits - 2)).quantize(Decimal(1), rounding=ROUND_HALF_UP).scaleb(digits - 2)
    return f"{int(rounded):,}"


def _period_text(period: dict[str, str]) -> str:
    start, end = date.fromisoformat(period["start"]), date.fromisoformat(period["end"])
    if start == end:
        return f"on {start.day} {start:%b %Y}"
    if start.year == end.year:
        return f"{start.day} {start:%b} – {end.day} {end:%b %Y}"
    return f"{start.day} {start:%b %Y} – {end.day} {end:%b %Y}"
