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
from masar.engine.cohorts import CohortResult, _first_day, cells_from_rows, cohort_result
from masar.engine.forecast_runners import ForecastResult, TargetsResult, compute_forecast, compute_targets
from masar.engine.kpis import compute_metrics, data_window
from masar.engine.ltv import (
    UNITS,
    VALUE_MONTHS,
    CustomerSummary,
    HistoricalLtv,
    LtvFit,
    LtvPrediction,
    _check_grouping,
    fit_summary,
    historical_from_customers,
    predict_from_fit,
    summary_from_customers,
)
from masar.engine.ltv_report import LtvReport, ltv_report_from
from masar.engine.metrics import (
    FAMILIES,
    OTHER,
    Components,
    MetricsEngine,
    MetricsResult,
    Window,
    dimension_sql,
)
from masar.engine.reports import TableResult, email_result, jsonable, spend_platforms, touch_platforms
from masar.engine.rfm import GRID, RfmCustomers, RfmResult, check_dates, check_page, segments_from_rows
from masar.enrich.channels import ChannelRules
from masar.errors import InvalidInput
from masar.model.money import minor_units
from masar.model.sales_queries import (
    AcquisitionQuery,
    CohortsQuery,
    EmailQuery,
    ForecastQuery,
    LtvFitQuery,
    LtvQuery,
    MetricsQuery,
    PlatformsQuery,
    ProductsQuery,
    RfmCustomersQuery,
    RfmQuery,
    TargetsQuery,
)
from masar.store.clickhouse.context import ClickHouseContext
from masar.store.clickhouse.facts import SalesFacts, integer_text, text
from masar.store.clickhouse.predicates import json_text

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
        template = template.replace("{tz}", text(self.tz))
        template = template.replace("{first_after_cart}", _first_order_after("cart_ts"))
        template = template.replace("{first_after_checkout}", _first_order_after("checkout_ts"))
        return self.facts.sql(template)

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
        value = json_text("traits", "{trait_key:String}")  # bound: a key may look like a facts table's {name}
        self.facts.table(
            "trait",
            f"""SELECT person, argMax(v, ts) AS value
                FROM (SELECT person, ts, {value} AS v FROM {{events}} WHERE type = 'identify')
                WHERE v IS NOT NULL GROUP BY person""",
            {"trait_key": key},
        )

    def _characteristic_table(self, name: str, as_of: date) -> None:
        """characteristics.person_characteristic: the raw text per person worked out in ClickHouse,
        each distinct text mapped once here (value_of), joined back as a small table."""
        identify = "FROM {events} WHERE type = 'identify' GROUP BY person"
        if name == "age_band":
            birthday = f"coalesce({', '.join(json_text('traits', text(k)) for k in BIRTHDAY_TRAITS)})"
            age = json_text("traits", text("age"))
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
            gender = json_text("traits", text("gender"))
            raw = f"""
                SELECT p.person AS person, t.value AS raw FROM {{people}} AS p LEFT JOIN (
                    SELECT person AS t_person, argMaxIf({gender}, ts, {gender} IS NOT NULL) AS value {identify}
                ) AS t ON t.t_person = p.person
            """
        else:
            trait = f"coalesce({json_text('traits', text('address'), text('city'))}, {json_text('traits', text('city'))})"
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


# -- cohorts (cohorts._cells) ----------------------------------------------------------------------

_INDEX = {
    # weeks since Monday 1900-01-01 (toStartOfWeek mode 1: weeks start on Monday), months since year 0
    "week": "intDiv(dateDiff('day', toDate32('1900-01-01'), toStartOfWeek(toDate32({d}), 1)), 7)",
    "month": "(toYear({d}) * 12 + toMonth({d}) - 1)",
}


