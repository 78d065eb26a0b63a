"""The capture log's records: the v3 round trip (any JSON, byte for byte), v2 (Arrow) and v1 (JSON)
logs replayed, unknown versions and damaged records refused, torn tails cut; and a real server that
starts on a log left by an older format."""

from __future__ import annotations

import zlib
from pathlib import Path

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import masar
from masar.capture import records
from masar.capture.normalize import CaptureContext, normalize_message, normalize_values, parse_time_us
from masar.capture.records import CaptureBatch, LogFormatError
from masar.capture.rows import rows_to_table, values_to_table
from masar.capture.wal import HEADER, WalPosition, WriteAheadLog, read_payloads
from tests.conftest import make_source, wait_for_count

RECEIVED = parse_time_us("2026-03-01T12:00:00Z", "x")
CTX = CaptureContext(received_at_us=RECEIVED, default_currency="SAR")


def _messages(prefix: str, n: int) -> list[dict]:
    return [
        {"type": "track", "event": "Order Completed", "anonymousId": f"{prefix}-a{i % 3}", "messageId": f"{prefix}-{i}",
         "timestamp": "2026-03-01T11:00:00Z", "properties": {"total": 10 + i, "currency": "KWD", "n": {"x": [i]}},
         "context": {"page": {"url": f"https://s.com/p{i}?utm_source=ig"}, "userAgent": "UA", "ip": "203.0.113.9"}}
        for i in range(n)
    ]  # fmt: skip


def _v2_payload(source_id: int, rows: list[tuple]) -> bytes:
    """A record as 2026-11-24's servers wrote it: a JSON header, then an Arrow IPC stream."""
    header = orjson.dumps({"s": source_id, "r": RECEIVED, "rej": []})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, values_to_table(rows).schema) as writer:
        writer.write_table(values_to_table(rows))
    return b"\x02" + records._U32.pack(len(header)) + header + sink.getvalue().to_pybytes()


def _unapplied_log(data_dir: Path, shop: str, payloads) -> dict:
    """A source whose log holds ``payloads(source id)``, acknowledged but not yet applied."""
    source = make_source(data_dir, shop)
    masar.open(data_dir).close()
    wal_dir = data_dir / "wal"
    wal_dir.mkdir(exist_ok=True)
    framed = b"".join(HEADER.pack(len(p), zlib.crc32(p)) + p for p in payloads(int(source["id"])))
    (wal_dir / "000000000001.wal").write_bytes(framed)
    return source


def test_round_trip_one_record_per_source():
    a = CaptureBatch(1, RECEIVED, [normalize_values(m, CTX) for m in _messages("a", 5)],
                     [{"index": 9, "code": "missing_event", "message": "m", "payload": {"x": 1}}])  # fmt: skip
    b = CaptureBatch(2, RECEIVED + 5, [normalize_values(m, CTX) for m in _messages("b", 3)])
    c = CaptureBatch(1, RECEIVED + 9, [normalize_values(m, CTX) for m in _messages("c", 2)])
    payloads = records.encode([a, b, c])
    assert len(payloads) == 2 and all(p[0] == records.VERSION for p in payloads)
    first, second = (records.decode(p) for p in payloads)
    assert (first.source_id, first.received_us, second.source_id) == (1, RECEIVED + 9, 2)
    # The table is what the plain row dicts give.
    expected = rows_to_table([normalize_message(m, CTX) for m in _messages("a", 5) + _messages("c", 2)])
    assert first.table.equals(expected)
    assert first.message_ids() == [f"a-{i}" for i in range(5)] + ["c-0", "c-1"]
    assert first.rejected == [{"index": 9, "code": "missing_event", "message": "m", "payload": {"x": 1},
                               "received_at": RECEIVED}]  # fmt: skip
    assert second.table.num_rows == 3 and second.rejected == []


def test_v1_json_records_still_read():
    rows = [normalize_message(m, CTX) for m in _messages("old", 4)]
    payload = orjson.dumps({"s": 3, "r": RECEIVED, "rows": rows, "rej": [{"index": 0, "code": "c", "message": "m"}]})
    record = records.decode(payload)
    assert record.source_id == 3 and record.table.equals(rows_to_table(rows))
    assert record.rejected == [{"index": 0, "code": "c", "message": "m", "received_at": RECEIVED}]


def test_unknown_version_is_refused_clearly():
    with pytest.raises(LogFormatError, match="format version 7"):
        records.decode(b"\x07whatever")


