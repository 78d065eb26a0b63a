"""The sales query kinds on ClickHouse: metrics, forecast, targets, products, email, acquisition,
platforms, cohorts, rfm, rfm_customers, ltv_fit and ltv.

Every runner builds the source's facts inside ClickHouse (masar/store/clickhouse/facts.py), asks
ClickHouse for the few aggregate rows its analysis needs, and hands them to the same
backend-independent code the embedded runners use (formulas, rounding, result objects in
masar/engine/), so both backends return the same ``to_dict()``. What differs is only the SQL
each method below writes; the DuckDB originals are named beside each.

ClickHouse counterparts used throughout: ``countIf``/``sumIf`` for ``FILTER (WHERE ...)``;
``uniqExact`` for ``count(DISTINCT ...)`` (never the approximate ``uniq``);
``quantileExactInclusive`` for ``median``/``quantile_cont`` (both interpolate linearly between
the two nearest values) with ``-OrNull`` where DuckDB gives NULL over no rows;
``toStartOfWeek(d, 1)`` (weeks from Monday) and ``toStartOfMonth`` for ``date_trunc``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pyarrow as pa

from masar.engine.characteristics import BIRTHDAY_TRAITS, CHARACTERISTICS, UNKNOWN, value_of
from masar.engine.forecast_runners import ForecastResult, TargetsResult, compute_forecast, compute_targets
from masar.engine.kpis import compute_metrics
from masar.engine.metrics import (
    FAMILIES,
    OTHER,
    Components,
    MetricsEngine,
    MetricsResult,
    Window,
    dimension_sql,
)
from masar.model.sales_queries import ForecastQuery, MetricsQuery, TargetsQuery
from masar.store.clickhouse.context import ClickHouseContext
from masar.store.clickhouse.facts import SalesFacts, json_text, local_date, text

Group = tuple[str, dict[str, Any]] | None


def bind(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters as both clients take them: dates as ISO text."""
    return {k: v.isoformat() if isinstance(v, date) and not isinstance(v, datetime) else v for k, v in params.items()}


def days_between(later: str, earlier: str) -> str:
    """DuckDB's ``epoch(later - earlier) / 86400.0`` on two timestamps (microseconds)."""
    return f"((toUnixTimestamp64Micro({later}) - toUnixTimestamp64Micro({earlier})) / 1e6 / 86400.0)"


# -- the metrics engine ---------------------------------------------------------------------------
# Families as in masar/engine/metrics.py (_ORDERS, _REFUNDS, ...): the same columns per row, the
# same aggregates. ``{tz}`` is the store's time zone as a literal, ``{end}`` the range's last day.

