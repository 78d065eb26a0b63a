"""The Leaks, Journeys and Cohorts pages in a real browser (Debian's Chromium via Playwright)
against a real ``masar serve`` on the small demo store: the numbers on the page are the query
API's for the same query, the URL holds the state, Arabic pages mirror and show no English
prose, and every table exports."""

from __future__ import annotations

import csv
import io
import json
import re
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from masar.engine import parse_query
from masar.web.i18n import Lang
from tests.web.conftest import OWNER, PASSWORD, csrf_of, sign_in

pytestmark = pytest.mark.timeout(300)
SOURCE = "Masar Demo Store"
LOADED = 120_000
AR = Lang("ar")
ISOLATED = re.compile("\u2068[^\u2069]*\u2069")


@pytest.fixture(scope="module")
def api(site):
    """POST /api/v1/query as the owner's session: the numbers the pages must show."""
    client = sign_in(site.url, OWNER)
    token = csrf_of(client.get("/overview").text)

    def run(q: dict) -> dict:
        response = client.post("/api/v1/query", json={"source": SOURCE, **q}, headers={"X-CSRF-Token": token})
        assert response.status_code == 200, response.text
        return response.json()

    run.client = client
    return run


def login(page, url: str, lang: str = "en") -> None:
    page.goto(f"{url}/login?lang={lang}")
    page.fill("#email", OWNER)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/overview**")


def open_page(page, site, path: str, name: str, lang: str = "en") -> None:
    login(page, site.url, lang)
    page.goto(site.url + path)
    page.wait_for_selector(f"body[data-loaded={name}]", timeout=LOADED)


def number(value: float) -> str:
    """Intl's en format with at most two decimals (what masar.fmt.number shows)."""
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def percent(value: float) -> str:
    return f"{value * 100:,.1f}".rstrip("0").rstrip(".") + "%"


def downloaded(page, selector: str) -> list[dict[str, str]]:
    with page.expect_download() as info:
        page.click(selector)
    return list(csv.DictReader(io.StringIO(info.value.path().read_text(encoding="utf-8"))))


def chart_option(page, element_id: str) -> dict:
    return page.evaluate(f"JSON.parse(JSON.stringify(echarts.getInstanceByDom(document.getElementById('{element_id}')).getOption()))")


