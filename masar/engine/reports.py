"""Sales reports that are tables rather than headline numbers: products and categories, email
campaigns, acquisition by campaign, and social and ad platforms (docs/metrics.md). Pipeline
velocity is a metric of the metrics engine (masar/engine/metrics.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa

from masar.engine.context import QueryContext
from masar.engine.facts import sql_text
from masar.engine.kpis import data_window, sales_facts
from masar.engine.ltv import customer_value_sql
from masar.engine.metrics import MetricsEngine
from masar.enrich.channels import ChannelRules, is_paid_medium
from masar.model.money import minor_units
from masar.model.sales_queries import AcquisitionQuery, EmailQuery, PlatformsQuery, ProductsQuery


@dataclass
class TableResult:
    kind: str
    currency: str
    window: dict[str, str]
    rows: list[dict[str, Any]]
    extra: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "currency": self.currency,
            "range": self.window,
            "rows": self.rows,
            **self.extra,
        }

    def table(self) -> pa.Table:
        return pa.Table.from_pylist(self.rows) if self.rows else pa.table({})


def jsonable(rows: list[tuple], names: list[str], money: set[str], places: int) -> list[dict[str, Any]]:
    quantum = Decimal(1).scaleb(-places)
    out = []
    for row in rows:
        item = {}
        for name, value in zip(names, row, strict=True):
            if name in money and value is not None:
                value = str(Decimal(value).quantize(quantum))
            elif isinstance(value, float):
                value = round(value, 6)
            item[name] = value
        out.append(item)
    return out


def run_products(ctx: QueryContext, query: ProductsQuery) -> TableResult:
    """Revenue by product (or category) from the order lines, with the people who viewed it and
    the share of them who bought it in the range (view → purchase rate)."""
    facts = sales_facts(ctx)
    con = ctx.con
    window = data_window(con, query.date_from, query.date_to)
    key = "product_id" if query.by == "product" else "category"
    places = minor_units(facts.currency)
    sql = f"""
        WITH lines AS (
            SELECT o.order_key, o.person, o.day,
                   json_extract_string(x, '$.{key}') AS item,
                   json_extract_string(x, '$.name') AS name,
                   coalesce(TRY_CAST(json_extract_string(x, '$.quantity') AS BIGINT), 1) AS units,
                   TRY_CAST(json_extract_string(x, '$.price') AS DECIMAL(18,3)) AS price,
                   e.currency
            FROM orders o
            JOIN events e ON e.type = 'track' AND e.event = 'Order Completed'
                          AND coalesce(e.order_id, e.message_id) = o.order_key
            , unnest(CAST(json_extract(e.properties, '$.products') AS JSON[])) AS t(x)
            WHERE NOT o.cancelled AND o.day BETWEEN ?::DATE AND ?::DATE
        ),
        priced AS (
            SELECT l.*, CASE WHEN l.currency = {sql_text(facts.currency)} THEN l.price * l.units
                             ELSE round(l.price * l.units * coalesce(r.rate, f.rate), {places}) END AS line
            FROM lines l
            ASOF LEFT JOIN _rates r ON r.currency = l.currency AND r.day <= l.day
            LEFT JOIN (SELECT currency, arg_min(rate, day) AS rate FROM _rates GROUP BY currency) f
                   ON f.currency = l.currency
        ),
        sold AS (
            SELECT item, any_value(name) AS name, count(DISTINCT order_key) AS orders, sum(units) AS units,
                   CAST(sum(line) AS DECIMAL(18,3)) AS revenue, count(DISTINCT person) AS buyers
            FROM priced WHERE item IS NOT NULL GROUP BY item
        ),
        viewed AS (
            SELECT {key} AS item, count(DISTINCT person) AS viewers, count(*) AS views
            FROM events WHERE type = 'track' AND event = 'Product Viewed' AND {key} IS NOT NULL
                          AND day BETWEEN ?::DATE AND ?::DATE
            GROUP BY ALL
        ),
        bought_after_view AS (
            SELECT v.item, count(DISTINCT v.person) AS converted FROM (
                SELECT DISTINCT {key} AS item, person FROM events
                WHERE type = 'track' AND event = 'Product Viewed' AND {key} IS NOT NULL
                      AND day BETWEEN ?::DATE AND ?::DATE) v
            JOIN (SELECT DISTINCT item, person FROM priced) p USING (item, person)
            GROUP BY v.item
        )
        SELECT coalesce(s.item, v.item) AS {query.by}, {"s.name," if query.by == "product" else ""} coalesce(s.orders, 0) AS orders,
               coalesce(s.units, 0) AS units, coalesce(s.revenue, 0) AS revenue,
               coalesce(v.viewers, 0) AS viewers, coalesce(v.views, 0) AS views,
               coalesce(b.converted, 0) AS viewers_who_bought,
               CASE WHEN v.viewers > 0 THEN coalesce(b.converted, 0) / v.viewers END AS view_to_purchase_rate
        FROM sold s FULL JOIN viewed v ON v.item = s.item LEFT JOIN bought_after_view b ON b.item = coalesce(s.item, v.item)
        ORDER BY revenue DESC, viewers DESC, 1
        LIMIT ?
    """
    params = [window.start, window.end, window.start, window.end, window.start, window.end, query.limit]
    result = con.execute(sql, params)
    names = [d[0] for d in result.description]
    rows = jsonable(result.fetchall(), names, {"revenue"}, places)
    return TableResult("products", facts.currency, window.to_dict(), rows, {"by": query.by})


def run_email(ctx: QueryContext, query: EmailQuery) -> TableResult:
    """Email campaigns: delivery, opens, clicks, unsubscribes and bounces per campaign, time from
    delivery to click, and the orders and revenue of clickers within N days of their click; plus
    the click-through rate by local hour and weekday of delivery."""
    facts = sales_facts(ctx)
    con = ctx.con
    window = data_window(con, query.date_from, query.date_to)
    places = minor_units(facts.currency)
    days = query.attribution_days
    base = f"""
        WITH mail AS (
            SELECT person, ts, day, event,
                   coalesce(json_extract_string(properties, '$.campaign_name'),
                            json_extract_string(properties, '$.campaign_id'), '(no campaign)') AS campaign,
                   coalesce(json_extract_string(properties, '$.email_id'),
                            json_extract_string(properties, '$.campaign_id') || ':' || CAST(person AS VARCHAR)) AS email
            FROM events
            WHERE type = 'track' AND event IN ('Email Delivered', 'Email Opened', 'Email Link Clicked',
                                               'Email Bounced', 'Unsubscribed', 'Email Marked as Spam')
        ),
        sends AS (
            SELECT email, any_value(campaign) AS campaign, any_value(person) AS person,
                   min(ts) FILTER (WHERE event = 'Email Delivered') AS delivered,
                   min(ts) FILTER (WHERE event = 'Email Opened') AS opened,
                   min(ts) FILTER (WHERE event = 'Email Link Clicked') AS clicked,
                   bool_or(event = 'Email Bounced') AS bounced,
                   bool_or(event = 'Unsubscribed') AS unsubscribed,
                   bool_or(event = 'Email Marked as Spam') AS spam,
                   min(day) AS day
            FROM mail GROUP BY email
            HAVING min(day) BETWEEN ?::DATE AND ?::DATE
        ),
        attributed AS (
            SELECT s.email, count(o.order_key) AS orders, sum(o.value) AS revenue
            FROM sends s JOIN orders o ON o.person = s.person AND NOT o.cancelled
                 AND o.ts > s.clicked AND o.ts <= s.clicked + INTERVAL {days} DAY
            GROUP BY s.email
        )
    """
    sql = (
        base
        + """
        SELECT campaign,
               count(*) FILTER (WHERE delivered IS NOT NULL OR bounced) AS sent,
               count(*) FILTER (WHERE delivered IS NOT NULL) AS delivered,
               count(*) FILTER (WHERE opened IS NOT NULL) AS opened,
               count(*) FILTER (WHERE clicked IS NOT NULL) AS clicked,
               count(*) FILTER (WHERE bounced) AS bounced,
               count(*) FILTER (WHERE unsubscribed) AS unsubscribed,
               count(*) FILTER (WHERE spam) AS marked_spam,
               count(*) FILTER (WHERE opened IS NOT NULL) / nullif(count(*) FILTER (WHERE delivered IS NOT NULL), 0) AS open_rate,
               count(*) FILTER (WHERE clicked IS NOT NULL) / nullif(count(*) FILTER (WHERE delivered IS NOT NULL), 0) AS click_rate,
               count(*) FILTER (WHERE clicked IS NOT NULL) / nullif(count(*) FILTER (WHERE opened IS NOT NULL), 0) AS click_to_open_rate,
               count(*) FILTER (WHERE unsubscribed) / nullif(count(*) FILTER (WHERE delivered IS NOT NULL), 0) AS unsubscribe_rate,
               count(*) FILTER (WHERE bounced) / nullif(count(*) FILTER (WHERE delivered IS NOT NULL OR bounced), 0) AS bounce_rate,
               median(epoch(clicked - delivered) / 3600.0) FILTER (WHERE clicked >= delivered) AS median_hours_to_click,
               coalesce(sum(a.orders), 0) AS orders, CAST(coalesce(sum(a.revenue), 0) AS DECIMAL(18,3)) AS revenue
        FROM sends s LEFT JOIN attributed a USING (email)
        GROUP BY campaign ORDER BY sent DESC, campaign
    """
    )
    result = con.execute(sql, [window.start, window.end])
    names = [d[0] for d in result.description]
    rows = jsonable(result.fetchall(), names, {"revenue"}, places)
    timing_sql = (
        base
        + f"""
        SELECT {{part}}(timezone({sql_text(ctx.tz.key)}, delivered)) AS slot,
               count(*) AS delivered, count(*) FILTER (WHERE clicked IS NOT NULL) AS clicked,
               count(*) FILTER (WHERE clicked IS NOT NULL) / count(*) AS click_rate
        FROM sends WHERE delivered IS NOT NULL GROUP BY slot ORDER BY slot
    """
    )
    timing = {}
    for label, part in (("by_hour", "hour"), ("by_weekday", "isodow")):
        res = con.execute(timing_sql.format(part=part), [window.start, window.end])
        cols = [d[0] for d in res.description]
        timing[label] = jsonable(res.fetchall(), cols, set(), places)
    return email_result(facts.currency, window, rows, timing, days)


def email_result(currency: str, window: Any, rows: list[dict[str, Any]], timing: dict[str, list[dict[str, Any]]],
                 days: int) -> TableResult:  # fmt: skip
    best = {label: max(items, key=lambda r: (r["click_rate"] or 0, r["delivered"]))["slot"] if items else None
            for label, items in timing.items()}  # fmt: skip
    return TableResult("email", currency, window.to_dict(), rows,
                       {"attribution_days": days, **timing, "best_hour": best["by_hour"],
                        "best_weekday": best["by_weekday"]})  # fmt: skip


def run_acquisition(ctx: QueryContext, query: AcquisitionQuery) -> TableResult:
    """Per spend channel and campaign: spend, sessions, new customers (by first campaign), leads,
    orders and revenue of the campaign's visits, CAC, cost per lead, ROAS and LTV:CAC.

    The LTV of LTV:CAC is historical lifetime value as docs/ltv.md defines it (``customer_value_sql``,
    the same query as ``historical_ltv``), to the data's last day: what the customers the campaign
    acquired in the range have been worth so far, net of refunds."""
    facts = sales_facts(ctx)
    con = ctx.con
    window = data_window(con, query.date_from, query.date_to)
    places = minor_units(facts.currency)
    sql = f"""
        WITH s AS (
            SELECT channel AS spend_channel, campaign, CAST(sum(spend) AS DECIMAL(18,3)) AS spend
            FROM spend WHERE day BETWEEN $start AND $end GROUP BY ALL
        ),
        visits AS (
            SELECT campaign, count(*) AS sessions, any_value(source) AS source
            FROM sessions WHERE day BETWEEN $start AND $end AND campaign IS NOT NULL GROUP BY campaign
        ),
        bought AS (
            SELECT campaign, count(*) AS orders, CAST(sum(value) AS DECIMAL(18,3)) AS revenue
            FROM orders WHERE NOT cancelled AND day BETWEEN $start AND $end AND campaign IS NOT NULL
            GROUP BY campaign
        ),
        acquired AS (
            SELECT p.first_campaign AS campaign, count(*) AS new_customers,
                   CAST(coalesce(sum(v.net_revenue), 0) AS DECIMAL(18,3)) AS customer_value
            FROM people p LEFT JOIN ({customer_value_sql()}) v USING (person)
            WHERE p.first_order_ts IS NOT NULL AND CAST(timezone($tz, p.first_order_ts) AS DATE) BETWEEN $start AND $end
            GROUP BY p.first_campaign
        ),
        leads AS (
            SELECT first_campaign AS campaign, count(*) AS leads FROM people
            WHERE signup_ts IS NOT NULL AND CAST(timezone($tz, signup_ts) AS DATE) BETWEEN $start AND $end
            GROUP BY first_campaign
        )
        SELECT s.spend_channel AS channel, coalesce(s.campaign, v.campaign) AS campaign,
               coalesce(s.spend, 0) AS spend, coalesce(v.sessions, 0) AS sessions,
               coalesce(b.orders, 0) AS orders, coalesce(b.revenue, 0) AS revenue,
               coalesce(a.new_customers, 0) AS new_customers, coalesce(l.leads, 0) AS leads,
               s.spend / nullif(a.new_customers, 0) AS cac,
               s.spend / nullif(l.leads, 0) AS cost_per_lead,
               CAST(b.revenue AS DOUBLE) / nullif(CAST(s.spend AS DOUBLE), 0) AS roas,
               CAST(a.customer_value / nullif(a.new_customers, 0) AS DOUBLE)
                   / nullif(CAST(s.spend / nullif(a.new_customers, 0) AS DOUBLE), 0) AS ltv_to_cac
        FROM s FULL JOIN visits v ON v.campaign = s.campaign
        LEFT JOIN bought b ON b.campaign = coalesce(s.campaign, v.campaign)
        LEFT JOIN acquired a ON a.campaign = coalesce(s.campaign, v.campaign)
        LEFT JOIN leads l ON l.campaign = coalesce(s.campaign, v.campaign)
        ORDER BY spend DESC, revenue DESC, campaign
    """
    params = {"start": window.start, "end": window.end, "tz": ctx.tz.key,
              "as_of": data_window(con, None, None).end}  # fmt: skip
    result = con.execute(sql, params)
    names = [d[0] for d in result.description]
    rows = jsonable(result.fetchall(), names, {"spend", "revenue", "cac", "cost_per_lead"}, places)
    return TableResult("acquisition", facts.currency, window.to_dict(), rows, {})


# What ad platforms' own exports append to their name ("Google Ads", "TikTok Ads Manager"): a
# spend row's channel names its platform once these are dropped.
_AD_WORDS = re.compile(r"(\s+(ads?|advertising|ads manager|marketing))+$")


def run_platforms(ctx: QueryContext, query: PlatformsQuery) -> TableResult:
    """Per platform a visit came from (instagram, google, snapchat, ...; docs/metrics.md,
    platforms), paid and organic apart: sessions, visitors, sessions with an order, conversion
    rate, orders and revenue of the orders placed in those sessions, ad spend and ROAS. Rows
    without a platform hold the rest (direct, email, plain referrals, spend matched to no
    platform), so every additive column adds up to the store's total."""
    facts = sales_facts(ctx)
    con = ctx.con
    window = data_window(con, query.date_from, query.date_to)
    places = minor_units(facts.currency)
    rules = ChannelRules.from_overrides(ctx.source.channel_rules)
    _register_session_platforms(con, rules)
    names = [r[0] for r in con.execute("SELECT DISTINCT channel FROM spend").fetchall()]
    con.register("_spend_names", spend_platforms(names, rules))
    sql = """
        WITH spent AS (
            SELECT row_number() OVER (ORDER BY s.day, s.channel, s.campaign) AS row_id, s.channel, s.campaign,
                   s.spend, n.platform AS named, n.category AS named_category
            FROM spend s LEFT JOIN _spend_names n USING (channel)
            WHERE s.day BETWEEN ?::DATE AND ?::DATE
        ),
        -- The platforms of the visits that carry each campaign, over all of the store's visits.
        carried AS (
            SELECT v.campaign, v.channel, p.platform, p.category, p.paid, count(*) AS visits
            FROM sessions v JOIN _session_platforms p USING (session_id)
            WHERE v.campaign IS NOT NULL AND p.platform IS NOT NULL
            GROUP BY ALL
        ),
        -- A spend row's platform: among the visits carrying its campaign, the platform its channel
        -- names, then the platform of visits of its channel, then of paid visits, then the most
        -- visits; with no such visit, the platform its channel names, else none.
        ranked AS (
            SELECT r.row_id, c.platform, c.category,
                   row_number() OVER (PARTITION BY r.row_id
                                      ORDER BY coalesce(c.platform = r.named, false) DESC,
                                               coalesce(c.channel = r.channel, false) DESC,
                                               c.paid DESC, c.visits DESC, c.platform) AS rank
            FROM spent r JOIN carried c ON c.campaign = r.campaign
        ),
        parts AS (
            SELECT 'visit' AS part, p.platform, p.category, coalesce(p.paid, false) AS paid, v.person,
                   v.orders > 0 AS converted, CAST(NULL AS DECIMAL(18,3)) AS amount
            FROM sessions v LEFT JOIN _session_platforms p USING (session_id)
            WHERE v.day BETWEEN ?::DATE AND ?::DATE
            UNION ALL
            SELECT 'order', p.platform, p.category, coalesce(p.paid, false), NULL, NULL, o.value
            FROM orders o LEFT JOIN _session_platforms p USING (session_id)
            WHERE NOT o.cancelled AND o.day BETWEEN ?::DATE AND ?::DATE
            UNION ALL
            SELECT 'spend', coalesce(k.platform, r.named), coalesce(k.category, r.named_category), true,
                   NULL, NULL, r.spend
            FROM spent r LEFT JOIN ranked k ON k.row_id = r.row_id AND k.rank = 1
        ),
        totals AS (
            SELECT platform, category, paid,
                   count(*) FILTER (WHERE part = 'visit') AS sessions,
                   count(DISTINCT person) AS visitors,
                   count(*) FILTER (WHERE part = 'visit' AND converted) AS converted_sessions,
                   count(*) FILTER (WHERE part = 'order') AS orders,
                   CAST(coalesce(sum(amount) FILTER (WHERE part = 'order'), 0) AS DECIMAL(18,3)) AS revenue,
                   CAST(coalesce(sum(amount) FILTER (WHERE part = 'spend'), 0) AS DECIMAL(18,3)) AS ad_spend
            FROM parts GROUP BY ALL
        )
        SELECT platform, category, CASE WHEN paid THEN 'paid' ELSE 'organic' END AS traffic,
               sessions, visitors, converted_sessions,
               converted_sessions / nullif(sessions, 0) AS conversion_rate,
               orders, revenue, ad_spend,
               CAST(revenue AS DOUBLE) / nullif(CAST(ad_spend AS DOUBLE), 0) AS roas
        FROM totals
        ORDER BY platform IS NULL, revenue DESC, sessions DESC, platform, paid DESC
    """
    w = [window.start, window.end]
    result = con.execute(sql, [*w, *w, *w])
    columns = [d[0] for d in result.description]
    rows = jsonable(result.fetchall(), columns, {"revenue", "ad_spend"}, places)
    # The metrics query's report of amounts without a rate, for the same range (churn plays no part).
    unconverted = MetricsEngine(con, currency=facts.currency, tz=ctx.tz.key, churn_days=1).unconverted(window)
    return TableResult("platforms", facts.currency, window.to_dict(), rows, {"unconverted": unconverted})


