"""RFM and cohort speed on synthetic tables (the issue's bars: RFM for 1M customers ≤ 2 s, a
12×12 cohort table ≤ 2 s).

Builds, in an in-memory DuckDB, the ``orders``, ``sessions`` and ``people`` tables the engine
reads (docs/segments.md, docs/cohorts.md): ``--people`` people (1M by default), each a customer
with 1 + Poisson(2) orders (about 3M orders) over 400 days, and 1 + Poisson(2) sessions (about
3M), 8 first channels. Then times, warm, best of ``--repeat``:

- ``rfm_segments`` (sizes, revenue, scores) and ``rfm_customers`` (first page of a segment, and
  the whole export with ``limit=None``);
- ``cohort_table`` monthly, 12 cohorts × 12 periods: active (sessions), purchasing, revenue,
  recurring, and grouped by channel.

    .venv/bin/python bench/segments.py
    .venv/bin/python bench/segments.py --people 200000 --threads 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from masar.engine.cohorts import cohort_table  # noqa: E402
from masar.engine.rfm import rfm_customers, rfm_segments  # noqa: E402

DAY0 = date(2025, 1, 1)
DAYS = 400
AS_OF = DAY0 + timedelta(days=DAYS - 1)
CHANNELS = ["direct", "organic", "paid_search", "paid_social", "email", "referral", "affiliate", "display"]


def build(con: duckdb.DuckDBPyConnection, people: int, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    first = rng.integers(0, DAYS, people)
    # Orders: each person is a customer; later orders spread after the first, some lapsing.
    n_orders = 1 + rng.poisson(2.0, people)
    who = np.repeat(np.arange(people), n_orders)
    later = np.minimum(first[who] + (rng.exponential(60.0, len(who)) * (np.arange(len(who)) - np.repeat(
        np.cumsum(n_orders) - n_orders, n_orders) > 0)).astype(np.int64), DAYS - 1)  # fmt: skip
    cents = rng.lognormal(8.0, 1.0, len(who)).astype(np.int64)
    orders = pa.table({
        "person": who, "d": later, "cents": cents,
        "refund_cents": np.where(rng.random(len(who)) < 0.05, cents // 2, 0),
        "cancelled": rng.random(len(who)) < 0.03,
        "null_value": rng.random(len(who)) < 0.01,
    })  # fmt: skip
    n_sessions = 1 + rng.poisson(2.0, people)
    visitor = np.repeat(np.arange(people), n_sessions)
    is_first = np.arange(len(visitor)) == np.repeat(np.cumsum(n_sessions) - n_sessions, n_sessions)
    sdays = np.where(
        is_first,
        first[visitor],
        np.minimum(first[visitor] + rng.exponential(45.0, len(visitor)).astype(np.int64), DAYS - 1),
    )
    sessions = pa.table({"person": visitor, "d": sdays})
    channel = pa.array(np.array(CHANNELS)[rng.integers(0, len(CHANNELS), people)])
    signup = np.where(rng.random(people) < 0.6, first * 86_400 + rng.integers(0, 86_400 * 30, people), -1)
    ppl = pa.table({"person": np.arange(people), "d": first, "channel": channel, "signup_s": signup})
    con.register("o_src", orders)
    con.register("s_src", sessions)
    con.register("p_src", ppl)
    con.execute("""
        CREATE TABLE orders AS
        SELECT 'o' || row_number() OVER () AS order_key, person, (DATE '2025-01-01' + d::INTEGER)::TIMESTAMPTZ AS ts,
               DATE '2025-01-01' + d::INTEGER AS day,
               CASE WHEN null_value THEN NULL ELSE cents::DECIMAL(18, 3) / 100 END::DECIMAL(18, 3) AS value,
               0::DECIMAL(18, 3) AS discount, 1::BIGINT AS items, (refund_cents::DECIMAL(18, 3) / 100)::DECIMAL(18, 3) AS refunded,
               cancelled, NULL::INTEGER AS order_number, 'direct' AS channel, NULL AS campaign, 'desktop' AS device_type,
               'SA' AS country, NULL::BIGINT AS session_id
        FROM o_src
    """)  # fmt: skip
    con.execute("""
        CREATE TABLE sessions AS
        SELECT row_number() OVER () AS session_id, person, (DATE '2025-01-01' + d::INTEGER)::TIMESTAMPTZ AS ts,
               DATE '2025-01-01' + d::INTEGER AS day, 'direct' AS channel, NULL AS source, NULL AS medium,
               NULL AS campaign, 'desktop' AS device_type, 'SA' AS country, 5::BIGINT AS events, 0::BIGINT AS orders
        FROM s_src
    """)  # fmt: skip
    con.execute("""
        CREATE TABLE people AS
        SELECT person, 'u' || person AS user_id, 'p' || person || '@example.com' AS email,
               (DATE '2025-01-01' + d::INTEGER)::TIMESTAMPTZ AS first_seen, DATE '2025-01-01' + d::INTEGER AS first_day,
               channel AS first_channel, NULL AS first_campaign,
               CASE WHEN signup_s >= 0 THEN to_timestamp(1735689600 + signup_s) END AS signup_ts,
               NULL::TIMESTAMPTZ AS first_order_ts, NULL::TIMESTAMPTZ AS last_order_ts, 0::BIGINT AS orders,
               0::DECIMAL(18, 3) AS revenue
        FROM p_src
    """)  # fmt: skip
    for name in ("o_src", "s_src", "p_src"):
        con.unregister(name)


def best(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: all cores)")
    args = parser.parse_args()
    con = duckdb.connect()
    if args.threads:
        con.execute(f"SET threads = {int(args.threads)}")
    t0 = time.perf_counter()
    build(con, args.people)
    counts = {
        t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in ("people", "orders", "sessions")
    }
    print(f"segments benchmark: {counts['people']:,} people, {counts['orders']:,} orders, "
          f"{counts['sessions']:,} sessions, {os.cpu_count()} cores; built in {time.perf_counter() - t0:.1f} s; "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip

    seconds, result = best(lambda: rfm_segments(con, AS_OF), args.repeat)
    print(f"  rfm_segments: {seconds:.2f} s ({result.customers:,} customers)")
    seconds, _ = best(lambda: rfm_customers(con, AS_OF, "At Risk", limit=100), args.repeat)
    print(f"  rfm_customers, a page of 100: {seconds:.2f} s")
    seconds, result = best(lambda: rfm_customers(con, AS_OF, limit=None).table(), args.repeat)
    print(f"  rfm_customers, all rows as a table: {seconds:.2f} s ({result.num_rows:,} rows)")
    for label, kw in (
        ("active, by first visit", {"by": "first_visit", "measure": "active"}),
        ("purchasing, by first order", {"by": "first_order", "measure": "purchasing"}),
        ("revenue, by first order", {"by": "first_order", "measure": "revenue"}),
        ("active, by signup", {"by": "signup", "measure": "active"}),
        ("active, recurring by visits", {"by": "first_visit", "measure": "active", "mode": "recurring"}),
        (
            "active, by first visit, grouped by channel",
            {"by": "first_visit", "measure": "active", "group": "channel"},
        ),
    ):
        seconds, result = best(
            lambda kw=kw: cohort_table(con, period="month", periods=12, as_of=AS_OF, **kw), args.repeat
        )
        members = sum(row.size for row in result.rows)
        print(f"  cohort_table monthly 12×12, {label}: {seconds:.2f} s ({members:,} memberships)")
    print(f"  load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
