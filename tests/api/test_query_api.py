"""POST /api/v1/query on a real ``masar serve``: auth, errors, the same JSON as the CLI, freshness."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from tests.conftest import make_source, masar_cli_json
from tests.engine.sales_fixtures import ltv_store

STEPS = ["Product Viewed", "Product Added", "Order Completed"]


def _track(write_key: str, user: str, event: str, at: datetime) -> dict:
    return {"type": "track", "userId": user, "event": event, "timestamp": at.isoformat(), "writeKey": write_key,
            "properties": {"device": "mobile" if user.endswith(("1", "3")) else "desktop"}}  # fmt: skip


@pytest.fixture(scope="module")
def store_with_key(tmp_path_factory, module_server):
    """One server and store for the module; tests that add events use their own users."""
    server = module_server
    data_dir = tmp_path_factory.mktemp("query-api") / "data"
    shop = make_source(data_dir, "Shop")
    make_source(data_dir, "Other")
    secret = masar_cli_json("keys", "create", "--source", "Shop", "--data-dir", data_dir)["key"]
    other_secret = masar_cli_json("keys", "create", "--source", "Other", "--data-dir", data_dir)["key"]
    srv = server(data_dir)
    start = datetime(2026, 3, 1, 10, tzinfo=UTC)
    batch = []
    for i in range(20):
        user = f"u{i}"
        batch.append(_track(shop["write_key"], user, "Product Viewed", start + timedelta(minutes=i)))
        if i % 2 == 0:
            batch.append(_track(shop["write_key"], user, "Product Added", start + timedelta(minutes=i + 5)))
        if i % 4 == 0:
            batch.append(_track(shop["write_key"], user, "Order Completed", start + timedelta(minutes=i + 9)))
    response = httpx.post(f"{srv.url}/v1/batch", json={"batch": batch, "writeKey": shop["write_key"]})
    assert response.status_code == 200, response.text
    srv.wait_ingested()
    return data_dir, srv, shop, secret, other_secret


def _query(srv, secret: str | None, body) -> httpx.Response:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    return httpx.post(f"{srv.url}/api/v1/query", json=body, headers=headers, timeout=30)


def test_funnel_over_http_equals_the_cli(store_with_key):
    data_dir, srv, _shop, secret, _ = store_with_key
    body = {"kind": "funnel", "source": "Shop", "steps": STEPS, "window": "1d", "breakdown": "device"}
    response = _query(srv, secret, body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert [s["count"] for s in result["steps"]] == [20, 10, 5]
    assert [s["conversion_from_previous"] for s in result["steps"]] == [1.0, 0.5, 0.5]
    # Breakdown rows add up to the totals.
    for k in range(3):
        assert sum(row["steps"][k]["count"] for row in result["breakdown"]) == result["steps"][k]["count"]
    cli = masar_cli_json("funnel", "--source", "Shop", *[a for s in STEPS for a in ("--step", s)], "--window", "1d",
                         "--breakdown", "device", "--data-dir", data_dir)  # fmt: skip
    assert cli == result


@pytest.mark.parametrize(
    ("secret_kind", "status", "code"),
    [("none", 401, "missing_api_key"), ("wrong", 401, "invalid_api_key"), ("other_source", 403, "wrong_source")],
)
def test_query_needs_the_sources_secret_key(store_with_key, secret_kind, status, code):
    _data_dir, srv, _shop, _secret, other_secret = store_with_key
    secret = {"none": None, "wrong": "msk_not-a-key", "other_source": other_secret}[secret_kind]
    response = _query(srv, secret, {"kind": "funnel", "source": "Shop", "steps": STEPS})
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"kind": "nope", "source": "Shop", "steps": STEPS}, "kind"),
        ({"kind": "funnel", "source": "Shop", "steps": ["Only One"]}, "at least 2"),
        ({"kind": "funnel", "source": "Shop", "steps": STEPS, "window": "soon"}, "duration"),
        ({"kind": "funnel", "source": "Shop", "steps": STEPS, "surprise": 1}, "surprise"),
        ({"kind": "funnel", "source": "Shop", "steps": STEPS, "order": "unordered",
          "exclusions": [{"event": "X", "from_step": 1}]}, "ordered or strict"),  # fmt: skip
    ],
)
def test_invalid_queries_get_a_clear_400(store_with_key, body, fragment):
    _data_dir, srv, _shop, secret, _ = store_with_key
    response = _query(srv, secret, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_query"
    assert fragment in error["message"]


def test_not_json_and_unknown_source(store_with_key):
    _data_dir, srv, _shop, secret, _ = store_with_key
    response = httpx.post(f"{srv.url}/api/v1/query", content=b"{not json", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    response = _query(srv, secret, {"kind": "funnel", "source": "Nowhere", "steps": STEPS})
    assert response.status_code == 404
    assert "Nowhere" in response.json()["error"]["message"]


def test_paths_and_correlation_over_http_equal_the_cli(store_with_key):
    data_dir, srv, _shop, secret, _ = store_with_key
    paths = _query(srv, secret, {"kind": "paths", "source": "Shop", "step": "Product Viewed", "window": "1d"})
    assert paths.status_code == 200, paths.text
    cli = masar_cli_json("paths", "--source", "Shop", "--after", "Product Viewed", "--data-dir", data_dir)
    assert paths.json() == cli
    assert paths.json()["paths"][0]["events"][0] == "Product Viewed"
    body = {"kind": "correlation", "source": "Shop", "steps": ["Product Viewed", "Order Completed"], "window": "1d",
            "events": False, "properties": ["device"], "min_people": 1}  # fmt: skip
    correlation = _query(srv, secret, body)
    assert correlation.status_code == 200, correlation.text
    assert correlation.json()["kind"] == "correlation" and correlation.json()["people"] >= 20
    bad = _query(srv, secret, {"kind": "paths", "source": "Shop", "cleaning": [{"pattern": "(", "alias": "x"}]})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_query"
    assert "not a valid regular expression" in bad.json()["error"]["message"]


def test_an_acknowledged_event_shows_in_funnels_within_5_seconds(store_with_key):
    _data_dir, srv, shop, secret, _ = store_with_key
    body = {"kind": "funnel", "source": "Shop", "steps": STEPS, "window": "1d"}
    before = _query(srv, secret, body).json()["steps"][2]["count"]  # warms the frame
    at = datetime(2026, 3, 1, 12, tzinfo=UTC)
    events = [_track(shop["write_key"], "fresh", name, at + timedelta(seconds=i)) for i, name in enumerate(STEPS)]
    acked = httpx.post(f"{srv.url}/v1/batch", json={"batch": events, "writeKey": shop["write_key"]})
    assert acked.status_code == 200
    t0 = time.monotonic()
    while True:
        count = _query(srv, secret, body).json()["steps"][2]["count"]
        if count == before + 1:
            break
        assert time.monotonic() - t0 < 5.0, f"the order was not in the funnel 5 s after it was acknowledged ({count})"
        time.sleep(0.1)


def test_platforms_over_http_equal_the_cli(store_with_key):
    """Visits from an Instagram ad and a Google ad click, a day apart from the other tests' events."""
    data_dir, srv, shop, secret, _ = store_with_key
    at = datetime(2026, 3, 2, 9, tzinfo=UTC)
    key = shop["write_key"]
    batch = [
        {"type": "page", "userId": "ig-buyer", "timestamp": at.isoformat(), "properties": {"url": "https://shop.test/"},
         "context": {"campaign": {"source": "ig", "medium": "paid_social", "name": "spring"}}},
        {"type": "track", "userId": "ig-buyer", "event": "Order Completed", "timestamp": (at + timedelta(minutes=5)).isoformat(),
         "properties": {"order_id": "IG-1", "total": 120, "currency": "USD"}},
        {"type": "page", "userId": "google-visitor", "timestamp": at.isoformat(),
         "properties": {"url": "https://shop.test/?gclid=abc"}},
    ]  # fmt: skip
    acked = httpx.post(f"{srv.url}/v1/batch", json={"batch": batch, "writeKey": key})
    assert acked.status_code == 200, acked.text
    srv.wait_ingested()
    body = {"kind": "platforms", "source": "Shop", "from": "2026-03-02", "to": "2026-03-02"}
    response = _query(srv, secret, body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["currency"] == "USD"
    assert [(r["platform"], r["traffic"], r["sessions"], r["orders"], r["revenue"], r["ad_spend"], r["roas"])
            for r in result["rows"]] == [
        ("instagram", "paid", 1, 1, "120.00", "0.00", None),  # utm_source "ig" is Instagram
        ("google", "paid", 1, 0, "0.00", "0.00", None),  # the gclid
    ]  # fmt: skip
    cli = masar_cli_json("platforms", "--source", "Shop", "--from", "2026-03-02", "--to", "2026-03-02",
                         "--data-dir", data_dir)  # fmt: skip
    assert cli == result
    bad = _query(srv, secret, {**body, "from": "2026-03-03"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_query"


def test_lifetime_value_over_http_equals_the_cli(tmp_path_factory, module_server):
    """kind ltv, predicted and historical, on the store of 40 returning customers."""
    directory = tmp_path_factory.mktemp("ltv-api")
    ltv_store(directory).close()
    data_dir = directory / "data"
    secret = masar_cli_json("keys", "create", "--source", "S", "--data-dir", data_dir)["key"]
    srv = module_server(data_dir)
    body = {"kind": "ltv", "source": "S", "mode": "predicted", "horizon_days": 90, "unit": "week", "discount_rate": 0.0,
            "group_by": "cohort_month", "limit": 10}  # fmt: skip
    predicted = _query(srv, secret, body)
    assert predicted.status_code == 200, predicted.text
    cli = masar_cli_json("ltv", "predict", "--source", "S", "--horizon-days", "90", "--by", "cohort", "--limit", "10",
                         "--data-dir", data_dir)  # fmt: skip
    assert predicted.json() == cli
    assert predicted.json()["customers"] == 40 and len(predicted.json()["rows"]) == 10
    body = {"kind": "ltv", "source": "S", "mode": "historical", "group_by": "first_channel", "limit": 10}
    historical = _query(srv, secret, body)
    assert historical.status_code == 200, historical.text
    cli = masar_cli_json("ltv", "historical", "--source", "S", "--by", "channel", "--limit", "10", "--data-dir", data_dir)
    assert historical.json() == cli
    groups = historical.json()["groups"]
    assert sum(Decimal(g["net_revenue"]) for g in groups) == Decimal(historical.json()["net_revenue"])
    bad = _query(srv, secret, {"kind": "ltv", "source": "S", "mode": "historical", "discount_rate": 0.01})
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_query")
    assert bad.json()["error"]["message"] == (
        "discount_rate applies to predicted lifetime value only, not to mode historical"
    )
