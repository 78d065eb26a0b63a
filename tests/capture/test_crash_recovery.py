"""kill -9 while clients stream: nothing acknowledged is lost, nothing is stored twice.

Client threads post batches of 50 track events with unique messageIds in a loop and record which
batches were acknowledged (200). The server is SIGKILLed mid-stream, restarted on the same data
directory, and every batch that was not acknowledged (including the ones in flight at the kill)
is sent again, as a retrying client would. Then the stored message ids must be exactly the set of
ids sent, each once.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest

import masar
from tests.conftest import make_source, wait_for_count

pytestmark = pytest.mark.timeout(120)

SOURCE = "Crash Shop"
BATCH = 50
THREADS = 3


@dataclass
class Ledger:
    """What the clients sent: every attempted batch, and which ones the server acknowledged."""

    attempted: dict[str, list[str]] = field(default_factory=dict)  # batch key → message ids
    acked: set[str] = field(default_factory=set)
    bad_answers: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ids(self) -> set[str]:
        return {mid for ids in self.attempted.values() for mid in ids}


def make_batch(key: str) -> list[dict]:
    return [
        {
            "type": "track",
            "event": "Product Viewed",
            "userId": f"{key}-user",
            "messageId": f"{key}-{i}",
            "properties": {"product_id": f"sku-{i}", "price": 9.5},
        }
        for i in range(BATCH)
    ]


def post_batch(http: httpx.Client, batch: list[dict]) -> httpx.Response:
    return http.post("/v1/batch", json={"batch": batch})


def check_answer(ledger: Ledger, key: str, response: httpx.Response) -> bool:
    if response.status_code != 200:
        ledger.bad_answers.append(f"{key}: {response.status_code} {response.text[:200]}")
        return False
    body = response.json()
    if body["accepted"] + body["duplicates"] != BATCH or body["rejected"]:
        ledger.bad_answers.append(f"{key}: {body}")
        return False
    return True


def stream(url: str, write_key: str, thread: int, round_: int, ledger: Ledger, stop: threading.Event) -> None:
    """Post batches until the server goes away (or ``stop``); a failed post ends the thread."""
    with httpx.Client(base_url=url, auth=(write_key, ""), timeout=httpx.Timeout(10.0, connect=2.0)) as http:
        n = 0
        while not stop.is_set():
            key = f"r{round_}-t{thread}-b{n}"
            n += 1
            batch = make_batch(key)
            with ledger.lock:
                ledger.attempted[key] = [m["messageId"] for m in batch]
            try:
                response = post_batch(http, batch)
            except httpx.HTTPError:
                return  # in flight at the kill: not acknowledged
            if check_answer(ledger, key, response):
                with ledger.lock:
                    ledger.acked.add(key)


def acked_in_round(ledger: Ledger, round_: int) -> int:
    with ledger.lock:
        return sum(key.startswith(f"r{round_}-") for key in ledger.acked)


def log_segment(srv) -> int:
    return int(srv.health()["wal_position"][0])


def stream_and_kill(srv, write_key: str, ledger: Ledger, round_: int, acks: int, rotated: bool) -> int:
    """Stream until ``acks`` batches of this round are acknowledged (and, with ``rotated``, the
    log has moved to a new segment), then SIGKILL the server mid-stream. Waiting on these rather
    than sleeping a fixed time keeps the test meaningful on a slow or loaded machine."""
    stop = threading.Event()
    first_segment = log_segment(srv) if rotated else 0
    threads = [
        threading.Thread(target=stream, args=(srv.url, write_key, t, round_, ledger, stop), daemon=True)
        for t in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 90
    while acked_in_round(ledger, round_) < acks or (rotated and log_segment(srv) <= first_segment):
        if time.monotonic() > deadline or not any(t.is_alive() for t in threads):
            stop.set()
            pytest.fail(
                f"the precondition of the kill never held: {acked_in_round(ledger, round_)} of {acks} "
                f"batches acknowledged, rotation wanted={rotated}; bad answers: {ledger.bad_answers[:3]}"
            )
        time.sleep(0.01)
    pid = srv.pid
    os.kill(pid, signal.SIGKILL)
    srv.proc.wait(timeout=30)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive(), "a client thread hung after the kill"
    srv.kill()  # already dead: closes the log
    return pid


def resend_unacknowledged(srv, write_key: str, ledger: Ledger) -> None:
    with httpx.Client(base_url=srv.url, auth=(write_key, ""), timeout=30) as http:
        for key in sorted(set(ledger.attempted) - ledger.acked):
            response = post_batch(http, make_batch(key))
            assert check_answer(ledger, key, response), ledger.bad_answers[-1]
            ledger.acked.add(key)


SMALL_WAL = {"MASAR_WAL_SEGMENT_BYTES": str(1024 * 1024)}  # rotate the log every ~1 MB (~30 batches)


# Each kill: (batches acknowledged in the round before it, whether the log must have rotated).
@pytest.mark.parametrize(
    ("kills", "env"),
    [
        pytest.param(((2, False),), {}, id="early"),
        pytest.param(((80, False),), {}, id="late"),
        pytest.param(((20, False), (30, False)), {}, id="twice"),
        pytest.param(((5, True),), SMALL_WAL, id="rotating-log"),
    ],
)
def test_kill_9_mid_stream_loses_nothing_and_stores_nothing_twice(data_dir, server, kills, env):
    src = make_source(data_dir, SOURCE)
    srv = server(data_dir, env=env)
    ledger = Ledger()

    for round_, (acks, rotated) in enumerate(kills):
        before = len(ledger.acked)
        stream_and_kill(srv, src["write_key"], ledger, round_, acks, rotated)
        assert ledger.bad_answers == []
        assert len(ledger.acked) > before, (
            "no batch was acknowledged before the kill; the test proves nothing"
        )
        acked_ids = {mid for key in ledger.acked for mid in ledger.attempted[key]}
        srv.start()
        # The restart replays the log before it serves: every acknowledged event is stored already.
        store = masar.open(data_dir)
        try:
            source = store.source(SOURCE)
            relation = store.events_relation(source)
            stored = {row[0] for row in store.query(f"SELECT message_id FROM {relation}").fetchall()}
            lost = acked_ids - stored
            assert not lost, f"{len(lost)} acknowledged ids missing after restart, e.g. {sorted(lost)[:5]}"
            assert stored <= ledger.ids()
            assert store.count_events(source) == len(stored), "a message id was stored twice by the replay"
        finally:
            store.close()
        resend_unacknowledged(srv, src["write_key"], ledger)
        assert ledger.acked == set(ledger.attempted)

    # Retrying anything already stored, after the restarts, is answered as duplicates.
    sample = sorted(ledger.attempted)[:: max(1, len(ledger.attempted) // 20)]
    with httpx.Client(base_url=srv.url, auth=(src["write_key"], ""), timeout=30) as http:
        for key in sample:
            body = post_batch(http, make_batch(key)).json()
            assert (body["accepted"], body["duplicates"]) == (0, BATCH), (key, body)

    expected = ledger.ids()
    assert len(expected) == BATCH * len(ledger.attempted)
    store = masar.open(data_dir)
    try:
        assert wait_for_count(store, SOURCE, len(expected), timeout=30) >= len(expected)
        srv.wait_ingested(timeout=30)
        source = store.source(SOURCE)
        relation = store.events_relation(source)
        dupes = store.query(
            f"SELECT message_id, count(*) FROM {relation} GROUP BY 1 HAVING count(*) > 1 LIMIT 20"
        ).fetchall()
        assert dupes == [], f"message ids stored more than once: {dupes}"
        stored = {row[0] for row in store.query(f"SELECT message_id FROM {relation}").fetchall()}
        missing = expected - stored
        assert not missing, f"{len(missing)} sent ids are not stored, e.g. {sorted(missing)[:5]}"
        assert stored == expected, f"unexpected stored ids: {sorted(stored - expected)[:5]}"
        assert store.count_events(source) == len(expected)
    finally:
        store.close()
    health = srv.health()
    assert health["ingestor_errors"] == 0, health
    if env:
        assert health["wal_position"][0] > 1, f"the log never rotated: {health}"
