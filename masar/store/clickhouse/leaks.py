"""The leak finder on ClickHouse: query kind ``leaks`` (docs/leaks.md), the counting done inside
ClickHouse, the statistics shared with the embedded runner (``masar.engine.leaks.report``).

How (docs/scaling.md):

1. The funnel's counted units (``units_sql``), materialized once: each unit's deepest step, step
   times and the message id of each step's event.
2. Per transition a → b, the *entrants* (units that reached a, less those too recent to have
   converted: the horizon is the 99th percentile of the conversion times, from the two order
   statistics numpy's quantile reads) as a Memory table: the day of the step-a event (local),
   converted, finished, the order value of the last step (exact thousandths), and the value of
   each segment property on the step-a event (joined by message id) — ``customer`` from the
   person's first order.
3. Values with at least ``min_sample`` entrants get codes, numbered in the order the embedded
   store's dictionary numbers them (first appearance in (person, time) order): the tie rule of
   "the most units first". Smaller values are never tested, so they need no code.
4. The cells: ``GROUP BY day, converted, finished, code per property`` with the units and the
   order values summed. Only these come back; ``report`` does the rest.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from typing import Any

import numpy as np

from masar.engine.leaks import (
    CUSTOMER,
    CUSTOMER_VALUES,
    LeaksResult,
    Money,
    Transition,
    day_of_bound,
    local_days,
    orders_at_end,
    pairs,
    recent_horizon,
    report,
    segment_properties,
)
from masar.model.queries import LeaksQuery
from masar.store.clickhouse.context import ClickHouseContext
from masar.store.clickhouse.funnels import ABSENT, _materialized, _reached, units_sql
from masar.store.clickhouse.predicates import ACTIONS, Predicates

_ABS = f"toInt64({ABSENT})"


def _tz(ctx: ClickHouseContext) -> str:
    return ctx.tz.key.replace("\\", "\\\\").replace("'", "\\'")


def _day(ctx: ClickHouseContext, us: str) -> str:
    """Days since 1970-01-01 of a µs timestamp in the source's time zone."""
    return f"toInt64(toDate32(fromUnixTimestamp64Micro({us}, 'UTC'), '{_tz(ctx)}'))"