def _cohort_cells(facts: SalesFacts, *, by: str, period: str, measure: str, mode: str, periods: int,
                  channel: str | None, group: str, tz: str, as_of: date, first: int, last: int,
                  ) -> tuple[dict[tuple[Any, int, int], Any], dict[tuple[Any, int], int]]:  # fmt: skip
    """cohorts._cells in ClickHouse: the members and their active periods as tables of the query,
    then one UNION ALL of the cells, the first buyers and the sizes."""
    index = _INDEX[period]
    if mode == "recurring":
        source = "{orders}" if by == "first_order" else "{sessions}"
        where = "NOT cancelled AND " if by == "first_order" else ""
        births = f"SELECT DISTINCT person, {index.format(d='day')} AS cohort FROM {source} WHERE {where}day <= {{as_of:Date32}}"
    elif by == "first_order":
        births = (f"SELECT person, {index.format(d='min(day)')} AS cohort FROM {{orders}} "
                  "WHERE NOT cancelled AND day <= {as_of:Date32} GROUP BY person")  # fmt: skip
    elif by == "first_visit":
        births = f"SELECT person, {index.format(d='first_day')} AS cohort FROM {{people}} WHERE first_day <= {{as_of:Date32}}"
    else:
        signup_day = f"toDate(signup_ts, {text(tz)})"
        births = (f"SELECT person, {index.format(d=signup_day)} AS cohort FROM {{people}} "
                  f"WHERE signup_ts IS NOT NULL AND {signup_day} <= {{as_of:Date32}}")  # fmt: skip
    need_people = channel is not None or group == "channel"
    grp = "p.first_channel" if group == "channel" else "CAST(NULL AS Nullable(String))"
    join = ("JOIN (SELECT person AS p_person, first_channel FROM {people}) AS p ON p.p_person = b.person"
            if need_people else "")  # fmt: skip
    params = bind({"as_of": as_of, "first": first, "last": last, "periods": periods,
                   "from_day": _first_day(period, first), "channel": channel or ""})  # fmt: skip
    facts.table("cohort_members", f"""
        SELECT b.person AS person, toInt64(b.cohort) AS cohort, {grp} AS grp
        FROM ({births}) AS b {join}
        WHERE b.cohort BETWEEN {{first:Int64}} AND {{last:Int64}} {"AND p.first_channel = {channel:String}" if channel else ""}
    """, params)  # fmt: skip
    if measure == "active":
        activity = (f"SELECT DISTINCT person, toInt64({index.format(d='day')}) AS k, "
                    "CAST(NULL AS Nullable(Decimal(38, 3))) AS revenue FROM {sessions} "
                    "WHERE day BETWEEN {from_day:Date32} AND {as_of:Date32}")  # fmt: skip
    else:
        activity = (f"SELECT person, toInt64({index.format(d='day')}) AS k, sum(value) AS revenue FROM {{orders}} "
                    "WHERE NOT cancelled AND day BETWEEN {from_day:Date32} AND {as_of:Date32} GROUP BY person, k")  # fmt: skip
    facts.table("cohort_joined", f"""
        SELECT m.person AS person, m.grp AS grp, m.cohort AS cohort, a.k - m.cohort AS n, a.revenue AS revenue
        FROM {{cohort_members}} AS m JOIN ({activity}) AS a ON a.person = m.person
        WHERE a.k >= m.cohort AND a.k < m.cohort + {{periods:Int64}}
    """, params)  # fmt: skip
    buyers = ""
    if measure == "revenue":
        buyers = """
        UNION ALL
        SELECT grp, cohort, toNullable(first_n), NULL, NULL, toNullable(count())
        FROM (SELECT grp, cohort, min(n) AS first_n FROM {cohort_joined} GROUP BY person, grp, cohort)
        GROUP BY grp, cohort, first_n
        """
    rows = facts.rows(f"""
        SELECT grp, cohort, toNullable(n), toNullable(count()), CAST(sum(revenue) AS Nullable(Decimal(38, 3))),
               CAST(NULL AS Nullable(UInt64))
        FROM {{cohort_joined}} GROUP BY grp, cohort, n
        {buyers}
        UNION ALL
        SELECT grp, cohort, NULL, toNullable(count()), NULL, NULL FROM {{cohort_members}} GROUP BY grp, cohort
    """)  # fmt: skip
    return cells_from_rows(rows)


# -- RFM (rfm._SCORED) ------------------------------------------------------------------------------


def _scored(facts: SalesFacts, as_of: date, since: date | None) -> str:
    """Every customer's recency, frequency, monetary, scores and segment as a table of the query
    (rfm._SCORED: a score is 1 + ⌊5·b / n⌋, b the customers with a strictly worse value)."""
    check_dates(as_of, since)
    if "rfm_scored" in facts.names:
        return facts.names["rfm_scored"]
    since_sql = "AND day >= {since:Date32}" if since is not None else ""
    params = bind({"as_of": as_of, **({"since": since} if since is not None else {})})
    facts.table("rfm_customer", f"""
        SELECT person, toInt64(dateDiff('day', max(day), {{as_of:Date32}})) AS recency_days, toInt64(count()) AS frequency,
               sum(value - coalesce(refunded, 0)) AS monetary
        FROM {{orders}} WHERE NOT cancelled AND day <= {{as_of:Date32}} {since_sql} GROUP BY person
    """, params)  # fmt: skip
    grid = "[" + ", ".join(text(g) for g in GRID) + "]"
    return facts.table("rfm_scored", f"""
        WITH n AS (SELECT toInt64(count()) AS customers, toInt64(count(monetary)) AS known FROM {{rfm_customer}}),
        worse_r AS (
            SELECT recency_days AS v, toInt64(sum(count()) OVER (ORDER BY recency_days DESC ROWS UNBOUNDED PRECEDING) - count()) AS b
            FROM {{rfm_customer}} GROUP BY recency_days
        ), worse_f AS (
            SELECT frequency AS v, toInt64(sum(count()) OVER (ORDER BY frequency ROWS UNBOUNDED PRECEDING) - count()) AS b
            FROM {{rfm_customer}} GROUP BY frequency
        ), worse_m AS (
            SELECT monetary AS v, toInt64(sum(count()) OVER (ORDER BY monetary ROWS UNBOUNDED PRECEDING) - count()) AS b
            FROM {{rfm_customer}} WHERE monetary IS NOT NULL GROUP BY monetary
        ), scored AS (
            SELECT c.person AS person, c.recency_days AS recency_days, c.frequency AS frequency, c.monetary AS monetary,
                   toInt32(1 + intDiv(5 * wr.b, n.customers)) AS r, toInt32(1 + intDiv(5 * wf.b, n.customers)) AS f,
                   if(wm.b IS NULL, NULL, toInt32(1 + intDiv(5 * wm.b, n.known))) AS m
            FROM {{rfm_customer}} AS c CROSS JOIN n
            JOIN worse_r AS wr ON wr.v = c.recency_days JOIN worse_f AS wf ON wf.v = c.frequency
            LEFT JOIN worse_m AS wm ON wm.v = c.monetary
        )
        SELECT *, arrayElement({grid}, (r - 1) * 5 + f) AS segment FROM scored
    """)  # fmt: skip


