"""The write-ahead log: captured events are durable here before the client hears 2xx.

Records are appended to numbered files as ``length (u32) | crc32 (u32) | payload``; what a payload
holds is the caller's business (capture's is in ``records.py``). One writer
thread takes every request waiting at that moment, appends them, fsyncs once and then wakes them
all (group commit): durability costs one fsync per group, not per request.

A crash can leave a torn record at the tail. It was never acknowledged (its fsync had not
returned), so recovery cuts the file back to the last whole record before anything is appended.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from masar.errors import Conflict

HEADER = struct.Struct("<II")
MAX_RECORD = 64 * 1024 * 1024


@dataclass(frozen=True, order=True)
class WalPosition:
    file_seq: int
    offset: int


def _file_name(seq: int) -> str:
    return f"{seq:012d}.wal"


def wal_files(directory: Path) -> list[tuple[int, Path]]:
    found = []
    for path in directory.glob("*.wal"):
        try:
            found.append((int(path.stem), path))
        except ValueError:
            continue
    return sorted(found)


def _scan(path: Path, start: int) -> Iterator[tuple[int, bytes]]:
    """Whole records from ``start``: yields (offset after the record, payload); stops at a torn tail."""
    with path.open("rb") as handle:
        handle.seek(start)
        offset = start
        while True:
            header = handle.read(HEADER.size)
            if len(header) < HEADER.size:
                return
            length, crc = HEADER.unpack(header)
            if length > MAX_RECORD:
                return
            payload = handle.read(length)
            if len(payload) < length or zlib.crc32(payload) != crc:
                return
            offset += HEADER.size + length
            yield offset, payload


def read_payloads(
    directory: Path, since: WalPosition, upto: WalPosition | None = None
) -> Iterator[tuple[WalPosition, bytes]]:
    """Every whole record after ``since`` (and not past ``upto``), with the position after it."""
    for seq, path in wal_files(directory):
        if seq < since.file_seq or (upto is not None and seq > upto.file_seq):
            continue
        start = since.offset if seq == since.file_seq else 0
        for offset, payload in _scan(path, start):
            position = WalPosition(seq, offset)
            if upto is not None and position > upto:
                return
            yield position, payload


DURABLE_FILE = "DURABLE"


def read_durable(directory: Path) -> WalPosition | None:
    """The last position the writer has fsynced, as it publishes it for the ingestor process."""
    try:
        data = (directory / DURABLE_FILE).read_bytes()
    except FileNotFoundError:
        return None
    if len(data) != 16:
        return None
    return WalPosition(*struct.unpack("<QQ", data))


def remove_consumed(directory: Path, upto: WalPosition) -> int:
    """Delete log files wholly before ``upto``'s file: their records are in segments."""
    removed = 0
    for seq, path in wal_files(directory):
        if seq < upto.file_seq:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _json_records(records: list[Any]) -> list[bytes]:
    return [orjson.dumps(record, default=str) for record in records]


@dataclass
class _Pending:
    record: Any
    done: Callable[[Any], None]
    result: Any = None
    error: BaseException | None = None


