"""Loading the demo store through the same path as real data: capture's validation, then enrichment."""

from __future__ import annotations

import csv
import time
from datetime import date, timedelta
from typing import Any

import orjson

from masar.capture.normalize import CaptureContext, MessageRejected, normalize_message, now_us
from masar.capture.rows import rows_to_table
from masar.enrich.pipeline import SessionState
from masar.errors import NotFound

DEMO_SOURCE = "Masar Demo Store"
DEMO_RATES = {"AED": "1.021103", "KWD": "12.195122", "JOD": "5.289140", "USD": "3.750000"}
CHUNK = 100_000


def load_demo(store: Any, *, seed: int = 7, visitors: int = 50_000, days: int = 90, progress: bool = False) -> dict:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from masar.demo.generator import DemoConfig, build_demo
    from masar.importers.sales import read_rates, read_spend

    try:
        source = store.source(DEMO_SOURCE)
        if store.count_events(source):
            return {"skipped": True, "source": DEMO_SOURCE, "events": store.count_events(source)}
    except NotFound:
        source = store.create_source(DEMO_SOURCE, currency="SAR", timezone="Asia/Riyadh",
                                     own_domains=("demo.masar.shop",))  # fmt: skip
    started = time.perf_counter()
    demo = build_demo(DemoConfig(seed=seed, visitors=visitors, days=days))
    ctx = CaptureContext(received_at_us=now_us(), default_currency=source.currency)
    state = SessionState()
    rows: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    written = 0
    with Progress(SpinnerColumn(), TextColumn("building the demo store"), TextColumn("{task.completed:,} events"),
                  TimeElapsedColumn(), disable=not progress) as bar:  # fmt: skip
        task = bar.add_task("demo", total=None)
        for message in demo.messages():
            try:
                rows.append(normalize_message(message, ctx))
            except MessageRejected as exc:
                rejected.append({"code": exc.code, "message": exc.message, "payload": message})
            if len(rows) >= CHUNK:
                store.commit([store.prepare_segment(source, rows_to_table(rows), origin="demo", state=state)])
                written += len(rows)
                rows = []
                bar.update(task, completed=written)
        if rows:
            store.commit([store.prepare_segment(source, rows_to_table(rows), origin="demo", state=state)])
            written += len(rows)
        bar.update(task, completed=written)
    store.quarantine(source.id, rejected, origin="demo")
    demo_dir = store.root / "demo"
    demo_dir.mkdir(exist_ok=True)
    with (demo_dir / "spend.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["date", "channel", "campaign", "spend", "currency"])
        writer.writeheader()
        writer.writerows(demo.spend)
    # Rates into SAR (the demo's reporting currency) from the pegs to the US dollar; the Egyptian
    # pound floats, so it drifts a little week by week. Loaded through the same importers as a
    # store's own files.
    first_day = date.fromisoformat(min(str(row["date"]) for row in demo.spend)) if demo.spend else date.today()
    with (demo_dir / "rates.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["date", "base", "quote", "rate"])
        for base, rate in DEMO_RATES.items():
            writer.writerow([first_day, base, "SAR", rate])
        for week in range(0, days + 7, 7):
            writer.writerow([first_day + timedelta(days=week), "EGP", "SAR", f"{0.0775 - week * 0.00001:.6f}"])
    store.set_exchange_rates(read_rates(demo_dir / "rates.csv").rows)
    store.set_ad_spend(source, read_spend(demo_dir / "spend.csv", source.currency).rows)
    (demo_dir / "planted.json").write_bytes(orjson.dumps(demo.planted, option=orjson.OPT_INDENT_2, default=str))
    return {
        "skipped": False,
        "source": DEMO_SOURCE,
        "events": written,
        "rejected": len(rejected),
        "seconds": round(time.perf_counter() - started, 2),
    }
