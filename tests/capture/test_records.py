"""The capture log's records: columnar v2 round trip, v1 (JSON) logs replayed, unknown versions
refused, torn tails cut; and a real server that starts on a log left by the older format."""

from __future__ import annotations

import zlib
from pathlib import Path

import orjson
import pytest

import masar
from masar.capture import records
from masar.capture.normalize import CaptureContext, normalize_message, normalize_values, parse_time_us
from masar.capture.records import CaptureBatch, LogFormatError
from masar.capture.rows import rows_to_table
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
    source = make_source(data_dir, "Old Shop")
    store = masar.open(data_dir)
    store.close()
    wal_dir = data_dir / "wal"
    wal_dir.mkdir(exist_ok=True)
    rows = [normalize_message(m, CTX) for m in _messages("v1", 7)]
    payload = orjson.dumps({"s": int(source["id"]), "r": RECEIVED, "rows": rows, "rej": []})
    (wal_dir / "000000000001.wal").write_bytes(HEADER.pack(len(payload), zlib.crc32(payload)) + payload)
    srv = server(data_dir)
    wait_for_count(data_dir, "Old Shop", 7)
    # The replayed ids are known to dedup: a client's retry of them adds nothing.
    import httpx

    answer = httpx.post(srv.url + "/v1/batch", json={"batch": _messages("v1", 7), "writeKey": source["write_key"]})
    assert answer.status_code == 200 and answer.json()["duplicates"] == 7
    srv.wait_ingested()
    assert wait_for_count(data_dir, "Old Shop", 7) == 7