def fsync_directory(directory: Path) -> None:
    """Make the directory's entries (a created or renamed file) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class WriteAheadLog:
    """Single-writer, group-committed append log. One per data directory (a lock file enforces it)."""

    directory: Path
    max_file_bytes: int = 64 * 1024 * 1024
    # Called in the writer thread with each record before it is written; returns the record to
    # write (or None to write nothing) and the result handed back to the caller. Capture uses it
    # to drop duplicate messageIds atomically with the append.
    prepare: Callable[[Any], tuple[Any | None, Any]] | None = None
    # Turns a group's prepared records into payloads (any number: capture writes one per source).
    encode: Callable[[list[Any]], list[bytes]] = _json_records
    # Called in the writer thread after each group with the records that reached the disk.
    after_group: Callable[[list[Any]], None] | None = None
    _queue: list[_Pending] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _thread: threading.Thread | None = None
    _closed: bool = False
    _lock_handle: Any = None
    _durable_fd: int = -1
    _file: Any = None
    _seq: int = 0
    _size: int = 0
    position: WalPosition = WalPosition(0, 0)

    def open(self) -> WalPosition:
        self.directory.mkdir(parents=True, exist_ok=True)
        lock_path = self.directory / "LOCK"
        self._lock_handle = lock_path.open("a+")
        try:
            fcntl.flock(self._lock_handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_handle.close()
            raise Conflict(
                f"another Masar server is already capturing into {self.directory.parent}; "
                "run one server per data directory"
            ) from None
        files = wal_files(self.directory)
        if files:
            seq, path = files[-1]
            end = 0
            for offset, _payload in _scan(path, 0):
                end = offset
            if path.stat().st_size != end:
                with path.open("r+b") as handle:  # cut the torn, never-acknowledged tail
                    handle.truncate(end)
                    os.fsync(handle.fileno())
            self._seq, self._size = seq, end
        else:
            self._seq, self._size = 1, 0
        self._file = (self.directory / _file_name(self._seq)).open("ab")
        fsync_directory(self.directory)
        self.position = WalPosition(self._seq, self._size)
        self._durable_fd = os.open(self.directory / DURABLE_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        self._publish()
        self._thread = threading.Thread(target=self._run, name="masar-wal", daemon=True)
        self._thread.start()
        return self.position

    def submit(self, record: Any, done: Callable[[Any], None]) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("write-ahead log is closed")
            self._queue.append(_Pending(record, done))
            self._cond.notify()

    async def append(self, record: Any) -> Any:
        """Append and wait until the record is on disk; returns what ``prepare`` said."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def done(pending: _Pending) -> None:
            def settle() -> None:
                if future.done():
                    return
                if pending.error is not None:
                    future.set_exception(pending.error)
                else:
                    future.set_result(pending.result)

            loop.call_soon_threadsafe(settle)

        self.submit(record, done)
        return await future

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue and self._closed:
                    return
                group, self._queue = self._queue, []
            try:
                written = self._write_group(group)
            except BaseException as exc:  # the disk failed: nobody in this group is acknowledged
                written = []
                for pending in group:
                    pending.error = exc
            if self.after_group is not None:
                self.after_group(written)
            for pending in group:
                pending.done(pending)

    def _write_group(self, group: list[_Pending]) -> list[Any]:
        """Append the group and fdatasync once; returns the records written."""
        prepared: list[tuple[_Pending, Any]] = []
        for pending in group:
            record = pending.record
            if self.prepare is not None:
                record, pending.result = self.prepare(record)
            if record is not None:
                prepared.append((pending, record))
        if not prepared:
            return []
        written = [record for _pending, record in prepared]
        try:
            payloads = self.encode(written)
        except Exception:
            # One record that cannot be encoded must not fail the others in its group: encode
            # each alone and fail only the ones that fail.
            payloads, written = [], []
            for pending, record in prepared:
                try:
                    payloads.extend(self.encode([record]))
                except Exception as exc:
                    pending.error = exc
                else:
                    written.append(record)
        chunks = []
        for payload in payloads:
            chunks.append(HEADER.pack(len(payload), zlib.crc32(payload)))
            chunks.append(payload)
        if not chunks:
            return []
        data = b"".join(chunks)
        if self._size and self._size + len(data) > self.max_file_bytes:
            self._rotate()
        self._file.write(data)
        self._file.flush()
        os.fdatasync(self._file.fileno())
        self._size += len(data)
        self.position = WalPosition(self._seq, self._size)
        self._publish()
        return written

    def _publish(self) -> None:
        # Not fsynced on purpose: it only bounds how far the ingestor reads; after a crash the
        # log itself is the truth.
        os.pwrite(self._durable_fd, struct.pack("<QQ", self.position.file_seq, self.position.offset), 0)

    def _rotate(self) -> None:
        self._file.close()
        self._seq += 1
        self._size = 0
        self._file = (self.directory / _file_name(self._seq)).open("ab")
        fsync_directory(self.directory)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._file is not None:
            self._file.close()
        if self._durable_fd >= 0:
            os.close(self._durable_fd)
            self._durable_fd = -1
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
