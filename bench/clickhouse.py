"""The same analyses on the embedded store and on ClickHouse (chdb), on the same events, in one run.

Builds an embedded store of ``--events`` events (10 million by default; ``--big`` for 100 million)
chunk by chunk (``--chunk`` events at a time, so memory stays bounded), the e-commerce store of
bench/kpis.py: sessions of page and product views, carts, checkouts, orders in two currencies,
refunds and cancellations. Copies it into chdb with ``masar store migrate`` (timed: rows/s), then
times on both stores, cold (first query) and warm (best of ``--repeat``, computed again each time):

* a 4-step ordered funnel (Product Viewed → Product Added → Checkout Started → Order Completed,
  7-day window), and the same funnel broken down by channel;
* the KPI overview (the ``metrics`` query: headline metrics over the last 30 days with daily
  series and the previous period).

Each pair of results must be identical (``to_dict()`` equal), else the benchmark fails. The
ratio printed is ClickHouse / embedded: below 1, chdb is faster.

    .venv/bin/python bench/clickhouse.py                    # 10M events
    .venv/bin/python bench/clickhouse.py --events 2000000
    .venv/bin/python bench/clickhouse.py --big              # 100M events
    .venv/bin/python bench/clickhouse.py --big --keep DIR   # ... and keep both stores in DIR
    .venv/bin/python bench/clickhouse.py --keep DIR --reuse # time the queries again on them
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kpis import START, generate, write_segments  # noqa: E402

import masar  # noqa: E402
from masar.engine.facts import Rate  # noqa: E402
from masar.store.clickhouse.migrate import migrate  # noqa: E402

FUNNEL = {
    "kind": "funnel",
    "source": "Bench",
    "steps": ["Product Viewed", "Product Added", "Checkout Started", "Order Completed"],
    "window": "7d",
}
BY_CHANNEL = {**FUNNEL, "breakdown": "channel"}
OVERVIEW = {"kind": "metrics", "source": "Bench", "granularity": "day", "compare": True}


def build(directory: Path, events: int, chunk: int):
    """An embedded store filled chunk by chunk; persons, sessions and orders numbered apart."""
    store = masar.open(directory)
    source = store.create_source("Bench", currency="SAR", timezone="Asia/Riyadh")
    store.set_exchange_rates([Rate(START.date(), "AED", "SAR", Decimal("1.021103"))])
    done = 0
    person_base = session_base = 0
    for index, lo in enumerate(range(0, events, chunk)):
        data = generate(min(chunk, events - lo), seed=index + 1)
        persons = data.column("person_id").to_numpy()
        sessions = pc.fill_null(data.column("session_id"), -1).to_numpy()
        data = data.set_column(data.schema.get_field_index("person_id"), "person_id", pa.array(persons + person_base))
        data = data.set_column(
            data.schema.get_field_index("session_id"),
            "session_id",
            pa.array(np.where(sessions >= 0, sessions + session_base, 0), pa.int64(), mask=sessions < 0),
        )
        orders = data.column("order_id")
        data = data.set_column(
            data.schema.get_field_index("order_id"), "order_id", pc.binary_join_element_wise(f"c{index}-", orders, "")
        )
        person_base += int(persons.max()) + 1
        session_base += int(sessions.max()) + 1
        done += write_segments(store, source, data, first_message=done)
        del data
        gc.collect()
        print(f"  generated {done:,} events", flush=True)
    return store


def timed(store, query, repeat: int) -> tuple[float, float, dict]:
    started = time.perf_counter()
    result = store.run(query, reuse=False).to_dict()
    cold = time.perf_counter() - started
    warm = float("inf")
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        result = store.run(query, reuse=False).to_dict()
        warm = min(warm, time.perf_counter() - started)
    return cold, warm, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--big", action="store_true", help="100 million events")
    parser.add_argument("--chunk", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="build in this directory and keep it")
    parser.add_argument("--reuse", action="store_true",
                        help="with --keep: time the queries on the stores built there by an earlier run")  # fmt: skip
    parser.add_argument("--build-only", action="store_true", help="with --keep: build and migrate, time nothing")
    args = parser.parse_args()
    events = 100_000_000 if args.big else args.events
    if (args.reuse or args.build_only) and args.keep is None:
        parser.error("--reuse and --build-only need --keep DIR")
    work = args.keep or Path(tempfile.mkdtemp(prefix="masar-clickhouse-"))
    try:
        if args.reuse:
            embedded = masar.open(work / "embedded")
            total = embedded.count_events(embedded.source("Bench"))
            print(f"embedded store: {total:,} events (built before)")
        else:
            started = time.perf_counter()
            embedded = build(work / "embedded", events, args.chunk)
            total = embedded.count_events(embedded.source("Bench"))
            print(f"embedded store: {total:,} events in {time.perf_counter() - started:.1f} s")
        chdb = masar.open(work / "embedded", store=f"chdb://{work / 'chdb'}")
        started = time.perf_counter()
        report = migrate(embedded, chdb)
        seconds = time.perf_counter() - started
        if report.rows_copied:
            print(f"masar store migrate → chdb: {report.rows_copied:,} events in {seconds:.1f} s "
                  f"({report.rows_copied / seconds:,.0f} events/s)")  # fmt: skip
        assert chdb.count_events(chdb.source("Bench")) == total
        timings = () if args.build_only else (("funnel, 4 steps", FUNNEL), ("funnel by channel", BY_CHANNEL),
                                              ("KPI overview", OVERVIEW))  # fmt: skip
        for name, query in timings:
            e_cold, e_warm, e_result = timed(embedded, query, args.repeat)
            c_cold, c_warm, c_result = timed(chdb, query, args.repeat)
            if e_result != c_result:
                raise SystemExit(f"{name}: the embedded and ClickHouse results differ")
            print(f"{name}: embedded cold {e_cold * 1000:,.0f} ms, warm {e_warm * 1000:,.0f} ms; "
                  f"chdb cold {c_cold * 1000:,.0f} ms, warm {c_warm * 1000:,.0f} ms; "
                  f"ratio chdb/embedded warm {c_warm / e_warm:.2f} (results identical)")  # fmt: skip
        embedded.close()
        chdb.close()
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
