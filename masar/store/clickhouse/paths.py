"""Journeys (the ``paths`` query) inside ClickHouse: docs/paths.md, as masar/engine/paths.py.

One query. Each person's actions become one array in time order (``groupArray`` then
``arraySort``); the anchors are positions in it (``arrayFirstIndex`` for a person's first,
``arrayFilter`` over ``arrayEnumerate`` for every one, ``ARRAY JOIN``ed into rows); the walk is
``arraySlice`` away from the anchor, ``arrayFilter`` for the window, the session and the events
left out, then collapsing repeats and cutting to ``length``. Paths are grouped, so what comes back
is each distinct path (its labels) with how many anchors took it and the people among them — the
top paths, Sankey and loops are then computed from those counts by the engine's own code
(``masar.engine.paths.summarize``), the same code the embedded store uses.

With a ``funnel`` anchor the anchors are the drop-outs' step events: the funnel's counted units
(``units_sql`` of masar/store/clickhouse/funnels.py, counting uniques over the query's range) go
into a Memory table; the people whose deepest step is ``dropped_after`` are the drop-outs, each
anchored at the reported attempt's step event, found in their journey by (time, message id).

Cleaning patterns are Python regular expressions: they run as ClickHouse ``match`` after
translation to RE2 with the same meaning (masar/store/clickhouse/regex.py), or are refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from masar.engine.paths import PAGE_EVENTS, UNNAMED, PathsResult, summarize
from masar.errors import InvalidInput
from masar.model.queries import FunnelQuery, PathsQuery
from masar.store.clickhouse.context import ClickHouseContext
from masar.store.clickhouse.funnels import _materialized, units_sql
from masar.store.clickhouse.predicates import ACTIONS, Predicates, quote
from masar.store.clickhouse.regex import re2_pattern


def label_sql(q: PathsQuery, p: Predicates) -> tuple[str, str]:
    """(the raw label, the label): an event's name (``UNNAMED`` without one), or with ``label:
    path|url`` a page or screen event's page; then the alias of the first cleaning rule found in
    it (over ``raw_label``)."""
    raw = f"ifNull(event, {p.bind(UNNAMED)})"
    if q.label != "event":
        column = quote(q.label)
        pages = ", ".join(p.bind(n) for n in PAGE_EVENTS)
        raw = f"if(event IN ({pages}) AND ifNull({column}, '') != '', {column}, {raw})"
    rules = []
    for n, rule in enumerate(q.cleaning, start=1):
        try:
            pattern = re2_pattern(rule.pattern)
        except InvalidInput as exc:
            raise InvalidInput(f"cleaning rule {n}: {exc.message}", code="invalid_query") from None
        rules.append(f"match(raw_label, {p.bind(pattern)}), {p.bind(rule.alias)}")
    return raw, f"multiIf({', '.join(rules)}, raw_label)" if rules else "raw_label"


def funnel_of(q: PathsQuery) -> FunnelQuery:
    """The anchor funnel as the embedded store evaluates it (masar/engine/paths.py ``anchors_of``):
    counting uniques, the funnel's steps, window, order and exclusions; the query's range is the
    entry range."""
    f = q.funnel
    assert f is not None
    return FunnelQuery(source=q.source, steps=f.steps, window=f.window, order=f.order, exclusions=f.exclusions)


def compile_paths(ctx: ClickHouseContext, q: PathsQuery, drop_outs: str | None = None) -> tuple[str, dict]:
    """The query: one row per distinct path (labels in walk order), its count and the people.
    ``drop_outs``: with a funnel anchor, a relation of the anchors — (person, at µs, message id),
    one per person — which replaces the step and the range."""
    if (q.funnel is None) != (drop_outs is None):
        raise ValueError("a funnel anchor needs its drop-outs, and only a funnel anchor has them")
    p = Predicates()
    raw, label = label_sql(q, p)
    excluded = ", ".join(p.bind(n) for n in q.exclude_events)
    # A nameless event is never excluded by name (``event IN`` is NULL for it).
    keep = f"NOT ifNull(event IN ({excluded}), false)" if excluded else "true"
    low = ctx.bound_us(q.date_from, end=False)
    high = ctx.bound_us(q.date_to, end=True)
    # An anchor matches the step (``step_match``, worked out in the scan of the events, where the
    # step's filters read the person's traits: ``p.joins``) within the range.
    candidate = ["step_match"]
    if drop_outs is not None:
        # The drop-out's step event (the range already chose who entered the funnel).
        step = (f"(e.person, toInt64(toUnixTimestamp64Micro(e.ts)), e.message_id) IN "
                f"(SELECT person, at, mid FROM {drop_outs})")  # fmt: skip
    else:
        # Without a step, a journey starts at the first event the analysis looks at.
        step = p.any_of(q.step.matchers) if q.step is not None else keep
        if low is not None:
            candidate.append(f"toUnixTimestamp64Micro(ts) >= {p.bind(low, 'Int64')}")
        if high is not None:
            candidate.append(f"toUnixTimestamp64Micro(ts) < {p.bind(high, 'Int64')}")
    if q.occurrence == "first" or drop_outs is not None:  # a drop-out has one anchor
        anchors = "[arrayFirstIndex(x -> x.7, journey)]"
    else:
        anchors = "arrayFilter(i -> journey[i].7, arrayEnumerate(journey))"
    # A person's journey = (t, arrival, message id, label, kept, session, anchor?), sorted as tuples: in
    # time order, events at one instant by arrival then message id, a total order (the embedded store
    # takes them in its files' order: docs/scaling.md). anchor_at: the anchor's index.
    near = "x.5 AND " + (
        "x.6 = journey[anchor_at].6" if q.window == "session"
        else f"abs(x.1 - journey[anchor_at].1) <= {p.bind(int(q.window) * 1_000_000, 'Int64')}"
    )  # fmt: skip
    side = "arraySlice(journey, anchor_at + 1)" if q.direction == "after" else "arrayReverse(arraySlice(journey, 1, anchor_at - 1))"
    walked = "walk"
    if q.collapse_repeats:  # a label equal to the one before it in the walk is skipped
        walked = "arrayFilter((l, i) -> i = 1 OR l != walk[i - 1], walk, arrayEnumerate(walk))"
    sql = f"""
        SELECT path, n, uniqExactMerge(people) OVER () AS people
        FROM (
            SELECT arraySlice({walked}, 1, {p.bind(q.length, 'UInt32')}) AS path, count() AS n,
                   uniqExactState(person) AS people
            FROM (
                SELECT person, arrayConcat([journey[anchor_at].4], arrayMap(x -> x.4, arrayFilter(x -> {near}, {side}))) AS walk
                FROM (
                    SELECT person,
                           arraySort(groupArray((t, arrival, message, label, keep, session, candidate))) AS journey
                    FROM (
                        SELECT person, toUnixTimestamp64Micro(ts) AS t, {label} AS label, {keep} AS keep,
                               ifNull(session_id, -1) AS session, {" AND ".join(candidate)} AS candidate,
                               toUnixTimestamp64Micro(ifNull(received_at, ts)) AS arrival,
                               ifNull(message_id, '') AS message
                        FROM (SELECT e.*, {raw} AS raw_label, {step} AS step_match
                              FROM {ctx.events} AS e {p.joins(ctx.events, 'e')} WHERE e.{ACTIONS})
                    )
                    GROUP BY person
                    HAVING countIf(candidate) > 0
                )
                ARRAY JOIN {anchors} AS anchor_at
            )
            GROUP BY path
        )
    """
    return sql, p.params


def run_paths(ctx: ClickHouseContext, q: PathsQuery) -> PathsResult:
    if q.funnel is None:
        return _paths(ctx, q, compile_paths(ctx, q), None)
    fq = funnel_of(q)
    k = q.funnel.dropped_after - 1  # 0-based; neither it nor the next step is optional
    units = units_sql(ctx, fq, date_from=q.date_from, date_to=q.date_to, p=Predicates(prefix="f"))
    with _materialized(ctx, units) as table:
        # Units are people (uniques); a drop-out's deepest step is k, its anchor the step-k event.
        counts = ctx.arrow(f"SELECT count() AS entered, countIf(level = {k}) AS dropped FROM {table}", {})
        drop_outs = f"(SELECT person, ts[{k + 1}] AS at, mids[{k + 1}] AS mid FROM {table} WHERE level = {k})"
        funnel = {"steps": [s.label for s in fq.steps], "dropped_after": q.funnel.dropped_after,
                  "step": fq.steps[k].label, "entered": int(counts.column("entered")[0].as_py()),
                  "dropped": int(counts.column("dropped")[0].as_py())}  # fmt: skip
        return _paths(ctx, q, compile_paths(ctx, q, drop_outs), funnel)


def _paths(ctx: ClickHouseContext, q: PathsQuery, compiled: tuple[str, dict], funnel: dict[str, Any] | None) -> PathsResult:
    sql, params = compiled
    table = ctx.arrow(sql, params)
    found = table.column("path").to_pylist()
    counts = np.array(table.column("n").to_pylist(), dtype=np.int64)
    people = int(table.column("people")[0].as_py()) if table.num_rows else 0
    names = sorted({label for path in found for label in path})
    code = {name: i for i, name in enumerate(names)}
    paths = np.full((len(found), q.length), -1, dtype=np.int32)
    for r, path in enumerate(found):
        paths[r, : len(path)] = [code[label] for label in path]
    return summarize(q, ctx.source.name, paths, names, people=people, funnel=funnel, weights=counts)


RUNNERS = {"paths": run_paths}
