"""Import message ids: the compiled content hash and occurrence counts against plain references."""

from __future__ import annotations

import collections
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from masar.importers.ids import (
    HASHED_FIELDS_EXCLUDED,
    K_A,
    K_B,
    SEED_A,
    SEED_B,
    content_hashes,
    message_ids,
    occurrences,
    string_hashes,
)
from masar.store.schema import NORMALIZED

MASK = (1 << 64) - 1


def mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def absorb(h: int, word: int, k: int) -> int:
    return mix(((h ^ word) + k) & MASK)


def value_bytes(value, dtype: pa.DataType) -> bytes:
    if pa.types.is_string(dtype):
        return value.encode()
    if pa.types.is_timestamp(dtype):
        micros = (value - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        return (micros & MASK).to_bytes(8, "little")
    if pa.types.is_decimal(dtype):
        return (int(value.scaleb(3)) & ((1 << 128) - 1)).to_bytes(16, "little")
    return (value & MASK).to_bytes(8, "little")


def reference_hash(row: dict, schema: pa.Schema) -> tuple[int, int]:
    """The documented hash, one row at a time, in plain Python integers."""
    a, b = int(SEED_A), int(SEED_B)
    for field in schema:
        value = row[field.name]
        if field.name in HASHED_FIELDS_EXCLUDED or value is None:
            continue
        data = value_bytes(value, field.type)
        header = (NORMALIZED.get_field_index(field.name) << 32) | len(data)
        a, b = absorb(a, header, int(K_A)), absorb(b, header, int(K_B))
        for start in range(0, len(data), 8):
            word = int.from_bytes(data[start : start + 8].ljust(8, b"\0"), "little")
            a, b = absorb(a, word, int(K_A)), absorb(b, word, int(K_B))
    return a, b


FIELDS = ["message_id", "event", "ts", "user_id", "properties", "price", "quantity", "step", "received_at"]
SCHEMA = pa.schema([NORMALIZED.field(name) for name in FIELDS])
text = st.none() | st.text(max_size=40)
moment = st.none() | st.datetimes(
    min_value=datetime(1960, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
money = st.none() | st.decimals(min_value=-(10**14), max_value=10**14, places=3, allow_nan=False)
rows = st.fixed_dictionaries(
    {
        "message_id": text,
        "event": text,
        "ts": moment,
        "user_id": text,
        "properties": text,
        "price": money,
        "quantity": st.none() | st.integers(-(2**63), 2**63 - 1),
        "step": st.none() | st.integers(-(2**31), 2**31 - 1),
        "received_at": moment,
    }
)


@settings(max_examples=300, deadline=None)
@given(st.lists(rows, max_size=30), st.integers(0, 5))
def test_content_hash_matches_reference(data, skip):
    table = pa.Table.from_pylist(data, schema=SCHEMA).slice(min(skip, len(data)))  # sliced: buffer offsets
    a, b = content_hashes(table)
    expected = [reference_hash(row, SCHEMA) for row in table.to_pylist()]
    assert list(zip(a.tolist(), b.tolist(), strict=True)) == expected
    ids = message_ids(table, np.ones(table.num_rows, dtype=np.bool_)).to_pylist()
    assert ids == [f"import:{x:016x}{y:016x}:1" for x, y in expected]


def reference_string_hash(value: str | None, seed_a: int, seed_b: int) -> tuple[int, int]:
    """One string as the hash absorbs a field at position 0, from the given seeds."""
    a, b = seed_a, seed_b
    if value is None:
        return a, b
    data = value.encode()
    a, b = absorb(a, len(data), int(K_A)), absorb(b, len(data), int(K_B))
    for start in range(0, len(data), 8):
        word = int.from_bytes(data[start : start + 8].ljust(8, b"\0"), "little")
        a, b = absorb(a, word, int(K_A)), absorb(b, word, int(K_B))
    return a, b


@settings(max_examples=300, deadline=None)
@given(st.lists(st.none() | st.text(max_size=60), max_size=30), st.integers(0, 5),
       st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))  # fmt: skip
def test_string_hashes_match_reference(values, skip, seed_a, seed_b):
    strings = pa.array(values, pa.string()).slice(min(skip, len(values)))  # sliced: buffer offsets
    a, b = string_hashes(strings, np.uint64(seed_a), np.uint64(seed_b))
    expected = [reference_string_hash(v, seed_a, seed_b) for v in strings.to_pylist()]
    assert list(zip(a.tolist(), b.tolist(), strict=True)) == expected


def test_hash_ignores_id_and_import_time_and_sees_every_field():
    base = {"message_id": "m", "event": "E", "ts": datetime(2026, 1, 1, tzinfo=UTC), "user_id": "u",
            "properties": "{}", "price": Decimal("1.5"), "quantity": 1, "step": 2,
            "received_at": datetime(2026, 1, 2, tzinfo=UTC)}  # fmt: skip
    variants = [base, {**base, "message_id": "other", "received_at": datetime(2027, 1, 1, tzinfo=UTC)}]
    for name, other in (("event", "F"), ("user_id", None), ("price", Decimal("1.501")), ("step", 3), ("ts", None)):
        variants.append({**base, name: other})
    # a value moved to the neighbouring field is a different row
    variants.append({**base, "event": None, "user_id": "E"})
    hashes = list(zip(*content_hashes(pa.Table.from_pylist(variants, schema=SCHEMA)), strict=True))
    assert hashes[0] == hashes[1]
    assert len(set(hashes[1:])) == len(hashes) - 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 4)), max_size=60))
def test_occurrences_count_identical_rows(rows):
    """rows: (person, time, content). Identical content at the same person and time are identical rows."""
    rows = sorted(rows, key=lambda r: (r[0], r[1]))  # the import's order; ties in any order
    keys = [hash((p, t, c)) & MASK for p, t, c in rows]
    a = np.array(keys, dtype=np.uint64)
    b = np.array([(k * 7 + 1) & MASK for k in keys], dtype=np.uint64)
    starts = np.array([i == 0 or rows[i][:2] != rows[i - 1][:2] for i in range(len(rows))], dtype=np.bool_)
    counts = occurrences(a, b, starts).tolist()
    by_row = collections.defaultdict(list)
    for row, count in zip(rows, counts, strict=True):
        by_row[row].append(count)
    for row, found in by_row.items():
        assert sorted(found) == list(range(1, len(found) + 1)), row
