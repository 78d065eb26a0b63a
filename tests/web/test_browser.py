"""The dashboard in a real browser: Debian's Chromium, driven by Playwright, against a real
``masar serve``. Each test starts from a fresh browser context (no cookies)."""

from __future__ import annotations

import httpx
import pytest

from tests.web.conftest import OWNER, PASSWORD, csrf_of, sign_in

pytestmark = pytest.mark.timeout(240)


def login(page, url: str, email: str = OWNER, query: str = "") -> None:
    page.goto(url + "/login" + query)
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/overview**")


def test_first_run_in_the_browser(data_dir, server, page):
    srv = server(data_dir)
    page.goto(srv.url + "/")
    assert page.url.endswith("/setup")
    page.fill("#email", OWNER)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/overview")
    assert page.locator("h1").inner_text() == "Overview"
    assert "No store yet" in page.locator("main").inner_text()
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["masar_session"]["httpOnly"] and cookies["masar_session"]["sameSite"] == "Lax"
    assert page.errors == []


def test_the_overview_shows_the_query_apis_numbers(site, page):
    login(page, site.url)
    page.wait_for_selector("body[data-loaded=overview]", timeout=120_000)
    client = sign_in(site.url, OWNER)
    token = csrf_of(client.get("/overview").text)
    api = client.post("/api/v1/query", json={"kind": "metrics", "source": "Masar Demo Store", "granularity": "day"},
                      headers={"X-CSRF-Token": token}).json()  # fmt: skip
    shown = {
        card.get_attribute("data-metric"): card.locator(".value").inner_text()
        for card in page.locator("article.kpi").all()
    }
    expected = {m["name"]: m for m in api["metrics"]}
    assert set(shown) == set(expected)
    # The same numbers, formatted the browser's way (Intl, en): orders as an integer, money with
    # the currency's minor units, rates as percentages with one decimal.
    assert shown["orders"] == f"{expected['orders']['value']:,}"
    assert shown["visitors"] == f"{expected['visitors']['value']:,}"
    assert shown["net_revenue"] == f"SAR\xa0{float(expected['net_revenue']['value']):,.2f}"
    assert shown["session_conversion_rate"] == f"{expected['session_conversion_rate']['value'] * 100:.1f}%".replace(".0%", "%")
    # The charts drew (SVG) and the channels table lists the channel rows the API gives.
    assert page.locator("#revenue-chart svg").count() == 1
    rows = page.locator("#channels tbody tr").count()
    assert rows >= 3
    assert page.errors == []


def test_arabic_mirrors_the_layout(site, page):
    login(page, site.url, query="?lang=ar")
    page.wait_for_selector("body[data-loaded=overview]", timeout=120_000)
    assert page.locator("html").get_attribute("dir") == "rtl"
    assert page.locator("html").get_attribute("lang") == "ar"
    assert page.locator("h1").inner_text() == "نظرة عامة"
    assert page.locator("nav.side a[aria-current=page]").inner_text().strip().endswith("نظرة عامة")
    # The navigation sits on the right of the content, and the KPI labels are translated.
    side = page.locator("nav.side").bounding_box()
    main = page.locator("main").bounding_box()
    assert side["x"] > main["x"]
    assert page.locator("article.kpi[data-metric=net_revenue] .label").inner_text() == "صافي الإيرادات"
    # The chart's value axis is on the right: its labels are right of the plot's middle.
    box = page.locator("#revenue-chart").bounding_box()
    labels = page.locator("#revenue-chart svg text").all()
    money = [t for t in labels if "ر.س" in (t.text_content() or "")]
    assert money and all(t.bounding_box()["x"] > box["x"] + box["width"] / 2 for t in money)
    # The cookie keeps Arabic on the next page without ?lang.
    page.goto(site.url + "/overview")
    assert page.locator("html").get_attribute("dir") == "rtl"
    assert page.errors == []


def test_a_form_without_its_token_is_refused(site):
    client = httpx.Client(base_url=site.url, timeout=30)
    client.get("/login")
    response = client.post("/login", data={"email": OWNER, "password": PASSWORD})
    assert response.status_code == 403 and "security token" in response.text
