"""Sales KPI speed: the overview, a 12×12 cohort table and RFM, each beside the same result
computed the way an analyst would in pandas, on the same data in the same run.

Generates ``--events`` events (10 million by default) of a store over 365 days: visitors with
sessions (page views, product views, carts, checkouts), orders in SAR and AED with products,
refunds and cancellations, stored as a real embedded store's segments. Times:

* overview: ``{"kind": "metrics"}`` with the headline metrics for the last 30 days, daily series
  and the previous period — cold (builds the sales facts) and warm (best of ``--repeat``);
  pandas: the same numbers from a DataFrame of the events already in memory;
* cohorts: a 12×12 monthly first-order cohort table of purchasing retention;
* RFM: scores and segments for ``--customers`` customers (1 million by default) from an orders
  table of ~3 per customer.

    .venv/bin/python bench/kpis.py
    .venv/bin/python bench/kpis.py --events 2000000 --customers 200000
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))

import masar  # noqa: E402
from masar.engine.facts import Rate  # noqa: E402
from masar.store.embedded.segments import level_for_rows  # noqa: E402
from masar.store.schema import EVENTS  # noqa: E402

START = datetime(2025, 11, 1, tzinfo=UTC)
DAYS = 365
SEGMENT_ROWS = 2_000_000
CHANNELS = np.array(
    ["Direct", "Organic Search", "Paid Search", "Paid Social", "Email", "Referral", "Organic Social"]
)
DEVICES = np.array(["mobile", "desktop", "tablet"])
COUNTRIES = np.array(["SA", "AE", "EG", "KW", "JO"])


def generate(events: int, seed: int = 1) -> pa.Table:
    """Events sorted by (person, time): sessions of page views and product views; some add to
    cart, some of those check out, some of those order (5% of sessions)."""
    rng = np.random.default_rng(seed)
    n_sessions = events * 100 // 485  # 4.85 events a session on average
    people = max(1, n_sessions // 2)
    s_person = np.sort(rng.integers(0, people, n_sessions))
    s_start = rng.integers(0, DAYS * 86_400, n_sessions) * 1_000_000 + int(START.timestamp() * 1e6)
    order = np.lexsort((s_start, s_person))
    s_person, s_start = s_person[order], s_start[order]
    s_channel = rng.integers(0, len(CHANNELS), n_sessions)
    s_device = rng.integers(0, len(DEVICES), n_sessions)
    s_country = rng.integers(0, len(COUNTRIES), n_sessions)
    pages = rng.poisson(2.0, n_sessions) + 1
    views = rng.poisson(1.5, n_sessions)
    cart = rng.random(n_sessions) < 0.2
    checkout = cart & (rng.random(n_sessions) < 0.5)
    ordered = checkout & (rng.random(n_sessions) < 0.5)
    per = pages + views + cart + checkout + ordered
    total = int(per.sum())
    sess = np.repeat(np.arange(n_sessions), per)
    offset = np.arange(total) - np.repeat(np.cumsum(per) - per, per)
    # Event kinds in session order: pages, product views, cart, checkout, order.
    kind = np.zeros(total, dtype=np.int8)
    kind[offset >= np.repeat(pages, per)] = 1
    kind[offset >= np.repeat(pages + views, per)] = 2
    kind[offset >= np.repeat(pages + views + cart, per)] = 3
    kind[offset >= np.repeat(pages + views + cart + checkout, per)] = 4
    ts = s_start[sess] + offset * 40_000_000
    names = np.array(
        ["", "Product Viewed", "Product Added", "Checkout Started", "Order Completed"], dtype=object
    )
    types = np.where(kind == 0, "page", "track").astype(object)
    event = names[kind]
    event[kind == 0] = "Page Viewed"  # as capture names a page call
    is_order = kind == 4
    n_orders = int(is_order.sum())
    order_ids = np.full(total, None, dtype=object)
    order_ids[is_order] = np.char.add("O", np.arange(n_orders).astype(str)).astype(object)
    amounts = np.round(rng.lognormal(5.0, 0.6, n_orders), 2)
    aed = rng.random(n_orders) < 0.2
    currency = np.full(total, None, dtype=object)
    currency[is_order] = np.where(aed, "AED", "SAR")
    totals = np.full(total, None, dtype=object)
    totals[is_order] = [str(a) for a in amounts]
    products = np.full(total, None, dtype=object)
    pid = rng.integers(0, 500, n_orders)
    products[is_order] = [
        f'{{"products": [{{"product_id": "{p}", "category": "c{p % 20}", "price": {a}, "quantity": 1}}]}}'
        for p, a in zip(pid, amounts, strict=True)
    ]
    product_id = np.full(total, None, dtype=object)
    viewed = kind == 1
    product_id[viewed] = rng.integers(0, 500, int(viewed.sum())).astype(str)
    data = pa.table(
        {
            "type": pa.array(types, pa.string()),
            "event": pa.array(event, pa.string()),
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "person_id": pa.array(s_person[sess]),
            "session_id": pa.array(sess.astype(np.int64)),
            "session_start": pa.array(s_start[sess], pa.timestamp("us", tz="UTC")),
            "channel": pa.array(CHANNELS[s_channel[sess]]),
            "device_type": pa.array(DEVICES[s_device[sess]]),
            "country": pa.array(COUNTRIES[s_country[sess]]),
            "order_id": pa.array(order_ids, pa.string()),
            "product_id": pa.array(product_id, pa.string()),
            "currency": pa.array(currency, pa.string()),
            "total": pa.array(totals, pa.string()).cast(pa.decimal128(18, 3)),
            "properties": pa.array(products, pa.string()),
        }
    )
    # Refunds (4%) and cancellations (3%) of orders, a few days later.
    picks = np.flatnonzero(is_order)
    extra = []
    for name, share, delay in (("Order Refunded", 0.04, 5), ("Order Cancelled", 0.03, 1)):
        chosen = picks[rng.random(len(picks)) < share]
        extra.append(
            pa.table(
                {
                    "type": pa.array(np.full(len(chosen), "track", dtype=object), pa.string()),
                    "event": pa.array(np.full(len(chosen), name, dtype=object), pa.string()),
                    "ts": pa.array(ts[chosen] + delay * 86_400_000_000, pa.timestamp("us", tz="UTC")),
                    "person_id": pa.array(s_person[sess[chosen]]),
                    "order_id": pa.array(order_ids[chosen], pa.string()),
                    "currency": pa.array(currency[chosen], pa.string()),
                    "total": pa.array(totals[chosen], pa.string()).cast(pa.decimal128(18, 3)),
                }
            )
        )
    data = pa.concat_tables([data, *extra], promote_options="default")
    sort = np.lexsort((data.column("ts").to_numpy().astype(np.int64), data.column("person_id").to_numpy()))
    return data.take(pa.array(sort))


def store_of(data: pa.Table, directory: Path):
    store = masar.open(directory)
    source = store.create_source("Bench", currency="SAR", timezone="Asia/Riyadh")
    store.set_exchange_rates([Rate(START.date(), "AED", "SAR", __import__("decimal").Decimal("1.021103"))])
    write_segments(store, source, data)
    return store, source


def write_segments(store, source, data: pa.Table, first_message: int = 0) -> int:
    """Events written straight into the store's segments (the layout compaction produces), with
    message ids numbered from ``first_message``; returns the rows written."""
    n = data.num_rows
    with store.engine.begin() as conn:
        for lo in range(0, n, SEGMENT_ROWS):
            part = data.slice(lo, SEGMENT_ROWS)
            rows = part.num_rows
            columns = []
            for field in EVENTS:
                if field.name in part.column_names:
                    columns.append(part.column(field.name).cast(field.type))
                elif field.name == "message_id":
                    start = first_message + lo
                    columns.append(pa.array(np.arange(start, start + rows).astype(str), pa.string()))
                else:
                    columns.append(pa.nulls(rows, field.type))
            table = pa.Table.from_arrays(columns, schema=EVENTS)
            segment_id, path = store.segments.write_file(source.id, table, level=level_for_rows(rows, 8))
            store.segments.register(conn, source.id, segment_id, path, table, level=level_for_rows(rows, 8),
                                    origin="bench")  # fmt: skip
    return n


def best(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def pandas_overview(df: pd.DataFrame, end: date) -> dict[str, float]:
    """What an analyst would write: the headline numbers for 30 days and the 30 before."""
    tz = "Asia/Riyadh"
    out = {}
    local_day = df["ts"].dt.tz_convert(tz).dt.date
    aed = df["currency"] == "AED"
    value = df["total"].astype(float).where(~aed, df["total"].astype(float) * 1.021103).round(2)
    orders_all = df[df["event"] == "Order Completed"].assign(day=local_day, value=value)
    cancelled = set(df.loc[df["event"] == "Order Cancelled", "order_id"])
    orders_all = orders_all[~orders_all["order_id"].isin(cancelled)]
    orders_all = orders_all.sort_values(["person_id", "ts"])
    orders_all["n"] = orders_all.groupby("person_id").cumcount() + 1
    refunds_all = df[df["event"] == "Order Refunded"].assign(day=local_day, value=value)
    refunds_all = refunds_all[~refunds_all["order_id"].isin(cancelled)]  # a cancelled order's refund is out
    visits = df[df["session_id"].notna()].assign(day=local_day)
    sessions_all = visits.groupby("session_id").agg(person=("person_id", "first"), day=("day", "min"))
    sessions_all["orders"] = sessions_all.index.isin(orders_all["session_id"])
    for label, first, last in (
        ("current", end - timedelta(days=29), end),
        ("previous", end - timedelta(days=59), end - timedelta(days=30)),
    ):
        o = orders_all[(orders_all["day"] >= first) & (orders_all["day"] <= last)]
        r = refunds_all[(refunds_all["day"] >= first) & (refunds_all["day"] <= last)]
        s = sessions_all[(sessions_all["day"] >= first) & (sessions_all["day"] <= last)]
        out[label] = {
            "net_revenue": round(o["value"].sum() - r["value"].sum(), 2),
            "orders": len(o),
            "visitors": s["person"].nunique(),
            "session_conversion_rate": s["orders"].mean(),
            "new_customers": int((o["n"] == 1).sum()),
        }
        out[label + "_daily"] = o.groupby("day")["value"].sum()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="masar-kpis-"))
    try:
        started = time.perf_counter()
        data = generate(args.events)
        store, source = store_of(data, work / "store")
        print(
            f"data: {data.num_rows:,} events, generated and stored in {time.perf_counter() - started:.1f} s"
        )
        query = {"kind": "metrics", "source": "Bench", "granularity": "day", "compare": True}
        started = time.perf_counter()
        result = store.run(query).to_dict()
        cold = time.perf_counter() - started
        warm, result = best(lambda: store.run(query, reuse=False).to_dict(), args.repeat)
        remembered, _ = best(lambda: store.run(query).to_dict(), args.repeat)
        end = date.fromisoformat(result["range"]["to"])
        df = data.select(
            ["type", "event", "ts", "person_id", "session_id", "order_id", "currency", "total"]
        ).to_pandas()
        pd_time, pd_result = best(lambda: pandas_overview(df, end), 1)
        values = {m["name"]: m["value"] for m in result["metrics"]}
        print(f"overview (10 headline metrics, 30 days, daily series, previous period): cold {cold * 1000:,.0f} ms, "
              f"warm {warm * 1000:,.0f} ms (computed again; {remembered * 1000:,.1f} ms from the result cache); "
              f"pandas on the events in memory {pd_time * 1000:,.0f} ms (ratio {warm / pd_time:.3f})")  # fmt: skip
        cur = pd_result["current"]
        print(f"  check: orders {values['orders']} vs pandas {cur['orders']}; net revenue {values['net_revenue']} vs "
              f"{cur['net_revenue']:.2f}; visitors {values['visitors']} vs {cur['visitors']}; new customers "
              f"{values['new_customers']} vs {cur['new_customers']}")  # fmt: skip
        df = None  # free the DataFrame before the next benchmarks
        gc.collect()
        for extra in EXTRAS:
            extra(store, data, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def pandas_cohorts(df: pd.DataFrame, as_of: date) -> dict[tuple[date, int], int]:
    """12×12 monthly first-order cohorts, purchasing, the way an analyst would: {(cohort month,
    N): members who ordered in month N}."""
    local_day = df["ts"].dt.tz_convert("Asia/Riyadh").dt.tz_localize(None)
    cancelled = set(df.loc[df["event"] == "Order Cancelled", "order_id"])
    o = df[(df["event"] == "Order Completed") & ~df["order_id"].isin(cancelled)].assign(day=local_day)
    o = o[o["day"].dt.date <= as_of].drop_duplicates("order_id")
    o["month"] = o["day"].dt.year * 12 + o["day"].dt.month - 1
    o["cohort"] = o.groupby("person_id")["month"].transform("min")
    o["n"] = o["month"] - o["cohort"]
    last = as_of.year * 12 + as_of.month - 1
    # Only months that are over (as_of's month when as_of is its last day), as the engine shows.
    complete = last if (as_of + timedelta(days=1)).day == 1 else last - 1
    o = o[(o["cohort"] > last - 12) & (o["n"] < 12) & (o["month"] <= complete)]
    cells = o.groupby(["cohort", "n"])["person_id"].nunique()
    return {(date(c // 12, c % 12 + 1, 1), int(n)): int(v) for (c, n), v in cells.items()}


def cohorts_on_the_store(store, data: pa.Table, args) -> None:
    """The 12×12 monthly cohort table on the 10M-event store, through the query API."""
    query = {"kind": "cohorts", "source": "Bench", "by": "first_order", "period": "month",
             "measure": "purchasing", "periods": 12}  # fmt: skip
    seconds, result = best(lambda: store.run(query, reuse=False), args.repeat)
    df = data.select(["event", "ts", "person_id", "order_id"]).to_pandas()
    pd_time, cells = best(lambda: pandas_cohorts(df, result.as_of), 1)
    ours = {
        (row.cohort, n): row.counts[n]
        for row in result.rows
        for n in range(result.periods)
        if row.counts[n] is not None
    }
    same = all(ours.get(k, 0) == v for k, v in cells.items()) and all(
        v == cells.get(k, 0) for k, v in ours.items()
    )
    if not same:
        diff = sorted((k, ours.get(k), cells.get(k)) for k in set(ours) | set(cells) if ours.get(k, 0) != cells.get(k, 0))
        print("  cohort cells that differ (cohort, N), Masar, pandas:", diff[:10])
    members = sum(row.size for row in result.rows)
    print(f"cohorts (12×12 monthly, first order, purchasing, {members:,} customers): warm {seconds * 1000:,.0f} ms; "
          f"pandas on the events in memory {pd_time * 1000:,.0f} ms (ratio {seconds / pd_time:.3f}); "
          f"cells equal: {'yes' if same else 'NO'}")  # fmt: skip


def pandas_rfm(orders: pd.DataFrame, as_of: date) -> pd.Series:
    """RFM segment sizes the way an analyst would: a groupby, ranks for the quintiles (equal
    values share a score, as docs/segments.md defines), the R×F grid."""
    from masar.engine.rfm import GRID

    live = orders[~orders["cancelled"] & (orders["day"] <= pd.Timestamp(as_of))]
    live = live.assign(net=live["value"] - live["refunded"].fillna(0))
    c = live.groupby("person").agg(last=("day", "max"), frequency=("day", "size"), monetary=("net", "sum"))
    c["recency"] = (pd.Timestamp(as_of) - c["last"]).dt.days
    n = len(c)
    worse_r = c["recency"].rank(method="min", ascending=False) - 1
    worse_f = c["frequency"].rank(method="min") - 1
    r = (1 + (5 * worse_r.astype(np.int64)) // n).astype(int)
    f = (1 + (5 * worse_f.astype(np.int64)) // n).astype(int)
    segment = pd.Series(np.array(GRID, dtype=object)[(r - 1) * 5 + (f - 1)], index=c.index)
    return segment.value_counts()


def rfm_for_a_million(store, data: pa.Table, args) -> None:
    """RFM for ``--customers`` customers: bench/segments.py's synthetic facts (≈3 orders each)."""
    import duckdb
    from segments import AS_OF, build

    from masar.engine.rfm import rfm_segments

    con = duckdb.connect()
    build(con, args.customers)
    seconds, result = best(lambda: rfm_segments(con, AS_OF), args.repeat)
    orders = con.execute(
        "SELECT person, day::TIMESTAMP AS day, value::DOUBLE AS value, refunded::DOUBLE AS refunded, cancelled "
        "FROM orders"
    ).df()
    pd_time, sizes = best(lambda: pandas_rfm(orders, AS_OF), 1)
    same = all(int(sizes.get(s.segment, 0)) == s.customers for s in result.segments)
    print(f"RFM ({result.customers:,} customers, {len(orders):,} orders): warm {seconds * 1000:,.0f} ms; "
          f"pandas on the orders in memory {pd_time * 1000:,.0f} ms (ratio {seconds / pd_time:.3f}); "
          f"segment sizes equal: {'yes' if same else 'NO'}")  # fmt: skip
    con.close()


EXTRAS: list = [cohorts_on_the_store, rfm_for_a_million]

if __name__ == "__main__":
    main()