def _rfm_segments(facts: SalesFacts, as_of: date, since: date | None) -> RfmResult:
    _scored(facts, as_of, since)
    # rfm_segments' GROUPING SETS as four GROUP BYs: (segment), (r, f), (m), ().
    measures = ("toInt64(count()), sumOrNull(monetary), toInt64(count(monetary)), toInt64(sum(recency_days)), "
                "toInt64(sum(frequency))")  # fmt: skip
    null_s, null_i = "CAST(NULL AS Nullable(String))", "CAST(NULL AS Nullable(Int32))"
    rows = facts.rows(f"""
        SELECT 0, 1, 1, 1, toNullable(segment), {null_i}, {null_i}, {null_i}, {measures} FROM {{rfm_scored}} GROUP BY segment
        UNION ALL
        SELECT 1, 0, 0, 1, {null_s}, toNullable(r), toNullable(f), {null_i}, {measures} FROM {{rfm_scored}} GROUP BY r, f
        UNION ALL
        SELECT 1, 1, 1, 0, {null_s}, {null_i}, {null_i}, m, {measures} FROM {{rfm_scored}} GROUP BY m
        UNION ALL
        SELECT 1, 1, 1, 1, {null_s}, {null_i}, {null_i}, {null_i}, {measures} FROM {{rfm_scored}}
    """)  # fmt: skip
    # An empty store has no row per group, and one all-customers row of zeros, as DuckDB gives.
    return segments_from_rows(as_of, since, rows)


def _rfm_customers(facts: SalesFacts, as_of: date, segment: str | None, *, since: date | None,
                   limit: int | None, offset: int) -> RfmCustomers:  # fmt: skip
    check_page(segment, limit, offset)
    _scored(facts, as_of, since)
    where = "WHERE segment = {segment:String}" if segment is not None else ""
    cut = "LIMIT {limit:UInt64} OFFSET {offset:UInt64}"
    order = "monetary DESC NULLS LAST, person"
    table = facts.arrow(f"""
        WITH page AS (
            SELECT *, toInt64(count() OVER ()) AS total FROM {{rfm_scored}} {where} ORDER BY {order} {cut}
        )
        SELECT page.person AS person, p.user_id AS user_id, p.email AS email, page.recency_days AS recency_days,
               page.frequency AS frequency, CAST(page.monetary AS Nullable(Decimal(38, 3))) AS monetary,
               toInt8(page.r) AS r, toInt8(page.f) AS f, CAST(page.m AS Nullable(Int8)) AS m, page.segment AS segment,
               page.total AS total
        FROM page LEFT JOIN (SELECT person AS p_person, user_id, email FROM {{people}}) AS p ON p.p_person = page.person
        ORDER BY {order}
    """, bind({"segment": segment or "", "limit": 2**63 if limit is None else limit, "offset": offset}))  # fmt: skip
    if table.num_rows:
        total = table["total"][0].as_py()
    else:
        total = facts.rows(f"SELECT toInt64(count()) FROM {{rfm_scored}} {where}", {"segment": segment or ""})[0][0]
    rows = table.drop_columns(["total"])
    return RfmCustomers(as_of=as_of, since=since, segment=segment, total=total, limit=limit, offset=offset,
                        rows=rows)  # fmt: skip


# -- lifetime value ---------------------------------------------------------------------------------


def _summary(facts: SalesFacts, calibration_end: date, unit: str) -> CustomerSummary:
    """ltv.summary_from_orders: one row per customer (purchase days, first and last, and the exact
    sum and count of the repeat days' known values) from ClickHouse; the models are fitted to it
    in Python (ltv.summary_from_customers, shared with DuckDB)."""
    if unit not in UNITS:
        raise InvalidInput(f"unit must be one of {', '.join(UNITS)}, got {unit!r}.", code="invalid_query")
    table = facts.arrow("""
        SELECT person, min(day) AS first_day, max(day) AS last_day, toInt64(count()) AS days,
               toInt64(countIf(known AND day > first)) AS m_count,
               CAST(sumOrNullIf(value, known AND day > first) AS Nullable(Decimal(38, 3))) AS m_sum
        FROM (
            SELECT person, day, sum(value) AS value, min(value IS NOT NULL) = 1 AS known,
                   min(day) OVER (PARTITION BY person) AS first
            FROM {orders} WHERE NOT cancelled AND day <= {end:Date32} GROUP BY person, day
        )
        GROUP BY person ORDER BY person
    """, bind({"end": calibration_end}))  # fmt: skip
    return summary_from_customers(table, calibration_end, unit)


