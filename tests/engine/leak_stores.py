"""Synthetic stores for the leak finder's tests: sessions with stable step rates per segment,
optionally with one planted break, written straight into a real embedded store's segments."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

import masar
from masar.store.embedded.segments import level_for_rows
from masar.store.schema import EVENTS

STEPS = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed"]
START = date(2026, 3, 1)
# (device_type, browser, os, share). Desktop converts a little better: an ordinary, stable
# difference the leak finder must not report.
DEVICES = [("mobile", "Mobile Safari", "iOS", 0.40), ("mobile", "Chrome Mobile", "Android", 0.27),
           ("desktop", "Chrome", "Windows", 0.25), ("tablet", "Mobile Safari", "iOS", 0.08)]  # fmt: skip
DEVICE_INTENT = [1.0, 0.95, 1.1, 1.0]
CHANNELS = [("Direct", 0.3, 1.1), ("Paid Search", 0.2, 1.0), ("Paid Social", 0.25, 0.9), ("Email", 0.1, 1.15),
            ("Organic Search", 0.15, 1.0)]  # fmt: skip
COUNTRIES = [("SA", 0.6), ("AE", 0.25), ("KW", 0.15)]
RATES = [0.30, 0.50, 0.60]  # Viewed→Added, Added→Checkout, Checkout→Order


@dataclass(frozen=True)
class Break:
    """Device ``device`` converts at ``rate`` on transition ``step`` (0-based) on days [first, last]."""

    device: int
    step: int
    first: int
    last: int
    rate: float


def synthetic_events(seed: int, *, days: int = 60, sessions_per_day: int = 600, broken: Break | None = None) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = days * sessions_per_day
    day = np.repeat(np.arange(days), sessions_per_day)
    device = rng.choice(len(DEVICES), size=n, p=[d[3] for d in DEVICES])
    channel = rng.choice(len(CHANNELS), size=n, p=[c[1] for c in CHANNELS])
    country = rng.choice(len(COUNTRIES), size=n, p=[c[1] for c in COUNTRIES])
    intent = np.array(DEVICE_INTENT)[device] * np.array([c[2] for c in CHANNELS])[channel]
    reached = [np.ones(n, dtype=bool)]
    for k, rate in enumerate(RATES):
        p = np.minimum(0.95, rate * intent)
        if broken is not None and broken.step == k:
            hit = (device == broken.device) & (day >= broken.first) & (day <= broken.last)
            p = np.where(hit, broken.rate, p)
        reached.append(reached[-1] & (rng.random(n) < p))
    person = rng.integers(1, int(n * 0.8), size=n)
    base_us = int(datetime.combine(START, datetime.min.time(), tzinfo=UTC).timestamp() * 1e6)
    start_us = base_us + day * 86_400_000_000 + rng.integers(0, 86_000 - 600, size=n) * 1_000_000
    revenue = np.round(rng.uniform(100, 400, size=n), 2)
    cols: dict[str, list] = {k: [] for k in ("session", "k")}
    for k, mask in enumerate(reached):
        idx = np.flatnonzero(mask)
        cols["session"].append(idx)
        cols["k"].append(np.full(len(idx), k))
    session = np.concatenate(cols["session"])
    k = np.concatenate(cols["k"])
    ts = start_us[session] + k * 60_000_000
    order = np.lexsort((ts, person[session]))
    session, k, ts = session[order], k[order], ts[order]
    is_order = k == len(STEPS) - 1
    return pa.table({
        "person_id": pa.array(person[session], pa.int64()),
        "session_id": pa.array(session + 1, pa.int64()),
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "event": pa.array(np.array(STEPS, dtype=object)[k], pa.string()),
        "device_type": pa.array(np.array([d[0] for d in DEVICES], dtype=object)[device[session]], pa.string()),
        "browser": pa.array(np.array([d[1] for d in DEVICES], dtype=object)[device[session]], pa.string()),
        "os": pa.array(np.array([d[2] for d in DEVICES], dtype=object)[device[session]], pa.string()),
        "channel": pa.array(np.array([c[0] for c in CHANNELS], dtype=object)[channel[session]], pa.string()),
        "country": pa.array(np.array([c[0] for c in COUNTRIES], dtype=object)[country[session]], pa.string()),
        "revenue": pa.array(np.where(is_order, revenue[session], np.nan), pa.float64(), mask=~is_order),
        "currency": pa.array(np.where(is_order, "SAR", None), pa.string()),
    })  # fmt: skip


def write_store(directory: Path, data: pa.Table, *, name: str = "Shop", currency: str = "SAR"):
    """A real embedded store holding ``data`` (sorted by person, time) as one segment."""
    store = masar.open(directory)
    source = store.create_source(name, currency=currency)
    rows = data.num_rows
    columns = []
    for field in EVENTS:
        if field.name in data.column_names:
            columns.append(data.column(field.name).cast(field.type))
        elif field.name == "type":
            columns.append(pa.array(np.full(rows, "track", dtype=object), pa.string()))
        elif field.name == "message_id":
            columns.append(pa.array(np.arange(rows).astype(str), pa.string()))
        else:
            columns.append(pa.nulls(rows, field.type))
    table = pa.Table.from_arrays(columns, schema=EVENTS)
    with store.engine.begin() as conn:
        level = level_for_rows(rows, store.settings.compact_fanout)
        segment_id, path = store.segments.write_file(source.id, table, level=level)
        store.segments.register(conn, source.id, segment_id, path, table, level=level, origin="test")
    return store, source


def day(n: int) -> date:
    return START + timedelta(days=n)
