"""Sales KPIs over the facts tables: one definition per metric, computed for a date range, by
period, against the previous period and broken down by any dimension (docs/metrics.md).

A metric is a formula over *components*: sums and counts that one SQL aggregate computes per
group over one facts table (a *family*). Ratios are never averaged: a ratio for a group, a
period or "Other" is its components' ratio for that group. Additive components (orders, money,
sessions) add up across breakdown rows to the total; distinct counts (visitors, buyers) do not,
because one person can buy through two channels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pyarrow as pa

from masar.engine.facts import sql_text
from masar.errors import InvalidInput
from masar.model.money import minor_units

Components = dict[str, Any]
Group = tuple[str, list[Any]] | None  # SQL of the grouping key and its parameters; None: one total

# -- families: one aggregate query each -------------------------------------------------------------
# Each family: the table (with its dimension columns), its local-day column, and the aggregates.
# ``{start}``/``{end}`` (local dates) are bound parameters where a family needs the range itself.

_ORDERS = """
    SELECT o.*, o.day AS _day, p.first_seen, p.first_channel, p.first_campaign,
           CASE WHEN o.order_number = 1 THEN 'new' ELSE 'returning' END AS customer_type
    FROM orders o LEFT JOIN people p USING (person) WHERE NOT o.cancelled
"""
_REFUNDS = """
    SELECT r.value, r.day AS _day, r.person, o.channel, o.campaign, o.device_type, o.country,
           CASE WHEN o.order_number = 1 THEN 'new' ELSE 'returning' END AS customer_type,
           p.first_channel, p.first_campaign
    FROM refunds r LEFT JOIN orders o USING (order_key) LEFT JOIN people p ON p.person = r.person
    WHERE NOT r.cancelled
"""
_SESSIONS = """
    SELECT s.*, s.day AS _day, p.first_channel, p.first_campaign,
           CASE WHEN p.first_order_ts < s.ts THEN 'returning' ELSE 'new' END AS customer_type
    FROM sessions s LEFT JOIN people p USING (person)
"""
_LEADS = """
    SELECT p.*, CAST(timezone({tz}, p.signup_ts) AS DATE) AS _day, p.first_channel AS channel,
           p.first_campaign AS campaign, CAST(NULL AS VARCHAR) AS device_type,
           CAST(NULL AS VARCHAR) AS country, 'new' AS customer_type
    FROM people p WHERE p.signup_ts IS NOT NULL
"""
_SPEND = """
    SELECT s.spend, s.day AS _day, s.channel, s.campaign,
           CAST(NULL AS VARCHAR) AS device_type, CAST(NULL AS VARCHAR) AS country,
           CAST(NULL AS VARCHAR) AS customer_type, CAST(NULL AS BIGINT) AS person,
           s.channel AS first_channel, s.campaign AS first_campaign
    FROM (
        SELECT s.* EXCLUDE (channel),
               CASE WHEN s.named_channel THEN s.channel ELSE coalesce(m.channel, s.channel) END AS channel
        FROM spend s LEFT JOIN (
            SELECT campaign, mode(channel) AS channel FROM sessions WHERE campaign IS NOT NULL GROUP BY campaign
        ) m USING (campaign)
    ) s
