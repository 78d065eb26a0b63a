"""The metrics runner: KPIs for a range, by period, against the previous period, by dimension."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from masar.engine.characteristics import CHARACTERISTICS
from masar.engine.context import QueryContext
from masar.engine.facts import Facts, build_facts, register_events
from masar.engine.metrics import (
    HEADLINE,
    METRICS,
    OTHER,
    MetricsEngine,
    MetricsResult,
    Window,
    buckets,
    default_churn_days,
    dimension_sql,
    last_day,
)
from masar.model.sales_queries import MetricsQuery

_PERSON_LEVEL = {"first_channel", "first_campaign"}


def sales_facts(ctx: QueryContext) -> Facts:
    """The source's facts, built once per version of its events, rates and spend, and
    registered (with the ``events`` view) on the context's cursor."""
    rates = ctx.store.exchange_rates()
    spend = ctx.store.ad_spend(ctx.source)
    key = ("sales_facts", hash(tuple((r.day, r.base, r.quote, r.rate) for r in rates)),
           hash(tuple(tuple(sorted(r.items())) for r in spend)))  # fmt: skip
    facts = ctx.frame.cached(key)
    if facts is None:
        facts = ctx.frame.remember(key, build_facts(ctx, rates, spend))
    else:
        register_events(ctx)
    facts.register(ctx.con)
    return facts


def data_window(con: Any, start: date | None, end: date | None, days: int = 30) -> Window:
    """The asked range; open ends close on the data: the last day with a visit or an order, and
    ``days`` days before it. ``con`` is a metrics engine (any backend's), or a DuckDB cursor with
    the facts registered."""
    if end is None:
        last = con.last_day() if isinstance(con, MetricsEngine) else last_day(con)
        end = last or date.today()
        if start is not None and end < start:
            end = start
    if start is None:
        start = end - timedelta(days=days - 1)
    return Window(start, end)


def run_metrics(ctx: QueryContext, query: MetricsQuery) -> MetricsResult:
    facts = sales_facts(ctx)
    return compute_metrics(MetricsEngine(ctx.con, currency=facts.currency, tz=ctx.tz.key, churn_days=0, ctx=ctx),
                           query)  # fmt: skip


def compute_metrics(engine: MetricsEngine, query: MetricsQuery) -> MetricsResult:
    """The metrics query on any backend's engine: SQL in the engine, everything else here."""
    names = list(query.metrics or HEADLINE)
    metrics = [METRICS[n] for n in names]
    window = data_window(engine, query.date_from, query.date_to)
    churn_days = query.churn_days or default_churn_days(engine)
    engine.churn_days = churn_days
    families = {f for m in metrics for f in m.needs}

    current = engine.components(families, window, None).get(None, {})
    previous_window = window.before() if query.compare else None
    previous = engine.components(families, previous_window, None).get(None, {}) if previous_window else {}

    headline = []
    for m in metrics:
        value = m.formula(current)
        before = m.formula(previous) if previous_window else None
        if m.name == "sales_growth_rate":
            value, before = _change(value, before), None
        headline.append(
            {
                "name": m.name,
                "label": m.label,
                "unit": m.unit,
                "value": engine.shown(m, value),
                "previous": engine.shown(m, before),
                "change": _change(value, before),
            }
        )

    series = _series(engine, metrics, families, window, query.granularity) if query.granularity else []
    breakdown: list[dict[str, Any]] = []
    if query.breakdown:
        breakdown = _breakdown(engine, metrics, families, window, query.breakdown, query.breakdown_limit)
    return MetricsResult(
        currency=engine.currency,
        window=window,
        previous=previous_window,
        granularity=query.granularity,
        metrics=headline,
        series=series,
        breakdown=breakdown,
        breakdown_property=query.breakdown,
        churn_days=churn_days,
        unconverted=engine.unconverted(window),
    )


def _change(value: Any, before: Any) -> float | None:
    if value is None or before is None:
        return None
    try:
        if float(before) == 0:
            return None
        return round((float(value) - float(before)) / abs(float(before)), 6)
    except (TypeError, ValueError):
        return None


def _series(
    engine: MetricsEngine, metrics: list, families: set[str], window: Window, granularity: str
) -> list[dict]:
    starts = buckets(window, granularity)
    by_bucket = engine.components(families - {"churn"}, window, engine.by_period(granularity))
    rows = []
    previous_net: Any = None
    for i, start in enumerate(starts):
        c = dict(by_bucket.get(start, {}))
        if "churn" in families:
            end = starts[i + 1] - timedelta(days=1) if i + 1 < len(starts) else window.end
            piece = Window(max(start, window.start), min(end, window.end))
            c.update(engine.components({"churn"}, piece, None).get(None, {}))
        values = {}
        for m in metrics:
            v = m.formula(c)
            if m.name == "sales_growth_rate":
                v, previous_net = _change(v, previous_net), v
            values[m.name] = engine.shown(m, v)
        rows.append({"period": start.isoformat(), "values": values})
    return rows


def _breakdown(engine: MetricsEngine, metrics: list, families: set[str], window: Window, prop: str,
               limit: int) -> list[dict]:  # fmt: skip
    column = dimension_sql(prop)  # checks the name
    person_level = prop.startswith("person.") or prop in CHARACTERISTICS or column in _PERSON_LEVEL
    plain = families if person_level else families - {"churn"}
    # Churn belongs to customers, so it breaks down only by a person's own attributes.
    group = engine.by_dimension(prop, window)
    raw = engine.components(plain, window, group)
    lead = metrics[0]
    ranked = sorted(raw, key=lambda k: (_sort_value(lead.formula(raw[k])), str(k)), reverse=True)
    top = [k for k in ranked if k is not None][:limit]
    rest = [k for k in raw if k is not None and k not in top]
    if rest:
        grouped = engine.by_top(group, list(top))
        rows = engine.components(plain, window, grouped)
        keys = [*top, OTHER] + ([None] if None in raw else [])
        lookup = {k: rows.get(None if k is None else str(k), {}) for k in keys}
    else:
        keys = top + ([None] if None in raw else [])
        lookup = {k: raw.get(k, {}) for k in keys}
    out = []
    for k in keys:
        c = lookup[k]
        out.append(
            {
                "value": k,
                "values": {m.name: engine.shown(m, m.formula(c)) if ("churn" not in m.needs or person_level) else None
                           for m in metrics if m.name != "sales_growth_rate"},
            }
        )  # fmt: skip
    return out


def _sort_value(value: Any) -> float:
    try:
        return float(value) if value is not None else float("-inf")
    except (TypeError, ValueError):
        return float("-inf")


__all__ = ["run_metrics", "sales_facts", "data_window"]
