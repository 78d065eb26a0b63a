"""Capture's write-ahead log records: one per source per group commit.

A record is the normalized rows of every request of one source that one group commit made durable,
as a column table, plus the messages those requests rejected. The log's framing (length, CRC,
torn tails) is ``wal.py``'s; this is what goes inside.

Version 2, written now (first byte ``0x02``)::

    0x02 | header length (u32 LE) | header: JSON {"s": source id, "r": received µs, "rej": [...]}
         | Arrow IPC stream of the rows (schema ``NORMALIZED``, LZ4-compressed buffers)

Columns do not repeat key names per row, so a record is about a third of the JSON it replaced, and
the ingestor gets a table without building one row by row. Rejected messages stay JSON: they are
few, and their payloads are arbitrary.

Version 1 (first byte ``{``): one JSON object ``{"s", "r", "rows": [row dicts], "rej"}`` per
request, written before 2026-11-24. Read (so a log left by an older server is replayed), never
written. Any other first byte is refused with a clear error rather than guessed at.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from masar.capture.rows import rows_to_table, values_to_table
from masar.capture.wal import WalPosition, read_payloads
from masar.errors import MasarError
from masar.store.schema import NORMALIZED

VERSION = 2
_HEADER_LENGTH = struct.Struct("<I")
_IPC_OPTIONS = pa.ipc.IpcWriteOptions()


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


@dataclass
class CaptureRecord:
    """A decoded log record."""

    source_id: int
    received_us: int
    table: pa.Table
    rejected: list[dict[str, Any]]

    def message_ids(self) -> list[str]:
        return self.table.column("message_id").to_pylist()


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
    header = orjson.dumps({"s": source_id, "r": received, "rej": rejected}, default=str)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, NORMALIZED, options=_IPC_OPTIONS) as writer:
        writer.write_table(values_to_table(rows))
    return b"".join((bytes((VERSION,)), _HEADER_LENGTH.pack(len(header)), header, sink.getvalue().to_pybytes()))


def decode(payload: bytes) -> CaptureRecord:
    if not payload:
        raise LogFormatError("an empty write-ahead log record")
    version = payload[0]
    if version == VERSION:
        (length,) = _HEADER_LENGTH.unpack_from(payload, 1)
        start = 1 + _HEADER_LENGTH.size
        header = orjson.loads(payload[start : start + length])
        buffer = pa.py_buffer(payload)[start + length :]
        table = pa.ipc.open_stream(buffer).read_all()
        return CaptureRecord(header["s"], header["r"], _conform(table), header["rej"])
    if payload[:1] == b"{":  # version 1
        record = orjson.loads(payload)
        rejected = [{**item, "received_at": record["r"]} for item in record["rej"]]
        return CaptureRecord(record["s"], record["r"], rows_to_table(record["rows"]), rejected)
    raise LogFormatError(
        f"the write-ahead log holds a record of format version {version}, which this Masar does not know; "
        "run the Masar version that wrote it until its log is applied (GET /health shows applied == wal)"
    )


def _conform(table: pa.Table) -> pa.Table:
    """A record written under an older ``NORMALIZED`` (columns since added are null)."""
    if table.schema.equals(NORMALIZED):
        return table
    columns = [
        table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
        for f in NORMALIZED
    ]
    return pa.Table.from_arrays(columns, schema=NORMALIZED)


def read_records(
    directory: Path, since: WalPosition, upto: WalPosition | None = None
) -> Iterator[tuple[WalPosition, CaptureRecord]]:
    """Every whole record after ``since`` (and not past ``upto``), decoded, with the position after it."""
    for position, payload in read_payloads(directory, since, upto):
        yield position, decode(payload)
