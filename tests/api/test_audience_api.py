"""POST /api/v1/query kinds ``audience`` and ``customer`` on a real ``masar serve``: the same JSON
as the CLI, saved audiences read while the server runs, people found through identity merges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.conftest import make_source, masar_cli, masar_cli_json

START = datetime(2026, 3, 1, 9, tzinfo=UTC)


def _message(key: str, kind: str, at: datetime, **fields) -> dict:
    return {"type": kind, "timestamp": at.isoformat(), "writeKey": key, **fields}


def _order(key: str, ids: dict, at: datetime, order_id: str, total: int, category: str) -> dict:
    return _message(key, "track", at, event="Order Completed", **ids,
                    properties={"order_id": order_id, "total": total, "currency": "USD",
                                "products": [{"product_id": category.lower(), "category": category}]})  # fmt: skip


@pytest.fixture(scope="module")
def shop(tmp_path_factory, module_server):
    data_dir = tmp_path_factory.mktemp("audience-api") / "data"
    key = make_source(data_dir, "Shop")["write_key"]
    secret = masar_cli_json("keys", "create", "--source", "Shop", "--data-dir", data_dir)["key"]
    srv = module_server(data_dir)
    batch = []
    for i in range(12):
        ids = {"userId": f"u{i}"}
        at = START + timedelta(days=i)
        batch.append(_message(key, "identify", at, **ids, traits={"email": f"u{i}@example.com"}))
        batch.append(_message(key, "track", at + timedelta(minutes=1), event="Product Viewed", **ids,
                              properties={"product_id": "shoe", "category": "Shoes"}))  # fmt: skip
        batch.append(_order(key, ids, at + timedelta(minutes=5), f"o{i}", 20 + 10 * i, "Shoes" if i % 2 else "Bags"))
        if i % 3 == 0:
            batch.append(_order(key, ids, at + timedelta(days=9), f"o{i}b", 40, "Shoes"))
    # One shopper seen as a guest on a phone and signed in on a laptop, each with an order.
    batch.append(_order(key, {"anonymousId": "phone-9"}, START + timedelta(days=2), "g1", 75, "Hats"))
    batch.append(_order(key, {"userId": "shopper-9"}, START + timedelta(days=3), "s1", 125, "Shoes"))
    response = httpx.post(f"{srv.url}/v1/batch", json={"batch": batch, "writeKey": key})
    assert response.status_code == 200, response.text
    srv.wait_ingested()
    # Later the phone signs in: the guest's person is merged into the shopper's.
    link = _message(key, "identify", START + timedelta(days=20), userId="shopper-9", anonymousId="phone-9",
                    traits={"email": "shopper9@example.com"})  # fmt: skip
    assert httpx.post(f"{srv.url}/v1/batch", json={"batch": [link], "writeKey": key}).status_code == 200
    srv.wait_ingested()
    # Saved from the CLI while the server runs: the server reads it on the next query.
    masar_cli("audiences", "save", "Top quarter", "--source", "Shop", "--example", "top_customers",
              "--set", "percent=25", "--data-dir", data_dir)  # fmt: skip
    return data_dir, srv, secret


def _query(srv, secret: str, body: dict) -> httpx.Response:
    return httpx.post(f"{srv.url}/api/v1/query", json=body, headers={"Authorization": f"Bearer {secret}"},
                      timeout=60)  # fmt: skip


def test_audience_by_name_equals_the_cli_and_the_inline_definition(shop):
    data_dir, srv, secret = shop
    response = _query(srv, secret, {"kind": "audience", "source": "Shop", "name": "Top quarter", "limit": None})
    assert response.status_code == 200, response.text
    by_name = response.json()
    assert by_name["kind"] == "audience" and by_name["name"] == "Top quarter"
    # 13 customers; in when 100 × (rank − 1) < 25 × 13, i.e. rank ≤ 4: the shopper (200 after the
    # merge), u9 (110 + 40), u11 (130), and u10 and u6 tied at 120 (u6: 80 + 40).
    assert by_name["count"] == len(by_name["members"]) == 5
    assert {m["user_id"] for m in by_name["members"]} == {"shopper-9", "u9", "u11", "u10", "u6"}
    shopper = next(m for m in by_name["members"] if m["user_id"] == "shopper-9")
    assert (shopper["orders"], shopper["revenue"]) == (2, "200.000")
    cli = masar_cli_json("audiences", "members", "Top quarter", "--source", "Shop", "--limit", "100",
                         "--data-dir", data_dir)  # fmt: skip
    assert {**cli, "limit": None} == by_name
    inline = _query(srv, secret, {"kind": "audience", "source": "Shop", "definition": by_name["definition"],
                                  "limit": None}).json()  # fmt: skip
    assert {**inline, "name": "Top quarter"} == by_name
    counted = _query(srv, secret, {"kind": "audience", "source": "Shop", "name": "Top quarter", "limit": 0}).json()
    assert counted["count"] == 5 and counted["members"] == []


def test_customer_by_every_id_after_a_merge(shop):
    data_dir, srv, secret = shop
    answers = []
    for person, by in (("shopper-9", None), ("phone-9", None), ("SHOPPER9@example.com", None),
                       ("phone-9", "anonymous_id"), ("shopper-9", "user_id")):  # fmt: skip
        body = {"kind": "customer", "source": "Shop", "person": person, "timeline_limit": 20}
        if by:
            body["by"] = by
        response = _query(srv, secret, body)
        assert response.status_code == 200, response.text
        answers.append(response.json())
    assert all(a == answers[0] for a in answers)
    c = answers[0]
    assert c["kind"] == "customer" and c["identity"]["anonymous_ids"] == ["phone-9"]
    assert [o["order_key"] for o in c["orders"]] == ["s1", "g1"]
    assert c["value"]["lifetime_value"] == "200.000" and c["rfm"]["frequency"] == 2
    assert c["audiences"] == ["Top quarter"]
    assert c == masar_cli_json("customer", "shopper-9", "--source", "Shop", "--data-dir", data_dir)


@pytest.mark.parametrize(
    ("body", "status", "code", "fragment"),
    [
        ({"kind": "audience", "name": "Nobody"}, 404, "audience_not_found", "no audience named 'Nobody'"),
        ({"kind": "audience", "definition": {"all": [{"type": "did"}]}}, 400, "invalid_query", "all.0.did.event"),
        ({"kind": "audience"}, 400, "invalid_query", "the name of a saved audience or a definition"),
        ({"kind": "customer", "person": "nobody"}, 404, "person_not_found", "'nobody'"),
        ({"kind": "customer", "person": "u1", "by": "phone"}, 400, "invalid_query", "by"),
    ],
)
def test_errors(shop, body, status, code, fragment):
    _data_dir, srv, secret = shop
    response = _query(srv, secret, {"source": "Shop", **body})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and fragment in error["message"]