_ORDERS = """
    SELECT o.*, o.day AS _day, p.first_seen AS first_seen, p.first_channel AS first_channel,
           p.first_campaign AS first_campaign, if(o.order_number = 1, 'new', 'returning') AS customer_type
    FROM {orders} AS o LEFT JOIN (SELECT person AS p_person, first_seen, first_channel, first_campaign
                                  FROM {people}) AS p ON p.p_person = o.person
    WHERE NOT o.cancelled
"""
_REFUNDS = """
    SELECT r.value AS value, r.day AS _day, r.person AS person, o.channel AS channel, o.campaign AS campaign,
           o.device_type AS device_type, o.country AS country,
           if(o.order_number = 1, 'new', 'returning') AS customer_type,
           p.first_channel AS first_channel, p.first_campaign AS first_campaign
    FROM {refunds} AS r
    LEFT JOIN (SELECT order_key AS o_key, channel, campaign, device_type, country, order_number FROM {orders}) AS o
         ON o.o_key = r.order_key
    LEFT JOIN (SELECT person AS p_person, first_channel, first_campaign FROM {people}) AS p ON p.p_person = r.person
    WHERE NOT r.cancelled
"""
_SESSIONS = """
    SELECT s.*, s.day AS _day, p.first_channel AS first_channel, p.first_campaign AS first_campaign,
           if(p.first_order_ts < s.ts, 'returning', 'new') AS customer_type
    FROM {sessions} AS s
    LEFT JOIN (SELECT person AS p_person, first_channel, first_campaign, first_order_ts FROM {people}) AS p
         ON p.p_person = s.person
"""
_LEADS = """
    SELECT p.*, toDate(p.signup_ts, {tz}) AS _day, p.first_channel AS channel, p.first_campaign AS campaign,
           CAST(NULL AS Nullable(String)) AS device_type, CAST(NULL AS Nullable(String)) AS country,
           'new' AS customer_type
    FROM {people} AS p WHERE p.signup_ts IS NOT NULL
"""
# The channel of a campaign's visits: the most frequent (DuckDB's mode), ties to the first name.
_SPEND = """
    SELECT s.spend AS spend, s.day AS _day, s.channel AS channel, s.campaign AS campaign,
           CAST(NULL AS Nullable(String)) AS device_type, CAST(NULL AS Nullable(String)) AS country,
           CAST(NULL AS Nullable(String)) AS customer_type, CAST(NULL AS Nullable(Int64)) AS person,
           s.channel AS first_channel, s.campaign AS first_campaign
    FROM (
        SELECT s.spend AS spend, s.day AS day, s.campaign AS campaign,
               if(s.named_channel, s.channel, coalesce(m.channel, s.channel)) AS channel
        FROM {spend} AS s LEFT JOIN (
            SELECT campaign AS m_campaign, argMax(channel, (visits, -rank)) AS channel FROM (
                SELECT campaign, channel, count() AS visits, dense_rank() OVER (ORDER BY channel) AS rank
                FROM {sessions} WHERE campaign IS NOT NULL GROUP BY campaign, channel
            ) GROUP BY campaign
        ) AS m ON m.m_campaign = s.campaign
    ) AS s
"""
_PIPELINE = f"""
    SELECT s.*, least(s.cart_ts, s.checkout_ts) AS opened_ts, (s.cart_bought OR s.checkout_bought) AS won,
           if(s.cart_bought, c.ts, k.ts) AS won_ts, if(s.cart_bought, c.value, k.value) AS won_value
    FROM ({_SESSIONS}) AS s
    LEFT JOIN ({{first_after_cart}}) AS c ON c.at_session = s.session_id
    LEFT JOIN ({{first_after_checkout}}) AS k ON k.at_session = s.session_id
    WHERE s.cart_ts IS NOT NULL OR s.checkout_ts IS NOT NULL
"""


def _first_order_after(column: str) -> str:
    """Per session, the person's first order (not cancelled) at or after ``column``: DuckDB's
    ASOF LEFT JOIN on orders, with the session's NULLs left out (ClickHouse's ASOF key is never NULL)."""
    return f"""
        SELECT s.session_id AS at_session, o.ts AS ts, o.value AS value
        FROM (SELECT session_id, person, assumeNotNull({column}) AS at FROM {{sessions}} WHERE {column} IS NOT NULL) AS s
        ASOF JOIN (SELECT person, ts, value FROM {{orders}} WHERE NOT cancelled) AS o
             ON o.person = s.person AND o.ts >= s.at
    """


_GAP = days_between("ts", "previous_ts")
_CYCLE = days_between("ts", "first_seen")
_WON_DAYS = "toFloat64(dateDiff('day', toDate(opened_ts, {tz}), toDate(won_ts, {tz})) + 1)"

SOURCES = {"orders": _ORDERS, "refunds": _REFUNDS, "sessions": _SESSIONS, "leads": _LEADS, "spend": _SPEND,
           "pipeline": _PIPELINE}  # fmt: skip