"""


@dataclass(frozen=True)
class Family:
    name: str
    source: str
    aggregates: dict[str, str]


FAMILIES: dict[str, Family] = {
    "orders": Family(
        "orders",
        _ORDERS,
        {
            "orders": "count(*)",
            "valued_orders": "count(value)",
            "gross_revenue": "sum(value)",
            "discount": "sum(discount)",
            "items": "sum(items)",
            "orders_with_items": "count(items)",
            "buyers": "count(DISTINCT person)",
            "new_customers": "count(DISTINCT person) FILTER (WHERE order_number = 1)",
            "repeat_buyers": "count(DISTINCT person) FILTER (WHERE order_number >= 2)",
            "first_order_revenue": "sum(value) FILTER (WHERE order_number = 1)",
            "repeat_order_revenue": "sum(value) FILTER (WHERE order_number >= 2)",
            "order_gap_median": "median(epoch(ts - previous_ts) / 86400.0) FILTER (WHERE previous_ts IS NOT NULL)",
            "cycle_median": "median(epoch(ts - first_seen) / 86400.0) FILTER (WHERE order_number = 1)",
            "cycle_p90": "quantile_cont(epoch(ts - first_seen) / 86400.0, 0.9) FILTER (WHERE order_number = 1)",
        },
    ),
    "refunds": Family(
        "refunds", _REFUNDS, {"refunds": "coalesce(sum(value), 0)", "refund_count": "count(*)"}
    ),
    "sessions": Family(
        "sessions",
        _SESSIONS,
        {
            "sessions": "count(*)",
            "visitors": "count(DISTINCT person)",
            "converted_sessions": "count(*) FILTER (WHERE orders > 0)",
            "carts": "count(*) FILTER (WHERE cart_ts IS NOT NULL)",
            "abandoned_carts": "count(*) FILTER (WHERE cart_ts IS NOT NULL AND NOT cart_bought)",
            "abandoned_cart_value": "coalesce(sum(cart_value) FILTER (WHERE cart_ts IS NOT NULL AND NOT cart_bought), 0)",
            "checkouts": "count(*) FILTER (WHERE checkout_ts IS NOT NULL)",
            "abandoned_checkouts": "count(*) FILTER (WHERE checkout_ts IS NOT NULL AND NOT checkout_bought)",
            "open_carts": "count(*) FILTER (WHERE cart_ts IS NOT NULL AND NOT cart_bought)",
        },
    ),
    "leads": Family(
        "leads",
        _LEADS,
        {
            "leads": "count(*)",
            # Leads of the range who placed a first order by the range's end.
            "lead_customers": "count(*) FILTER (WHERE first_order_ts IS NOT NULL AND "
            "CAST(timezone({tz}, first_order_ts) AS DATE) <= ?::DATE)",
        },
    ),
    "spend": Family("spend", _SPEND, {"spend": "coalesce(sum(spend), 0)"}),
}

# Pipeline velocity (docs/metrics.md): a visit with a cart or a checkout is an opportunity; it is
# won when the cart or the checkout was bought (the cart window of facts.py), by the person's first
# order at or after the Product Added (else the Checkout Started). The cycle counts the local days
# from the opportunity's start to that order, both included: an order the same day takes 1 day.
_PIPELINE = f"""
    SELECT s.*, least(s.cart_ts, s.checkout_ts) AS opened_ts, (s.cart_bought OR s.checkout_bought) AS won,
           CASE WHEN s.cart_bought THEN c.ts ELSE k.ts END AS won_ts,
           CASE WHEN s.cart_bought THEN c.value ELSE k.value END AS won_value
    FROM ({_SESSIONS}) s
    ASOF LEFT JOIN (SELECT person, ts, value FROM orders WHERE NOT cancelled) c
         ON c.person = s.person AND c.ts >= s.cart_ts
    ASOF LEFT JOIN (SELECT person, ts, value FROM orders WHERE NOT cancelled) k
         ON k.person = s.person AND k.ts >= s.checkout_ts
    WHERE s.cart_ts IS NOT NULL OR s.checkout_ts IS NOT NULL
