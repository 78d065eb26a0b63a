"""The storefront snippet (``GET /masar.js``) in a real browser: a shop page served by a separate
little HTTP server (another origin, so the requests are cross-origin as on a real store) loads
the snippet from a real ``masar serve``; what arrives is read back from the store."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

import masar
from tests.conftest import free_port, make_source, masar_cli_json

pytestmark = pytest.mark.timeout(240)

SHOP = "Snippet Shop"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
CAMPAIGN = "?utm_source=google&utm_medium=cpc&utm_campaign=ramadan_sale&utm_content=banner&gclid=Cj0KCQ-test"


class ShopPages(BaseHTTPRequestHandler):
    """A store's theme: each path a page that includes the snippet one way (see PAGES)."""

    masar_url = ""
    write_key = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path.split("?")[0]
        attributes = PAGES.get(path)
        if attributes is None:
            self.send_error(404)
            return
        script = (f'<script src="{self.masar_url}/masar.js" data-write-key="{self.write_key}" {attributes}></script>'
                  if attributes != "none" else "")  # fmt: skip
        body = f"<!doctype html><html><head><title>Shop {path}</title>{script}</head><body><h1>{path}</h1></body></html>"
        data = body.encode()
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


PAGES = {
    "/shop": 'data-flush-interval="200"',
    "/slow": 'data-flush-interval="600000"',  # nothing leaves before the page hides
    "/pending": 'data-consent="pending" data-flush-interval="200"',
    "/quiet": 'data-auto-page="false" data-flush-interval="200"',
    "/plain": "none",
}


@pytest.fixture(scope="module")
def masar_site(tmp_path_factory, module_server):
    data_dir = tmp_path_factory.mktemp("snippet") / "data"
    made = make_source(data_dir, SHOP)
    server = module_server(data_dir)
    server.write_key = made["write_key"]
    return server


@pytest.fixture(scope="module")
def shop(masar_site) -> Iterator[str]:
    """The shop's origin: http://localhost:PORT (Masar is http://127.0.0.1:OTHER)."""
    handler = type("Pages", (ShopPages,), {"masar_url": masar_site.url, "write_key": masar_site.write_key})
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def store(masar_site):
    opened = masar.open(masar_site.data_dir)
    yield opened
    opened.close()


@pytest.fixture
def browser_page(chromium):
    context = chromium.new_context()
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.batches = []  # every request to /v1/batch, whichever page sent it
    context.on("request", lambda r: page.batches.append(r) if r.url.endswith("/v1/batch") else None)
    yield page
    context.close()