AGGREGATES: dict[str, dict[str, str]] = {
    "orders": {
        "orders": "count()",
        "valued_orders": "count(value)",
        "gross_revenue": "sum(value)",
        "discount": "sum(discount)",
        "items": "sum(items)",
        "orders_with_items": "count(items)",
        "buyers": "uniqExact(person)",
        "new_customers": "uniqExactIf(person, order_number = 1)",
        "repeat_buyers": "uniqExactIf(person, order_number >= 2)",
        "first_order_revenue": "sumOrNullIf(value, order_number = 1)",
        "repeat_order_revenue": "sumOrNullIf(value, order_number >= 2)",
        "order_gap_median": f"quantileExactInclusiveOrNullIf(0.5)({_GAP}, previous_ts IS NOT NULL)",
        "cycle_median": f"quantileExactInclusiveOrNullIf(0.5)({_CYCLE}, order_number = 1)",
        "cycle_p90": f"quantileExactInclusiveOrNullIf(0.9)({_CYCLE}, order_number = 1)",
    },
    "refunds": {"refunds": "coalesce(sum(value), 0)", "refund_count": "count()"},
    "sessions": {
        "sessions": "count()",
        "visitors": "uniqExact(person)",
        "converted_sessions": "countIf(orders > 0)",
        "carts": "countIf(cart_ts IS NOT NULL)",
        "abandoned_carts": "countIf(cart_ts IS NOT NULL AND NOT cart_bought)",
        "abandoned_cart_value": "coalesce(sumIf(cart_value, cart_ts IS NOT NULL AND NOT cart_bought), 0)",
        "checkouts": "countIf(checkout_ts IS NOT NULL)",
        "abandoned_checkouts": "countIf(checkout_ts IS NOT NULL AND NOT checkout_bought)",
        "open_carts": "countIf(cart_ts IS NOT NULL AND NOT cart_bought)",
    },
    "leads": {
        "leads": "count()",
        "lead_customers": "countIf(first_order_ts IS NOT NULL AND toDate(first_order_ts, {tz}) <= {end:Date32})",
    },
    "spend": {"spend": "coalesce(sum(spend), 0)"},
    "pipeline": {
        "opportunities": "count()",
        "won_opportunities": "countIf(won)",
        "open_opportunities": "countIf(NOT won)",
        "won_valued": "countIf(won AND won_value IS NOT NULL)",
        "won_value": "sumOrNullIf(won_value, won)",
        "won_cycle_median": f"quantileExactInclusiveOrNullIf(0.5)({_WON_DAYS}, won)",
    },
}
assert set(AGGREGATES) == set(FAMILIES) and all(set(AGGREGATES[f]) == set(FAMILIES[f].aggregates) for f in FAMILIES)

_PERIODS = {"day": "_day", "week": "toStartOfWeek(_day, 1)", "month": "toStartOfMonth(_day)"}
_TRAIT = "_trait.value"