# -- the pages over HTTP ---------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "title"), [("/leaks", "Leaks"), ("/journeys", "Journeys"), ("/cohorts", "Cohorts")])
def test_the_pages_need_a_session_and_speak_both_languages(site, path, title):
    client = sign_in(site.url, "viewer@example.com")
    english = client.get(path)
    assert english.status_code == 200
    assert f"<h1>{title}</h1>" in english.text and 'dir="ltr"' in english.text
    arabic = client.get(path + "?lang=ar")
    assert 'dir="rtl"' in arabic.text and f"<h1>{AR.gettext(title)}</h1>" in arabic.text
    assert AR.gettext(title) != title
    anonymous = httpx.get(site.url + path, follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login?next=")


def test_funnel_templates_give_their_steps(site, api):
    templates = api.client.get("/api/v1/funnel-templates", params={"source": SOURCE}).json()
    store = next(x for x in templates if x["name"] == "store")
    assert [s["name"] for s in store["steps"]][0] == "Product Viewed" and store["customized"] is False
    refused = httpx.get(site.url + "/api/v1/funnel-templates", params={"source": SOURCE})
    assert refused.status_code == 401


# -- leaks -----------------------------------------------------------------------------------------


def test_leaks_page_shows_the_findings_and_links_to_their_funnel(site, api, page):
    open_page(page, site, "/leaks", "leaks")
    result = api({"kind": "leaks", "template": "store"})
    findings = result["findings"]
    assert findings, "the demo store should have leaks to show"
    cards = page.locator("li.finding")
    assert cards.count() == len(findings)
    first, shown = findings[0], cards.nth(0)
    assert shown.locator("[data-field=lost-orders]").inner_text() == number(first["lost_orders"])
    assert shown.locator("[data-field=lost-revenue]").inner_text() == f"SAR\xa0{first['lost_revenue']:,.2f}"
    assert shown.locator("[data-field=conversion]").inner_text().startswith(percent(first["conversion"]))
    assert shown.locator("[data-field=baseline]").inner_text().startswith(percent(first["baseline_conversion"]))
    # The sentence the page composes says what the engine's English summary says.
    for finding, card in zip(findings, cards.all(), strict=True):
        if finding["period"] is None and (finding["segment"] or {}).get("property") != "customer":
            sentence = card.locator(".sentence").inner_text().replace("\u2068", "").replace("\u2069", "")
            assert sentence.replace("\xa0", " ") == finding["summary"]

    # The funnel link: /funnels with a funnel query whose breakdown row is the finding's segment.
    link = urlparse(shown.locator("a[data-link=funnel]").get_attribute("href"))
    assert link.path == "/funnels"
    q = json.loads(parse_qs(link.query)["q"][0])
    parsed = parse_query({**q, "kind": "funnel", "source": SOURCE})  # q leaves both to the page
    assert parsed.kind == "funnel" and parsed.counting == result["counting"]
    assert parsed.breakdown.property == first["segment"]["property"]
    funnel = api({**q, "kind": "funnel"})
    row = next(b for b in funnel["breakdown"] if b["value"] == first["segment"]["value"])
    a = [s["name"] for s in funnel["steps"]].index(first["step_from"])
    assert (row["steps"][a]["count"], row["steps"][a + 1]["count"]) == (first["entrants"], first["converted"])

    # What drop-outs did next: the Journeys page with the same funnel.
    journeys = urlparse(shown.locator("a[data-link=journeys]").get_attribute("href"))
    params = parse_qs(journeys.query)
    assert journeys.path == "/journeys" and params["mode"] == ["dropped"]
    assert params["dropped_after"] == [str(a + 1)] and json.loads(params["q"][0])["steps"] == q["steps"]

    # Who dropped out: the people panel, in the URL.
    shown.locator("a[data-link=people]").click()
    page.wait_for_url("**people=1**")
    page.wait_for_selector("#people table", timeout=LOADED)
    people = api({**q, "kind": "funnel_people", "step": a + 2, "status": "dropped",
                  "breakdown_value": first["segment"]["value"], "limit": 25})  # fmt: skip
    assert people["total"] == first["entrants"] - first["converted"]
    assert number(people["total"]) in page.locator("#people").inner_text()
    assert page.locator("#people tbody tr").count() == len(people["people"])

    rows = downloaded(page, "#findings-export [data-export=csv]")
    assert len(rows) == len(findings)
    assert float(rows[0]["lost_orders"]) == first["lost_orders"] and rows[0]["segment_value"] == first["segment"]["value"]
    assert page.errors == []


def test_the_people_of_a_finding_export(site, api, page):
    open_page(page, site, "/leaks?people=1", "leaks")
    total = int(re.sub(r"\D", "", page.locator("#people .muted").inner_text().split(";")[0].split(" of ")[-1]))
    rows = downloaded(page, "#people [data-export=csv]")
    assert len(rows) == total


def test_leaks_in_arabic_has_no_english_prose(site, api, page):
    open_page(page, site, "/leaks", "leaks", lang="ar")
    assert page.locator("html").get_attribute("dir") == "rtl"
    assert page.locator("h1").inner_text() == AR.gettext("Leaks")
    result = api({"kind": "leaks", "template": "store"})
    sentences = [s.inner_text() for s in page.locator("li.finding .sentence").all()]
    assert len(sentences) == len(result["findings"])
    main = page.locator("main").inner_text()
    for finding, sentence in zip(result["findings"], sentences, strict=True):
        assert finding["summary"] not in main
        # Only names from the data (steps, browsers, sources), isolated, are not Arabic.
        assert not re.search("[A-Za-z]", ISOLATED.sub("", sentence)), sentence
        assert "←" in sentence and re.search("[\u0600-\u06ff]", sentence)
    labels = page.locator("li.finding dt").all_inner_texts()
    assert AR.gettext("Lost revenue") in labels and "Lost revenue" not in labels
    # The navigation is on the right of the findings.
    assert page.locator("nav.side").bounding_box()["x"] > page.locator("li.finding").first.bounding_box()["x"]
    assert page.errors == []


def test_the_overview_tells_its_leaks_in_the_pages_language(site, api, page):
    login(page, site.url, "ar")
    page.wait_for_selector("body[data-loaded=overview]", timeout=LOADED)
    items = page.locator("#leaks li").all_inner_texts()
    range_ = api({"kind": "metrics", "granularity": "day"})["range"]
    result = api({"kind": "leaks", "template": "store", "from": range_["from"], "to": range_["to"], "limit": 5})
    assert len(items) == len(result["findings"][:5]) > 0
    for finding, text in zip(result["findings"], items, strict=False):
        assert text != finding["summary"] and not re.search("[A-Za-z]", ISOLATED.sub("", text)), text
    assert page.errors == []


def test_the_leaks_url_holds_the_funnel_range_and_counting(site, api, page):
    steps = ["Product Viewed", "Product Added", "Order Completed"]
    funnel = {"kind": "funnel", "steps": steps, "window": "3d"}
    open_page(page, site, "/leaks?q=" + json.dumps(funnel), "leaks")
    assert page.locator("#template option:checked").inner_text() == "The funnel from the link"
    page.select_option("#counting", "uniques")
    page.fill("#from", "2026-11-01")
    page.evaluate("document.body.dataset.loaded = ''")
    page.click("#leaks-form button[type=submit]")
    page.wait_for_selector("body[data-loaded=leaks]", timeout=LOADED)
    params = parse_qs(urlparse(page.url).query)
    assert params["counting"] == ["uniques"] and params["from"] == ["2026-11-01"]
    assert json.loads(params["q"][0]) == funnel
    expected = api({"kind": "leaks", "steps": steps, "window": "3d", "counting": "uniques", "from": "2026-11-01"})
    note = page.locator("#leaks-note").inner_text()
    assert f"from {number(expected['tests'])} tests" in note and note.endswith("counting people")
    assert page.locator("li.finding").count() == len(expected["findings"])

    # The same URL in a new page gives the same controls and the same result.
    page.goto(page.url)
    page.wait_for_selector("body[data-loaded=leaks]", timeout=LOADED)
    assert page.locator("#counting").input_value() == "uniques"
    assert page.locator("#from").input_value() == "2026-11-01"
    assert page.locator("#leaks-note").inner_text() == note
    # Picking a template drops the linked funnel.
    page.select_option("#template", "store")
    page.click("#leaks-form button[type=submit]")
    page.wait_for_url(re.compile(r"^(?!.*[?&]q=).*$"))
    assert "q" not in parse_qs(urlparse(page.url).query)
    assert page.errors == []


# -- journeys --------------------------------------------------------------------------------------


def test_journeys_sankey_and_paths_are_the_engines(site, api, page):
    open_page(page, site, "/journeys?step=Product%20Added", "journeys")
    result = api({"kind": "paths", "step": "Product Added", "direction": "after", "length": 5})
    links = chart_option(page, "sankey")["series"][0]["links"]
    edge = result["sankey"]["edges"][0]
    assert (links[0]["source"], links[0]["target"], links[0]["value"]) == (edge["source"], edge["target"], edge["count"])
    assert len(links) == len(result["sankey"]["edges"])
    rows = page.locator("#paths tbody tr")
    assert rows.count() == len(result["paths"]) + (1 if result["other_paths"]["count"] else 0)
    first = rows.nth(0).locator("td").all_inner_texts()
    assert first[0].replace("\u2068", "").replace("\u2069", "") == " → ".join(result["paths"][0]["events"])
    assert first[1] == number(result["paths"][0]["count"])
    assert number(result["total"]) in page.locator("#journeys-note").inner_text()
    exported = downloaded(page, "#paths [data-export=csv]")
    assert sum(int(r["count"]) for r in exported) == result["total"]
    assert exported[0]["event_1"] == "Product Added" and int(exported[0]["count"]) == result["paths"][0]["count"]
    assert page.errors == []


def node_columns(page) -> dict[str, float]:
    return page.evaluate("""() => {
        const data = echarts.getInstanceByDom(document.getElementById('sankey')).getModel().getSeriesByIndex(0).getData();
        const out = {};
        for (let i = 0; i < data.count(); i++) out[data.getName(i)] = data.getItemLayout(i).x;
        return out;
    }""")


def test_journeys_flow_right_to_left_in_arabic(site, page):
    open_page(page, site, "/journeys?step=Product%20Added", "journeys", lang="ar")
    assert page.locator("html").get_attribute("dir") == "rtl"
    assert page.locator("h1").inner_text() == AR.gettext("Journeys")
    x = node_columns(page)
    anchor = x["0:Product Added"]
    later = [v for k, v in x.items() if k.startswith("1:")]
    last = [v for k, v in x.items() if k.startswith("4:")]
    assert later and all(v < anchor for v in later) and all(v < min(later) for v in last)
    # Each path reads from the right: the anchor first, arrows pointing the reading way.
    path = page.locator("#paths tbody tr").nth(0).locator("td").first.inner_text()
    assert path.replace("\u2068", "").replace("\u2069", "").startswith("Product Added ← ")
    assert page.locator("#paths thead th").first.inner_text() == AR.gettext("Rank")
    assert page.errors == []


def test_journeys_after_dropping_out_from_the_form_and_the_url(site, api, page):
    open_page(page, site, "/journeys", "journeys")
    assert page.locator("#sankey svg").count() == 1 and page.locator("#dropped-after").is_hidden()
    page.select_option("#mode", "dropped")
    page.wait_for_selector("#dropped-after option[value='2']", state="attached")
    page.select_option("#dropped-after", "2")
    page.select_option("#length", "4")
    page.evaluate("document.body.dataset.loaded = ''")
    page.click("#journeys-form button[type=submit]")
    page.wait_for_selector("body[data-loaded=journeys]", timeout=LOADED)
    params = parse_qs(urlparse(page.url).query)
    assert params["mode"] == ["dropped"] and params["dropped_after"] == ["2"] and params["length"] == ["4"]
    templates = api.client.get("/api/v1/funnel-templates", params={"source": SOURCE}).json()
    steps = next(x for x in templates if x["name"] == "store")["steps"]
    result = api({"kind": "paths", "funnel": {"steps": steps, "dropped_after": 2}, "length": 4})
    note = page.locator("#journeys-note").inner_text()
    assert note.startswith(f"{number(result['funnel']['dropped'])} of {number(result['funnel']['entered'])} people")
    assert chart_option(page, "sankey")["series"][0]["links"][0]["value"] == result["sankey"]["edges"][0]["count"]
    # Drawn again in place: the new Sankey is on the page, not only in the chart's memory.
    assert page.locator("#sankey svg").is_visible() and page.locator("#sankey svg path").count() > len(result["sankey"]["nodes"])
    page.goto(page.url)
    page.wait_for_selector("body[data-loaded=journeys]", timeout=LOADED)
    assert page.locator("#mode").input_value() == "dropped" and page.locator("#dropped-after").input_value() == "2"
    assert page.locator("#journeys-note").inner_text() == note
    assert page.errors == []


# -- cohorts ---------------------------------------------------------------------------------------


def test_cohorts_heatmap_curve_and_table_are_the_engines(site, api, page):
    open_page(page, site, "/cohorts?period=week", "cohorts")
    result = api({"kind": "cohorts", "period": "week"})
    rows = result["rows"]
    first = next(i for i, r in enumerate(rows) if r["size"] > 0)
    shown = rows[first:]  # the page leaves out the empty cohorts before the first one
    table = page.locator("#cohort-table tbody tr")
    assert table.count() == len(shown)
    cells = table.nth(0).locator("td").all_inner_texts()
    assert cells[0] == number(shown[0]["size"])
    assert cells[2] == percent(shown[0]["values"][1]) and cells[1] == percent(shown[0]["values"][0])
    incomplete = shown[0]["complete"].index(False)
    assert cells[1 + incomplete] == "…"
    heat = chart_option(page, "heatmap")
    values = {(d["value"][0], d["value"][1]): d["value"][2] for d in heat["series"][0]["data"]}
    assert values[(1, 0)] == pytest.approx(shown[0]["values"][1])
    assert len(heat["series"][1]["data"]) == sum(not c and v is None for r in shown for c, v in zip(r["complete"], r["values"], strict=True))
    curve = chart_option(page, "curve")["series"][0]["data"]
    assert curve == [p["value"] for p in result["curve"]]
    exported = downloaded(page, "#cohort-table [data-export=csv]")
    assert len(exported) == len(rows) * result["periods"]
    assert page.errors == []


def test_cohorts_url_holds_the_settings(site, api, page):
    open_page(page, site, "/cohorts", "cohorts")
    page.select_option("#period", "week")
    page.select_option("#measure", "revenue")
    page.select_option("#group", "channel")
    page.evaluate("document.body.dataset.loaded = ''")
    page.click("#cohorts-form button[type=submit]")
    page.wait_for_selector("body[data-loaded=cohorts]", timeout=LOADED)
    params = parse_qs(urlparse(page.url).query)
    assert params["period"] == ["week"] and params["measure"] == ["revenue"] and params["group"] == ["channel"]
    result = api({"kind": "cohorts", "period": "week", "measure": "revenue", "group": "channel"})
    first = result["rows"][0]
    cells = page.locator("#cohort-table tbody tr").nth(0).locator("td").all_inner_texts()
    star = "" if first["complete"][0] else "*"
    assert page.locator("#cohort-table tbody tr").nth(0).locator("th").inner_text() == first["cohort"]
    assert cells[1] == f"SAR\xa0{first['values'][0]:,.2f}{star}"
    page.goto(page.url)
    page.wait_for_selector("body[data-loaded=cohorts]", timeout=LOADED)
    assert page.locator("#measure").input_value() == "revenue" and page.locator("#group").input_value() == "channel"
    assert page.locator("#cohort-table tbody tr").count() == len(result["rows"])
    assert page.errors == []


def test_cohorts_mirror_in_arabic(site, page):
    open_page(page, site, "/cohorts?period=week", "cohorts", lang="ar")
    assert page.locator("html").get_attribute("dir") == "rtl"
    assert page.locator("h2#heatmap-title").inner_text() == AR.gettext("Retention by cohort")
    option = chart_option(page, "heatmap")
    assert option["xAxis"][0]["inverse"] is True and option["yAxis"][0]["position"] == "right"
    # Period 0 is drawn right of period 1.
    box = page.locator("#heatmap").bounding_box()
    labels = {t.text_content(): t.bounding_box()["x"] for t in page.locator("#heatmap svg text").all()
              if (t.text_content() or "") in {"0", "1"}}  # fmt: skip
    assert labels["0"] > labels["1"] > box["x"]
    assert "Week of" not in page.locator("main").inner_text()
    assert page.errors == []
