"""Capture's write-ahead log records: one per source per group commit.

A record is the normalized rows of every request of one source that one group commit made durable,
plus the messages those requests rejected. The log's framing (length, CRC, torn tails) is
``wal.py``'s; this is what goes inside.

Version 3, written now (first byte ``0x03``)::

    0x03 | header length (u32 LE) | header: JSON {"s": source id, "r": received µs, "n": rows,
           "c": scalar column names, "j": JSON column names, "rej": [...]}
         | scalars length (u32 LE) | JSON array of the scalar columns: [[message ids...], [types...], ...]
         | for each JSON column (properties, traits, context): its Arrow string buffers,
           (n + 1) offsets (i32 LE), then the values' JSON texts

The request path (one interpreter lock, the capture bottleneck) only transposes its rows, hands the
scalar columns to one ``orjson.dumps`` and dumps each JSON value (``json_texts``, as
``values_to_table`` does): about 2.7 µs per event, where building Arrow arrays took about 9.6. The ingestor, a process of its own
with time to spare, joins a flush's records and converts long columns (``column_array``, the same
conversion ``values_to_table`` makes), and takes the JSON texts as they are (checked: offsets in
order and inside the text, UTF-8). So the table is the one the server would have built, byte for
byte (tests/capture/test_records.py). Column names are in the header, so a record written before a
column was added reads with that column null.

Version 2 (first byte ``0x02``, written 2026-11-24 to -25): a header ``{"s", "r", "rej"}``, then an
Arrow IPC stream of the rows (schema ``NORMALIZED``).

Version 1 (first byte ``{``): one JSON object ``{"s", "r", "rows": [row dicts], "rej"}`` per
request, written before 2026-11-24.

Older versions are read (so a log left by an older server is replayed), never written. Any other
first byte is refused with a clear error rather than guessed at.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from masar.capture.rows import JSON_COLUMNS, column_array, json_texts, rows_to_table
from masar.capture.wal import WalPosition, read_payloads
from masar.errors import MasarError
from masar.store.schema import NORMALIZED, NORMALIZED_NAMES

VERSION = 3
_ARROW_VERSION = 2
_SCALARS = NORMALIZED_NAMES[: -len(JSON_COLUMNS)]
if NORMALIZED_NAMES[-len(JSON_COLUMNS) :] != JSON_COLUMNS:
    raise RuntimeError("the log record format needs the JSON columns last in NORMALIZED")
_U32 = struct.Struct("<I")


class LogFormatError(MasarError):
    code = "unknown_log_format"
    status = 500


@dataclass
class CaptureBatch:
    """One request's part of a group commit, as the request path hands it to the log."""

    source_id: int
    received_us: int
    rows: list[tuple[Any, ...]]  # normalize_values rows; message_id first
    rejected: list[dict[str, Any]] = field(default_factory=list)


class CaptureRecord:
    """A decoded log record: its rows as a table, built from the record's columns when first asked."""

    def __init__(
        self,
        source_id: int,
        received_us: int,
        rejected: list[dict[str, Any]],
        *,
        table: pa.Table | None = None,
        columns: dict[str, list[Any]] | None = None,
        texts: dict[str, pa.Array] | None = None,
    ):
        self.source_id = source_id
        self.received_us = received_us
        self.rejected = rejected
        self._table = table
        self._columns = columns or {}
        self._texts = texts or {}

    @property
    def num_rows(self) -> int:
        if self._table is not None:
            return self._table.num_rows
        return len(self._columns.get("message_id", ()))

    @property
    def table(self) -> pa.Table:
        if self._table is None:
            self._table = table_of([self])
        return self._table

    def message_ids(self) -> list[str]:
        if self._table is None:
            return list(self._columns.get("message_id", ()))
        return self._table.column("message_id").to_pylist()


def table_of(batch: Sequence[CaptureRecord]) -> pa.Table:
    """The rows of several records (of one source) as one table, in record order. Records that came
    as columns are joined before conversion, so Arrow converts long columns, not many short ones."""
    parts: list[pa.Table] = []
    columns: dict[str, list[Any]] = {}
    texts: dict[str, list[pa.Array]] = {}

    def close_run() -> None:
        if columns:
            parts.append(_columns_table(columns, texts))
            columns.clear()
            texts.clear()

    for record in batch:
        if record._table is not None:
            close_run()
            parts.append(record._table)
            continue
        if not record.num_rows:
            continue
        if columns and (columns.keys() != record._columns.keys() or texts.keys() != record._texts.keys()):
            close_run()  # written by another version of the format
        for name, values in record._columns.items():
            columns.setdefault(name, []).extend(values)
        for name, array in record._texts.items():
            texts.setdefault(name, []).append(array)
    close_run()
    if not parts:
        return NORMALIZED.empty_table()
    return parts[0] if len(parts) == 1 else pa.concat_tables(parts)