class ClickHouseLtvData:
    """ltv_report.LtvData over the facts of one query."""

    def __init__(self, facts: SalesFacts):
        self.facts = facts

    def prediction(self, as_of: date, horizon: float, unit: str, group_by: str | None,
                   discount_rate: float) -> LtvPrediction:  # fmt: skip
        _check_grouping(group_by)
        fit = fit_summary(_summary(self.facts, as_of, unit))
        return predict_from_fit(fit, horizon, group_by=group_by, discount_rate=discount_rate,
                                known=self._labels(group_by, as_of))  # fmt: skip

    def _labels(self, group_by: str | None, as_of: date) -> pa.Table | None:
        if group_by == "rfm_segment":
            return self.facts.arrow(f"SELECT person, segment AS label FROM {_scored(self.facts, as_of, None)} "
                                    "ORDER BY person")  # fmt: skip
        if group_by == "first_channel":
            return self.facts.arrow("SELECT person, any(first_channel) AS label FROM {people} GROUP BY person "
                                    "ORDER BY person")  # fmt: skip
        return None

    def historical(self, as_of: date, group_by: str | None) -> HistoricalLtv:
        _check_grouping(group_by)
        if not isinstance(as_of, date) or isinstance(as_of, datetime):
            raise InvalidInput(f"as_of must be a date, got {as_of!r}.", code="invalid_query")
        customers = self.facts.arrow(_HISTORICAL, bind({"as_of": as_of}))
        known = None
        if group_by == "rfm_segment":
            known = self.facts.arrow(f"SELECT person, segment FROM {_scored(self.facts, as_of, None)} ORDER BY person")
        return historical_from_customers(customers, as_of, group_by, known)

    def persons_of_user(self, user_id: str) -> list[int]:
        rows = self.facts.rows("SELECT DISTINCT person FROM {people} WHERE user_id = {user:String}", {"user": user_id})
        return [row[0] for row in rows]

    def who(self, persons: list[int]) -> pa.Table:
        self.facts.scratch("ltv_page", pa.table({"person": pa.array(persons, pa.int64())}))
        return self.facts.arrow("SELECT person, any(user_id) AS user_id, any(email) AS email FROM {people} "
                                "WHERE person IN (SELECT person FROM {ltv_page}) GROUP BY person")  # fmt: skip


def _customer_value(first_months: bool) -> str:
    """ltv.customer_value_sql: net revenue per customer up to ``{as_of}``, and of their first 3, 6
    and 12 months (addMonths clamps to the month's end, as DuckDB's INTERVAL does)."""
    windows, join = "", ""
    if first_months:
        windows = ", " + ", ".join(
            f"if(any(f.end_{n}m) <= {{as_of:Date32}} + 1, CAST(coalesce(sumIf(o.value - o.refunded, o.day < f.end_{n}m), 0) "
            f"AS Decimal(38, 3)), NULL) AS value_{n}m"
            for n in VALUE_MONTHS
        )
        ends = ", ".join(f"addMonths(min(day), {n}) AS end_{n}m" for n in VALUE_MONTHS)
        join = f"JOIN (SELECT person AS f_person, {ends} FROM o GROUP BY person) AS f ON f.f_person = o.person"
    return f"""
        WITH o AS (
            SELECT person, day, value, coalesce(refunded, 0) AS refunded FROM {{orders}}
            WHERE NOT cancelled AND day <= {{as_of:Date32}}
        )
        SELECT o.person AS person, min(o.day) AS first_day, toInt64(count()) AS orders,
               toInt64(count() - count(o.value)) AS orders_without_value,
               CAST(coalesce(sum(o.value), 0) AS Decimal(38, 3)) AS revenue,
               CAST(coalesce(sumIf(o.refunded, o.value IS NOT NULL), 0) AS Decimal(38, 3)) AS refunded,
               CAST(coalesce(sum(o.value - o.refunded), 0) AS Decimal(38, 3)) AS net_revenue{windows}
        FROM o {join}
        GROUP BY o.person
    """


_HISTORICAL = f"""
    SELECT c.person AS person, c.first_day AS first_day, formatDateTime(c.first_day, '%Y-%m') AS cohort_month,
           p.first_channel AS first_channel, toInt64(dateDiff('day', c.first_day, {{as_of:Date32}})) AS tenure_days,
           c.orders AS orders, c.orders_without_value AS orders_without_value, c.revenue AS revenue,
           c.refunded AS refunded, c.net_revenue AS net_revenue,
           {", ".join(f"c.value_{n}m AS value_{n}m" for n in VALUE_MONTHS)}
    FROM ({_customer_value(True)}) AS c
    LEFT JOIN (SELECT person AS p_person, any(first_channel) AS first_channel FROM {{people}} GROUP BY person) AS p
         ON p.p_person = c.person
    ORDER BY c.person
"""


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


# -- table reports (masar/engine/reports.py) --------------------------------------------------------


def _table(facts: SalesFacts, sql: str, params: dict[str, Any]) -> tuple[list[tuple], list[str]]:
    table = facts.arrow(sql, bind(params))
    columns = [c.to_pylist() for c in table.columns]
    return (list(zip(*columns, strict=True)) if columns else []), table.column_names


def _decimal_text(expr: str, scale: int = 3) -> str:
    """DuckDB's ``TRY_CAST(text AS DECIMAL(18, scale))``: rounded half away from zero, NULL if not a number."""
    return f"CAST(round(toDecimal128OrNull({expr}, 9), {scale}) AS Nullable(Decimal(18, {scale})))"