"""
FAMILIES["pipeline"] = Family(
    "pipeline",
    _PIPELINE,
    {
        "opportunities": "count(*)",
        "won_opportunities": "count(*) FILTER (WHERE won)",
        "open_opportunities": "count(*) FILTER (WHERE NOT won)",
        # Won opportunities whose order has a known value, and the sum of those values.
        "won_valued": "count(won_value) FILTER (WHERE won)",
        "won_value": "sum(won_value) FILTER (WHERE won)",
        "won_cycle_median": "median(CAST(CAST(timezone({tz}, won_ts) AS DATE) - CAST(timezone({tz}, opened_ts) AS DATE)"
        " + 1 AS DOUBLE)) FILTER (WHERE won)",
    },
)


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    unit: str  # money | count | rate | days
    needs: tuple[str, ...]  # families
    formula: Callable[[Components], Any]
    additive: bool = False


def _ratio(num: Any, den: Any) -> Any:
    """num / den; exact (a Decimal, 28 digits) when either is money, so money ratios round once,
    half away from zero, when shown."""
    if num is None or den is None or den == 0:
        return None
    if isinstance(num, Decimal) or isinstance(den, Decimal):
        return Decimal(num) / Decimal(den)
    return num / den


def _money(c: Components, key: str) -> Decimal:
    value = c.get(key)
    return Decimal(0) if value is None else Decimal(value)


def _net(c: Components) -> Decimal:
    return _money(c, "gross_revenue") - _money(c, "refunds")


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("gross_revenue", "Gross revenue", "money", ("orders",), lambda c: _money(c, "gross_revenue"), True),
        Metric("refunds", "Refunds", "money", ("refunds",), lambda c: _money(c, "refunds"), True),
        Metric("net_revenue", "Net revenue", "money", ("orders", "refunds"), _net, True),
        Metric("orders", "Orders", "count", ("orders",), lambda c: c.get("orders") or 0, True),
        Metric("average_order_value", "Average order value", "money", ("orders",),
               lambda c: _ratio(_money(c, "gross_revenue"), c.get("valued_orders"))),
        Metric("items_per_order", "Items per order", "count", ("orders",),
               lambda c: _ratio(c.get("items"), c.get("orders_with_items"))),
        Metric("discount", "Discounts given", "money", ("orders",), lambda c: _money(c, "discount"), True),
        Metric("buyers", "Buyers", "count", ("orders",), lambda c: c.get("buyers") or 0),
        Metric("sessions", "Sessions", "count", ("sessions",), lambda c: c.get("sessions") or 0, True),
        Metric("visitors", "Visitors", "count", ("sessions",), lambda c: c.get("visitors") or 0),
        Metric("session_conversion_rate", "Session conversion rate", "rate", ("sessions",),
               lambda c: _ratio(c.get("converted_sessions"), c.get("sessions"))),
        Metric("visitor_conversion_rate", "Visitor → buyer rate", "rate", ("sessions", "orders"),
               lambda c: _ratio(c.get("buyers") or 0, c.get("visitors"))),
        Metric("leads", "Leads", "count", ("leads",), lambda c: c.get("leads") or 0, True),
        Metric("lead_conversion_rate", "Lead → customer rate", "rate", ("leads",),
               lambda c: _ratio(c.get("lead_customers"), c.get("leads"))),
        Metric("cart_abandonment_rate", "Cart abandonment rate", "rate", ("sessions",),
               lambda c: _ratio(c.get("abandoned_carts"), c.get("carts"))),
        Metric("abandoned_cart_value", "Abandoned cart value", "money", ("sessions",),
               lambda c: _money(c, "abandoned_cart_value"), True),
        Metric("checkout_abandonment_rate", "Checkout abandonment rate", "rate", ("sessions",),
               lambda c: _ratio(c.get("abandoned_checkouts"), c.get("checkouts"))),
        Metric("new_customers", "New customers", "count", ("orders",), lambda c: c.get("new_customers") or 0),
        Metric("returning_customers", "Returning customers", "count", ("orders",),
               lambda c: (c.get("buyers") or 0) - (c.get("new_customers") or 0)),
        Metric("new_customer_revenue", "Revenue from first orders", "money", ("orders",),
               lambda c: _money(c, "first_order_revenue"), True),
        Metric("returning_customer_revenue", "Revenue from repeat orders", "money", ("orders",),
               lambda c: _money(c, "repeat_order_revenue"), True),
        Metric("repeat_purchase_rate", "Repeat purchase rate", "rate", ("orders",),
               lambda c: _ratio(c.get("repeat_buyers"), c.get("buyers"))),
        Metric("revenue_per_customer", "Revenue per customer", "money", ("orders", "refunds"),
               lambda c: _ratio(_net(c), c.get("buyers"))),
        Metric("time_between_orders", "Days between orders (median)", "days", ("orders",),
               lambda c: c.get("order_gap_median")),
        Metric("sales_cycle_median", "Sales cycle, days (median)", "days", ("orders",), lambda c: c.get("cycle_median")),
        Metric("sales_cycle_p90", "Sales cycle, days (p90)", "days", ("orders",), lambda c: c.get("cycle_p90")),
        Metric("churn_rate", "Churn rate", "rate", ("churn",), lambda c: _ratio(c.get("churned"), c.get("active_at_start"))),
        Metric("ad_spend", "Ad spend", "money", ("spend",), lambda c: _money(c, "spend"), True),
        Metric("cac", "Customer acquisition cost", "money", ("spend", "orders"),
               lambda c: _ratio(_money(c, "spend"), c.get("new_customers"))),
        Metric("cost_per_lead", "Cost per lead", "money", ("spend", "leads"),
               lambda c: _ratio(_money(c, "spend"), c.get("leads"))),
        Metric("roas", "Return on ad spend", "ratio", ("spend", "orders"),
               lambda c: _ratio(_money(c, "gross_revenue"), _money(c, "spend"))),
    ]
}  # fmt: skip
METRICS["sales_growth_rate"] = Metric(
    "sales_growth_rate", "Sales growth rate", "rate", ("orders", "refunds"), _net
)


def _won_value(c: Components) -> Decimal | None:
    """The average value of the orders that won opportunities (those with a known value)."""
    if not c.get("won_valued"):
        return None
    return Decimal(c["won_value"]) / Decimal(c["won_valued"])


def _pipeline_velocity(c: Components) -> Decimal | None:
    """open opportunities × win rate × average won value ÷ cycle days: revenue per day."""
    value, cycle = _won_value(c), c.get("won_cycle_median")
    if value is None or not cycle or not c.get("opportunities"):
        return None
    win_rate = Decimal(c["won_opportunities"]) / Decimal(c["opportunities"])
    return Decimal(c.get("open_opportunities") or 0) * win_rate * value / Decimal(str(cycle))


METRICS.update(
    {
        m.name: m
        for m in [
            Metric("open_opportunities", "Open opportunities", "count", ("pipeline",),
                   lambda c: c.get("open_opportunities") or 0, True),
            Metric("opportunity_win_rate", "Opportunity win rate", "rate", ("pipeline",),
                   lambda c: _ratio(c.get("won_opportunities"), c.get("opportunities"))),
            Metric("average_won_value", "Average won opportunity value", "money", ("pipeline",), _won_value),
            Metric("pipeline_cycle_days", "Opportunity cycle, days (median)", "days", ("pipeline",),
                   lambda c: c.get("won_cycle_median")),
            Metric("pipeline_velocity", "Pipeline velocity (per day)", "money", ("pipeline",), _pipeline_velocity),
        ]
    }
)  # fmt: skip

HEADLINE = (
    "net_revenue", "orders", "average_order_value", "session_conversion_rate", "visitors",
    "cart_abandonment_rate", "new_customers", "repeat_purchase_rate", "ad_spend", "roas",
)  # fmt: skip

# Breakdown dimensions: the column each family groups by. ``person.X`` joins the person's trait.
DIMENSIONS = {
    "channel": "channel",
    "campaign": "campaign",
    "device": "device_type",
    "device_type": "device_type",
    "country": "country",
    "customer_type": "customer_type",
    "new_vs_returning": "customer_type",
    "first_channel": "first_channel",
    "first_campaign": "first_campaign",
    # A person's characteristics from their traits (masar/engine/characteristics.py), joined as _trait.
    "age_band": "_trait.value",
    "gender": "_trait.value",
    "city": "_trait.value",
}
OTHER = "$other"


@dataclass
class Window:
    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def before(self) -> Window:
        return Window(self.start - timedelta(days=self.days), self.start - timedelta(days=1))

    def to_dict(self) -> dict[str, str]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat()}


@dataclass
class MetricsResult:
    currency: str
    window: Window
    previous: Window | None
    granularity: str | None
    metrics: list[dict[str, Any]]
    series: list[dict[str, Any]]
    breakdown: list[dict[str, Any]]
    breakdown_property: str | None
    churn_days: int
    unconverted: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "range": self.window.to_dict(),
            "previous_range": self.previous.to_dict() if self.previous else None,
            "granularity": self.granularity,
            "churn_days": self.churn_days,
            "metrics": self.metrics,
            "series": self.series,
            "breakdown_property": self.breakdown_property,
            "breakdown": self.breakdown,
            "unconverted": self.unconverted,
        }

    def table(self) -> pa.Table:
        rows = [{"metric": m["name"], "value": _text(m["value"]), "previous": _text(m.get("previous"))}
                for m in self.metrics]  # fmt: skip
        for b in self.breakdown:
            rows += [{"metric": f"{name} [{b['value']}]", "value": _text(v), "previous": None}
                     for name, v in b["values"].items()]  # fmt: skip
        return pa.Table.from_pylist(rows, schema=pa.schema([("metric", pa.string()), ("value", pa.string()),
                                                            ("previous", pa.string())]))  # fmt: skip


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


class MetricsEngine:
    """Computes metrics on a cursor where the facts are registered (DuckDB).

    The SQL lives in the methods below ``components`` (``_family``, ``_churn``, ``unconverted``)
    and in the groupings and look-ups after them; another backend subclasses this and answers the
    same methods in its own dialect (masar/store/clickhouse/sales.py). Formulas, rounding and the
    shape of results (masar/engine/kpis.py) are shared. ``ctx`` (the query context) is needed only
    for breakdowns by a person's trait or characteristic."""

    def __init__(self, con: Any, *, currency: str, tz: str, churn_days: int, ctx: Any = None):
        self.con = con
        self.currency = currency
        self.tz = tz
        self.churn_days = churn_days
        self.places = minor_units(currency)
        self.ctx = ctx

    # -- groupings and look-ups ------------------------------------------------------------------

    def by_period(self, granularity: str) -> Group:
        """Rows keyed by the first day of each period (weeks start on Monday)."""
        return bucket_sql(granularity), []

    def by_dimension(self, prop: str, window: Window) -> Group:
        """Rows keyed by a breakdown dimension; a person's trait or characteristic is looked up
        first (ages on the range's last day)."""
        from masar.engine.characteristics import CHARACTERISTICS, person_characteristic
        from masar.engine.properties import person_values, resolve

        column = dimension_sql(prop)
        ctx = self.ctx
        if prop.startswith("person."):
            persons, values = person_values(ctx.con, ctx.relation, resolve(prop), ctx.overrides)
            self.con.register("_trait", pa.table({"person": persons, "value": values}))
        elif prop in CHARACTERISTICS:
            # One value per person, ages on the range's last day: each person is in one row.
            self.con.register("_trait", person_characteristic(self.con, prop, window.end))
        return column, []

    def by_top(self, group: Group, top: list[Any]) -> Group:
        """``group`` with every value but ``top`` (and NULL) folded into OTHER, keys as text."""
        assert group is not None
        column = group[0]
        marks = ", ".join("?" for _ in top) or "NULL"
        return (
            f"CASE WHEN {column} IS NULL THEN NULL WHEN {column} IN ({marks}) THEN CAST({column} AS VARCHAR) "
            f"ELSE '{OTHER}' END",
            list(top),
        )

    def last_day(self) -> date | None:
        """The data's last day: the last with a visit or an order."""
        return last_day(self.con)

    def first_order_day(self, last: date) -> date | None:
        """The first day with an order (not cancelled) on or before ``last``."""
        return self.con.execute(
            "SELECT min(day) FROM orders WHERE cancelled IS NOT TRUE AND day <= ?", [last]
        ).fetchone()[0]

    def repeat_gaps(self) -> tuple[int, float | None]:
        """Repeat orders (not cancelled) and the 80th percentile of the days since the same
        customer's previous order (default_churn_days)."""
        row = self.con.execute(
            "SELECT count(*), quantile_cont(epoch(ts - previous_ts) / 86400.0, 0.8) FROM orders "
            "WHERE NOT cancelled AND previous_ts IS NOT NULL"
        ).fetchall()
        return row[0]

    # -- components -------------------------------------------------------------------------------

    def components(self, families: set[str], window: Window, group: Group) -> dict[Any, Components]:
        """{group value: components} for the window; group None → one row keyed None."""
        out: dict[Any, Components] = {}
        for name in sorted(families):
            rows = (
                self._churn(window, group) if name == "churn" else self._family(FAMILIES[name], window, group)
            )
            for key, values in rows.items():
                out.setdefault(key, {}).update(values)
        return out

    def _family(self, family: Family, window: Window, group: Group) -> dict[Any, Components]:
        tz = sql_text(self.tz)
        names = list(family.aggregates)
        aggs = ", ".join(f"{family.aggregates[n].format(tz=tz)} AS {n}" for n in names)
        key_sql, key_params = group if group is not None else ("NULL", [])
        source = family.source.format(tz=tz)
        if "_trait." in key_sql:
            source = (
                f"SELECT f.*, _trait.value AS _trait_value FROM ({source}) f LEFT JOIN _trait USING (person)"
            )
            key_sql = key_sql.replace("_trait.value", "_trait_value")
        params: list[Any] = list(key_params)
        if "?" in aggs:
            params.append(window.end)
        sql = f"SELECT {key_sql} AS _key, {aggs} FROM ({source}) f WHERE _day BETWEEN ?::DATE AND ?::DATE GROUP BY ALL"
        params += [window.start, window.end]
        rows = self.con.execute(sql, params).fetchall()
        return {row[0]: dict(zip(names, row[1:], strict=True)) for row in rows}

    def _churn(self, window: Window, group: Group) -> dict[Any, Components]:
        """Customers active at the start (an order in the N days before it) and those of them whose
        last order by the end is N or more days old at the end (docs/metrics.md, churn). A
        customer is grouped by person-level dimensions only (first channel, traits)."""
        key_sql, key_params = group if group is not None else ("NULL", [])
        source = _ORDERS
        if "_trait." in key_sql:
            source = (
                f"SELECT f.*, _trait.value AS _trait_value FROM ({source}) f LEFT JOIN _trait USING (person)"
            )
            key_sql = key_sql.replace("_trait.value", "_trait_value")
        n = self.churn_days
        sql = f"""
            WITH history AS (
                SELECT person, any_value({key_sql}) AS _key,
                       max(day) FILTER (WHERE day < ?::DATE) AS before_start,
                       max(day) FILTER (WHERE day <= ?::DATE) AS by_end
                FROM ({source}) o GROUP BY person
            )
            SELECT _key,
                   count(*) FILTER (WHERE before_start >= ?::DATE - {n}) AS active_at_start,
                   count(*) FILTER (WHERE before_start >= ?::DATE - {n} AND by_end + {n} <= ?::DATE) AS churned
            FROM history GROUP BY ALL
        """
        start, end = window.start, window.end
        rows = self.con.execute(sql, [*key_params, start, end, start, start, end]).fetchall()
        return {row[0]: {"active_at_start": row[1], "churned": row[2]} for row in rows}

    def unconverted(self, window: Window) -> list[dict[str, Any]]:
        """Per currency, the range's amounts that have no rate and are left out of every sum:
        orders (not cancelled) whose value is unknown, refunds (of orders not cancelled), spend
        rows and cart lines."""
        rows = self.con.execute(
            """
            SELECT currency, sum(orders)::BIGINT, sum(refunds)::BIGINT, sum(spend_rows)::BIGINT,
                   sum(cart_lines)::BIGINT
            FROM (
                SELECT currency, count(*) AS orders, 0 AS refunds, 0 AS spend_rows, 0 AS cart_lines FROM orders
                WHERE unconvertible AND NOT cancelled AND day BETWEEN ?::DATE AND ?::DATE GROUP BY currency
                UNION ALL
                SELECT currency, 0, count(*), 0, 0 FROM refunds
                WHERE unconvertible AND NOT cancelled AND day BETWEEN ?::DATE AND ?::DATE GROUP BY currency
                UNION ALL
                SELECT currency, 0, 0, count(*), 0 FROM spend
                WHERE unconvertible AND day BETWEEN ?::DATE AND ?::DATE GROUP BY currency
                UNION ALL
                SELECT cart_unconverted_currency, 0, 0, 0, sum(cart_lines_unconverted) FROM sessions
                WHERE cart_lines_unconverted > 0 AND day BETWEEN ?::DATE AND ?::DATE
                GROUP BY cart_unconverted_currency
            ) GROUP BY currency ORDER BY currency
            """,
            [window.start, window.end] * 4,
        ).fetchall()
        return [
            {"currency": c, "orders": o, "refunds": r, "spend_rows": sp, "cart_lines": cl}
            for c, o, r, sp, cl in rows
        ]

    # -- values -----------------------------------------------------------------------------------

    def shown(self, metric: Metric, value: Any) -> Any:
        """JSON form: money as exact decimal text in the currency's minor units, rates as floats."""
        if value is None:
            return None
        if metric.unit == "money":
            return str(Decimal(value).quantize(Decimal(1).scaleb(-self.places), rounding=ROUND_HALF_UP))
        if metric.unit in ("rate", "ratio"):
            return round(float(value), 6)
        if metric.unit == "days":
            return round(float(value), 3)
        return int(value) if float(value).is_integer() else round(float(value), 4)