def _columns_table(columns: dict[str, list[Any]], texts: dict[str, list[pa.Array]]) -> pa.Table:
    rows = len(columns["message_id"])
    arrays = []
    for column in NORMALIZED:
        if column.name in texts:
            arrays.append(pa.chunked_array(texts[column.name], column.type))
        else:
            arrays.append(column_array(column, columns.get(column.name) or [None] * rows))
    return pa.Table.from_arrays(arrays, schema=NORMALIZED)


def encode(batches: Sequence[CaptureBatch]) -> list[bytes]:
    """A group's batches → one record per source (in order of first appearance)."""
    by_source: dict[int, list[CaptureBatch]] = {}
    for batch in batches:
        by_source.setdefault(batch.source_id, []).append(batch)
    return [_encode_source(source_id, group) for source_id, group in by_source.items()]


def _encode_source(source_id: int, batches: list[CaptureBatch]) -> bytes:
    received = max(batch.received_us for batch in batches)
    rows = batches[0].rows if len(batches) == 1 else [row for batch in batches for row in batch.rows]
    rejected = [
        {**item, "received_at": item.get("received_at", batch.received_us)}
        for batch in batches
        for item in batch.rejected
    ]
    header = orjson.dumps(
        {"s": source_id, "r": received, "n": len(rows), "c": _SCALARS, "j": JSON_COLUMNS, "rej": rejected},
        default=str,
    )
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(NORMALIZED_NAMES)
    scalars = orjson.dumps(columns[: len(_SCALARS)])
    parts = [bytes((VERSION,)), _U32.pack(len(header)), header, _U32.pack(len(scalars)), scalars]
    for values in columns[len(_SCALARS) :]:
        texts = json_texts(values)  # as values_to_table writes them
        offsets = np.zeros(len(texts) + 1, "<i4")
        np.cumsum(np.fromiter(map(len, texts), np.int64, len(texts)), out=offsets[1:], dtype="<i4")
        parts += (offsets.tobytes(), b"".join(texts))
    return b"".join(parts)


def decode(payload: bytes) -> CaptureRecord:
    if not payload:
        raise LogFormatError("an empty write-ahead log record")
    version = payload[0]
    if version in (VERSION, _ARROW_VERSION):
        (length,) = _U32.unpack_from(payload, 1)
        start = 1 + _U32.size
        header = orjson.loads(payload[start : start + length])
        if version == VERSION:
            return _decode_columns(header, payload, start + length)
        table = pa.ipc.open_stream(pa.py_buffer(payload)[start + length :]).read_all()
        return CaptureRecord(header["s"], header["r"], header["rej"], table=_conform(table))
    if payload[:1] == b"{":  # version 1
        record = orjson.loads(payload)
        rejected = [{**item, "received_at": record["r"]} for item in record["rej"]]
        return CaptureRecord(record["s"], record["r"], rejected, table=rows_to_table(record["rows"]))
    raise LogFormatError(
        f"the write-ahead log holds a record of format version {version}, which this Masar does not know; "
        "run the Masar version that wrote it until its log is applied (GET /health shows applied == wal)"
    )


def _decode_columns(header: dict[str, Any], payload: bytes, position: int) -> CaptureRecord:
    """Version 3's body: the scalar columns' JSON, then each JSON column as Arrow string buffers."""
    rows = header["n"]
    try:
        (length,) = _U32.unpack_from(payload, position)
        position += _U32.size
        scalars = orjson.loads(memoryview(payload)[position : position + length])
        position += length
        if len(scalars) != len(header["c"]) or any(len(values) != rows for values in scalars):
            raise ValueError("its columns do not match its header")
        texts = {}
        buffer = pa.py_buffer(payload)
        for name in header["j"]:
            offsets = np.frombuffer(payload, "<i4", rows + 1, position).astype(np.int32)
            position += 4 * (rows + 1)
            size = int(offsets[-1])
            array = pa.StringArray.from_buffers(
                rows, pa.py_buffer(offsets), buffer[position : position + size]
            )
            array.validate(full=True)  # offsets in order and inside the data, the text UTF-8
            texts[name] = array
            position += size
        if position != len(payload):
            raise ValueError(f"{len(payload) - position} bytes are left after its columns")
    except (ValueError, struct.error, pa.ArrowException) as exc:  # orjson's error is a ValueError
        raise LogFormatError(f"a write-ahead log record is malformed: {exc}") from None
    columns = dict(zip(header["c"], scalars, strict=True))
    return CaptureRecord(header["s"], header["r"], header["rej"], columns=columns, texts=texts)


def _conform(table: pa.Table) -> pa.Table:
    """A record written under an older ``NORMALIZED`` (columns since added are null)."""
    if table.schema.equals(NORMALIZED):
        return table
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in NORMALIZED
    ]
    return pa.Table.from_arrays(columns, schema=NORMALIZED)


def read_records(
    directory: Path, since: WalPosition, upto: WalPosition | None = None
) -> Iterator[tuple[WalPosition, CaptureRecord]]:
    """Every whole record after ``since`` (and not past ``upto``), decoded, with the position after it."""
    for position, payload in read_payloads(directory, since, upto):
        yield position, decode(payload)
