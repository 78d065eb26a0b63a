"""The capture API's contract over raw HTTP against a real ``masar serve``: statuses, error codes,
partial batches, gzip, write keys, deduplication, clock correction, quarantine and CORS.

One server serves the whole module. Tests share a source and keep their counts apart with event
names unique to each test.
"""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

import masar
from tests.conftest import cli_rejected, make_source, wait_for_count

pytestmark = pytest.mark.timeout(120)

SOURCE = "Errors Shop"


class Env:
    def __init__(self, data_dir: Path, url: str, write_key: str, srv: Any):
        self.data_dir = data_dir
        self.url = url
        self.write_key = write_key
        self.srv = srv
        self.http = httpx.Client(base_url=url, auth=(write_key, ""), timeout=30)
        self.store = masar.open(data_dir)
        self.source = self.store.source(SOURCE)

    def close(self) -> None:
        self.http.close()
        self.store.close()

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        headers = {"Content-Type": "application/json", **(headers or {})}
        return self.http.post(path, content=json.dumps(body).encode(), headers=headers)

    def count(self, event: str) -> int:
        return self.store.count_events(self.source, event=event)

    def settle(self) -> None:
        """Everything acknowledged so far has been moved into segments (or quarantine)."""
        self.srv.wait_ingested()


@pytest.fixture(scope="module")
def env(module_server, tmp_path_factory) -> Env:
    data_dir = tmp_path_factory.mktemp("capture-http") / "data"
    created = make_source(data_dir, SOURCE)
    srv = module_server(data_dir)
    e = Env(data_dir, srv.url, created["write_key"], srv)
    yield e
    e.close()


def unique(name: str) -> str:
    return f"{name} {uuid.uuid4().hex[:10]}"


def track(event: str, **extra: Any) -> dict[str, Any]:
    return {"type": "track", "event": event, "userId": "u-1", "messageId": uuid.uuid4().hex, **extra}


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]), body
    return body["error"]


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# -- request-level errors ----------------------------------------------------------------------


def test_missing_write_key_is_401(env):
    response = httpx.post(env.url + "/v1/track", json=track("X"), timeout=10)
    assert response.status_code == 401
    assert error_of(response)["code"] == "missing_write_key"


def test_unknown_write_key_is_401(env):
    response = httpx.post(
        env.url + "/v1/batch", json={"batch": [track("X")]}, auth=("nope-not-a-key", ""), timeout=10
    )
    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_write_key"
    response = httpx.post(env.url + "/v1/track", json={**track("X"), "writeKey": "also-wrong"}, timeout=10)
    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_write_key"


