"""Running an import: read with DuckDB, normalize per preset, enrich and store in chunks."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from masar.capture.normalize import CaptureContext, MessageRejected, normalize_message, now_us
from masar.capture.rows import rows_to_table
from masar.enrich.pipeline import SessionState
from masar.errors import InvalidInput
from masar.importers.presets import (
    EVENTS_PRESET,
    OPTIONAL_EVENT_FIELDS,
    build_plan,
    ident,
    literal,
    minor_units_expr,
    money_expr,
    parse_mapping,
    ts_and_currency_columns,
)
from masar.store.embedded.store import sql_list
from masar.store.schema import NORMALIZED, NORMALIZED_NAMES

CHUNK_ROWS = 1_000_000
FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
           ".parquet": "parquet", ".pq": "parquet"}  # fmt: skip


@dataclass
class ImportReport:
    file: str
    preset: str
    rows: int = 0
    imported: int = 0
    skipped_existing: int = 0
    rejected: int = 0
    rejects_path: str | None = None
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows_per_second": round(self.rate)}


def _reader(path: Path, file_format: str) -> str:
    p = literal(str(path))
    if file_format == "csv":
        return f"read_csv({p}, header = true, all_varchar = true, auto_detect = true)"
    if file_format == "jsonl":
        return f"read_json({p}, format = 'newline_delimited', records = true, union_by_name = true)"
    if file_format == "parquet":
        return f"read_parquet({p})"
    raise InvalidInput(f"unknown format {file_format!r}; use csv, jsonl or parquet")


def _orders_plans(columns: dict[str, str], mapping: dict[str, str], currency: str) -> list[tuple[str, str]]:
    """Order exports → Order Completed for every order, plus Order Refunded / Order Cancelled rows."""
    for required in ("order_id", "created_at", "total"):
        if required not in columns and required not in mapping.values():
            raise InvalidInput(f"the orders preset needs a {required!r} column; the file has {', '.join(columns)}")
    m = {"order_id": "order_id", "timestamp": "created_at", "total": "total"}
    for field in ("currency", "subtotal", "tax", "shipping", "discount", "coupon"):
        if field in columns:
            m[field] = field
    if "customer_id" in columns:
        m["user_id"] = "customer_id"
    m.update(mapping)
    order = f"CAST({ident(m['order_id'])} AS VARCHAR)"
    guest = f"CASE WHEN {ident(m['user_id'])} IS NULL THEN 'guest:' || {order} END" if "user_id" in m else f"'guest:' || {order}"
    money = {f: f"TRY_CAST({ident(m[f])} AS DECIMAL(18, 3))" for f in ("total", "subtotal", "tax", "shipping") if f in m}
    # Segment's revenue excludes tax and shipping: the subtotal, else the total without them.
    derived = " - ".join([money["total"]] + [f"coalesce({money[f]}, 0)" for f in ("tax", "shipping") if f in money])
    revenue_src = f"coalesce({money['subtotal']}, {derived})" if "subtotal" in money else derived
    plans = []
    status = f"lower(trim(CAST({ident('status')} AS VARCHAR)))" if "status" in columns else "NULL"
    variants = [("Order Completed", "completed", None, {})]
    if "status" in columns:
        refund_ts = "refunded_at" if "refunded_at" in columns else m["timestamp"]
        refund_total = "refund_amount" if "refund_amount" in columns else m["total"]
        variants.append(("Order Refunded", "refunded", f"{status} IN ('refunded', 'partially_refunded')",
                         {"timestamp": refund_ts, "total": refund_total}))  # fmt: skip
        variants.append(("Order Cancelled", "cancelled", f"{status} IN ('cancelled', 'canceled', 'voided')", {}))
    for event, suffix, where, remap in variants:
        mm = {**m, **remap}
        overrides = {
            "message_id": f"'order:' || {order} || ':{suffix}'",
            "anonymous_id": guest,
        }
        if event == "Order Completed":
            overrides["revenue"] = money_expr(revenue_src, minor_units_expr("_currency"))
        plan = build_plan(columns, mm, default_currency=currency, event_constant=event, overrides=overrides)
        helpers = ts_and_currency_columns(columns, mm, currency)
        plans.append((f"SELECT {plan.select} FROM (SELECT *, {helpers} FROM src)" + (f" WHERE {where}" if where else ""), event))
    return plans


def import_path(
    store: Any,
    source: Any,
    path: Path,
    *,
    preset: str = "events",
    mapping: str | None = None,
    file_format: str | None = None,
    rejects_path: Path | None = None,
    progress: bool = False,
) -> ImportReport:
    path = Path(path)
    if not path.exists():
        raise InvalidInput(f"no such file: {path}")
    file_format = file_format or FORMATS.get(path.suffix.lower())
    if file_format is None:
        raise InvalidInput(f"cannot tell the format of {path.name}; pass --format csv|jsonl|parquet")
    rejects_path = Path(rejects_path) if rejects_path else path.with_name(path.name + ".rejects.csv")
    report = ImportReport(file=str(path), preset=preset, rejects_path=None)
    started = time.perf_counter()
    if preset == "segment":
        _import_segment(store, source, path, report, rejects_path, progress)
    elif preset in ("events", "orders"):
        _import_table(store, source, path, file_format, preset, parse_mapping(mapping), report, rejects_path, progress)
    else:
        raise InvalidInput(f"unknown preset {preset!r}; use events, segment or orders")
    report.seconds = time.perf_counter() - started
    if report.rejected:
        report.rejects_path = str(rejects_path)
    return report


def _progress(enabled: bool, total: int | None) -> Progress:
    return Progress(
        TextColumn("[bold]importing"), BarColumn(), TextColumn("{task.completed:,} rows"),
        TextColumn("{task.fields[rate]:,.0f} rows/s"), TimeElapsedColumn(),
        disable=not enabled, transient=False,
    )  # fmt: skip


def _import_table(store, source, path, file_format, preset, mapping, report, rejects_path, show) -> None:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    reader = _reader(path, file_format)
    try:
        described = con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()
    except duckdb.Error as exc:
        raise InvalidInput(f"could not read {path.name} as {file_format}: {str(exc).splitlines()[0]}") from None
    columns = {row[0]: row[1] for row in described}
    if preset == "events":
        m = {f: c for f, c in EVENTS_PRESET.items() if c in columns}
        m.update({f: f for f in OPTIONAL_EVENT_FIELDS if f in columns})
        m.update(mapping)
        plan = build_plan(columns, m, default_currency=source.currency)
        selects = [f"SELECT {plan.select} FROM (SELECT *, {ts_and_currency_columns(columns, m, source.currency)} FROM src)"]
    else:
        selects = [sql for sql, _event in _orders_plans(columns, mapping, source.currency)]
    live = store.segments.live(source.id)
    existing = (
        f"SELECT message_id FROM read_parquet({sql_list([s.path for s in live])})" if live else
        "SELECT CAST(NULL AS VARCHAR) AS message_id WHERE false"
    )  # fmt: skip
    names = ", ".join(ident(n) for n in NORMALIZED_NAMES)
    sql = f"""
        WITH src AS (SELECT *, row_number() OVER () AS _row FROM {reader}),
             rows AS ({" UNION ALL ".join(selects)}),
             existing AS ({existing})
        SELECT {names}, _error, _raw, (message_id IN (SELECT message_id FROM existing)) AS _exists
        FROM rows ORDER BY ts NULLS LAST
    """
    try:
        batches = con.sql(sql).to_arrow_reader(CHUNK_ROWS)
    except duckdb.Error as exc:
        raise InvalidInput(f"could not import {path.name}: {str(exc).splitlines()[0]}") from None
    state = SessionState()
    rejects_writer = None
    started = time.perf_counter()
    with _progress(show, None) as bar:
        task = bar.add_task("import", total=None, rate=0.0)
        try:
            for batch in batches:
                table = pa.Table.from_batches([batch])
                report.rows += table.num_rows
                bad_mask = pc.is_valid(table.column("_error"))
                bad = table.filter(bad_mask)
                good = table.filter(pc.invert(bad_mask))
                if bad.num_rows:
                    report.rejected += bad.num_rows
                    out = pa.table({"row": bad.column("_raw"), "reason": bad.column("_error")})
                    if rejects_writer is None:
                        rejects_writer = pacsv.CSVWriter(str(rejects_path), out.schema)
                    rejects_writer.write_table(out)
                exists = good.column("_exists").fill_null(False)
                report.skipped_existing += pc.sum(exists).as_py() or 0
                fresh = good.filter(pc.invert(exists)).select(list(NORMALIZED_NAMES)).cast(NORMALIZED)
                if fresh.num_rows:
                    store.commit([store.prepare_segment(source, fresh, origin="import", state=state, load=True)])
                    report.imported += fresh.num_rows
                elapsed = time.perf_counter() - started
                bar.update(task, completed=report.rows, rate=report.rows / elapsed if elapsed else 0.0)
        finally:
            if rejects_writer is not None:
                rejects_writer.close()
    con.close()


def _import_segment(store, source, path, report, rejects_path, show) -> None:
    """JSON Lines of Segment messages (a Segment export): validated exactly as capture does."""
    chunk: list[dict[str, Any]] = []
    rejects: list[tuple[int, str, str]] = []
    state = SessionState()
    ctx = CaptureContext(received_at_us=now_us(), default_currency=source.currency, trust_timestamp=True)

    def flush() -> None:
        if not chunk:
            return
        table = rows_to_table(chunk)
        seen_in_chunk: set[str] = set()
        keep = []
        existing = store.existing_message_ids(source, table.column("message_id").combine_chunks())
        for i, message_id in enumerate(table.column("message_id").to_pylist()):
            if message_id in existing or message_id in seen_in_chunk:
                report.skipped_existing += 1
            else:
                seen_in_chunk.add(message_id)
                keep.append(i)
        fresh = table.take(pa.array(keep, pa.int64()))
        if fresh.num_rows:
            store.commit([store.prepare_segment(source, fresh, origin="import", state=state, load=True)])
            report.imported += fresh.num_rows
        chunk.clear()

    with _progress(show, None) as bar, path.open("rb") as handle:
        task = bar.add_task("import", total=None, rate=0.0)
        started = time.perf_counter()
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            report.rows += 1
            try:
                message = orjson.loads(line)
                chunk.append(normalize_message(message, ctx))
            except orjson.JSONDecodeError as exc:
                rejects.append((number, "invalid_json", str(exc)))
            except MessageRejected as exc:
                rejects.append((number, exc.code, exc.message))
            if len(chunk) >= 200_000:
                flush()
                elapsed = time.perf_counter() - started
                bar.update(task, completed=report.rows, rate=report.rows / elapsed if elapsed else 0.0)
        flush()
        bar.update(task, completed=report.rows)
    if rejects:
        report.rejected = len(rejects)
        pacsv.write_csv(
            pa.table({"line": [r[0] for r in rejects], "code": [r[1] for r in rejects], "reason": [r[2] for r in rejects]}),
            str(rejects_path),
        )
