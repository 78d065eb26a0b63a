"""Running an import: read with DuckDB, normalize per preset, enrich and store in chunks."""

from __future__ import annotations

import collections
import concurrent.futures
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from masar.capture.normalize import CaptureContext, MessageRejected, normalize_message, now_us
from masar.capture.rows import rows_to_table
from masar.enrich import sessions
from masar.enrich.identity import Operation
from masar.enrich.pipeline import SessionState
from masar.errors import InvalidInput
from masar.importers import ids
from masar.importers.ids import message_ids
from masar.importers.presets import (
    EVENTS_PRESET,
    OPTIONAL_EVENT_FIELDS,
    STAGED_PREFIX,
    Plan,
    absent,
    build_plan,
    ident,
    literal,
    minor_units_expr,
    money_expr,
    parse_mapping,
    ts_and_currency_columns,
)
from masar.store.embedded.segments import Segment
from masar.store.embedded.store import sql_list
from masar.store.schema import NORMALIZED, NORMALIZED_NAMES

CHUNK_ROWS = 250_000  # rows per segment: small enough that enriching one overlaps writing another
_WRITERS = 2
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


@dataclass(frozen=True)
class _Part:
    """One SELECT of the import: a plan, the helper columns it needs, and which file rows it takes."""

    plan: Plan
    helpers: str
    where: str | None = None


def _orders_parts(columns: dict[str, str], mapping: dict[str, str], currency: str) -> list[_Part]:
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
    parts = []
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
        parts.append(_Part(plan, ts_and_currency_columns(columns, mm, currency), where))
    return parts


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
    """Read, normalize and stage the whole file in DuckDB; resolve its identities in one step; then
    store it sorted by (person, ts), in chunks that each hold whole runs of persons."""
    # The compiled kernels load while DuckDB reads the file (it leaves the interpreter free); a
    # failure surfaces below, where the kernels are needed, instead of as a stray thread's trace.
    warmer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="masar-warm")
    warming = warmer.submit(_warm_kernels)
    warmer.shutdown(wait=False)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET preserve_insertion_order = false")
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
            parts = [_Part(build_plan(columns, m, default_currency=source.currency),
                           ts_and_currency_columns(columns, m, source.currency))]  # fmt: skip
        else:
            parts = _orders_parts(columns, mapping, source.currency)
        staged = [f for f in NORMALIZED_NAMES if any(f in part.plan.fields for part in parts)]
        derive_ids = "message_id" not in staged
        if file_format == "parquet" and _row_groups(con, path) < _threads(con):
            # DuckDB reads one Parquet row group per thread: copy a file of one row group as it is
            # (cheap), so that normalizing it (the costly part) runs on every core.
            con.execute(f"CREATE TEMP TABLE file_rows AS SELECT * FROM {reader}")
            reader = "file_rows"
        stored = store.segments.live(source.id)
        with _progress(show, None) as bar:
            task = bar.add_task("import", total=None, rate=0.0)  # the bar runs while the file is read
            started = time.perf_counter()
            try:
                con.execute(f"CREATE TEMP TABLE staged AS {_stage_sql(reader, parts, staged)}")
            except duckdb.Error as exc:
                raise InvalidInput(f"could not import {path.name}: {str(exc).splitlines()[0]}") from None
            [(total, rejected)] = con.execute("SELECT count(*), count(_error) FROM staged").fetchall()
            report.rows, report.rejected = int(total), int(rejected)
            bar.update(task, total=report.rows)
            if rejected:
                _write_rejects(con, rejects_path)
            bar.update(task, completed=report.rejected)
            con.register("persons_map", _resolve_persons(store, source, con, staged))
            warming.result()
            _store_sorted(store, source, con, staged, derive_ids, stored, report, bar, task, started)
    finally:
        con.close()


def _warm_kernels() -> None:
    ids.warm()
    sessions.warm()