def rows(store, where: str, params: list[Any]) -> list[dict[str, Any]]:
    relation = store.events_relation(store.source(SHOP))
    if relation is None:
        return []
    cursor = store.query(
        f"""SELECT type, event, anonymous_id, user_id, person_id, url, path, title, referrer, utm_source,
                   utm_medium, utm_campaign, utm_content, click_id, channel, library_name, library_version,
                   locale, timezone, user_agent, properties, traits, ts, sent_at
            FROM {relation} WHERE {where} ORDER BY ts""",
        params,
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def wait_rows(store, where: str, params: list[Any], n: int, timeout: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = rows(store, where, params)
        if len(found) >= n:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(found)} stored events match {where} {params}, expected {n}")
        time.sleep(0.2)


def batches(page) -> list[Any]:
    """The requests to /v1/batch so far (Playwright's sync API delivers events during its calls)."""
    page.wait_for_timeout(50)
    return page.batches


def cookie(page, name: str = "masar_aid") -> dict[str, Any] | None:
    return next((c for c in page.context.cookies() if c["name"] == name), None)


def test_the_snippet_is_served_small_and_cacheable(masar_site):
    response = httpx.get(masar_site.url + "/masar.js")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert int(re.search(r"max-age=(\d+)", response.headers["cache-control"]).group(1)) >= 86400
    assert len(response.content) < 8 * 1024 and b"require(" not in response.content and b"import " not in response.content
    again = httpx.get(masar_site.url + "/masar.js", headers={"if-none-match": response.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert httpx.head(masar_site.url + "/masar.js").status_code == 200


def test_a_page_view_arrives_with_its_campaign_and_click_id(masar_site, shop, store, browser_page):
    page = browser_page
    page.goto(shop + "/shop" + CAMPAIGN)
    aid = cookie(page)
    assert aid is not None and UUID.match(aid["value"]), aid
    # A first-party cookie of the shop's own host: a year long, SameSite=Lax, the whole site.
    assert aid["domain"] == "localhost" and aid["path"] == "/" and aid["sameSite"] == "Lax"
    assert 360 * 86400 < aid["expires"] - time.time() < 366 * 86400
    [view] = wait_rows(store, "anonymous_id = ? AND type = 'page'", [aid["value"]], 1)
    assert view["path"] == "/shop" and view["title"] == "Shop /shop"
    assert view["url"] == shop + "/shop" + CAMPAIGN
    assert (view["utm_source"], view["utm_medium"], view["utm_campaign"], view["utm_content"]) == (
        "google", "cpc", "ramadan_sale", "banner")  # fmt: skip
    assert view["click_id"] == "gclid" and view["channel"] == "Paid Search"
    assert (view["library_name"], view["library_version"]) == ("masar.js", "1.0.0")
    assert view["user_agent"] and view["locale"] and view["timezone"]
    assert view["user_id"] is None and view["sent_at"] is not None
    # Sent cross-origin as a simple request (text/plain, no custom header): no CORS preflight.
    sent = batches(page)[0]
    assert sent.method == "POST" and sent.headers["content-type"].startswith("text/plain")
    assert not any(name.startswith("x-") or name == "authorization" for name in sent.headers)
    assert page.errors == []


def test_track_and_identify_carry_the_visitor_and_the_user(masar_site, shop, store, browser_page):
    page = browser_page
    page.goto(shop + "/shop")
    aid = cookie(page)["value"]
    page.evaluate("""() => {
        masar.track("Product Added", { product_id: "sku-1", price: 120, currency: "SAR" });
        masar.identify("customer-42", { email: "sara@example.com", name: "سارة" });
        masar.track("Order Completed", { order_id: "A-1", total: 120, currency: "SAR" });
    }""")
    found = wait_rows(store, "anonymous_id = ?", [aid], 4)
    by_kind = {(r["type"], r["event"]): r for r in found}
    added = by_kind[("track", "Product Added")]
    assert added["user_id"] is None and '"sku-1"' in added["properties"]
    identify = next(r for r in found if r["type"] == "identify")
    assert identify["user_id"] == "customer-42" and "سارة" in identify["traits"]
    order = by_kind[("track", "Order Completed")]
    assert order["user_id"] == "customer-42" and order["anonymous_id"] == aid
    # The user id is kept for the next page (localStorage), the anonymous id in the cookie.
    assert page.evaluate("localStorage.getItem('masar_uid')") == "customer-42"
    page.goto(shop + "/shop")
    assert cookie(page)["value"] == aid
    wait_rows(store, "anonymous_id = ? AND user_id = 'customer-42' AND type = 'page'", [aid], 1)
    # One person: the visitor before signing in and the customer after (the CLI agrees).
    tail = masar_cli_json("events", "tail", "--source", SHOP, "--limit", "50", "--data-dir", masar_site.data_dir)
    people = {r["person_id"] for r in tail if r["anonymous_id"] == aid}
    assert len(people) == 1
    assert page.errors == []


def test_queued_events_leave_with_a_beacon_when_the_page_hides(masar_site, shop, store, browser_page):
    page = browser_page
    # Counts the beacons the page hands to the browser (the beacon itself goes out as usual);
    # sessionStorage outlives the navigation within the shop's origin.
    page.add_init_script("""(() => {
        const send = navigator.sendBeacon.bind(navigator);
        navigator.sendBeacon = (url, data) => {
            sessionStorage.setItem("beacons", JSON.stringify([...JSON.parse(sessionStorage.getItem("beacons") || "[]"), url]));
            return send(url, data);
        };
    })()""")
    page.goto(shop + "/slow")
    aid = cookie(page)["value"]
    page.evaluate("""() => masar.track("Cart Viewed", { cart_id: "c-9" })""")
    page.wait_for_timeout(1500)
    assert batches(page) == []  # queued: the flush interval is ten minutes
    assert rows(store, "anonymous_id = ?", [aid]) == []
    page.goto(shop + "/plain")  # the page hides and unloads: the queue goes with sendBeacon
    found = wait_rows(store, "anonymous_id = ?", [aid], 2)
    assert sorted(r["event"] for r in found) == ["Cart Viewed", "Page Viewed"]
    assert page.evaluate("JSON.parse(sessionStorage.getItem('beacons'))") == [masar_site.url + "/v1/batch"]


def test_consent_false_stops_tracking_and_clears_the_cookie(masar_site, shop, store, browser_page):
    page = browser_page
    page.goto(shop + "/shop")
    first = cookie(page)["value"]
    page.evaluate("""() => masar.identify("customer-7")""")
    wait_rows(store, "anonymous_id = ? AND type = 'identify'", [first], 1)
    page.evaluate("""() => { masar.track("Queued Then Refused"); masar.consent(false); masar.track("Never Sent"); }""")
    assert cookie(page) is None
    assert page.evaluate("localStorage.getItem('masar_uid')") is None
    assert page.evaluate("localStorage.getItem('masar_consent')") == "denied"
    requests_before = len(batches(page))
    # The refusal holds on the next pages: no cookie, nothing sent, even on leaving.
    page.goto(shop + "/shop")
    page.evaluate("""() => masar.track("Never Sent")""")
    page.goto(shop + "/plain")
    page.wait_for_timeout(1000)
    assert cookie(page) is None and len(batches(page)) == requests_before
    # Consent given again: a new visitor (the old id is gone for good), tracked from here on.
    page.goto(shop + "/shop")
    page.evaluate("""() => { masar.consent(true); masar.track("After Consent"); }""")
    second = cookie(page)["value"]
    assert second != first
    found = wait_rows(store, "anonymous_id = ?", [second], 2)
    assert sorted(r["event"] for r in found) == ["After Consent", "Page Viewed"]
    assert all(r["user_id"] is None for r in found)
    assert rows(store, "event IN ('Never Sent', 'Queued Then Refused')", []) == []
    assert page.errors == []


def test_pending_consent_waits_for_consent_true(masar_site, shop, store, browser_page):
    page = browser_page
    page.goto(shop + "/pending" + CAMPAIGN)
    page.evaluate("""() => masar.track("Before Consent")""")
    page.wait_for_timeout(1000)
    assert cookie(page) is None and batches(page) == []
    page.evaluate("""() => masar.consent(true)""")
    aid = cookie(page)["value"]
    [view] = wait_rows(store, "anonymous_id = ?", [aid], 1)
    # The page view the visitor had not agreed to yet leaves now, with its campaign.
    assert view["type"] == "page" and view["utm_campaign"] == "ramadan_sale" and view["click_id"] == "gclid"
    assert rows(store, "event = 'Before Consent'", []) == []


def test_calls_made_before_the_script_loads_are_kept(masar_site, shop, store, browser_page):
    page = browser_page
    page.add_init_script("""window.masar = [["identify", "early-bird"], ["track", "Early Event", { step: 1 }]];""")
    page.goto(shop + "/quiet")  # no automatic page view here
    aid = cookie(page)["value"]
    found = wait_rows(store, "anonymous_id = ?", [aid], 2)
    assert [(r["type"], r["event"], r["user_id"]) for r in found] == [
        ("identify", "Identify", "early-bird"), ("track", "Early Event", "early-bird")]  # fmt: skip
    assert all(r["ts"] <= datetime.now(UTC) for r in found)


def test_the_docs_describe_the_snippet():
    text = (Path(__file__).resolve().parents[2] / "docs" / "snippet.md").read_text()
    for needed in ("data-write-key", "data-consent", "masar.track", "masar.identify", "masar.consent(false)",
                   "masar_aid", "sendBeacon", "/v1/batch", "messageId"):  # fmt: skip
        assert needed in text, needed