def _products(facts: SalesFacts, query: ProductsQuery) -> TableResult:
    window = data_window(ClickHouseMetricsEngine(facts), query.date_from, query.date_to)
    key = "product_id" if query.by == "product" else "category"
    places = minor_units(facts.currency)
    cur = text(facts.currency)
    sql = f"""
        WITH lines AS (
            SELECT o.order_key AS order_key, o.person AS person, o.day AS day, {json_text("x", text(key))} AS item,
                   {json_text("x", text("name"))} AS name,
                   coalesce({integer_text(json_text("x", text("quantity")))}, 1) AS units,
                   {_decimal_text(json_text("x", text("price")))} AS price, e.currency AS currency
            FROM {{orders}} AS o
            JOIN (SELECT coalesce(order_id, message_id) AS e_key, toNullable(toString(currency)) AS currency,
                         properties FROM {{events}} WHERE type = 'track' AND event = 'Order Completed') AS e
                 ON e.e_key = o.order_key
            ARRAY JOIN JSONExtractArrayRaw(ifNull(e.properties, ''), 'products') AS x
            WHERE NOT o.cancelled AND o.day BETWEEN {{start:Date32}} AND {{end:Date32}}
        ),
        priced AS (
            SELECT l.*, if(l.currency = {cur}, CAST(l.price * l.units AS Nullable(Decimal(38, 3))),
                           CAST(round(l.price * l.units * coalesce(r.rate, f.rate), {places}) AS Nullable(Decimal(38, 3))))
                       AS line
            FROM lines AS l
            ASOF LEFT JOIN (SELECT currency AS r_currency, day AS r_day, rate FROM {{rates}}) AS r
                 ON r.r_currency = l.currency AND r.r_day <= l.day
            LEFT JOIN (SELECT currency AS f_currency, argMin(rate, day) AS rate FROM {{rates}} GROUP BY currency) AS f
                 ON f.f_currency = l.currency
        ),
        sold AS (
            SELECT item, any(name) AS name, toInt64(uniqExact(order_key)) AS orders, toInt64(sum(units)) AS units,
                   CAST(sum(line) AS Nullable(Decimal(18, 3))) AS revenue, toInt64(uniqExact(person)) AS buyers
            FROM priced WHERE item IS NOT NULL GROUP BY item
        ),
        viewed AS (
            SELECT {key} AS item, toInt64(uniqExact(person)) AS viewers, toInt64(count()) AS views
            FROM {{events}} WHERE type = 'track' AND event = 'Product Viewed' AND {key} IS NOT NULL
                          AND day BETWEEN {{start:Date32}} AND {{end:Date32}}
            GROUP BY item
        ),
        bought_after_view AS (
            SELECT v.item AS item, toInt64(uniqExact(v.person)) AS converted FROM (
                SELECT DISTINCT {key} AS item, person FROM {{events}}
                WHERE type = 'track' AND event = 'Product Viewed' AND {key} IS NOT NULL
                      AND day BETWEEN {{start:Date32}} AND {{end:Date32}}) AS v
            JOIN (SELECT DISTINCT item, person FROM priced) AS p ON p.item = v.item AND p.person = v.person
            GROUP BY v.item
        )
        SELECT * FROM (
        SELECT coalesce(s.item, v.item) AS {query.by}, {"s.name AS name," if query.by == "product" else ""}
               coalesce(s.orders, 0) AS orders, coalesce(s.units, 0) AS units,
               coalesce(s.revenue, toDecimal64(0, 3)) AS revenue, coalesce(v.viewers, 0) AS viewers,
               coalesce(v.views, 0) AS views, coalesce(b.converted, 0) AS viewers_who_bought,
               if(v.viewers > 0, coalesce(b.converted, 0) / v.viewers, NULL) AS view_to_purchase_rate
        FROM sold AS s FULL JOIN viewed AS v ON v.item = s.item
        LEFT JOIN bought_after_view AS b ON b.item = coalesce(s.item, v.item)
        )  -- ordered outside: the columns of the FROM clause would win over the aliases inside
        ORDER BY revenue DESC, viewers DESC, {query.by}
        LIMIT {{limit:UInt64}}
    """
    rows, names = _table(facts, sql, {"start": window.start, "end": window.end, "limit": query.limit})
    return TableResult("products", facts.currency, window.to_dict(), jsonable(rows, names, {"revenue"}, places),
                       {"by": query.by})  # fmt: skip