def _row_groups(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    [(groups,)] = con.execute(
        "SELECT count(DISTINCT row_group_id) FROM parquet_metadata(?)", [str(path)]
    ).fetchall()
    return int(groups)


def _threads(con: duckdb.DuckDBPyConnection) -> int:
    [(threads,)] = con.execute("SELECT current_setting('threads')").fetchall()
    return int(threads)


def _value(field: str, staged: list[str]) -> str:
    return ident(field) if field in staged else absent(field)


def _person_key(staged: list[str]) -> str:
    return f"coalesce('u:' || {_value('user_id', staged)}, 'a:' || {_value('anonymous_id', staged)})"


def _stage_sql(reader: str, parts: list[_Part], staged: list[str]) -> str:
    """Every file row normalized: the staged fields, why it is refused (``_error``) and the file's
    row for the rejects file (``_raw``, refused rows only).

    Each level computes its expressions once and the next refers to them by name: fields (named
    with ``STAGED_PREFIX``, beside the file's own columns), then the error, then the raw row.
    """
    selects = []
    for part in parts:
        fields = ", ".join(f"{part.plan.fields.get(f) or absent(f)} AS {ident(STAGED_PREFIX + f)}" for f in staged)
        named = ", ".join(f"{ident(STAGED_PREFIX + f)} AS {ident(f)}" for f in staged)
        where = f" WHERE {part.where}" if part.where else ""
        selects.append(
            f"SELECT {named}, _error, CASE WHEN _error IS NOT NULL THEN {part.plan.raw} END AS _raw FROM ("
            f"SELECT *, {part.plan.error} AS _error FROM ("
            f"SELECT *, {fields} FROM (SELECT *, {part.helpers} FROM src){where}))"
        )
    return f"WITH src AS (SELECT * FROM {reader}) {' UNION ALL '.join(selects)}"


def _write_rejects(con: duckdb.DuckDBPyConnection, rejects_path: Path) -> None:
    batches = con.sql("SELECT _raw AS row, _error AS reason FROM staged WHERE _error IS NOT NULL").to_arrow_reader()
    writer = None
    try:
        for batch in batches:
            if writer is None:
                writer = pacsv.CSVWriter(str(rejects_path), batch.schema)
            writer.write_batch(batch)
    finally:
        if writer is not None:
            writer.close()


def _resolve_persons(store, source, con: duckdb.DuckDBPyConnection, staged: list[str]) -> pa.Table:
    """The person of every distinct id of the good rows, as a table (k, p) to join on.

    All links of the file apply first, in event-time order (each distinct link once, at its first
    time): the whole file is one batch of docs/identity.md's rule 5.
    """
    key = _person_key(staged)
    row_keys = con.sql(f"SELECT DISTINCT {key} AS k FROM staged WHERE _error IS NULL").to_arrow_table()
    ops: list[Operation] = []
    if "user_id" in staged and "anonymous_id" in staged:
        links = con.execute(
            "SELECT 'a:' || anonymous_id AS a, 'u:' || user_id AS u, min(ts) AS first FROM staged "
            "WHERE _error IS NULL AND user_id IS NOT NULL AND anonymous_id IS NOT NULL "
            "GROUP BY ALL ORDER BY first, a, u"
        ).fetchall()
        ops = [Operation("link", a, u) for a, u, _first in links]
    keys, persons = store.identities.resolve_keys(source.id, row_keys.column("k").combine_chunks(), ops)
    return pa.table({"k": keys, "p": pa.array(persons, pa.int64())})


def _store_sorted(store, source, con, staged, derive_ids, stored, report, bar, task, started) -> None:
    """The good rows sorted by (person, ts), enriched and written in chunks of whole persons; rows
    already stored (same message id in a segment that existed before) are skipped.

    Segment files are written and committed by two threads (Parquet writing releases the
    interpreter lock) while this one enriches the next chunk.
    """
    exists = _existing_check(store, source, con, stored, derive_ids)
    names = ", ".join(f"s.{ident(f)}" for f in staged)
    batches = con.sql(
        f"SELECT {names}, m.p AS _person FROM staged s JOIN persons_map m ON m.k = {_person_key(staged)} "
        "WHERE s._error IS NULL ORDER BY _person, s.ts"
    ).to_arrow_reader(CHUNK_ROWS)
    received_at = pa.scalar(datetime.now(UTC), NORMALIZED.field("received_at").type)
    state = SessionState()
    done = report.rejected
    writing: collections.deque[concurrent.futures.Future] = collections.deque()

    def write(events: pa.Table) -> int:
        store.commit([store.prepare_events(source, events, origin="import")])
        return events.num_rows

    def finish_one() -> None:
        report.imported += writing.popleft().result()

    def flush(table: pa.Table) -> None:
        nonlocal done
        done += table.num_rows
        persons = table.column("_person").to_numpy()
        table = _normalized(table, received_at)
        if derive_ids:
            ts = table.column("ts").cast(pa.int64()).to_numpy()
            group_starts = np.ones(len(ts), dtype=np.bool_)
            group_starts[1:] = (persons[1:] != persons[:-1]) | (ts[1:] != ts[:-1])
            table = table.set_column(0, "message_id", message_ids(table, group_starts))
        if exists is not None:
            found = exists(table.column("message_id"))
            report.skipped_existing += pc.sum(found).as_py() or 0
            keep = pc.invert(found)
            table = table.filter(keep)
            persons = persons[keep.to_numpy(zero_copy_only=False)]
        if table.num_rows:
            events = store.enrich_sorted(source, table, persons, state=state, stored=stored)
            while len(writing) >= _WRITERS:
                finish_one()
            writing.append(pool.submit(write, events))
        elapsed = time.perf_counter() - started
        bar.update(task, completed=done, rate=done / elapsed if elapsed else 0.0)

    # Chunks end at a change of person, so every person (and every set of identical rows) is in
    # one chunk: the last person of a full chunk waits for the next one.
    with concurrent.futures.ThreadPoolExecutor(_WRITERS, thread_name_prefix="masar-import") as pool:
        try:
            pending: list[pa.RecordBatch] = []
            pending_rows = 0
            for batch in batches:
                pending.append(batch)
                pending_rows += batch.num_rows
                if pending_rows < CHUNK_ROWS:
                    continue
                table = pa.Table.from_batches(pending).combine_chunks()
                persons = table.column("_person").to_numpy()
                cut = int(np.searchsorted(persons, persons[-1]))
                if cut == 0:
                    continue  # one person so far: keep collecting
                flush(table.slice(0, cut))
                pending = table.slice(cut).to_batches()
                pending_rows = table.num_rows - cut
            if pending_rows:
                flush(pa.Table.from_batches(pending).combine_chunks())
        finally:
            while writing:
                finish_one()


def _normalized(table: pa.Table, received_at: pa.Scalar) -> pa.Table:
    """The staged columns completed to the normalized schema (fields the file lacks are constants)."""
    n = table.num_rows
    constants = {"type": pa.scalar("track"), "received_at": received_at, "properties": pa.scalar("{}"),
                 "traits": pa.scalar("{}"), "context": pa.scalar("{}")}  # fmt: skip
    nulls: dict[pa.DataType, pa.Array] = {}  # one all-null array per type, shared by the columns
    columns = []
    for field in NORMALIZED:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        elif field.name == "original_timestamp":
            columns.append(table.column("ts").cast(field.type))
        elif field.name in constants:
            columns.append(pa.repeat(constants[field.name], n).cast(field.type))
        else:
            if field.type not in nulls:
                nulls[field.type] = pa.nulls(n, field.type)
            columns.append(nulls[field.type])
    return pa.Table.from_arrays(columns, schema=NORMALIZED)


def _existing_check(store, source, con, stored, derive_ids):
    """A function giving which message ids are already stored (a boolean mask), or None when the
    source has no events yet. Segments are checked in the import's DuckDB; a store without
    segments (ClickHouse) is asked chunk by chunk."""
    if stored:
        _stage_stored_ids(con, stored, derive_ids)
        return lambda ids: _stored(con, ids)
    if store.count_events(source) == 0:
        return None

    def ask(ids: pa.ChunkedArray) -> pa.Array:
        found = store.existing_message_ids(source, ids.combine_chunks())
        return pc.is_in(ids, value_set=pa.array(sorted(found), pa.string())).combine_chunks()

    return ask


def _stage_stored_ids(con: duckdb.DuckDBPyConnection, stored: list[Segment], derive_ids: bool) -> None:
    """The message ids already stored, in a table of the import's in-memory database (seen by every
    cursor, unlike a temporary table) that the chunks are checked against.

    A content-derived id includes the event time, so only stored rows within the file's time range
    can share one; ids from the file or from order numbers can match a row at any time.
    """
    where = ""
    if derive_ids:
        [(low, high)] = con.execute(
            "SELECT epoch_us(min(ts)), epoch_us(max(ts)) FROM staged WHERE _error IS NULL"
        ).fetchall()
        if low is None:
            stored = []
        else:
            stored = [s for s in stored if s.max_ts is None or s.min_ts is None or (s.max_ts >= low and s.min_ts <= high)]
            where = f" WHERE epoch_us(ts) BETWEEN {int(low)} AND {int(high)}"
    paths = sql_list([s.path for s in stored]) if stored else None
    source = f"(SELECT message_id FROM read_parquet({paths}){where})" if paths else "(SELECT NULL::VARCHAR AS message_id WHERE false)"
    con.execute(f"CREATE TABLE stored_ids AS SELECT message_id FROM {source}")


def _stored(con: duckdb.DuckDBPyConnection, message_ids: pa.ChunkedArray) -> pa.Array:
    """Which of ``message_ids`` are already stored: a boolean mask."""
    cursor = con.cursor()  # the sorted rows are still being read on ``con``
    try:
        cursor.register("chunk_ids", pa.table({"message_id": message_ids}))
        found = cursor.sql(
            "SELECT message_id FROM chunk_ids WHERE message_id IN (SELECT message_id FROM stored_ids)"
        ).to_arrow_table()
    finally:
        cursor.close()
    return pc.is_in(message_ids, value_set=found.column("message_id").combine_chunks()).combine_chunks()


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