class ClickHouseMetricsEngine(MetricsEngine):
    """MetricsEngine's SQL in ClickHouse over the facts of one query."""

    def __init__(self, facts: SalesFacts, *, churn_days: int = 0):
        super().__init__(None, currency=facts.currency, tz=facts.tz, churn_days=churn_days)
        self.facts = facts

    def _sql(self, template: str) -> str:
        n = self.facts
        for name in ("first_after_cart", "first_after_checkout"):
            if name not in n.names:
                n.names[name] = _first_order_after("cart_ts" if name == "first_after_cart" else "checkout_ts")
        # the pipeline's subqueries name facts tables themselves
        return n.sql(n.sql(template.replace("{tz}", text(self.tz))))

    def _keyed(self, source: str, key_sql: str) -> tuple[str, str]:
        """The family's rows with the person's trait as ``_trait_value`` when the group asks for it.
        Spend rows have no person (a constant NULL, which ClickHouse cannot join on)."""
        if _TRAIT in key_sql and source is _SPEND:
            source = f"SELECT f.*, CAST(NULL AS Nullable(String)) AS _trait_value FROM ({source}) AS f"
        elif _TRAIT in key_sql:
            source = (f"SELECT f.*, t.value AS _trait_value FROM ({source}) AS f "
                      f"LEFT JOIN (SELECT person AS t_person, value FROM {{trait}}) AS t ON t.t_person = f.person")  # fmt: skip
        if _TRAIT in key_sql:
            key_sql = key_sql.replace(_TRAIT, "_trait_value")
        return source, key_sql

    def _family(self, family: Any, window: Window, group: Group) -> dict[Any, Components]:
        names = list(AGGREGATES[family.name])
        aggs = ", ".join(f"{AGGREGATES[family.name][n]} AS {n}" for n in names)
        key_sql, params = group if group is not None else ("NULL", {})
        source, key_sql = self._keyed(SOURCES[family.name], key_sql)
        sql = (f"SELECT {key_sql} AS _key, {aggs} FROM ({source}) AS f "
               "WHERE _day BETWEEN {start:Date32} AND {end:Date32} GROUP BY _key")  # fmt: skip
        rows = self.facts.rows(self._sql(sql), bind({**params, "start": window.start, "end": window.end}))
        return {row[0]: dict(zip(names, row[1:], strict=True)) for row in rows}

    def _churn(self, window: Window, group: Group) -> dict[Any, Components]:
        key_sql, params = group if group is not None else ("NULL", {})
        source, key_sql = self._keyed(_ORDERS, key_sql)
        n = int(self.churn_days)
        sql = f"""
            WITH history AS (
                SELECT person, any({key_sql}) AS _key,
                       maxOrNullIf(day, day < {{start:Date32}}) AS before_start,
                       maxOrNullIf(day, day <= {{end:Date32}}) AS by_end
                FROM ({source}) AS o GROUP BY person
            )
            SELECT _key,
                   countIf(before_start >= {{start:Date32}} - {n}) AS active_at_start,
                   countIf(before_start >= {{start:Date32}} - {n} AND by_end + {n} <= {{end:Date32}}) AS churned
            FROM history GROUP BY _key
        """
        rows = self.facts.rows(self._sql(sql), bind({**params, "start": window.start, "end": window.end}))
        return {row[0]: {"active_at_start": row[1], "churned": row[2]} for row in rows}

    def unconverted(self, window: Window) -> list[dict[str, Any]]:
        rows = self.facts.rows(
            """
            SELECT currency, toInt64(sum(o)), toInt64(sum(r)), toInt64(sum(sp)), toInt64(sum(cl)) FROM (
                SELECT toNullable(toString(currency)) AS currency, count() AS o, 0 AS r, 0 AS sp, 0 AS cl FROM {orders}
                WHERE unconvertible AND NOT cancelled AND day BETWEEN {start:Date32} AND {end:Date32} GROUP BY currency
                UNION ALL
                SELECT toNullable(toString(currency)), 0, count(), 0, 0 FROM {refunds}
                WHERE unconvertible AND NOT cancelled AND day BETWEEN {start:Date32} AND {end:Date32} GROUP BY currency
                UNION ALL
                SELECT toNullable(toString(currency)), 0, 0, count(), 0 FROM {spend}
                WHERE unconvertible AND day BETWEEN {start:Date32} AND {end:Date32} GROUP BY currency
                UNION ALL
                SELECT toNullable(toString(cart_unconverted_currency)), 0, 0, 0, sum(cart_lines_unconverted)
                FROM {sessions}
                WHERE cart_lines_unconverted > 0 AND day BETWEEN {start:Date32} AND {end:Date32}
                GROUP BY cart_unconverted_currency
            ) GROUP BY currency ORDER BY currency
            """,
            bind({"start": window.start, "end": window.end}),
        )
        return [{"currency": c, "orders": o, "refunds": r, "spend_rows": sp, "cart_lines": cl}
                for c, o, r, sp, cl in rows]  # fmt: skip

    # -- groupings and look-ups ------------------------------------------------------------------

    def by_period(self, granularity: str) -> Group:
        return _PERIODS[granularity], {}

    def by_dimension(self, prop: str, window: Window) -> Group:
        column = dimension_sql(prop)
        if prop.startswith("person."):
            self._trait_table(prop[len("person."):])
        elif prop in CHARACTERISTICS:
            self._characteristic_table(prop, window.end)
        return column, {}

    def by_top(self, group: Group, top: list[Any]) -> Group:
        assert group is not None
        column = group[0]
        marks = ", ".join(f"{{top{i}:String}}" for i in range(len(top))) or "NULL"
        return (f"multiIf({column} IS NULL, NULL, toString({column}) IN ({marks}), toString({column}), {text(OTHER)})",
                {f"top{i}": str(v) for i, v in enumerate(top)})  # fmt: skip

    def last_day(self) -> date | None:
        rows = self.facts.rows("SELECT greatest((SELECT maxOrNull(day) FROM {orders}), "
                               "(SELECT maxOrNull(day) FROM {sessions}))")  # fmt: skip
        return rows[0][0] if rows else None

    def first_order_day(self, last: date) -> date | None:
        rows = self.facts.rows("SELECT minOrNull(day) FROM {orders} WHERE NOT cancelled AND day <= {last:Date32}",
                               bind({"last": last}))  # fmt: skip
        return rows[0][0]

    def repeat_gaps(self) -> tuple[int, float | None]:
        rows = self.facts.rows(f"SELECT count(), quantileExactInclusiveOrNull(0.8)({_GAP}) FROM {{orders}} "
                               "WHERE NOT cancelled AND previous_ts IS NOT NULL")  # fmt: skip
        return rows[0]

    # -- a person's trait or characteristic, one row per person ---------------------------------

    def _trait_table(self, key: str) -> None:
        """``person.KEY``: the latest value of the trait from the person's identify calls."""
        value = json_text("traits", key)
        self.facts.table(
            "trait",
            f"""SELECT person, argMax(v, ts) AS value
                FROM (SELECT person, ts, {value} AS v FROM {{events}} WHERE type = 'identify')
                WHERE v IS NOT NULL GROUP BY person""",
        )

    def _characteristic_table(self, name: str, as_of: date) -> None:
        """characteristics.person_characteristic: the raw text per person worked out in ClickHouse,
        each distinct text mapped once here (value_of), joined back as a small table."""
        identify = "FROM {events} WHERE type = 'identify' GROUP BY person"
        if name == "age_band":
            birthday = f"coalesce({', '.join(json_text('traits', k) for k in BIRTHDAY_TRAITS)})"
            age = json_text("traits", "age")
            raw = f"""
                SELECT p.person AS person,
                       if(t.birthday IS NOT NULL OR t.age IS NOT NULL,
                          concat(coalesce(t.birthday, ''), char(31), coalesce(t.age, ''), char(31),
                                 coalesce(toString(t.age_day), '')), NULL) AS raw
                FROM {{people}} AS p LEFT JOIN (
                    SELECT person AS t_person, argMaxIf({birthday}, ts, {birthday} IS NOT NULL) AS birthday,
                           argMaxIf({age}, ts, {age} IS NOT NULL) AS age,
                           argMaxIf(toNullable(day), ts, {age} IS NOT NULL) AS age_day
                    {identify}) AS t ON t.t_person = p.person
            """
        elif name == "gender":
            gender = json_text("traits", "gender")
            raw = f"""
                SELECT p.person AS person, t.value AS raw FROM {{people}} AS p LEFT JOIN (
                    SELECT person AS t_person, argMaxIf({gender}, ts, {gender} IS NOT NULL) AS value {identify}
                ) AS t ON t.t_person = p.person
            """
        else:
            trait = f"coalesce({json_text('traits', 'address', 'city')}, {json_text('traits', 'city')})"
            raw = f"""
                SELECT p.person AS person, coalesce(t.value, s.value) AS raw FROM {{people}} AS p
                LEFT JOIN (SELECT person AS t_person, argMaxIf({trait}, ts, {trait} IS NOT NULL) AS value {identify}) AS t
                     ON t.t_person = p.person
                LEFT JOIN (SELECT person AS s_person, argMax(city, ts) AS value FROM {{events}} WHERE city IS NOT NULL
                           GROUP BY person) AS s ON s.s_person = p.person
            """
        self.facts.table("trait_raw", raw)
        distinct = self.facts.arrow("SELECT DISTINCT raw FROM {trait_raw} WHERE raw IS NOT NULL")["raw"].to_pylist()
        fn = value_of(name, as_of)
        self.facts.scratch("trait_map", pa.table({"raw": pa.array(distinct, pa.string()),
                                                  "value": pa.array([fn(r) for r in distinct], pa.string())}))  # fmt: skip
        self.facts.table(
            "trait",
            f"""SELECT r.person AS person, coalesce(m.value, {text(UNKNOWN)}) AS value FROM {{trait_raw}} AS r
                LEFT JOIN (SELECT raw AS m_raw, value FROM {{trait_map}}) AS m ON m.m_raw = r.raw""",
        )


# -- runners --------------------------------------------------------------------------------------


def run_metrics(ctx: ClickHouseContext, query: MetricsQuery) -> MetricsResult:
    with SalesFacts(ctx) as facts:
        return compute_metrics(ClickHouseMetricsEngine(facts), query)


def run_forecast(ctx: ClickHouseContext, query: ForecastQuery) -> ForecastResult:
    with SalesFacts(ctx) as facts:
        return compute_forecast(ClickHouseMetricsEngine(facts, churn_days=90), ctx.source.name, ctx.tz, query)


def run_targets(ctx: ClickHouseContext, query: TargetsQuery) -> TargetsResult:
    with SalesFacts(ctx) as facts:
        return compute_targets(ClickHouseMetricsEngine(facts, churn_days=90), ctx.store.targets(ctx.source), ctx.tz,
                               query)  # fmt: skip


RUNNERS = {
    "metrics": run_metrics,
    "forecast": run_forecast,
    "targets": run_targets,
}
_ = local_date  # used by the report runners below