def _email(facts: SalesFacts, query: EmailQuery) -> TableResult:
    window = data_window(ClickHouseMetricsEngine(facts), query.date_from, query.date_to)
    places = minor_units(facts.currency)
    days = int(query.attribution_days)
    campaign = f"coalesce({json_text('properties', text('campaign_name'))}, {json_text('properties', text('campaign_id'))}, '(no campaign)')"
    email = (f"coalesce({json_text('properties', text('email_id'))}, "
             f"concat({json_text('properties', text('campaign_id'))}, ':', toString(person)))")  # fmt: skip
    facts.table("email_sends", f"""
        WITH mail AS (
            SELECT person, ts, day, toString(event) AS event, {campaign} AS campaign, {email} AS email
            FROM {{events}}
            WHERE type = 'track' AND event IN ('Email Delivered', 'Email Opened', 'Email Link Clicked',
                                               'Email Bounced', 'Unsubscribed', 'Email Marked as Spam')
        )
        SELECT email, any(campaign) AS campaign, any(person) AS person,
               minOrNullIf(ts, event = 'Email Delivered') AS delivered,
               minOrNullIf(ts, event = 'Email Opened') AS opened,
               minOrNullIf(ts, event = 'Email Link Clicked') AS clicked,
               max(event = 'Email Bounced') = 1 AS bounced, max(event = 'Unsubscribed') = 1 AS unsubscribed,
               max(event = 'Email Marked as Spam') = 1 AS spam, min(day) AS day
        FROM mail GROUP BY email
        HAVING min(day) BETWEEN {{start:Date32}} AND {{end:Date32}}
    """, bind({"start": window.start, "end": window.end}))  # fmt: skip
    hours = "((toUnixTimestamp64Micro(clicked) - toUnixTimestamp64Micro(delivered)) / 1e6 / 3600.0)"
    sql = f"""
        WITH attributed AS (
            SELECT s.email AS a_email, toInt64(count(o.order_key)) AS orders, sum(o.value) AS revenue
            FROM {{email_sends}} AS s
            JOIN (SELECT person, order_key, ts, value FROM {{orders}} WHERE NOT cancelled) AS o ON o.person = s.person
            WHERE o.ts > s.clicked AND o.ts <= s.clicked + INTERVAL {days} DAY
            GROUP BY s.email
        )
        SELECT campaign,
               toInt64(countIf(delivered IS NOT NULL OR bounced)) AS sent,
               toInt64(countIf(delivered IS NOT NULL)) AS delivered,
               toInt64(countIf(opened IS NOT NULL)) AS opened,
               toInt64(countIf(clicked IS NOT NULL)) AS clicked,
               toInt64(countIf(bounced)) AS bounced,
               toInt64(countIf(unsubscribed)) AS unsubscribed,
               toInt64(countIf(spam)) AS marked_spam,
               countIf(opened IS NOT NULL) / nullIf(countIf(delivered IS NOT NULL), 0) AS open_rate,
               countIf(clicked IS NOT NULL) / nullIf(countIf(delivered IS NOT NULL), 0) AS click_rate,
               countIf(clicked IS NOT NULL) / nullIf(countIf(opened IS NOT NULL), 0) AS click_to_open_rate,
               countIf(unsubscribed) / nullIf(countIf(delivered IS NOT NULL), 0) AS unsubscribe_rate,
               countIf(bounced) / nullIf(countIf(delivered IS NOT NULL OR bounced), 0) AS bounce_rate,
               quantileExactInclusiveOrNullIf(0.5)({hours}, clicked >= delivered) AS median_hours_to_click,
               toInt64(coalesce(sum(a.orders), 0)) AS orders,
               CAST(coalesce(sum(a.revenue), 0) AS Decimal(18, 3)) AS revenue
        FROM {{email_sends}} AS s LEFT JOIN attributed AS a ON a.a_email = s.email
        GROUP BY campaign ORDER BY sent DESC, campaign
    """
    rows, names = _table(facts, sql, {})
    timing = {}
    for label, part in (("by_hour", "toHour"), ("by_weekday", "toDayOfWeek")):
        res, cols = _table(facts, f"""
            SELECT toInt64({part}(toTimeZone(delivered, {text(facts.tz)}))) AS slot, toInt64(count()) AS delivered,
                   toInt64(countIf(clicked IS NOT NULL)) AS clicked, countIf(clicked IS NOT NULL) / count() AS click_rate
            FROM {{email_sends}} WHERE delivered IS NOT NULL GROUP BY slot ORDER BY slot
        """, {})  # fmt: skip
        timing[label] = jsonable(res, cols, set(), places)
    return email_result(facts.currency, window, jsonable(rows, names, {"revenue"}, places), timing, days)


def _acquisition(facts: SalesFacts, query: AcquisitionQuery) -> TableResult:
    engine = ClickHouseMetricsEngine(facts)
    window = data_window(engine, query.date_from, query.date_to)
    places = minor_units(facts.currency)
    value = _customer_value(False)
    sql = f"""
        WITH s AS (
            SELECT channel AS spend_channel, campaign, CAST(sum(spend) AS Nullable(Decimal(18, 3))) AS spend
            FROM {{spend}} WHERE day BETWEEN {{start:Date32}} AND {{end:Date32}} GROUP BY channel, campaign
        ),
        visits AS (
            SELECT campaign AS v_campaign, toInt64(count()) AS sessions
            FROM {{sessions}} WHERE day BETWEEN {{start:Date32}} AND {{end:Date32}} AND campaign IS NOT NULL
            GROUP BY campaign
        ),
        bought AS (
            SELECT campaign AS b_campaign, toInt64(count()) AS orders, CAST(sum(value) AS Nullable(Decimal(18, 3))) AS revenue
            FROM {{orders}} WHERE NOT cancelled AND day BETWEEN {{start:Date32}} AND {{end:Date32}} AND campaign IS NOT NULL
            GROUP BY campaign
        ),
        acquired AS (
            SELECT p.first_campaign AS a_campaign, toInt64(count()) AS new_customers,
                   CAST(coalesce(sum(v.net_revenue), 0) AS Decimal(18, 3)) AS customer_value
            FROM {{people}} AS p LEFT JOIN (SELECT person AS v_person, net_revenue FROM ({value})) AS v
                 ON v.v_person = p.person
            WHERE p.first_order_ts IS NOT NULL
                  AND toDate(p.first_order_ts, {text(facts.tz)}) BETWEEN {{start:Date32}} AND {{end:Date32}}
            GROUP BY p.first_campaign
        ),
        leads AS (
            SELECT first_campaign AS l_campaign, toInt64(count()) AS leads FROM {{people}}
            WHERE signup_ts IS NOT NULL AND toDate(signup_ts, {text(facts.tz)}) BETWEEN {{start:Date32}} AND {{end:Date32}}
            GROUP BY first_campaign
        )
        SELECT * FROM (
        SELECT s.spend_channel AS channel, coalesce(s.campaign, v.v_campaign) AS campaign,
               coalesce(s.spend, toDecimal64(0, 3)) AS spend, coalesce(v.sessions, 0) AS sessions,
               coalesce(b.orders, 0) AS orders, coalesce(b.revenue, toDecimal64(0, 3)) AS revenue,
               coalesce(a.new_customers, 0) AS new_customers, coalesce(l.leads, 0) AS leads,
               toFloat64(s.spend) / nullIf(a.new_customers, 0) AS cac,
               toFloat64(s.spend) / nullIf(l.leads, 0) AS cost_per_lead,
               toFloat64(b.revenue) / nullIf(toFloat64(s.spend), 0) AS roas,
               (toFloat64(a.customer_value) / nullIf(a.new_customers, 0))
                   / nullIf(toFloat64(s.spend) / nullIf(a.new_customers, 0), 0) AS ltv_to_cac
        FROM s FULL JOIN visits AS v ON v.v_campaign = s.campaign
        LEFT JOIN bought AS b ON b.b_campaign = coalesce(s.campaign, v.v_campaign)
        LEFT JOIN acquired AS a ON a.a_campaign = coalesce(s.campaign, v.v_campaign)
        LEFT JOIN leads AS l ON l.l_campaign = coalesce(s.campaign, v.v_campaign)
        )  -- ordered outside: the columns of the FROM clause would win over the aliases inside
        ORDER BY spend DESC, revenue DESC, campaign
    """
    rows, names = _table(facts, sql, {"start": window.start, "end": window.end,
                                      "as_of": data_window(engine, None, None).end})  # fmt: skip
    return TableResult("acquisition", facts.currency, window.to_dict(),
                       jsonable(rows, names, {"spend", "revenue", "cac", "cost_per_lead"}, places), {})  # fmt: skip


