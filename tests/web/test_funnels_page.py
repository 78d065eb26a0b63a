"""The Funnels page against a real ``masar serve`` on the demo store, in Debian's Chromium: the
numbers shown are the query API's for the same funnel, the URL reproduces a funnel, saved funnels
(and who may save them), a click on a bar lists exactly that bar's people and opens their
journeys, exports, and the Arabic page mirrored and translated. No JS errors anywhere."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import pytest
from openpyxl import load_workbook

from masar.engine.templates import BUILTIN
from masar.web.messages import all_msgids
from tests.web.conftest import PASSWORD, csrf_of, sign_in

pytestmark = pytest.mark.timeout(300)

SOURCE = "Masar Demo Store"
ANALYST = "analyst@example.com"
VIEWER = "viewer@example.com"
STORE_EVENTS = ["Product Viewed", "Product Added", "Checkout Started", "Payment Info Entered", "Order Completed"]
ISOLATES = str.maketrans("", "", "\u2068\u2069")


def login(page, url: str, email: str = ANALYST, lang: str = "en") -> None:
    page.goto(f"{url}/login?lang={lang}")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/overview**")


def open_funnels(page, url: str, definition: dict | None = None, lang: str = "en") -> None:
    params = {"lang": lang} | ({"q": json.dumps(definition)} if definition else {})
    page.goto(f"{url}/funnels?{urlencode(params)}")
    wait_loaded(page)


def wait_loaded(page) -> None:
    page.wait_for_selector("body[data-loaded=funnels]", timeout=120_000)


def session(url: str, email: str = ANALYST) -> tuple[httpx.Client, str]:
    client = sign_in(url, email)
    return client, csrf_of(client.get("/funnels").text)


def api(client: httpx.Client, token: str, body: dict) -> dict:
    response = client.post("/api/v1/query", json={"source": SOURCE, **body}, headers={"X-CSRF-Token": token})
    assert response.status_code == 200, response.text
    return response.json()


def q_of(page) -> dict:
    return json.loads(parse_qs(urlparse(page.url).query)["q"][0])


def pct(value: float) -> str:
    """What Intl (en) shows for a rate: a percentage with at most one decimal, halves away from 0."""
    shown = (Decimal(value) * 100).quantize(Decimal("0.1"), ROUND_HALF_UP)
    return f"{shown:f}".rstrip("0").rstrip(".") + "%"


def shown_steps(page) -> list[list[str]]:
    rows = page.locator("#steps-table tbody tr").all()
    return [[c.inner_text().translate(ISOLATES).strip() for c in r.locator("th, td").all()] for r in rows]


def expected_steps(result: dict) -> list[list[str]]:
    out = []
    for s in result["steps"]:
        first = s["step"] == 1
        out.append([f"{s['step']}. {s['name']}", f"{s['count']:,}", pct(s["conversion_from_start"]),
                    pct(s["conversion_from_previous"]), "–" if first else f"{s['drop_off']:,}",
                    "–" if first else pct(s["drop_off_rate"])])  # fmt: skip
    return out


def click_bar(page, category: int, value: float) -> None:
    """A real mouse click on the funnel chart where ``value`` of ``category`` is drawn."""
    x, y = page.evaluate(
        "([i, v]) => echarts.getInstanceByDom(document.getElementById('funnel-chart')).convertToPixel({gridIndex: 0}, [i, v])",
        [category, value],
    )
    page.locator("#funnel-chart").scroll_into_view_if_needed()
    box = page.locator("#funnel-chart").bounding_box()
    page.mouse.click(box["x"] + x, box["y"] + y)


def test_the_store_template_shows_the_query_apis_numbers(site, page):
    login(page, site.url)
    open_funnels(page, site.url, {"steps": ["Page Viewed", "Signed Up"], "window": "1d"})
    assert len(shown_steps(page)) == 2
    # Build the store funnel from its template: the steps change, the rest of the funnel stays.
    page.select_option("#template", "store")
    page.click("#template-form button[type=submit]")
    wait_loaded(page)
    q = q_of(page)
    client, token = session(site.url)
    templates = client.get("/api/v1/funnel-templates", params={"source": SOURCE}).json()
    store = next(t for t in templates if t["name"] == "store")
    assert q == {"steps": store["steps"], "window": "1d"}
    assert [s["event"] for s in q["steps"]] == STORE_EVENTS
    result = api(client, token, {"kind": "funnel", **q})
    by_name = api(client, token, {"kind": "funnel", "template": "store", "window": "1d"})
    assert result["steps"] == by_name["steps"] and result["steps"][0]["count"] > result["steps"][-1]["count"] > 0

    assert [row[:6] for row in shown_steps(page)] == expected_steps(result)
    cards = {c.get_attribute("data-metric"): c.locator(".value").inner_text() for c in page.locator("#summary .kpi").all()}
    last = result["steps"][-1]
    assert cards["entered"] == f"{result['steps'][0]['count']:,}"
    assert cards["converted"] == f"{last['count']:,}"
    assert cards["conversion"] == pct(last["conversion_from_start"])
    # The chart: a bar per step, and the drop-off between steps written above each.
    texts = [t.text_content() for t in page.locator("#funnel-chart svg text").all()]
    for s in result["steps"]:
        assert f"{s['count']:,}" in texts
        assert s["name"] in texts or s["name"].split()[-1] in texts  # long names wrap onto lines
    for s in result["steps"][1:]:
        assert f"-{pct(s['drop_off_rate'])}" in texts
    assert page.locator("#builder .step-event").evaluate_all("(inputs) => inputs.map((i) => i.value)") == STORE_EVENTS
    # The steps' export is the same funnel's.
    with page.expect_download() as info:
        page.click("#steps-export button[data-export=csv]")
    rows = list(csv.DictReader(io.StringIO(open(info.value.path(), encoding="utf-8").read())))
    assert [(r["name"], int(r["count"])) for r in rows] == [(s["name"], s["count"]) for s in result["steps"]]
    assert page.errors == []


def test_the_url_holds_the_funnel_built_and_reproduces_it(site, page, chromium):
    login(page, site.url)
    open_funnels(page, site.url)  # no funnel in the URL: the store template's
    assert [s["event"] for s in q_of(page)["steps"]] == STORE_EVENTS
    steps = page.locator("#steps > li")
    steps.nth(3).locator(".remove-step").click()  # Payment Info Entered
    steps.nth(0).locator(".add-event").click()
    steps.nth(0).locator(".step-event").nth(1).fill("Product List Viewed")
    steps.nth(1).locator(".add-filter").click()
    steps.nth(1).locator(".filter-property").fill("device_type")
    steps.nth(1).locator(".filter-op").select_option("eq")
    steps.nth(1).locator(".filter-value").fill("mobile")
    steps.nth(2).locator(".move-down").click()  # Checkout Started after Order Completed
    steps.nth(3).locator(".move-up").click()  # and back
    page.fill("#window-value", "2")
    page.select_option("#window-unit", "d")
    page.fill("#breakdown", "channel")
    start, end = date.today() - timedelta(days=20), date.today() - timedelta(days=1)
    page.fill("#from", start.isoformat())
    page.fill("#to", end.isoformat())
    page.check("#compare")
    page.click("#apply")
    wait_loaded(page)
    q = q_of(page)
    assert q == {
        "steps": [
            {"name": "Product Viewed", "any_of": [{"event": "Product Viewed"}, {"event": "Product List Viewed"}]},
            {"name": "Product Added", "event": "Product Added",
             "filters": [{"property": "device_type", "op": "eq", "value": "mobile"}]},
            {"name": "Checkout Started", "event": "Checkout Started"},
            {"name": "Order Completed", "event": "Order Completed"},
        ],
        "window": "2d", "order": "ordered", "counting": "uniques", "trend": "day", "breakdown": "channel",
        "from": start.isoformat(), "to": end.isoformat(),
        # The previous period: as many days, ending the day before the range starts.
        "compare": {"from": (start - timedelta(days=20)).isoformat(), "to": (start - timedelta(days=1)).isoformat()},
    }  # fmt: skip
    client, token = session(site.url)
    result = api(client, token, {"kind": "funnel", **q})
    shown = shown_steps(page)
    assert [row[:6] for row in shown] == expected_steps(result)
    assert [row[7] for row in shown] == [f"{s['count']:,}" for s in result["compare"]["steps"]]
    assert page.locator("#breakdown-table tbody tr").count() == len(result["breakdown"]) > 1
    assert len(result["trend"]) > 1 and page.locator("#trend-chart svg").count() == 1
    with page.expect_download() as info:
        page.click("#trend-export button[data-export=xlsx]")
    assert info.value.suggested_filename == "masar-funnel.xlsx"
    sheet = load_workbook(io.BytesIO(info.value.path().read_bytes())).active
    assert [row[:3] for row in sheet.iter_rows(min_row=2, values_only=True)] == [
        (p["period"], p["entered"], p["converted"]) for p in result["trend"]]  # fmt: skip

    # The link alone, in a browser that has seen nothing of it, shows the same funnel.
    other = chromium.new_context(viewport={"width": 1300, "height": 900}).new_page()
    errors: list[str] = []
    other.on("pageerror", lambda e: errors.append(str(e)))
    try:
        login(other, site.url, VIEWER)
        other.goto(page.url)
        wait_loaded(other)
        assert q_of(other) == q and shown_steps(other) == shown
        builder = other.locator("#steps > li")
        assert builder.count() == 4
        assert builder.nth(0).locator(".step-event").evaluate_all("(i) => i.map((x) => x.value)") == [
            "Product Viewed", "Product List Viewed"]  # fmt: skip
        assert builder.nth(1).locator(".filter-property").input_value() == "device_type"
        assert builder.nth(1).locator(".filter-op").input_value() == "eq"
        assert builder.nth(1).locator(".filter-value").input_value() == "mobile"
        assert (other.input_value("#window-value"), other.input_value("#window-unit")) == ("2", "d")
        assert other.input_value("#breakdown") == "channel" and other.is_checked("#compare")
        assert (other.input_value("#from"), other.input_value("#to")) == (start.isoformat(), end.isoformat())
        assert errors == []
    finally:
        other.context.close()

    # A funnel the engine refuses says why, in the page.
    page.select_option("#order", "unordered")
    page.select_option("#counting", "totals")
    page.click("#apply")
    page.wait_for_selector("#funnel-status .error")
    assert "counting totals needs an ordered or strict funnel" in page.inner_text("#funnel-status")
    assert page.locator("#funnel-results").is_hidden()
    # Comparing needs a range to compare.
    page.select_option("#order", "ordered")
    page.fill("#from", "")
    page.click("#apply")
    assert page.inner_text("#builder-error") == "Pick a date range to compare it with the previous period."
    assert q_of(page)["counting"] == "totals"  # nothing applied
    assert page.errors == []


def test_save_list_open_and_delete_a_funnel_and_viewers_cannot_save(site, page, chromium):
    login(page, site.url)
    definition = {"steps": ["Product Added", "Checkout Started", "Order Completed"], "window": "3d",
                  "breakdown": "device_type"}  # fmt: skip
    open_funnels(page, site.url, definition)
    shown = shown_steps(page)
    page.fill("#save-name", "سلة إلى طلب")
    page.click("#save-form button[type=submit]")
    page.wait_for_selector('#saved-list li[data-name="سلة إلى طلب"]')
    assert page.inner_text("#saved-status") == "Saved as سلة إلى طلب."

    client, token = session(site.url, VIEWER)
    listed = client.get("/api/v1/saved-funnels", params={"source": SOURCE}).json()
    assert [(f["name"], f["saved_by"]) for f in listed] == [("سلة إلى طلب", ANALYST)]
    saved = listed[0]["definition"]
    assert [s["event"] for s in saved["steps"]] == definition["steps"] and saved["window"] == 3 * 86400
    # A viewer may read saved funnels, not save or delete them: the server refuses, whatever the page shows.
    refused = client.post("/api/v1/saved-funnels", params={"source": SOURCE}, json={"name": "mine", "definition": definition},
                          headers={"X-CSRF-Token": token})  # fmt: skip
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden_role"
    gone = client.delete("/api/v1/saved-funnels", params={"source": SOURCE, "name": "سلة إلى طلب"},
                         headers={"X-CSRF-Token": token})  # fmt: skip
    assert gone.status_code == 403
    analyst, analyst_token = session(site.url)
    no_token = analyst.post("/api/v1/saved-funnels", params={"source": SOURCE}, json={"name": "x", "definition": definition})
    assert no_token.status_code == 403 and no_token.json()["error"]["code"] == "csrf_failed"
    bad = analyst.post("/api/v1/saved-funnels", params={"source": SOURCE}, headers={"X-CSRF-Token": analyst_token},
                       json={"name": "x", "definition": {"steps": ["Only one"]}})  # fmt: skip
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_query"
    assert [f["name"] for f in analyst.get("/api/v1/saved-funnels", params={"source": SOURCE}).json()] == ["سلة إلى طلب"]

    # The viewer's page lists it without a way to save or delete; opening it shows the same funnel.
    other = chromium.new_context(viewport={"width": 1300, "height": 900}).new_page()
    try:
        login(other, site.url, VIEWER)
        open_funnels(other, site.url)
        other.wait_for_selector('#saved-list li[data-name="سلة إلى طلب"]')
        assert other.locator("#save-form").count() == 0
        assert other.locator("#saved-list button").count() == 0
        with other.expect_navigation():
            other.click('#saved-list li[data-name="سلة إلى طلب"] a')
        wait_loaded(other)
        assert q_of(other) == saved
        assert shown_steps(other) == shown
        assert other.locator("#steps > li").count() == 3
    finally:
        other.context.close()

    page.once("dialog", lambda d: d.accept())
    page.click('#saved-list li[data-name="سلة إلى طلب"] button')
    page.wait_for_selector('#saved-list li[data-name="سلة إلى طلب"]', state="detached")
    assert analyst.get("/api/v1/saved-funnels", params={"source": SOURCE}).json() == []
    assert page.errors == []


def test_a_click_on_a_bar_lists_its_people_and_opens_their_journeys(site, page):
    login(page, site.url)
    definition = {"steps": STORE_EVENTS, "window": "7d"}
    open_funnels(page, site.url, definition)
    client, token = session(site.url)
    result = api(client, token, {"kind": "funnel", **definition})
    third = result["steps"][2]

    click_bar(page, 2, third["count"] / 2)  # the bar of people who reached step 3
    page.wait_for_selector("body[data-people=loaded]")
    assert page.inner_text("#people-title").translate(ISOLATES) == "Reached step 3: Checkout Started"
    assert int(page.get_attribute("#people-panel", "data-total")) == third["count"]
    assert page.inner_text("#people-total") == f"In all: {third['count']:,} people"
    people = api(client, token, {"kind": "funnel_people", **definition, "step": 3, "limit": 25})
    listed = [int(p) for p in page.locator("#people-table tbody tr").evaluate_all("(rows) => rows.map((r) => r.dataset.person)")]
    assert listed == [p["person_id"] for p in people["people"]] and len(listed) == min(25, third["count"])
    assert parse_qs(urlparse(page.url).query)["step"] == ["3"]
    page.click("#people-next")  # the next 25
    page.wait_for_selector("body[data-people=loaded]")
    following = api(client, token, {"kind": "funnel_people", **definition, "step": 3, "limit": 25, "offset": 25})
    listed = [int(p) for p in page.locator("#people-table tbody tr").evaluate_all("(rows) => rows.map((r) => r.dataset.person)")]
    assert listed == [p["person_id"] for p in following["people"]] and listed
    assert page.inner_text("#people-page") == f"Page 2 of {-(-third['count'] // 25)}"

    # The dropped-off part of step 2's bar: the people who reached step 1 and not step 2.
    second = result["steps"][1]
    click_bar(page, 1, second["count"] + second["drop_off"] / 2)
    page.wait_for_function(f"document.getElementById('people-panel').dataset.total === '{second['drop_off']}'")
    page.wait_for_selector("body[data-people=loaded]")
    assert page.inner_text("#people-title").translate(ISOLATES) == "Dropped off at step 2: Product Added"
    dropped = api(client, token, {"kind": "funnel_people", **definition, "step": 2, "status": "dropped", "limit": 100_000})
    assert dropped["total"] == second["drop_off"] == len(dropped["people"])
    assert all(p["deepest_step"] == 1 for p in dropped["people"])

    # Export every one of them (not only the page shown).
    with page.expect_download() as info:
        page.click("#people-export button[data-export=csv]")
    rows = list(csv.DictReader(io.StringIO(open(info.value.path(), encoding="utf-8").read())))
    assert [int(r["person_id"]) for r in rows] == [p["person_id"] for p in dropped["people"]]

    # The first of them: their journey, with the step they reached marked.
    first = page.locator("#people-table tbody tr").first
    person = first.get_attribute("data-person")
    first.locator("button").click()
    page.wait_for_selector(f"body[data-journey='{person}']")
    profile = api(client, token, {"kind": "customer", "person": int(person), "by": "person", "predict": False,
                                  "timeline_limit": 200})  # fmt: skip
    journey = page.locator("#journey-table tbody tr")
    assert journey.count() == len(profile["timeline"]) > 0
    cells = [r.locator("th, td").all_inner_texts() for r in journey.all()]
    assert [c[1] for c in cells] == [e["event"] for e in reversed(profile["timeline"])]
    marked = [c for c, r in zip(cells, journey.all(), strict=True) if "step-event" in (r.get_attribute("class") or "")]
    assert any(c[1] == "Product Viewed" and c[2] == "1" for c in marked)
    assert parse_qs(urlparse(page.url).query)["person"] == [person]
    profile_link = parse_qs(urlparse(page.get_attribute("#journey-profile", "href")).query)
    assert profile_link == {"source": [SOURCE], "tab": ["profile"], "person": [person], "by": ["person"]}
    assert page.errors == []


def test_the_arabic_page_is_mirrored_and_translated(site, page):
    login(page, site.url, lang="ar")
    definition = {"steps": STORE_EVENTS, "window": "7d", "trend": "week"}
    open_funnels(page, site.url, definition, lang="ar")
    assert page.locator("html").get_attribute("dir") == "rtl"
    assert page.locator("h1").inner_text() == "مسارات التحويل"
    assert page.inner_text("#builder-title") == "بناء مسار تحويل"
    assert page.inner_text("#apply") == "عرض مسار التحويل"
    assert page.locator("#steps > li").first.locator("legend").inner_text() == "الخطوة 1"
    # Every label of the page is Arabic (their own text, not the values in them).
    labels = page.locator("main label, main legend, main h2, main th[scope=col], main button").evaluate_all(
        "(nodes) => nodes.filter((n) => n.offsetParent).map((n) => [...n.childNodes].filter((c) => c.nodeType === 3)"
        ".map((c) => c.textContent).join('').trim() || n.getAttribute('aria-label') || '')"
    )
    untranslated = [text for text in labels if text and not any("\u0600" <= ch <= "\u06ff" for ch in text)
                    and not text.replace(",", "").isdigit() and text not in {"↑", "↓", "✕", "CSV"}]  # fmt: skip
    assert untranslated == []
    # Mirrored: the step form's labels on the right, the chart's first step on the right of its last,
    # and its value axis on the right.
    builder = page.locator("#builder").bounding_box()
    legend = page.locator("#steps > li").first.locator("legend").bounding_box()
    assert legend["x"] > builder["x"] + builder["width"] / 2
    box = page.locator("#funnel-chart").bounding_box()
    texts = {t.text_content(): t for t in page.locator("#funnel-chart svg text").all()}
    first, last = (next(t for text, t in texts.items() if word in text) for word in ("Viewed", "Completed"))
    assert first.bounding_box()["x"] > last.bounding_box()["x"]
    assert texts["0"].bounding_box()["x"] > box["x"] + box["width"] / 2
    # A click on a mirrored bar lists its people, in Arabic.
    client, token = session(site.url)
    second = api(client, token, {"kind": "funnel", **definition})["steps"][1]
    click_bar(page, 1, second["count"] / 2)
    page.wait_for_selector("body[data-people=loaded]")
    assert page.inner_text("#people-title").translate(ISOLATES) == "وصلوا إلى الخطوة 2: Product Added"
    assert page.get_attribute("#people-panel", "data-total") == str(second["count"])
    assert page.inner_text("#people-total") == f"الإجمالي: {second['count']} شخص"
    assert page.errors == []


def test_every_chart_and_table_exports(site):
    client, token = session(site.url)
    headers = {"X-CSRF-Token": token}
    funnel = {"kind": "funnel", "source": SOURCE, "template": "store", "breakdown": "device_type", "trend": "week",
              "from": (date.today() - timedelta(days=14)).isoformat(), "to": date.today().isoformat(),
              "compare": {"from": (date.today() - timedelta(days=29)).isoformat(),
                          "to": (date.today() - timedelta(days=15)).isoformat()}}  # fmt: skip
    result = api(client, token, funnel)

    steps = client.post("/api/v1/export?format=csv", json=funnel, headers=headers)
    assert steps.status_code == 200 and steps.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(steps.text)))
    expected = ([("this", "all", "", s["count"]) for s in result["steps"]]
                + [("this", "breakdown", b["value"] or "", s["count"]) for b in result["breakdown"] for s in b["steps"]]
                + [("previous", "all", "", s["count"]) for s in result["compare"]["steps"]])  # fmt: skip
    assert [(r["period"], r["segment"], r["breakdown_value"], int(r["count"])) for r in rows] == expected

    trend = client.post("/api/v1/funnels/export?format=csv&part=trend", json=funnel, headers=headers)
    assert [(r["period"], int(r["entered"]), int(r["converted"])) for r in csv.DictReader(io.StringIO(trend.text))] == [
        (p["period"], p["entered"], p["converted"]) for p in result["trend"]]  # fmt: skip
    ttc = client.post("/api/v1/funnels/export?format=xlsx&part=time_to_convert", json=funnel, headers=headers)
    sheet = load_workbook(io.BytesIO(ttc.content)).active
    table = list(sheet.iter_rows(values_only=True))
    assert table[0] == ("period", "from_seconds", "to_seconds", "count")
    bins = result["time_to_convert"]["bins"] + result["compare"]["time_to_convert"]["bins"]
    assert [row[3] for row in table[1:]] == [b["count"] for b in bins]
    assert sum(row[3] for row in table[1:] if row[0] == "this") == result["time_to_convert"]["converted"]

    wrong = client.post("/api/v1/funnels/export?format=csv&part=people", json=funnel, headers=headers)
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "invalid_table"
    not_a_funnel = client.post("/api/v1/funnels/export?part=trend", json={"kind": "rfm", "source": SOURCE}, headers=headers)
    assert not_a_funnel.status_code == 400


def test_templates_are_listed_and_their_titles_translated(site):
    client, _token = session(site.url, VIEWER)
    listed = client.get("/api/v1/funnel-templates", params={"source": SOURCE}).json()
    assert {t["name"]: (t["title"], t["steps"]) for t in listed} == {
        name: (b["title"], b["steps"]) for name, b in BUILTIN.items()}  # fmt: skip
    assert {b["title"] for b in BUILTIN.values()} <= all_msgids()
    assert httpx.get(site.url + "/api/v1/funnel-templates", params={"source": SOURCE}).status_code == 401