def test_torn_tail_cut_and_whole_records_kept(tmp_path: Path):
    wal = WriteAheadLog(tmp_path / "wal", encode=records.encode)
    wal.open()
    done = []
    for i in range(3):
        wal.submit(CaptureBatch(1, RECEIVED, [normalize_values(m, CTX) for m in _messages(f"t{i}", 4)]), done.append)
    wal.close()
    assert len(done) == 3 and all(p.error is None for p in done)
    path = next((tmp_path / "wal").glob("*.wal"))
    whole = path.stat().st_size
    with path.open("ab") as handle:  # a record whose write was cut off by a crash
        payload = records.encode([CaptureBatch(1, RECEIVED, [normalize_values(_messages("torn", 1)[0], CTX)])])[0]
        handle.write(HEADER.pack(len(payload), zlib.crc32(payload)) + payload[: len(payload) // 2])
    ids = [mid for _p, r in records.read_records(tmp_path / "wal", WalPosition(0, 0)) for mid in r.message_ids()]
    assert len(ids) == 12 and not any(mid.startswith("torn") for mid in ids)
    reopened = WriteAheadLog(tmp_path / "wal", encode=records.encode)
    reopened.open()
    reopened.close()
    assert path.stat().st_size == whole
    after = [mid for _p, r in records.read_records(tmp_path / "wal", WalPosition(0, 0)) for mid in r.message_ids()]
    assert after == ids


def test_one_unencodable_record_fails_alone(tmp_path: Path):
    def encode(batch_list):
        if "bad" in batch_list:
            raise ValueError("cannot encode")
        return [orjson.dumps(b) for b in batch_list]

    written, done = [], []
    wal = WriteAheadLog(tmp_path / "wal", encode=encode, after_group=written.append)
    wal.open()
    with wal._cond:  # held (it is reentrant) so that the writer takes all three as one group
        for record in ("ok1", "bad", "ok2"):
            wal.submit(record, done.append)
    wal.close()
    assert written == [["ok1", "ok2"]]  # only what reached the disk is reported (dedup remembers it)
    assert {p.record: type(p.error) for p in done} == {"ok1": type(None), "bad": ValueError, "ok2": type(None)}
    assert [orjson.loads(p) for _pos, p in read_payloads(tmp_path / "wal", WalPosition(0, 0))] == ["ok1", "ok2"]


def test_server_replays_a_log_left_in_the_v1_format(data_dir: Path, server):
    """An acknowledged but unapplied v1 log (a server upgraded mid-backlog) is stored once."""
    rows = [normalize_message(m, CTX) for m in _messages("v1", 7)]
    source = _unapplied_log(
        data_dir, "Old Shop", lambda sid: [orjson.dumps({"s": sid, "r": RECEIVED, "rows": rows, "rej": []})]
    )
    srv = server(data_dir)
    wait_for_count(data_dir, "Old Shop", 7)
    # The replayed ids are known to dedup: a client's retry of them adds nothing.
    import httpx

    answer = httpx.post(srv.url + "/v1/batch", json={"batch": _messages("v1", 7), "writeKey": source["write_key"]})
    assert answer.status_code == 200 and answer.json()["duplicates"] == 7
    srv.wait_ingested()
    assert wait_for_count(data_dir, "Old Shop", 7) == 7


# -- version 3: scalar columns as JSON, the JSON columns as text buffers ------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),  # any code point the JSON text can carry: escapes, U+2028, astral planes
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=12,
)  # fmt: skip
json_objects = st.dictionaries(st.text(max_size=6), json_values, max_size=4)


@st.composite
def row_batches(draw):
    """Normalized rows whose properties, traits and context hold arbitrary JSON."""
    batch = []
    for i in range(draw(st.integers(0, 6))):
        message = _messages(f"h{i}", 1)[0]
        message["messageId"] = draw(st.text(min_size=1, max_size=12)) + f"-{i}"
        message["properties"] = {**draw(json_objects), "total": draw(st.integers(0, 10**6))}
        message["traits"] = draw(json_objects)
        message["context"] = {**message["context"], "extra": draw(json_values)}
        if draw(st.booleans()):
            message["context"].pop("page")
        batch.append(normalize_values(orjson.loads(orjson.dumps(message)), CTX))  # as the server parses it
    return batch


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row_batches(), row_batches())
def test_v3_tables_equal_the_rows_own(first_rows, second_rows):
    """Whatever JSON the messages hold, the table decoded from the log is the one ``values_to_table``
    builds from the rows: the same values, the same JSON text byte for byte, across joined records."""
    payloads = [records.encode([CaptureBatch(1, RECEIVED, rows)])[0] for rows in (first_rows, second_rows)]
    decoded = [records.decode(p) for p in payloads]
    assert all(p[0] == 3 for p in payloads)
    assert [r.num_rows for r in decoded] == [len(first_rows), len(second_rows)]
    assert records.table_of(decoded).equals(values_to_table(first_rows + second_rows))
    assert decoded[0].message_ids() == [row[0] for row in first_rows]


