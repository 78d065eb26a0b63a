"""Deterministic message ids for imported rows: ``import:<content hash>:<occurrence>``.

Re-importing a file must add nothing, so a row's id comes from what the row says: a 128-bit hash
of its normalized fields, plus its occurrence number among identical rows (two identical rows in a
file are two events). The hash runs over Arrow buffers in a compiled kernel (DuckDB's md5 over a
concatenated row cost more than everything else an import does). It must never change: stored ids
depend on it. tests/importers/test_ids.py holds a plain Python reference it must agree with.

The hash, per row, is two 64-bit lanes, each absorbing the row's non-null fields in schema order:
a header word (the field's position in the schema << 32 | the value's byte length), then the
value's bytes in little-endian 8-byte words (the last one zero-padded). Nulls absorb nothing: the
headers already say which fields were present, and a column that is null throughout costs nothing. Times are epoch microseconds, amounts the 16 bytes of their decimal128
(scaled by 1000), integers as int64. Absorbing a word is ``h = mix((h ^ word) + K)``, with
splitmix64's finalizer as ``mix`` and a different ``K`` and seed per lane.
"""

from __future__ import annotations

from decimal import Decimal

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from masar.store.schema import NORMALIZED

# Fields that make two rows the same event: all but the id itself and the time of the import.
HASHED_FIELDS_EXCLUDED = ("message_id", "received_at")

SEED_A = np.uint64(0x243F6A8885A308D3)  # digits of pi
SEED_B = np.uint64(0x13198A2E03707344)
K_A = np.uint64(0x9E3779B97F4A7C15)
K_B = np.uint64(0xC2B2AE3D27D4EB4F)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)


@numba.njit(inline="always")
def _absorb(h: np.uint64, word: np.uint64, k: np.uint64) -> np.uint64:
    z = (h ^ word) + k
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@numba.njit(cache=True, nogil=True)
def _absorb_strings(a, b, position, offsets, data, valid):
    tag = np.uint64(position) << np.uint64(32)
    for i in range(a.shape[0]):
        if not valid[i]:
            continue
        start = offsets[i]
        end = offsets[i + 1]
        header = tag | np.uint64(end - start)
        ha = _absorb(a[i], header, K_A)
        hb = _absorb(b[i], header, K_B)
        j = start
        while j + 8 <= end:
            word = (
                np.uint64(data[j])
                | (np.uint64(data[j + 1]) << np.uint64(8))
                | (np.uint64(data[j + 2]) << np.uint64(16))
                | (np.uint64(data[j + 3]) << np.uint64(24))
                | (np.uint64(data[j + 4]) << np.uint64(32))
                | (np.uint64(data[j + 5]) << np.uint64(40))
                | (np.uint64(data[j + 6]) << np.uint64(48))
                | (np.uint64(data[j + 7]) << np.uint64(56))
            )
            ha = _absorb(ha, word, K_A)
            hb = _absorb(hb, word, K_B)
            j += 8
        if j < end:
            word = np.uint64(0)
            shift = np.uint64(0)
            while j < end:
                word |= np.uint64(data[j]) << shift
                shift += np.uint64(8)
                j += 1
            ha = _absorb(ha, word, K_A)
            hb = _absorb(hb, word, K_B)
        a[i] = ha
        b[i] = hb


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_PREFIX = np.frombuffer(b"import:", dtype=np.uint8)


@numba.njit(cache=True, nogil=True)
def _format_ids(a, b, counts, hexdigits, prefix):
    """``import:<a as 16 hex><b as 16 hex>:<count>`` per row, as Arrow string offsets and data."""
    n = a.shape[0]
    offsets = np.empty(n + 1, dtype=np.int32)
    offsets[0] = 0
    for i in range(n):
        digits = 1
        c = counts[i]
        while c >= 10:
            c //= 10
            digits += 1
        offsets[i + 1] = offsets[i] + prefix.shape[0] + 32 + 1 + digits
    data = np.empty(offsets[n], dtype=np.uint8)
    for i in range(n):
        p = offsets[i]
        for j in range(prefix.shape[0]):
            data[p] = prefix[j]
            p += 1
        for lane in range(2):
            v = a[i] if lane == 0 else b[i]
            for j in range(16):
                data[p + 15 - j] = hexdigits[np.int64(v & np.uint64(15))]
                v >>= np.uint64(4)
            p += 16
        data[p] = 58  # ':'
        end = offsets[i + 1]
        c = counts[i]
        q = end - 1
        while q > p:
            data[q] = 48 + c % 10
            c //= 10
            q -= 1
    return offsets, data


