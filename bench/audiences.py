"""Audience speed: the issue's five example audiences over a synthetic store.

Generates, inside DuckDB (hash-based pseudo-random columns, no Python loops), ``--events`` events
(10 million by default) for ``--people`` people (1 million) over 90 days with the sales facts'
columns (docs/audiences.md): 4% Order Completed events become the orders (3% cancelled, 10% partly
refunded), 2% are identify calls with traits, product events carry a product and a category and
Order Completed events a ``products`` list. Then, warm (best of ``--repeat`` after one untimed
run), it times for each audience the count, the first page of 100 members with their orders and
last event, and the export of every member; and a customer profile with five saved audiences.

    .venv/bin/python bench/audiences.py
    .venv/bin/python bench/audiences.py --events 1000000 --people 100000
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from masar.engine.audiences import audience_count, audience_members  # noqa: E402
from masar.engine.customers import customer_profile  # noqa: E402

AS_OF = date(2026, 3, 31)
AUDIENCES = {
    "abandoned cart (added in 7 days, no order since)": {"all": [
        {"type": "did", "event": "Product Added", "within_days": 7},
        {"type": "did_not_since", "event": "Order Completed", "since": {"event": "Product Added"}},
    ]},
    "viewed a product 3+ times, never added it": {"all": [
        {"type": "did", "event": "Product Viewed", "at_least": 3, "per_property": "product_id",
         "same_value": [{"type": "did_not", "event": "Product Added"}]},
    ]},
    "bought c1, never c2": {"all": [
        {"type": "bought_category", "categories": ["c1"]},
        {"type": "never_bought_category", "categories": ["c2"]},
    ]},
    "top 10% by revenue": {"all": [{"type": "top_percent", "percent": 10}]},
    "lapsed (no order in 2x the usual gap)": {"all": [{"type": "lapsed", "factor": 2}]},
    "viewed red products 2+ times, gender f": {"all": [
        {"type": "did", "event": "Product Viewed", "at_least": 2,
         "filters": [{"property": "color", "op": "equals", "value": "red"}]},
        {"type": "trait", "trait": "gender", "value": "f"},
    ]},
    "everyone seen (the largest export)": {"all": [{"type": "did", "event": "*"}]},
}  # fmt: skip


def build(con: duckdb.DuckDBPyConnection, events: int, people: int) -> None:
    con.execute(
        f"""
        CREATE TABLE events AS
        WITH r AS (
            SELECT i, CAST(1 + hash(i) % {people} AS BIGINT) AS person,
                   TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(CAST(hash(i + 1) % (90 * 86400) AS BIGINT)) AS ts,
                   CAST(hash(i + 2) % 100 AS INTEGER) AS k, -- each person looks at a handful of the 1,000 products
                   CAST((person * 37 + hash(i + 3) % 6) % 1000 AS INTEGER) AS product,
                   product % 20 AS category
            FROM range({events}) t(i)
        )
        SELECT person, ts, CAST(ts AS DATE) AS day,
               CASE WHEN k < 2 THEN 'identify' ELSE 'track' END AS type,
               CASE WHEN k < 2 THEN NULL WHEN k < 30 THEN 'Page Viewed' WHEN k < 58 THEN 'Product Viewed'
                    WHEN k < 70 THEN 'Product Added' WHEN k < 78 THEN 'Cart Viewed'
                    WHEN k < 86 THEN 'Checkout Started' WHEN k < 91 THEN 'Payment Info Entered'
                    WHEN k < 95 THEN 'Order Completed' ELSE 'Products Searched' END AS event,
               person * 100 + CAST(hash(i + 5) % 5 AS BIGINT) AS session_id,
               CASE WHEN k BETWEEN 30 AND 69 THEN 'p' || product END AS product_id,
               CASE WHEN k BETWEEN 30 AND 69 THEN 'c' || category END AS category,
               CASE WHEN k BETWEEN 91 AND 94 THEN 'o' || i END AS order_id,
               'SAR' AS currency,
               CASE WHEN k BETWEEN 30 AND 69 THEN CAST(10 + product / 10 AS DECIMAL(18,3)) END AS price,
               CAST(NULL AS DECIMAL(18,3)) AS total, CAST(NULL AS BIGINT) AS quantity,
               'Direct' AS channel, 'desktop' AS device_type, 'SA' AS country,
               CASE WHEN k BETWEEN 30 AND 69 THEN '{{"color": "' || ['red', 'blue', 'green'][1 + product % 3] || '"}}'
                    WHEN k BETWEEN 91 AND 94 THEN '{{"products": [{{"category": "c' || category
                         || '"}}, {{"category": "c' || (category + 1) % 20 || '"}}]}}' END AS properties,
               CASE WHEN k < 2 THEN '{{"gender": "' || ['f', 'm'][1 + product % 2] || '", "plan": "p'
                    || product % 3 || '"}}' END AS traits
        FROM r
        """
    )
    con.execute(
        """
        CREATE TABLE orders AS
        SELECT order_id AS order_key, person, ts, day,
               CAST((hash(order_id) % 50000) / 100 AS DECIMAL(18,3)) AS value, CAST(0 AS DECIMAL(18,3)) AS discount,
               1 AS items,
               CAST(CASE WHEN hash(order_id || 'r') % 10 = 0 THEN (hash(order_id) % 50000) / 300 ELSE 0 END
                    AS DECIMAL(18,3)) AS refunded,
               hash(order_id || 'c') % 100 < 3 AS cancelled, CAST(NULL AS INTEGER) AS order_number,
               channel, CAST(NULL AS VARCHAR) AS campaign, device_type, country, session_id
        FROM events WHERE event = 'Order Completed'
        """
    )
    con.execute(
        """
        CREATE TABLE people AS
        SELECT person, 'u' || person AS user_id, 'p' || person || '@example.com' AS email,
               min(ts) AS first_seen, CAST(min(ts) AS DATE) AS first_day, 'Direct' AS first_channel,
               CAST(NULL AS VARCHAR) AS first_campaign, CAST(NULL AS TIMESTAMPTZ) AS signup_ts,
               CAST(NULL AS TIMESTAMPTZ) AS first_order_ts, CAST(NULL AS TIMESTAMPTZ) AS last_order_ts,
               0 AS orders, CAST(0 AS DECIMAL(18,3)) AS revenue
        FROM events GROUP BY person
        """
    )


def best(fn, repeat: int) -> tuple[float, object]:
    result = fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    con = duckdb.connect()
    start = time.perf_counter()
    build(con, args.events, args.people)
    counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("events", "orders", "people")}
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    print(f"built in {time.perf_counter() - start:.1f} s: {counts}; DuckDB {duckdb.__version__}, {threads} threads")
    print(f"{'audience':<52} {'members':>9} {'count':>8} {'page 100':>9} {'export':>8}")
    for name, definition in AUDIENCES.items():
        t_count, count = best(lambda d=definition: audience_count(con, d, AS_OF), args.repeat)
        t_page, _ = best(lambda d=definition: audience_members(con, d, AS_OF, limit=100), args.repeat)
        t_all, result = best(lambda d=definition: audience_members(con, d, AS_OF).table(), 1)
        assert result.num_rows == count
        print(f"{name:<52} {count:>9} {t_count:>7.2f}s {t_page:>8.2f}s {t_all:>7.2f}s")
    person = con.execute("SELECT person FROM orders ORDER BY person LIMIT 1").fetchone()[0]
    saved = {name: d for name, d in AUDIENCES.items() if not name.startswith("everyone")}
    t_profile, profile = best(lambda: customer_profile(con, person, AS_OF, audiences=saved), args.repeat)
    print(f"customer profile with {len(saved)} saved audiences: {t_profile:.2f}s "
          f"({profile.events} events, {len(profile.orders)} orders, in {profile.audiences})")


if __name__ == "__main__":
    main()
