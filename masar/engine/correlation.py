"""The correlation runner: for a funnel, the events and property values that go with converting
and those that go with dropping out, by odds ratio with a confidence interval and a p-value.

The funnel is evaluated once (``funnels.evaluate``); each counted person's *journey* is their
events from their step-1 time to their conversion time (or to the end of the window) and the
journey kernel counts, once per person, every candidate seen on it. docs/correlation.md defines
every number. ``report`` (odds ratios, tests, ranking) takes only the candidates' counts and is
shared with the ClickHouse runner (masar/store/clickhouse/correlation.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from masar.engine.context import QueryContext
from masar.engine.funnels import evaluate
from masar.engine.kernels.paths import journey_counts
from masar.engine.matching import ANY_EVENT
from masar.engine.properties import resolve
from masar.engine.significance import adjust
from masar.model.queries import CorrelationQuery

PRIOR = 1  # added to each cell of the 2×2 table (PostHog's prior): no division by zero, shrinks small counts
_Z95 = 1.959963984540054


@dataclass
class CorrelationResult:
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.data


@dataclass
class Candidate:
    kind: str  # "event", "event_property" or "person_property"
    name: str  # the event, or the property
    value: str | None
    success: int  # converters who did it / had it
    failure: int  # the others who did


def odds_ratio(s: int, f: int, success_total: int, failure_total: int) -> tuple[float, float, float, float]:
    """(odds ratio, 95% interval low, high, two-sided p-value) for s of the converters and f of the
    others: the 2×2 table with ``PRIOR`` added to each cell; Woolf's interval and the Wald test
    on the log odds ratio."""
    a, b = s + PRIOR, success_total - s + PRIOR
    c, d = f + PRIOR, failure_total - f + PRIOR
    log_or = math.log(a) + math.log(d) - math.log(b) - math.log(c)
    se = math.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    p = math.erfc(abs(log_or / se) / math.sqrt(2))
    return math.exp(log_or), math.exp(log_or - _Z95 * se), math.exp(log_or + _Z95 * se), p


def skipped_events(q: CorrelationQuery) -> set[str]:
    """Event names that are not candidates: ``exclude_events``, and the steps' own (``exclude_steps``)."""
    return set(q.exclude_events) | (_step_event_names(q) if q.exclude_steps else set())


def _step_event_names(q: CorrelationQuery) -> set[str]:
    names = {m.event for step in q.steps for m in step.matchers}
    names.discard(ANY_EVENT)
    return names


def candidates(ctx: QueryContext, q: CorrelationQuery) -> tuple[list[Candidate], int, int, int]:
    """Every candidate's counts, the converters, the others, and the people counted."""
    frame = ctx.frame
    counted = evaluate(ctx, q, date_from=q.date_from, date_to=q.date_to)
    last = len(q.steps) - 1
    converted = counted.levels == last
    first = counted.chains[:, 0].astype(np.int64)
    t0 = frame.ts[first]
    window_end = t0 + np.int64(q.window) * 1_000_000
    t_end = np.where(converted, frame.ts[np.maximum(counted.chains[:, last], 0)], window_end)
    starts = frame.person_starts
    group = np.searchsorted(starts, first, side="right") - 1
    lo, hi = starts[group].astype(np.int64), starts[group + 1].astype(np.int64)
    success_total, failure_total = int(converted.sum()), int((~converted).sum())
    found: list[Candidate] = []

    def journeys(codes: np.ndarray, values: list[str | None], kind: str, name: str | None) -> None:
        counts = journey_counts(first, lo, hi, t0, t_end, converted, frame.ts, codes, len(values))
        for c in np.flatnonzero(counts.sum(axis=1)):
            value = values[c]
            found.append(Candidate(kind, name if name is not None else str(value), None if name is None else value,
                                   int(counts[c, 0]), int(counts[c, 1])))  # fmt: skip

    if q.events:
        skip = skipped_events(q)
        # An action without a name is no candidate: there is no event to name in the result.
        lut = np.array([-1 if n is None or n in skip else i for i, n in enumerate(frame.event_names)], dtype=np.int32)
        codes = lut[frame.event_codes] if frame.rows else np.empty(0, dtype=np.int32)
        journeys(codes, list(frame.event_names), "event", None)
    for name in q.properties:
        ref = resolve(name)
        codes, values = ctx.codes(ref)
        if ref.scope == "person":
            # One value per person: the person's latest trait, wherever their journey runs.
            row_codes = codes[first] if len(first) else np.empty(0, dtype=np.int32)
            has = row_codes >= 0
            yes = np.bincount(row_codes[has & converted], minlength=len(values))
            no = np.bincount(row_codes[has & ~converted], minlength=len(values))
            for c in np.flatnonzero(yes + no):
                found.append(Candidate("person_property", name, values[c], int(yes[c]), int(no[c])))
        else:
            journeys(codes, values, "event_property", name)
    return found, success_total, failure_total, int(len(converted))


def _row(
    c: Candidate, stats: tuple[float, float, float, float], adjusted: float, alpha: float
) -> dict[str, Any]:
    ratio, low, high, p = stats
    row: dict[str, Any] = {"type": c.kind}
    if c.kind == "event":
        row["event"] = c.name
    else:
        row["property"], row["value"] = c.name, c.value
    row.update({
        "success_count": c.success,
        "failure_count": c.failure,
        "conversion": round(c.success / (c.success + c.failure), 6),
        "odds_ratio": round(ratio, 6),
        "confidence_interval": [round(low, 6), round(high, 6)],
        "p_value": p,
        "adjusted_p_value": adjusted,
        "significant": adjusted <= alpha,
    })  # fmt: skip
    return row


def run_correlation(ctx: QueryContext, q: CorrelationQuery) -> CorrelationResult:
    found, success_total, failure_total, people = candidates(ctx, q)
    return report(q, ctx.source.name, found, success_total, failure_total, people)


def report(q: CorrelationQuery, source: str, found: list[Candidate], success_total: int, failure_total: int,
           people: int) -> CorrelationResult:  # fmt: skip
    """The result from every candidate's counts (backend-independent)."""
    support = min(q.min_people, q.min_share * people)
    # With nobody converting (or nobody failing) there is nothing to compare with.
    usable = success_total > 0 and failure_total > 0
    tested = [c for c in found if c.success + c.failure >= support] if usable else []
    stats = [odds_ratio(c.success, c.failure, success_total, failure_total) for c in tested]
    adjusted = adjust([s[3] for s in stats], "bh") if stats else []
    rows = [_row(c, s, a, q.alpha) for c, s, a in zip(tested, stats, adjusted, strict=True)]

    def label(row: dict[str, Any]) -> tuple[str, str]:
        return (row.get("event") or row["property"], str(row.get("value")))

    success = sorted((r for r in rows if r["odds_ratio"] > 1), key=lambda r: (-r["odds_ratio"], label(r)))
    failure = sorted((r for r in rows if r["odds_ratio"] < 1), key=lambda r: (r["odds_ratio"], label(r)))
    skewed = usable and max(success_total, failure_total) > 10 * min(success_total, failure_total)
    return CorrelationResult({
        "kind": "correlation",
        "source": source,
        "steps": [s.label for s in q.steps],
        "order": q.order,
        "window_seconds": q.window,
        "range": {"from": _iso(q.date_from), "to": _iso(q.date_to)},
        "people": people,
        "converted": success_total,
        "dropped": failure_total,
        "skewed": skewed,
        "min_support": support,
        "candidates": len(found),
        "tested": len(tested),
        "success": success[: q.limit],
        "failure": failure[: q.limit],
    })  # fmt: skip


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None
