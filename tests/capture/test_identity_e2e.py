"""Identity end to end: anonymous browsing, identify, then an order sent with only the userId.

Whatever order the three steps arrive in (in separate requests, so they land in different
segments, or all in one batch), every event resolves to one person once the stored person ids are
mapped through ``person_overrides``: a merge never rewrites events already stored.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

import masar
from tests.conftest import make_source, wait_for_count

pytestmark = pytest.mark.timeout(120)

SOURCE = "Identity Shop"
STEPS = ("browse", "identify", "order")
STORY_ORDER = {step: i for i, step in enumerate(STEPS)}


class Env:
    def __init__(self, data_dir, srv, write_key: str):
        self.srv = srv
        self.http = httpx.Client(base_url=srv.url, auth=(write_key, ""), timeout=30)
        self.store = masar.open(data_dir)
        self.source = self.store.source(SOURCE)

    def close(self) -> None:
        self.http.close()
        self.store.close()


@pytest.fixture(scope="module")
def env(module_server, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("identity") / "data"
    created = make_source(data_dir, SOURCE)
    e = Env(data_dir, module_server(data_dir), created["write_key"])
    yield e
    e.close()


def step_messages(step: str, anon: str, user: str, when: datetime | None) -> list[dict[str, Any]]:
    def msg(**fields: Any) -> dict[str, Any]:
        out = {"messageId": uuid.uuid4().hex, **fields}
        if when is not None:
            out["timestamp"] = when.isoformat()
        return out

    if step == "browse":
        return [
            msg(
                type="page",
                anonymousId=anon,
                name="Product",
                properties={"url": "https://shop.example/p/1?utm_source=google&utm_medium=cpc"},
            ),
            msg(type="track", event="Product Viewed", anonymousId=anon, properties={"product_id": "sku-1"}),
        ]
    if step == "identify":
        return [msg(type="identify", anonymousId=anon, userId=user, traits={"email": f"{user}@example.com"})]
    return [
        msg(
            type="track",
            event="Order Completed",
            userId=user,
            properties={"order_id": f"o-{user}", "revenue": 42.5},
        )
    ]


def stored_events(env: Env, anon: str, user: str) -> list[dict[str, Any]]:
    relation = env.store.events_relation(env.source)
    cursor = env.store.query(
        f"SELECT event, person_id, session_id, anonymous_id, user_id FROM {relation} "
        "WHERE anonymous_id = ? OR user_id = ? ORDER BY ts",
        [anon, user],
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def post(env: Env, messages: list[dict[str, Any]]) -> None:
    response = env.http.post("/v1/batch", json={"batch": messages})
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == len(messages), response.text


@pytest.mark.parametrize("clock", ["story", "arrival"])
@pytest.mark.parametrize("mode", ["separate", "one_batch"])
@pytest.mark.parametrize("order", list(itertools.permutations(STEPS)), ids=lambda o: "-".join(o))
def test_all_events_resolve_to_one_person(env, order, mode, clock):
    """``clock``: "story" stamps events in the natural order (browse, identify, order) whatever order they
    arrive in, like a late retry; "arrival" sends no timestamps, so event time is arrival time."""
    tag = uuid.uuid4().hex[:8]
    anon, user = f"anon-{tag}", f"user-{tag}"
    start = datetime.now(UTC) - timedelta(minutes=10)
    messages = {
        step: step_messages(
            step, anon, user, start + timedelta(minutes=STORY_ORDER[step]) if clock == "story" else None
        )
        for step in STEPS
    }
    total = sum(len(m) for m in messages.values())

    if mode == "separate":
        for step in order:
            base = env.store.count_events(env.source)
            post(env, messages[step])
            # Stored before the next step is sent: each step lands in its own segment.
            wait_for_count(env.store, SOURCE, base + len(messages[step]))
            env.srv.wait_ingested()
    else:
        post(env, [m for step in order for m in messages[step]])
        env.srv.wait_ingested()

    events = stored_events(env, anon, user)
    assert sorted(e["event"] for e in events) == sorted(
        ["Page Viewed", "Product Viewed", "Identify", "Order Completed"]
    )
    assert len(events) == total

    person = env.store.identities.person_of(env.source.id, user_id=user)
    assert person is not None
    assert env.store.identities.person_of(env.source.id, anonymous_id=anon) == person
    overrides = env.store.identities.overrides(env.source.id)
    resolved = {e["event"]: overrides.get(e["person_id"], e["person_id"]) for e in events}
    assert set(resolved.values()) == {person}, {"stored": events, "overrides": overrides, "person": person}

    if mode == "separate" and order[-1] == "identify":
        # Browsing and the order were stored as two persons; only the override joins them.
        assert len({e["person_id"] for e in events if e["event"] != "Identify"}) == 2, events
        assert overrides
    if mode == "one_batch" or order == STEPS:
        # Known to be one person when enriched: sessions are per person, so the order joins the browsing.
        assert len({e["session_id"] for e in events}) == 1, events
        assert len({e["person_id"] for e in events}) == 1, events