def _scalar(ctx: ClickHouseContext, sql: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return ctx.arrow(sql, params).to_pylist()[0]


@contextmanager
def _table(ctx: ClickHouseContext, sql: str, params: dict[str, Any]):
    name = f"{ctx.client.database}._leaks_{uuid.uuid4().hex[:12]}"
    ctx.client.command(f"CREATE TABLE {name} ENGINE = Memory AS {sql}", params)
    try:
        yield name
    finally:
        ctx.client.command(f"DROP TABLE IF EXISTS {name}")


def _day_span(ctx: ClickHouseContext, q: LeaksQuery, units: str) -> tuple[int, int]:
    """As the embedded ``_day_span``: from the range's first day (else the first step event of a
    counted unit) to the last step event's day."""
    row = _scalar(ctx, f"SELECT count() AS n, min(t) AS lo, max(t) AS hi FROM {units} ARRAY JOIN ts AS t "
                       f"WHERE t != {_ABS}")  # fmt: skip
    if not row["n"]:
        return 0, 0
    low, high = local_days(ctx, np.array([row["lo"], row["hi"]], dtype=np.int64))
    first = day_of_bound(ctx, q.date_from, end=False)
    first = int(low) if first is None else first
    last = int(high)
    if last < first:
        return 0, 0
    return first, last - first + 1


def _orders(ctx: ClickHouseContext, q: LeaksQuery) -> str:
    """Per order event (person, message id): its value in thousandths, NULL when it has none or is
    in another currency (Masar keeps no exchange rates)."""
    ok = "isNotNull(coalesce(revenue, total)) AND ifNull(currency = {masar_currency:Nullable(String)}, false)"
    return (f"SELECT person, message_id AS mid, if({ok}, toInt64(toDecimal128(coalesce(revenue, total), 3) * 1000), "
            f"NULL) AS milli FROM {ctx.events} WHERE {ACTIONS}")  # fmt: skip


def _money(ctx: ClickHouseContext, q: LeaksQuery, units: str) -> Money:
    orders = orders_at_end(q)
    if not orders:
        return Money(ctx.source.currency, False, 0, 0)
    n = len(q.steps)
    row = _scalar(
        ctx,
        f"SELECT sum(ifNull(o.milli, 0)) AS milli, countIf(isNotNull(o.milli)) AS valued "
        f"FROM (SELECT person, mids[{n}] AS mid FROM {units} WHERE level >= {n - 1}) AS u "
        f"ANY LEFT JOIN ({_orders(ctx, q)}) AS o ON o.person = u.person AND o.mid = u.mid",
        {"masar_currency": ctx.source.currency},
    )
    return Money(ctx.source.currency, True, int(row["milli"] or 0), int(row["valued"] or 0))


def _horizon(ctx: ClickHouseContext, q: LeaksQuery, units: str, a: int, b: int) -> int:
    done = f"FROM {units} WHERE {_reached(q, str(a))} AND {_reached(q, str(b))}"
    n = int(_scalar(ctx, f"SELECT count() AS n {done}")["n"])

    def order_stats(ranks: list[int]) -> list[int]:
        rows = ctx.arrow(
            f"SELECT r, took FROM (SELECT ts[{b + 1}] - ts[1] AS took, row_number() OVER (ORDER BY took) - 1 AS r "
            f"{done}) WHERE r IN ({', '.join(str(int(r)) for r in set(ranks))})"
        ).to_pylist()
        at = {int(r["r"]): int(r["took"]) for r in rows}
        return [at[r] for r in ranks]

    return recent_horizon(q, n, order_stats)


def _entrants(ctx: ClickHouseContext, q: LeaksQuery, units: str, a: int, b: int, day0: int, cutoff: int,
              properties: list[str]) -> tuple[str, dict[str, Any]]:  # fmt: skip
    """SQL of one row per entrant: day, conv, fin, milli, valued, v0, v1, ... (the properties)."""
    n = len(q.steps)
    p = Predicates("s")
    values = [f"{p.text(name)} AS v{i}" for i, name in enumerate(properties) if name != CUSTOMER]
    columns = ["u.day AS day", "u.conv AS conv", "u.fin AS fin"]
    joins = []
    if values:
        joins.append(f"ANY LEFT JOIN (SELECT e.person AS person, e.message_id AS mid, {', '.join(values)} "
                     f"FROM {ctx.events} AS e {p.joins(ctx.events, 'e')} WHERE e.{ACTIONS}) AS sa "
                     f"ON sa.person = u.person AND sa.mid = u.mid_a")  # fmt: skip
    if orders_at_end(q):
        joins.append(f"ANY LEFT JOIN ({_orders(ctx, q)}) AS o ON o.person = u.person AND o.mid = u.mid_z")
        columns += ["if(u.fin, ifNull(o.milli, 0), 0) AS milli", "toInt64(u.fin AND isNotNull(o.milli)) AS valued"]
    else:
        columns += ["toInt64(0) AS milli", "toInt64(0) AS valued"]
    if CUSTOMER in properties:
        first = (f"SELECT person, min(toInt64(toUnixTimestamp64Micro(ts))) AS first_order FROM {ctx.events} "
                 f"WHERE {ACTIONS} AND event = {p.bind(q.order_event)} GROUP BY person")  # fmt: skip
        joins.append(f"LEFT JOIN ({first}) AS fo ON fo.person = u.person")
    for i, name in enumerate(properties):
        if name == CUSTOMER:
            columns.append(f"toNullable(if(ifNull(fo.first_order < u.t_a, false), '{CUSTOMER_VALUES[1]}', "
                           f"'{CUSTOMER_VALUES[0]}')) AS v{i}")  # fmt: skip
        else:
            columns.append(f"sa.v{i} AS v{i}")
    inner = (f"SELECT person, ts[{a + 1}] AS t_a, mids[{a + 1}] AS mid_a, mids[{n}] AS mid_z, "
             f"{_day(ctx, f'ts[{a + 1}]')} - {int(day0)} AS day, {_reached(q, str(b))} AS conv, "
             f"level >= {n - 1} AS fin FROM {units} WHERE {_reached(q, str(a))} AND ts[1] <= {int(cutoff)}")
    sql = f"SELECT {', '.join(columns)} FROM ({inner}) AS u {' '.join(joins)}"
    return sql, {**p.params, "masar_currency": ctx.source.currency}


def _codes(ctx: ClickHouseContext, q: LeaksQuery, entrants: str, properties: list[str]) -> list[list[str]]:
    """Per property, the values with at least ``min_sample`` entrants, in the embedded store's
    dictionary order: first appearance among the source's actions in (person, time) order."""
    if not properties:
        return []
    tuples = ", ".join(f"(toUInt16({i}), v{i})" for i in range(len(properties)))
    rows = ctx.arrow(
        f"SELECT pv.1 AS i, pv.2 AS v, count() AS n FROM {entrants} ARRAY JOIN [{tuples}] AS pv "
        f"WHERE isNotNull(pv.2) GROUP BY i, v HAVING n >= {int(q.min_sample)}"
    ).to_pylist()
    found: list[list[str]] = [[] for _ in properties]
    for r in rows:
        found[int(r["i"])].append(r["v"])
    out = []
    for i, name in enumerate(properties):
        if name == CUSTOMER:
            out.append(list(CUSTOMER_VALUES))
            continue
        if not found[i]:
            out.append([])
            continue
        p = Predicates("o")
        value = p.text(name)
        wanted = p.bind(sorted(found[i]), "Array(String)")
        first = ctx.arrow(
            f"SELECT v, min((person, t)) AS f FROM (SELECT e.person AS person, toInt64(toUnixTimestamp64Micro(e.ts)) AS t, "
            f"{value} AS v FROM {ctx.events} AS e {p.joins(ctx.events, 'e')} WHERE e.{ACTIONS}) "
            f"WHERE has({wanted}, assumeNotNull(v)) GROUP BY v ORDER BY f, v",
            p.params,
        ).to_pylist()
        out.append([r["v"] for r in first])
    return out


def _transition(ctx: ClickHouseContext, q: LeaksQuery, units: str, a: int, b: int, day0: int, latest: int,
                properties: list[str]) -> Transition:  # fmt: skip
    cutoff = latest - _horizon(ctx, q, units, a, b)
    recent = int(_scalar(ctx, f"SELECT count() AS n FROM {units} WHERE {_reached(q, str(a))} "
                              f"AND ts[1] > {int(cutoff)}")["n"])  # fmt: skip
    sql, params = _entrants(ctx, q, units, a, b, day0, cutoff, properties)
    with _table(ctx, sql, params) as entrants:
        values = _codes(ctx, q, entrants, properties)
        code_cols = [
            f"if(isNull(v{i}), -1, toInt64(indexOf({{c{i}:Array(String)}}, assumeNotNull(v{i}))) - 1) AS c{i}"
            for i in range(len(properties))
        ]
        keys = ["day", "conv", "fin", *(f"c{i}" for i in range(len(properties)))]
        cells = ctx.arrow(
            f"SELECT {', '.join(keys)}, count() AS n, sum(milli) AS milli, sum(valued) AS valued "
            f"FROM (SELECT day, conv, fin, milli, valued{''.join(', ' + c for c in code_cols)} FROM {entrants}) "
            f"GROUP BY {', '.join(keys)} ORDER BY {', '.join(keys)}",
            {f"c{i}": v for i, v in enumerate(values)},
        )
    col = {name: cells.column(name).to_numpy(zero_copy_only=False) for name in cells.column_names}
    size = cells.num_rows

    def ints(name: str) -> np.ndarray:
        return col[name].astype(np.int64) if size else np.empty(0, dtype=np.int64)

    def flags(name: str) -> np.ndarray:
        return col[name].astype(bool) if size else np.empty(0, dtype=bool)

    t = Transition(a, b, q.steps[a].label, q.steps[b].label, ints("n"), ints("day"), flags("conv"), flags("fin"),
                   ints("milli"), ints("valued"), recent)  # fmt: skip
    for i, name in enumerate(properties):
        t.codes[name] = (ints(f"c{i}").astype(np.int32), values[i])
    return t


def run_leaks(ctx: ClickHouseContext, q: LeaksQuery) -> LeaksResult:
    properties = segment_properties(q)
    with _materialized(ctx, units_sql(ctx, q, date_from=q.date_from, date_to=q.date_to)) as units:
        day0, days = _day_span(ctx, q, units)
        latest = _scalar(ctx, f"SELECT max(toInt64(toUnixTimestamp64Micro(ts))) AS t FROM {ctx.events} "
                              f"WHERE {ACTIONS}")["t"]  # fmt: skip
        latest = int(latest or 0)
        money = _money(ctx, q, units)
        transitions = [_transition(ctx, q, units, a, b, day0, latest, properties) for a, b in pairs(q)]
    return report(q, ctx.source.name, properties, transitions, day0, days, money)


RUNNERS = {"leaks": run_leaks}