def _platforms(facts: SalesFacts, query: PlatformsQuery, rules: ChannelRules) -> TableResult:
    engine = ClickHouseMetricsEngine(facts)
    window = data_window(engine, query.date_from, query.date_to)
    places = minor_units(facts.currency)
    # Every session's first touch (DuckDB's first(x ORDER BY ts) keeps a NULL: a tuple is never NULL).
    first = lambda column: f"argMin(tuple({column}), ts).1"  # noqa: E731
    facts.table("touches", f"""
        SELECT session_id, {first("toNullable(toString(session_source))")} AS source,
               {first("toNullable(toString(session_medium))")} AS medium, {first("click_id")} AS click_id,
               {first("referrer_domain")} AS referrer
        FROM {{events}} WHERE session_id IS NOT NULL GROUP BY session_id
    """)  # fmt: skip
    distinct = facts.rows("SELECT DISTINCT source, medium, click_id, referrer FROM {touches}")
    facts.scratch("touch_platforms", touch_platforms(distinct, rules))
    facts.table("session_platforms", """
        SELECT t.session_id AS session_id, p.platform AS platform, p.category AS category, p.paid AS paid
        FROM {touches} AS t JOIN {touch_platforms} AS p
          ON t.source <=> p.source AND t.medium <=> p.medium AND t.click_id <=> p.click_id AND t.referrer <=> p.referrer
    """)  # fmt: skip
    names = [r[0] for r in facts.rows("SELECT DISTINCT channel FROM {spend}")]
    facts.scratch("spend_names", spend_platforms(names, rules))
    sql = """
        WITH spent AS (
            SELECT row_number() OVER (ORDER BY s.day, s.channel, s.campaign) AS row_id, s.channel AS channel,
                   s.campaign AS campaign, s.spend AS spend, n.platform AS named, n.category AS named_category
            FROM {spend} AS s LEFT JOIN (SELECT channel AS n_channel, platform, category FROM {spend_names}) AS n
                 ON n.n_channel = s.channel
            WHERE s.day BETWEEN {start:Date32} AND {end:Date32}
        ),
        carried AS (
            SELECT v.campaign AS campaign, v.channel AS channel, p.platform AS platform, p.category AS category,
                   p.paid AS paid, count() AS visits
            FROM {sessions} AS v JOIN (SELECT session_id AS p_session, platform, category, paid FROM {session_platforms}) AS p
                 ON p.p_session = v.session_id
            WHERE v.campaign IS NOT NULL AND p.platform IS NOT NULL
            GROUP BY v.campaign, v.channel, p.platform, p.category, p.paid
        ),
        ranked AS (
            SELECT r.row_id AS row_id, c.platform AS platform, c.category AS category,
                   row_number() OVER (PARTITION BY r.row_id
                                      ORDER BY coalesce(c.platform = r.named, false) DESC,
                                               coalesce(c.channel = r.channel, false) DESC,
                                               c.paid DESC, c.visits DESC, c.platform) AS rank
            FROM spent AS r JOIN carried AS c ON c.campaign = r.campaign
        ),
        parts AS (
            SELECT 'visit' AS part, p.platform AS platform, p.category AS category, coalesce(p.paid, false) AS paid,
                   toNullable(v.person) AS person, toNullable(v.orders > 0) AS converted,
                   CAST(NULL AS Nullable(Decimal(18, 3))) AS amount
            FROM {sessions} AS v LEFT JOIN (SELECT session_id AS p_session, platform, category, paid
                                            FROM {session_platforms}) AS p ON p.p_session = v.session_id
            WHERE v.day BETWEEN {start:Date32} AND {end:Date32}
            UNION ALL
            SELECT 'order', p.platform, p.category, coalesce(p.paid, false), NULL, NULL, o.value
            FROM {orders} AS o LEFT JOIN (SELECT session_id AS p_session, platform, category, paid
                                          FROM {session_platforms}) AS p ON p.p_session = o.session_id
            WHERE NOT o.cancelled AND o.day BETWEEN {start:Date32} AND {end:Date32}
            UNION ALL
            SELECT 'spend', coalesce(k.platform, r.named), coalesce(k.category, r.named_category), true, NULL, NULL,
                   r.spend
            FROM spent AS r LEFT JOIN (SELECT row_id AS k_row, platform, category FROM ranked WHERE rank = 1) AS k
                 ON k.k_row = r.row_id
        ),
        totals AS (
            SELECT platform, category, paid,
                   toInt64(countIf(part = 'visit')) AS sessions, toInt64(uniqExact(person)) AS visitors,
                   toInt64(countIf(part = 'visit' AND converted)) AS converted_sessions,
                   toInt64(countIf(part = 'order')) AS orders,
                   CAST(coalesce(sumIf(amount, part = 'order'), 0) AS Decimal(18, 3)) AS revenue,
                   CAST(coalesce(sumIf(amount, part = 'spend'), 0) AS Decimal(18, 3)) AS ad_spend
            FROM parts GROUP BY platform, category, paid
        )
        SELECT platform, category, if(paid, 'paid', 'organic') AS traffic,
               sessions, visitors, converted_sessions,
               converted_sessions / nullIf(sessions, 0) AS conversion_rate,
               orders, revenue, ad_spend,
               toFloat64(revenue) / nullIf(toFloat64(ad_spend), 0) AS roas
        FROM totals
        ORDER BY platform IS NULL, revenue DESC, sessions DESC, platform, paid DESC
    """
    rows, columns = _table(facts, sql, {"start": window.start, "end": window.end})
    return TableResult("platforms", facts.currency, window.to_dict(),
                       jsonable(rows, columns, {"revenue", "ad_spend"}, places),
                       {"unconverted": engine.unconverted(window)})  # fmt: skip