def test_v2_and_v3_records_join_in_order():
    """A log holding both formats (a server upgraded mid-backlog) is applied in record order."""
    old_rows = [normalize_values(m, CTX) for m in _messages("old", 3)]
    new_rows = [normalize_values(m, CTX) for m in _messages("new", 4)]
    v2 = records.decode(_v2_payload(1, old_rows))
    v3 = records.decode(records.encode([CaptureBatch(1, RECEIVED, new_rows)])[0])
    empty = records.decode(records.encode([CaptureBatch(1, RECEIVED, [], [{"index": 0, "code": "c", "message": "m"}])])[0])
    assert empty.num_rows == 0 and empty.rejected[0]["code"] == "c" and empty.table.num_rows == 0
    joined = records.table_of([v3, v2, empty, v3])
    assert joined.equals(pa.concat_tables([values_to_table(new_rows), values_to_table(old_rows), values_to_table(new_rows)]))


def test_v3_record_with_fewer_columns_reads_them_null():
    """A record written before a column existed: the header names its columns; the rest are null."""
    rows = [normalize_values(m, CTX) for m in _messages("few", 2)]
    payload = records.encode([CaptureBatch(1, RECEIVED, rows)])[0]
    (length,) = records._U32.unpack_from(payload, 1)
    header = orjson.loads(payload[5 : 5 + length])
    (scalar_length,) = records._U32.unpack_from(payload, 5 + length)
    scalars = orjson.loads(payload[9 + length : 9 + length + scalar_length])
    drop = header["c"].index("city")
    header["c"].pop(drop)
    scalars.pop(drop)
    new_header, new_scalars = orjson.dumps(header), orjson.dumps(scalars)
    rebuilt = b"".join((payload[:1], records._U32.pack(len(new_header)), new_header, records._U32.pack(len(new_scalars)),
                        new_scalars, payload[9 + length + scalar_length :]))  # fmt: skip
    table = records.decode(rebuilt).table
    assert table.column("city").null_count == 2
    assert table.drop_columns(["city"]).equals(values_to_table(rows).drop_columns(["city"]))


@pytest.mark.parametrize("damage", ["cut", "extra", "columns", "offsets", "utf8"])
def test_malformed_v3_records_are_refused_clearly(damage):
    rows = [normalize_values(m, CTX) for m in _messages("bad", 3)]
    payload = bytearray(records.encode([CaptureBatch(1, RECEIVED, rows)])[0])
    (length,) = records._U32.unpack_from(payload, 1)
    (scalar_length,) = records._U32.unpack_from(payload, 5 + length)
    texts_at = 9 + length + scalar_length  # properties' offsets, then its text
    if damage == "cut":
        payload = payload[:-7]
    elif damage == "extra":
        payload += b"xx"
    elif damage == "columns":
        header = orjson.loads(payload[5 : 5 + length])
        header["n"] = 5
        new_header = orjson.dumps(header)
        payload = payload[:1] + records._U32.pack(len(new_header)) + new_header + payload[5 + length :]
    elif damage == "offsets":
        records._U32.pack_into(payload, texts_at + 4, 10**6)  # the first row ends past the text
    else:
        payload[texts_at + 4 * (len(rows) + 1)] = 0xFF  # not UTF-8
    with pytest.raises(LogFormatError, match="malformed"):
        records.decode(bytes(payload))


def test_server_replays_a_log_left_in_the_v2_format(data_dir: Path, server):
    """A server upgraded while its log held Arrow (v2) records, with v3 records appended after:
    both are stored once, in order."""
    old_rows = [normalize_values(m, CTX) for m in _messages("v2", 5)]
    new_rows = [normalize_values(m, CTX) for m in _messages("v3", 4)]
    source = _unapplied_log(
        data_dir,
        "Arrow Shop",
        lambda sid: [_v2_payload(sid, old_rows), records.encode([CaptureBatch(sid, RECEIVED, new_rows)])[0]],
    )
    srv = server(data_dir)
    assert wait_for_count(data_dir, "Arrow Shop", 9) == 9
    import httpx

    answer = httpx.post(srv.url + "/v1/batch", json={"batch": _messages("v2", 5), "writeKey": source["write_key"]})
    assert answer.status_code == 200 and answer.json()["duplicates"] == 5
    srv.wait_ingested()
    assert wait_for_count(data_dir, "Arrow Shop", 9) == 9
