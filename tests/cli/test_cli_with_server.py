"""The CLI and a running server share one data directory: no lock errors, fresh results."""

from __future__ import annotations

import time

import httpx

from tests.conftest import cli_count, make_source, masar_cli_json, wait_for_count


def _served_count(url: str, key: str, source: str) -> int:
    """The events the running server counts for ``source`` (its event names and their counts)."""
    names = httpx.get(url + "/api/v1/event-names", params={"source": source}, timeout=10,
                      headers={"Authorization": f"Bearer {key}"}).json()  # fmt: skip
    return sum(n["count"] for n in names)


def test_cli_while_serving(server, data_dir, tmp_path):
    make_source(data_dir, "Before")
    srv = server(data_dir)
    # a source created by the CLI while the server runs can send at once
    created = make_source(data_dir, "During")
    response = httpx.post(srv.url + "/v1/track", json={"writeKey": created["write_key"], "event": "Product Viewed",
                                                        "anonymousId": "a1"}, timeout=10)  # fmt: skip
    assert response.status_code == 200, response.text
    wait_for_count(data_dir, "During", 1)
    # an import by the CLI is visible to the running server within seconds
    csv_path = tmp_path / "h.csv"
    csv_path.write_text("user_id,event,timestamp\n" + "".join(
        f"u{i},Order Completed,2026-01-0{1 + i % 9}T10:00:00Z\n" for i in range(500)))  # fmt: skip
    started = time.monotonic()
    report = masar_cli_json("import", str(csv_path), "--source", "Before", "--data-dir", str(data_dir), "--json")
    assert report["imported"] == 500
    key = masar_cli_json("keys", "create", "--data-dir", str(data_dir))["key"]
    while _served_count(srv.url, key, "Before") != 500:
        assert time.monotonic() - started < 10, "the server did not see the import"
        time.sleep(0.2)
    assert cli_count(data_dir, "During") == 1
    assert "Traceback" not in srv.log()