def _as_of(facts: SalesFacts, given: date | None) -> date:
    """customer_runners._as_of: the asked day, else the data's last day."""
    return given if given is not None else data_window(ClickHouseMetricsEngine(facts), None, None).end


def run_cohorts(ctx: ClickHouseContext, query: CohortsQuery) -> CohortResult:
    with SalesFacts(ctx) as facts:
        return cohort_result(
            lambda **kw: _cohort_cells(facts, **kw), by=query.by, period=query.period, measure=query.measure,
            mode=query.mode, periods=query.periods, start=query.date_from, end=query.date_to, channel=query.channel,
            group=query.group, tz=ctx.tz.key, as_of=_as_of(facts, query.as_of),
        )  # fmt: skip


def run_rfm(ctx: ClickHouseContext, query: RfmQuery) -> RfmResult:
    with SalesFacts(ctx) as facts:
        return _rfm_segments(facts, _as_of(facts, query.as_of), query.since)


def run_rfm_customers(ctx: ClickHouseContext, query: RfmCustomersQuery) -> RfmCustomers:
    with SalesFacts(ctx) as facts:
        return _rfm_customers(facts, _as_of(facts, query.as_of), query.segment, since=query.since,
                              limit=query.limit, offset=query.offset)  # fmt: skip


def run_ltv_fit(ctx: ClickHouseContext, query: LtvFitQuery) -> LtvFit:
    with SalesFacts(ctx) as facts:
        return fit_summary(_summary(facts, query.calibration_end, query.unit))


def run_ltv(ctx: ClickHouseContext, query: LtvQuery) -> LtvReport:
    with SalesFacts(ctx) as facts:
        return ltv_report_from(
            ClickHouseLtvData(facts), currency=facts.currency, as_of=_as_of(facts, query.as_of), mode=query.mode,
            unit=query.unit, horizon_days=query.horizon_days, discount_rate=query.discount_rate,
            group_by=query.group_by, customer=query.customer, sort=query.sort, ascending=query.ascending,
            limit=query.limit, offset=query.offset,
        )  # fmt: skip


def run_products(ctx: ClickHouseContext, query: ProductsQuery) -> TableResult:
    with SalesFacts(ctx) as facts:
        return _products(facts, query)


def run_email(ctx: ClickHouseContext, query: EmailQuery) -> TableResult:
    with SalesFacts(ctx) as facts:
        return _email(facts, query)


def run_acquisition(ctx: ClickHouseContext, query: AcquisitionQuery) -> TableResult:
    with SalesFacts(ctx) as facts:
        return _acquisition(facts, query)


def run_platforms(ctx: ClickHouseContext, query: PlatformsQuery) -> TableResult:
    with SalesFacts(ctx) as facts:
        return _platforms(facts, query, ChannelRules.from_overrides(ctx.source.channel_rules))


RUNNERS = {
    "products": run_products,
    "email": run_email,
    "acquisition": run_acquisition,
    "platforms": run_platforms,
    "cohorts": run_cohorts,
    "rfm": run_rfm,
    "rfm_customers": run_rfm_customers,
    "ltv_fit": run_ltv_fit,
    "ltv": run_ltv,
    "metrics": run_metrics,
    "forecast": run_forecast,
    "targets": run_targets,
}