def spend_platforms(names: list[str], rules: ChannelRules) -> pa.Table:
    """The platform (and its site list) each spend channel names, if any: ``Google Ads`` → google."""
    named = [rules.site(_AD_WORDS.sub("", n.strip().lower())) for n in names]
    return pa.table(
        {
            "channel": pa.array(names, pa.string()),
            "platform": pa.array([n[0] if n else None for n in named], pa.string()),
            "category": pa.array([n[1] if n else None for n in named], pa.string()),
        }
    )


def touch_platforms(distinct: list[tuple], rules: ChannelRules) -> pa.Table:
    """Each distinct first touch (source, medium, click id, referrer) with its platform, site list
    and whether it was paid."""
    found = [rules.platform(source, click_id, referrer) for source, _medium, click_id, referrer in distinct]
    return pa.table(
        {
            "source": pa.array([d[0] for d in distinct], pa.string()),
            "medium": pa.array([d[1] for d in distinct], pa.string()),
            "click_id": pa.array([d[2] for d in distinct], pa.string()),
            "referrer": pa.array([d[3] for d in distinct], pa.string()),
            "platform": pa.array([f[0] if f else None for f in found], pa.string()),
            "category": pa.array([f[1] if f else None for f in found], pa.string()),
            "paid": pa.array([is_paid_medium(d[1]) for d in distinct], pa.bool_()),
        }
    )


