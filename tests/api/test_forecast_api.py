"""POST /api/v1/query with the ``forecast`` and ``targets`` kinds on a real ``masar serve`` over the
hand store (tests/engine/sales_fixtures.py): the same JSON as the CLI, errors as 400s."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from tests.conftest import masar_cli_json
from tests.engine.sales_fixtures import hand_store


@pytest.fixture(scope="module")
def served(tmp_path_factory, module_server):
    directory = tmp_path_factory.mktemp("forecast-api")
    store = hand_store(directory)
    store.set_target(store.source("S"), "2026-03", revenue=Decimal("2000"), orders=20)
    store.close()
    data_dir = directory / "data"
    secret = masar_cli_json("keys", "create", "--source", "S", "--data-dir", data_dir)["key"]
    return data_dir, module_server(data_dir), secret


def _query(srv, secret: str, body: dict) -> httpx.Response:
    return httpx.post(f"{srv.url}/api/v1/query", json=body, headers={"Authorization": f"Bearer {secret}"}, timeout=60)


def test_forecast_and_targets_over_http_equal_the_cli(served):
    data_dir, srv, secret = served
    response = _query(srv, secret, {"kind": "forecast", "source": "S", "measure": "orders", "horizon": 30})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["metric"] == "orders" and len(result["points"]) == 30
    cli = masar_cli_json("forecast", "--source", "S", "--measure", "orders", "--data-dir", data_dir)
    assert result == cli

    response = _query(srv, secret, {"kind": "targets", "source": "S", "as_of": "2026-03-15"})
    assert response.status_code == 200, response.text
    (march,) = response.json()["months"]
    assert (march["revenue"]["actual"], march["orders"]["actual"], march["status"]) == ("700.03", 7, "current")
    cli = masar_cli_json("targets", "show", "--source", "S", "--as-of", "2026-03-15", "--data-dir", data_dir)
    assert response.json() == cli


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"kind": "forecast", "source": "S", "horizon": 400}, "horizon"),
        ({"kind": "forecast", "source": "S", "to": "2026-02-10"}, "at least 14 days of history from the first day with sales, got 12"),
        ({"kind": "targets", "source": "S", "month": "March"}, "YYYY-MM"),
        ({"kind": "targets", "source": "S", "surprise": 1}, "surprise"),
    ],
)
def test_bad_queries_are_400s(served, body, fragment):
    _data_dir, srv, secret = served
    response = _query(srv, secret, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_query" and fragment in error["message"]
