"""Journeys (the ``paths`` query) inside ClickHouse: docs/paths.md, as masar/engine/paths.py.

One query. Each person's actions become one array in time order (``groupArray`` then
``arraySort``); the anchors are positions in it (``arrayFirstIndex`` for a person's first,
``arrayFilter`` over ``arrayEnumerate`` for every one, ``ARRAY JOIN``ed into rows); the walk is
``arraySlice`` away from the anchor, ``arrayFilter`` for the window, the session and the events
left out, then collapsing repeats and cutting to ``length``. Paths are grouped, so what comes back
is each distinct path (its labels) with how many anchors took it and the people among them — the
top paths, Sankey and loops are then computed from those counts by the engine's own code
(``masar.engine.paths.summarize``), the same code the embedded store uses.

Cleaning patterns are Python regular expressions: they run as ClickHouse ``match`` after
translation to RE2 with the same meaning (masar/store/clickhouse/regex.py), or are refused.
"""

from __future__ import annotations

import numpy as np

from masar.engine.paths import PAGE_EVENTS, PathsResult, summarize
from masar.errors import InvalidInput, MasarError
from masar.model.queries import PathsQuery
from masar.store.clickhouse.conditions import Params, quote, step_sql
from masar.store.clickhouse.context import ClickHouseContext
from masar.store.clickhouse.regex import re2_pattern

ACTIONS = "type IN ('track', 'page', 'screen')"


class FunnelAnchorUnavailable(MasarError):
    """Paths after a funnel drop-out need the funnel's per-person attempt (the ClickHouse funnel
    compiler's); until then they are refused, never approximated."""

    code = "not_supported_on_clickhouse"
    status = 501


def label_sql(q: PathsQuery, params: Params) -> tuple[str, str]:
    """(the raw label, the label): an event's name, or with ``label: path|url`` a page or screen
    event's page; then the alias of the first cleaning rule found in it (over ``raw_label``)."""
    raw = "ifNull(event, '')"
    if q.label != "event":
        column = quote(q.label)
        pages = ", ".join(params.text(n) for n in PAGE_EVENTS)
        raw = f"if(event IN ({pages}) AND ifNull({column}, '') != '', {column}, {raw})"
    rules = []
    for n, rule in enumerate(q.cleaning, start=1):
        try:
            pattern = re2_pattern(rule.pattern)
        except InvalidInput as exc:
            raise InvalidInput(f"cleaning rule {n}: {exc.message}", code="invalid_query") from None
        rules.append(f"match(raw_label, {params.text(pattern)}), {params.text(rule.alias)}")
    return raw, f"multiIf({', '.join(rules)}, raw_label)" if rules else "raw_label"


def compile_paths(ctx: ClickHouseContext, q: PathsQuery) -> tuple[str, dict]:
    """The query: one row per distinct path (labels in walk order), its count and the people."""
    if q.funnel is not None:
        raise FunnelAnchorUnavailable(
            "paths after dropping out of a funnel step are not computed on ClickHouse yet: they need the "
            "funnel's per-person result"
        )
    params = Params()
    raw, label = label_sql(q, params)
    excluded = ", ".join(params.text(n) for n in q.exclude_events)
    keep = f"NOT (ifNull(event, '') IN ({excluded}))" if excluded else "true"
    low = ctx.bound_us(q.date_from, end=False)
    high = ctx.bound_us(q.date_to, end=True)
    # Without a step, a journey starts at the first event the analysis looks at.
    candidate = [step_sql(q.step.matchers, ctx.events, params) if q.step is not None else keep]
    if low is not None:
        candidate.append(f"toUnixTimestamp64Micro(ts) >= {params.bind(low, 'Int64')}")
    if high is not None:
        candidate.append(f"toUnixTimestamp64Micro(ts) < {params.bind(high, 'Int64')}")
    if q.occurrence == "first":
        anchors = "[arrayFirstIndex(x -> x.7, journey)]"
    else:
        anchors = "arrayFilter(i -> journey[i].7, arrayEnumerate(journey))"
    # A person's journey = (t, arrival, message id, label, kept, session, anchor?), sorted as tuples: in
    # time order, events at one instant by arrival then message id, a total order (the embedded store
    # takes them in its files' order: docs/scaling.md). anchor_at: the anchor's index.
    near = "x.5 AND " + (
        "x.6 = journey[anchor_at].6" if q.window == "session"
        else f"abs(x.1 - journey[anchor_at].1) <= {params.bind(int(q.window) * 1_000_000, 'Int64')}"
    )  # fmt: skip
    side = "arraySlice(journey, anchor_at + 1)" if q.direction == "after" else "arrayReverse(arraySlice(journey, 1, anchor_at - 1))"
    walked = "walk"
    if q.collapse_repeats:  # a label equal to the one before it in the walk is skipped
        walked = "arrayFilter((l, i) -> i = 1 OR l != walk[i - 1], walk, arrayEnumerate(walk))"
    sql = f"""
        SELECT path, n, uniqExactMerge(people) OVER () AS people
        FROM (
            SELECT arraySlice({walked}, 1, {params.bind(q.length, 'UInt32')}) AS path, count() AS n,
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
                        FROM (SELECT *, {raw} AS raw_label FROM {ctx.events} WHERE {ACTIONS})
                    )
                    GROUP BY person
                    HAVING countIf(candidate) > 0
                )
                ARRAY JOIN {anchors} AS anchor_at
            )
            GROUP BY path
        )
    """
    return sql, params.values


def run_paths(ctx: ClickHouseContext, q: PathsQuery) -> PathsResult:
    sql, params = compile_paths(ctx, q)
    table = ctx.arrow(sql, params)
    found = table.column("path").to_pylist()
    counts = np.array(table.column("n").to_pylist(), dtype=np.int64)
    people = int(table.column("people")[0].as_py()) if table.num_rows else 0
    names = sorted({label for path in found for label in path})
    code = {name: i for i, name in enumerate(names)}
    paths = np.full((len(found), q.length), -1, dtype=np.int32)
    for r, path in enumerate(found):
        paths[r, : len(path)] = [code[label] for label in path]
    return summarize(q, ctx.source.name, paths, names, people=people, funnel=None, weights=counts)


RUNNERS = {"paths": run_paths}
