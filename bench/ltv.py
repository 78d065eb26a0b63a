"""Lifetime value speed: the BG/NBD and Gamma-Gamma fits, predictions and historical sums for
``--customers`` synthetic customers (1 million by default) drawn from the BG/NBD process.

Two measurements:

1. the model code alone on numpy arrays: ``fit_bgnbd`` on continuous (x, t_x, T), where no two
   customers are alike, and on the same times rounded to days, as real order dates are (which lets
   the fit merge identical customers); ``fit_gamma_gamma`` on the repeat buyers; ``predict``;
2. the whole path from an in-memory DuckDB ``orders`` table (one row per order, a year of first
   purchases, a 52-week calibration period): ``fit_from_orders``, ``predict_from_orders`` (39
   weeks, by cohort, with and without a monthly discount rate) and ``historical_ltv``.

    .venv/bin/python bench/ltv.py
    .venv/bin/python bench/ltv.py --customers 200000
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

from masar.engine import ltv  # noqa: E402
from masar.engine.ltv_report import ltv_report  # noqa: E402
from tests.engine.reference_ltv import simulate  # noqa: E402

# CDNOW's published parameters (weeks): a realistic mix of one-time and repeat buyers.
R, ALPHA, A, B = 0.243, 4.414, 0.793, 2.426
P, Q, GAMMA = 6.25, 3.74, 15.44
END = date(2025, 12, 31)


def timed(label: str, fn):
    """Wall time, and this process's CPU time (less sensitive to other work on a shared machine)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    print(f"  {label}: {time.perf_counter() - t0:.2f} s wall, {time.process_time() - c0:.2f} s CPU")
    return out


def orders_table(n: int, rng: np.random.Generator) -> pa.Table:
    """One row per order of n customers: first purchase on a day of the year before END, repeat
    purchases from the BG/NBD process up to END (whole days, so some fall on one day), values from
    the Gamma-Gamma process."""
    first = rng.integers(0, 365, n)  # days before END
    T = first / 7
    lam = rng.gamma(R, 1 / ALPHA, n)
    drop = rng.beta(A, B, n)
    arrivals = rng.poisson(lam * T)
    x = np.minimum(arrivals, rng.geometric(drop))
    owner = np.repeat(np.arange(n), arrivals)
    times = rng.uniform(0, 1, len(owner)) * T[owner]
    order = np.lexsort((times, owner))
    owner, times = owner[order], times[order]
    rank = np.arange(len(owner)) - np.repeat(np.cumsum(arrivals) - arrivals, arrivals)
    keep = rank < x[owner]  # the first x arrivals: the customer left after the x-th
    owner, times = owner[keep], times[keep]
    person = np.concatenate([np.arange(n), owner])
    days_before = np.concatenate([first, first[owner] - np.floor(times * 7).astype(np.int64)])
    nu = rng.gamma(Q, 1 / GAMMA, n)
    value = np.round(rng.gamma(P, 1 / nu[person]), 2)
    end = np.datetime64(END, "D")
    return pa.table({
        "order_key": pa.array(np.arange(len(person)).astype(str)),
        "person": pa.array(person, pa.int64()),
        "day": pa.array(end - days_before.astype("timedelta64[D]")),
        "value": pa.array(value).cast(pa.decimal128(18, 3)),
        "refunded": pa.array(np.zeros(len(person))).cast(pa.decimal128(18, 3)),
        "cancelled": pa.array(np.zeros(len(person), dtype=bool)),
    })  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    args = parser.parse_args()
    n = args.customers
    rng = np.random.default_rng(1)
    print(f"lifetime value benchmark: {n:,} customers, {os.cpu_count()} cores")

    print("model code on arrays")
    x, t_x, T = simulate(n, R, ALPHA, A, B, 52, rng)
    fit = timed("fit_bgnbd, continuous times", lambda: ltv.fit_bgnbd(x, t_x, T))
    print(f"    r {fit.r:.4f} α {fit.alpha:.4f} a {fit.a:.4f} b {fit.b:.4f} (simulated from {R}, {ALPHA}, {A}, {B})")
    T_days = np.ceil(T * 7) / 7
    t_x_days = np.where(x > 0, np.clip(np.round(t_x * 7), 1, T_days * 7) / 7, 0.0)
    timed("fit_bgnbd, times in whole days", lambda: ltv.fit_bgnbd(x, t_x_days, T_days))
    buyers = x > 0
    nu = rng.gamma(Q, 1 / GAMMA, int(buyers.sum()))
    m = rng.gamma(P * x[buyers], 1 / nu) / x[buyers]
    gg = timed(f"fit_gamma_gamma, {int(buyers.sum()):,} repeat buyers", lambda: ltv.fit_gamma_gamma(x[buyers], m))
    summary = ltv.CustomerSummary(
        person=np.arange(n), first_day=np.full(n, np.datetime64(END, "D")), x=x, t_x=t_x, T=T,
        m=np.where(buyers, 0.0, np.nan), m_count=np.where(buyers, x, 0), calibration_end=END, unit="week",
    )  # fmt: skip
    summary.m[buyers] = m
    timed("predict, 39 weeks", lambda: ltv.predict(summary, fit, gg, 39))
    timed("predict, 39 weeks, discounted monthly", lambda: ltv.predict(summary, fit, gg, 39, discount_rate=0.01))

    print("from an orders table")
    orders = timed("simulate orders", lambda: orders_table(n, rng))
    print(f"    {orders.num_rows:,} orders")
    con = duckdb.connect()
    con.register("generated", orders)
    con.execute("CREATE TABLE orders AS SELECT * FROM generated")
    con.execute(
        "CREATE TABLE people AS SELECT DISTINCT person, 'direct' AS first_channel, NULL::VARCHAR AS user_id, "
        "NULL::VARCHAR AS email FROM generated"
    )
    con.unregister("generated")
    fitted = timed("fit_from_orders", lambda: ltv.fit_from_orders(con, END, "week"))
    print(f"    {fitted.to_dict()}")
    timed("predict_from_orders, by cohort", lambda: ltv.predict_from_orders(con, END, 39, group_by="cohort_month"))
    timed("historical_ltv, by first channel", lambda: ltv.historical_ltv(con, END + timedelta(days=1), "first_channel"))
    timed("ltv query, predicted, by cohort, 100 customers",
          lambda: ltv_report(con, currency="USD", as_of=END, horizon_days=273, group_by="cohort_month"))
    timed("ltv query, historical, by RFM segment, 100 customers",
          lambda: ltv_report(con, currency="USD", as_of=END, mode="historical", group_by="rfm_segment"))  # fmt: skip


if __name__ == "__main__":
    main()