def _register_session_platforms(con: duckdb.DuckDBPyConnection, rules: ChannelRules) -> None:
    """``_session_platforms``: every session's platform, its site list and whether it was paid,
    from the session's first event: its source, else its click id or referrer (ChannelRules.platform);
    paid when its medium is a paid medium (docs/channels.md)."""
    touches = con.sql(
        """
        SELECT session_id,
               first(session_source ORDER BY ts) AS source, first(session_medium ORDER BY ts) AS medium,
               first(click_id ORDER BY ts) AS click_id, first(referrer_domain ORDER BY ts) AS referrer
        FROM events WHERE session_id IS NOT NULL GROUP BY session_id
        """
    ).to_arrow_table()
    con.register("_touches", touches)
    # The rules run once per distinct touch: a store has few.
    distinct = con.execute("SELECT DISTINCT source, medium, click_id, referrer FROM _touches").fetchall()
    con.register("_touch_platforms", touch_platforms(distinct, rules))
    con.register(
        "_session_platforms",
        con.sql(
            """
            SELECT t.session_id, p.platform, p.category, p.paid
            FROM _touches t JOIN _touch_platforms p
              ON t.source IS NOT DISTINCT FROM p.source AND t.medium IS NOT DISTINCT FROM p.medium
             AND t.click_id IS NOT DISTINCT FROM p.click_id AND t.referrer IS NOT DISTINCT FROM p.referrer
            """
        ).to_arrow_table(),
    )