def default_churn_days(engine: MetricsEngine) -> int:
    """The store's own purchase cycle: the 80th percentile of days between a customer's
    consecutive orders (4 in 5 repeat orders come sooner), at least 14 days; 90 days until the
    store has 20 repeat orders to measure it by."""
    count, p80 = engine.repeat_gaps()
    if count < 20 or p80 is None:
        return 90
    return max(14, int(-(-p80 // 1)))


def buckets(window: Window, granularity: str) -> list[date]:
    """The first day of every period that touches the window (weeks start on Monday)."""
    first = _bucket_start(window.start, granularity)
    out = []
    day = first
    while day <= window.end:
        out.append(day)
        if granularity == "day":
            day = day + timedelta(days=1)
        elif granularity == "week":
            day = day + timedelta(days=7)
        else:
            day = date(day.year + (day.month == 12), day.month % 12 + 1, 1)
    return out


def _bucket_start(day: date, granularity: str) -> date:
    if granularity == "day":
        return day
    if granularity == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def bucket_sql(granularity: str) -> str:
    if granularity == "day":
        return "_day"
    return f"CAST(date_trunc('{granularity}', _day) AS DATE)"


def dimension_sql(name: str) -> str:
    if name in DIMENSIONS:
        return DIMENSIONS[name]
    if name.startswith("person."):
        return "_trait.value"
    raise InvalidInput(
        f"cannot break sales down by {name!r}: use one of {', '.join(sorted(DIMENSIONS))} or person.TRAIT",
        code="invalid_query",
    )


def last_day(con: Any) -> date | None:
    """The data's last day, on a DuckDB cursor with the facts: the last with a visit or an order."""
    row = con.execute("SELECT greatest((SELECT max(day) FROM orders), (SELECT max(day) FROM sessions))").fetchall()
    return row[0][0] if row else None