def test_malformed_basic_auth_is_400(env):
    response = httpx.post(
        env.url + "/v1/track", json=track("X"), headers={"Authorization": "Basic !!!"}, timeout=10
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_authorization"


@pytest.mark.parametrize(
    "body", [b"{not json", b"", b"[1, 2]", b'"text"'], ids=["broken", "empty", "array", "string"]
)
def test_invalid_json_is_400(env, body):
    response = env.http.post("/v1/batch", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"


def test_batch_without_list_is_400(env):
    response = env.post("/v1/batch", {"batch": {"type": "track"}})
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_batch"


@pytest.mark.parametrize(
    "content_type", ["application/xml", "application/x-www-form-urlencoded", "text/html"]
)
def test_non_json_content_type_is_415(env, content_type):
    response = env.http.post(
        "/v1/track", content=json.dumps(track("X")), headers={"Content-Type": content_type}
    )
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


def test_unknown_content_encoding_is_415(env):
    headers = {"Content-Type": "application/json", "Content-Encoding": "br"}
    response = env.http.post("/v1/track", content=json.dumps(track("X")), headers=headers)
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


def test_text_plain_is_accepted_for_send_beacon(env):
    event = unique("Beacon")
    body = {**track(event), "writeKey": env.write_key}
    response = httpx.post(
        env.url + "/v1/track", content=json.dumps(body), headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 200, response.text
    assert wait_for_count(env.store, SOURCE, 1, event=event) == 1


def test_single_message_over_32kb_is_413(env):
    event = unique("Big")
    message = track(event, properties={"blob": "x" * (33 * 1024)})
    response = env.post("/v1/track", message)
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"
    # Compressed small, inflated too large: the limit applies to the inflated body.
    response = env.http.post(
        "/v1/track",
        content=gzip.compress(json.dumps(message).encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"
    env.settle()
    assert env.count(event) == 0


def test_request_over_500kb_is_413(env):
    event = unique("Huge")
    batch = [track(event, properties={"blob": "y" * (20 * 1024)}) for _ in range(30)]  # ~600 KB
    response = env.post("/v1/batch", {"batch": batch})
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"
    env.settle()
    assert env.count(event) == 0


def test_batch_over_2500_messages_is_413(env):
    event = unique("Many")
    batch = [{"type": "track", "event": event, "userId": "u"} for _ in range(2501)]
    response = env.post("/v1/batch", {"batch": batch})
    assert response.status_code == 413
    assert error_of(response)["code"] == "batch_too_large"
    # Exactly 2,500 is fine.
    response = env.post("/v1/batch", {"batch": batch[:2500]})
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 2500
    assert wait_for_count(env.store, SOURCE, 2500, event=event) == 2500


# -- message-level errors: alone → 400; in a batch → rejected one by one, the rest kept ----------

NOW = datetime.now(UTC)
BAD_MESSAGES = {
    "missing_identity": {"type": "track", "event": "E"},
    "missing_event": {"type": "track", "userId": "u-1"},
    "invalid_type": {"type": "purchase", "event": "E", "userId": "u-1"},
    "invalid_message_id": {"type": "track", "event": "E", "userId": "u-1", "messageId": "m" * 101},
    "invalid_timestamp": {"type": "track", "event": "E", "userId": "u-1", "timestamp": "yesterday at noon"},
    "timestamp_in_future": {
        "type": "track",
        "event": "E",
        "userId": "u-1",
        "timestamp": iso(NOW + timedelta(days=2)),
    },
    "invalid_amount": {"type": "track", "event": "E", "userId": "u-1", "properties": {"price": "abc"}},
    "invalid_field": {"type": "track", "event": "E", "userId": "u-1", "properties": ["not", "an", "object"]},
}


@pytest.mark.parametrize("code", list(BAD_MESSAGES))
def test_bad_message_alone_is_400(env, code):
    response = env.post("/v1/batch", {"batch": [BAD_MESSAGES[code]]})
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["code"] == code
    assert [(r["index"], r["code"]) for r in error["rejected"]] == [(0, code)]
    if BAD_MESSAGES[code]["type"] == "track":
        response = env.post("/v1/track", BAD_MESSAGES[code])
        assert response.status_code == 400, response.text
        assert error_of(response)["code"] == code


@pytest.mark.parametrize("code", list(BAD_MESSAGES))
def test_bad_message_in_batch_keeps_the_good_ones(env, code):
    event = unique(f"Good {code}")
    good = [track(event) for _ in range(4)]
    batch = [good[0], good[1], BAD_MESSAGES[code], good[2], good[3]]
    response = env.post("/v1/batch", {"batch": batch})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    assert body["accepted"] == 4
    assert body["duplicates"] == 0
    assert [(r["index"], r["code"]) for r in body["rejected"]] == [(2, code)]
    assert body["rejected"][0]["message"]
    assert wait_for_count(env.store, SOURCE, 4, event=event) == 4
    env.settle()
    assert env.count(event) == 4


def test_oversized_message_inside_a_batch_is_rejected_alone(env):
    event = unique("Good big-batch")
    batch = [track(event), track(event, properties={"blob": "z" * (40 * 1024)}), track(event)]
    response = env.post("/v1/batch", {"batch": batch})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 2
    assert [(r["index"], r["code"]) for r in body["rejected"]] == [(1, "message_too_large")]
    assert wait_for_count(env.store, SOURCE, 2, event=event) == 2
    env.settle()
    assert env.count(event) == 2


def test_all_bad_batch_is_400_with_every_rejection(env):
    batch = [BAD_MESSAGES["missing_identity"], BAD_MESSAGES["missing_event"], BAD_MESSAGES["invalid_type"]]
    response = env.post("/v1/batch", {"batch": batch})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "all_messages_rejected"
    assert [(r["index"], r["code"]) for r in error["rejected"]] == [
        (0, "missing_identity"),
        (1, "missing_event"),
        (2, "invalid_type"),
    ]


def test_empty_batch_is_ok_and_stores_nothing(env):
    response = env.post("/v1/batch", {"batch": []})
    assert response.status_code == 200
    assert response.json() == {"success": True, "accepted": 0, "duplicates": 0, "rejected": []}


# -- transport variants --------------------------------------------------------------------------


def test_gzip_body_is_accepted(env):
    event = unique("Gzipped")
    body = {"batch": [track(event) for _ in range(25)]}
    response = env.http.post(
        "/v1/batch",
        content=gzip.compress(json.dumps(body).encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 25
    assert wait_for_count(env.store, SOURCE, 25, event=event) == 25


def _corrupt_gzip() -> bytes:
    good = gzip.compress(json.dumps({"batch": [track("Never")] * 20}).encode())
    return good[:12] + bytes(b ^ 0xFF for b in good[12:30]) + good[30:]


@pytest.mark.parametrize("body", [_corrupt_gzip(), b"plain text, not gzip"], ids=["corrupt", "not-gzip"])
def test_broken_gzip_is_400(env, body):
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    response = env.http.post("/v1/batch", content=body, headers=headers)
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_gzip"


def test_truncated_gzip_is_invalid_gzip(env):
    whole = gzip.compress(json.dumps({"batch": [track("Never")] * 20}).encode())
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    response = env.http.post("/v1/batch", content=whole[: len(whole) // 2], headers=headers)
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_gzip"


def test_write_key_in_body_is_accepted(env):
    event = unique("Body key")
    response = httpx.post(
        env.url + "/v1/batch", json={"writeKey": env.write_key, "batch": [track(event), track(event)]}
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 2
    response = httpx.post(env.url + "/v1/track", json={**track(event), "writeKey": env.write_key})
    assert response.status_code == 200, response.text
    assert wait_for_count(env.store, SOURCE, 3, event=event) == 3


@pytest.mark.parametrize("kind", ["identify", "page", "screen", "group", "alias"])
def test_every_single_endpoint_stores_its_type(env, kind):
    user = f"user-{uuid.uuid4().hex[:8]}"
    body = {
        "userId": user,
        "messageId": uuid.uuid4().hex,
        "groupId": "g-1",
        "previousId": f"old-{user}",
        "name": "Home",
        "type": "track",
    }  # the path decides the type
    response = env.post(f"/v1/{kind}", body)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    env.settle()
    relation = env.store.events_relation(env.source)
    row = env.store.query(
        f"SELECT type, event FROM {relation} WHERE message_id = ?", [body["messageId"]]
    ).fetchone()
    assert row is not None and row[0] == kind


# -- deduplication -------------------------------------------------------------------------------


def test_same_batch_twice_is_stored_once(env):
    event = unique("Dedup")
    batch = [track(event) for _ in range(30)]
    first = env.post("/v1/batch", {"batch": batch})
    assert first.status_code == 200
    assert (first.json()["accepted"], first.json()["duplicates"]) == (30, 0)
    assert wait_for_count(env.store, SOURCE, 30, event=event) == 30
    env.settle()
    second = env.post("/v1/batch", {"batch": batch})
    assert second.status_code == 200
    assert (second.json()["accepted"], second.json()["duplicates"]) == (0, 30)
    env.settle()
    assert env.count(event) == 30


def test_retry_before_ingestion_is_still_deduplicated(env):
    """The duplicate arrives while the first copy is only in the write-ahead log."""
    event = unique("Dedup fast")
    batch = [track(event) for _ in range(10)]
    answers = [env.post("/v1/batch", {"batch": batch}).json() for _ in range(3)]
    assert [(a["accepted"], a["duplicates"]) for a in answers] == [(10, 0), (0, 10), (0, 10)]
    # Within one batch, too.
    message = track(event)
    answer = env.post("/v1/batch", {"batch": [message, message]}).json()
    assert (answer["accepted"], answer["duplicates"]) == (1, 1)
    assert wait_for_count(env.store, SOURCE, 11, event=event) == 11
    env.settle()
    assert env.count(event) == 11


# -- event time ----------------------------------------------------------------------------------


def _stored_times(env: Env, message_id: str) -> tuple[int, int]:
    relation = env.store.events_relation(env.source)
    row = env.store.query(
        f"SELECT epoch_us(ts), epoch_us(received_at) FROM {relation} WHERE message_id = ?", [message_id]
    ).fetchone()
    assert row is not None, f"message {message_id} is not stored"
    return row


def test_clock_correction_uses_sent_at(env):
    event = unique("Clock")
    device_clock = datetime(2020, 1, 1, 12, 0, tzinfo=UTC)  # the device's clock is years off
    single = track(event, originalTimestamp=iso(device_clock), sentAt=iso(device_clock + timedelta(hours=1)))
    batched = track(event, timestamp=iso(device_clock))
    before = datetime.now(UTC).timestamp() * 1e6
    assert env.post("/v1/track", single).status_code == 200
    assert (
        env.post(
            "/v1/batch", {"batch": [batched], "sentAt": iso(device_clock + timedelta(hours=1))}
        ).status_code
        == 200
    )
    after = datetime.now(UTC).timestamp() * 1e6
    wait_for_count(env.store, SOURCE, 2, event=event)
    for message in (single, batched):
        ts, received = _stored_times(env, message["messageId"])
        assert before - 2e6 <= received <= after + 2e6
        assert received - ts == 3600 * 1_000_000  # exactly receivedAt − (sentAt − originalTimestamp)


def test_timestamp_without_sent_at_is_taken_as_is_and_missing_means_received(env):
    event = unique("Clock plain")
    when = datetime(2023, 6, 1, 8, 30, 15, 250000, tzinfo=UTC)
    with_ts = track(event, timestamp=iso(when))
    without = track(event)
    assert env.post("/v1/batch", {"batch": [with_ts, without]}).status_code == 200
    wait_for_count(env.store, SOURCE, 2, event=event)
    ts, _received = _stored_times(env, with_ts["messageId"])
    assert ts == int(when.timestamp() * 1_000_000)
    ts, received = _stored_times(env, without["messageId"])
    assert ts == received


def test_future_timestamp_corrected_by_sent_at_is_accepted(env):
    """A device clock two days fast is fine when sentAt shows the same skew."""
    event = unique("Clock fast")
    fast = datetime.now(UTC) + timedelta(days=2)
    message = track(event, timestamp=iso(fast - timedelta(seconds=30)), sentAt=iso(fast))
    response = env.post("/v1/track", message)
    assert response.status_code == 200, response.text
    wait_for_count(env.store, SOURCE, 1, event=event)
    ts, received = _stored_times(env, message["messageId"])
    assert received - ts == 30 * 1_000_000


# -- quarantine ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quarantined(env) -> tuple[str, dict[str, dict[str, Any]]]:
    """One batch with a good message and one of each bad class, plus a refused oversized batch."""
    marker = uuid.uuid4().hex
    event = unique("Quarantine good")
    bad = {code: {**msg, "context": {"marker": marker}} for code, msg in BAD_MESSAGES.items()}
    response = env.post("/v1/batch", {"batch": [track(event), *bad.values()]})
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    assert sorted(r["code"] for r in response.json()["rejected"]) == sorted(BAD_MESSAGES)
    # A whole request refused after authentication is quarantined as well.
    too_many = [{"type": "track", "event": marker, "userId": "u"}] * 2501
    assert env.post("/v1/batch", {"batch": too_many}).status_code == 413
    wait_for_count(env.store, SOURCE, 1, event=event)
    env.settle()
    return marker, bad


def _check_quarantine(rows: list[dict[str, Any]], marker: str, bad: dict[str, dict[str, Any]]) -> None:
    mine = [r for r in rows if marker in (r.get("payload") or "")]
    by_code = {r["code"]: r for r in mine}
    assert len(mine) == len(by_code), mine
    assert set(by_code) == set(BAD_MESSAGES) | {"batch_too_large"}, mine
    for code, message in bad.items():
        row = by_code[code]
        assert row["message"]
        assert json.loads(row["payload"]) == message
        assert row["origin"] == "capture"
    assert by_code["batch_too_large"]["origin"] == "/v1/batch"


def test_rejected_messages_are_quarantined_with_their_code(env, quarantined):
    marker, bad = quarantined
    _check_quarantine(env.store.rejected(env.source, limit=5000), marker, bad)


def test_rejected_messages_are_listed_by_the_cli(env, quarantined):
    marker, bad = quarantined
    _check_quarantine(cli_rejected(env.data_dir, SOURCE, limit=5000), marker, bad)


# -- CORS ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/track", "/v1/page"])
def test_cors_preflight(env, path):
    headers = {
        "Origin": "https://shop.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, authorization",
    }
    response = httpx.options(env.url + path, headers=headers)
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    for header in ("content-type", "authorization", "content-encoding"):
        assert header in allowed


def test_cors_header_on_capture_answers_only(env):
    response = env.post("/v1/track", track(unique("Cors")), headers={"Origin": "https://shop.example"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    response = env.post("/v1/track", {"type": "track"}, headers={"Origin": "https://shop.example"})
    assert response.status_code == 400
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-origin" not in httpx.get(env.url + "/health").headers