def string_hashes(strings: pa.Array, seed_a: np.uint64, seed_b: np.uint64) -> tuple[np.ndarray, np.ndarray]:
    """The two 64-bit lanes of each string's hash, from the given seeds (a null absorbs nothing)."""
    n = len(strings)
    a = np.full(n, seed_a, dtype=np.uint64)
    b = np.full(n, seed_b, dtype=np.uint64)
    if n:
        buffers = strings.buffers()
        offsets = np.frombuffer(buffers[1], dtype=np.int32)[strings.offset : strings.offset + n + 1]
        data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
        valid = np.ones(n, np.bool_) if strings.null_count == 0 else pc.is_valid(strings).to_numpy(zero_copy_only=False)
        _absorb_strings(a, b, 0, offsets, data, valid)
    return a, b


def content_hashes(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """The two 64-bit lanes of each row's content hash (``table``'s columns are normalized fields)."""
    n = table.num_rows
    a = np.full(n, SEED_A, dtype=np.uint64)
    b = np.full(n, SEED_B, dtype=np.uint64)
    for field in table.schema:
        if field.name in HASHED_FIELDS_EXCLUDED:
            continue
        position = NORMALIZED.get_field_index(field.name)
        column = table.column(field.name).combine_chunks()
        if column.null_count == n:
            continue
        valid = pc.is_valid(column).to_numpy(zero_copy_only=False)
        if pa.types.is_string(field.type):
            buffers = column.buffers()
            offsets = np.frombuffer(buffers[1], dtype=np.int32)[column.offset : column.offset + n + 1]
            data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
            _absorb_strings(a, b, position, offsets, data, valid)
        else:  # fixed-width values go through the same kernel, as byte strings of their width
            if pa.types.is_decimal(field.type):
                width = 16
                values = np.frombuffer(column.buffers()[1], dtype=np.uint8)[16 * column.offset : 16 * (column.offset + n)]
            else:  # timestamps and integers
                width = 8
                values = column.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False).view(np.uint8)
            offsets = np.arange(0, width * (n + 1), width, dtype=np.int32)
            _absorb_strings(a, b, position, offsets, np.ascontiguousarray(values), valid)
    return a, b


def occurrences(a: np.ndarray, b: np.ndarray, group_starts: np.ndarray) -> np.ndarray:
    """1 for the first row with a given hash, 2 for the second identical one, and so on.

    ``group_starts`` marks where a new group of rows begins, rows sorted so that identical rows
    share a group (an import: whole persons, sorted by person and time, so a group is one
    person's rows at one instant). Rows alone in their group need no comparison at all; the
    others are sorted by (group, hash). Identical rows are interchangeable, so which of them
    counts as first does not matter.
    """
    n = len(a)
    counts = np.ones(n, dtype=np.int64)
    if n < 2:
        return counts
    group = np.cumsum(group_starts) - 1
    size = np.bincount(group)
    shared = np.flatnonzero(size[group] > 1)
    if len(shared) == 0:
        return counts
    order = shared[np.lexsort((b[shared], a[shared], group[shared]))]
    g, sa, sb = group[order], a[order], b[order]
    new = np.ones(len(order), dtype=np.bool_)
    new[1:] = (g[1:] != g[:-1]) | (sa[1:] != sa[:-1]) | (sb[1:] != sb[:-1])
    position = np.arange(len(order), dtype=np.int64)
    run_start = np.maximum.accumulate(np.where(new, position, 0))
    counts[order] = position - run_start + 1
    return counts


def warm() -> None:
    """Load the compiled kernels from numba's cache (about 0.2 s) before the first rows need them:
    an import calls this in a thread while DuckDB reads the file. One row of each kind of column
    takes the same code path, with the same array types, as a real table."""
    row = pa.table({
        "event": pa.array(["Product Viewed"]),
        "ts": pa.array([0], pa.timestamp("us", tz="UTC")),
        "price": pa.array([Decimal(1)], pa.decimal128(18, 3)),
    })  # fmt: skip
    message_ids(row, np.ones(1, dtype=np.bool_))


def message_ids(table: pa.Table, group_starts: np.ndarray) -> pa.Array:
    """``import:<hash>:<occurrence>`` for every row of ``table`` (normalized schema; ``group_starts``
    as for ``occurrences``)."""
    a, b = content_hashes(table)
    offsets, data = _format_ids(a, b, occurrences(a, b, group_starts), _HEX, _PREFIX)
    return pa.StringArray.from_buffers(len(a), pa.py_buffer(offsets), pa.py_buffer(data))
