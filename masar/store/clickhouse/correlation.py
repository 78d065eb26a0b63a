"""Correlation on ClickHouse: query kind ``correlation`` (docs/correlation.md). The 2×2 tables are
counted inside ClickHouse; odds ratios, tests and ranking are the embedded runner's
(``masar.engine.correlation.report``).

How (docs/scaling.md): the funnel's counted people (``units_sql``, counting uniques: one
unit per person) give each person's journey — converted, ``t0`` (step 1) and its end (the
conversion, else ``t0 + window``), both inclusive. Candidates are then counted once per person:

* events: the journey's actions joined by person and bounded by time, ``DISTINCT (person, event)``,
  then converters and others per event name;
* event properties: the same with the property's value on each journey action (step events
  included);
* person properties: the person's latest trait (the traits relation of predicates.py) joined to
  each counted person.
"""

from __future__ import annotations

from typing import Any

from masar.engine.correlation import Candidate, CorrelationResult, report, skipped_events
from masar.engine.properties import resolve
from masar.model.queries import CorrelationQuery
from masar.store.clickhouse.context import ClickHouseContext
from masar.store.clickhouse.funnels import _materialized, units_sql
from masar.store.clickhouse.predicates import ACTIONS, Predicates


def _journeys(q: CorrelationQuery, units: str) -> str:
    last = len(q.steps) - 1
    return (f"SELECT person, level = {last} AS conv, ts[1] AS t0, "
            f"if(conv, ts[{last + 1}], ts[1] + {int(q.window) * 1_000_000}) AS t_end FROM {units}")  # fmt: skip


def _counts(ctx: ClickHouseContext, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """(v, s, f) per value of ``sql``'s (person, conv, v) rows, each person counted once per value."""
    return ctx.arrow(
        f"SELECT v, countIf(conv) AS s, countIf(NOT conv) AS f FROM (SELECT DISTINCT person, conv, v FROM ({sql}) "
        f"WHERE isNotNull(v)) GROUP BY v",
        params,
    ).to_pylist()


def _on_journeys(ctx: ClickHouseContext, q: CorrelationQuery, units: str, value: str, p: Predicates,
                 where: str = "") -> str:  # fmt: skip
    """(person, conv, v): ``value`` on every action of each counted person's journey."""
    actions = (f"SELECT e.person AS person, toInt64(toUnixTimestamp64Micro(e.ts)) AS t, {value} AS v "
               f"FROM {ctx.events} AS e {p.joins(ctx.events, 'e')} WHERE e.{ACTIONS}{where}")  # fmt: skip
    return (f"SELECT j.person AS person, j.conv AS conv, a.v AS v FROM ({_journeys(q, units)}) AS j "
            f"INNER JOIN ({actions}) AS a ON a.person = j.person WHERE a.t >= j.t0 AND a.t <= j.t_end")


def candidates(ctx: ClickHouseContext, q: CorrelationQuery, units: str) -> list[Candidate]:
    found: list[Candidate] = []
    if q.events:
        p = Predicates("c")
        skip = p.bind(sorted(skipped_events(q)), "Array(String)")
        sql = _on_journeys(ctx, q, units, "e.event", p, f" AND isNotNull(e.event) AND NOT has({skip}, e.event)")
        for r in _counts(ctx, sql, p.params):
            found.append(Candidate("event", r["v"], None, int(r["s"]), int(r["f"])))
    for name in q.properties:
        ref = resolve(name)
        p = Predicates("c")
        value = p.text(ref)
        if ref.scope == "person":
            # One value per person: the latest trait, wherever the journey runs.
            sql = f"SELECT j.person AS person, j.conv AS conv, {value} AS v FROM ({_journeys(q, units)}) AS j " \
                  f"{p.joins(ctx.events, 'j')}"
            kind = "person_property"
        else:
            sql = _on_journeys(ctx, q, units, value, p)
            kind = "event_property"
        for r in _counts(ctx, sql, p.params):
            found.append(Candidate(kind, name, r["v"], int(r["s"]), int(r["f"])))
    return found


def run_correlation(ctx: ClickHouseContext, q: CorrelationQuery) -> CorrelationResult:
    last = len(q.steps) - 1
    with _materialized(ctx, units_sql(ctx, q, date_from=q.date_from, date_to=q.date_to)) as units:
        totals = ctx.arrow(f"SELECT count() AS n, countIf(level = {last}) AS s FROM {units}").to_pylist()[0]
        found = candidates(ctx, q, units)
    people, success = int(totals["n"]), int(totals["s"])
    return report(q, ctx.source.name, found, success, people - success, people)


RUNNERS = {"correlation": run_correlation}
