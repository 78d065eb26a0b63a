"""The CLI and a running server share one data directory: no lock errors, fresh results."""

from __future__ import annotations

import re
import time

import httpx

from tests.conftest import cli_count, make_source, masar_cli_json, wait_for_count


def _status_count(url: str, source: str) -> int:
    page = httpx.get(url + "/", timeout=10).text
    match = re.search(re.escape(source) + r"</h2><p>([\d,]+) events", page)
    return int(match.group(1).replace(",", "")) if match else -1


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
    while _status_count(srv.url, "Before") != 500:
        assert time.monotonic() - started < 10, "the server did not see the import"
        time.sleep(0.2)
    assert cli_count(data_dir, "During") == 1
    assert "Traceback" not in srv.log()
