"""The Customers and Channels pages against a real ``masar serve`` on the demo store: over HTTP
(saving audiences by role, the spend and rate imports, exports) and in Debian's Chromium (the
numbers the pages show are the query API's, in English and in Arabic)."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, timedelta

import pytest

from tests.web.conftest import OWNER, PASSWORD, csrf_of, sign_in

pytestmark = pytest.mark.timeout(300)

SOURCE = "Masar Demo Store"
ANALYST = "analyst@example.com"
VIEWER = "viewer@example.com"


def spend_csv(last_day: str, campaign: str) -> str:
    """Three days of spend ending 3 days before the data's last day; line 3 is bad."""
    day = date.fromisoformat(last_day)
    d1, d2, d3 = (str(day - timedelta(days=n)) for n in (5, 4, 3))
    return (
        f"date,channel,campaign,spend,currency\n{d1},tiktok_ads,{campaign},100.50,SAR\n"
        f"{d2},tiktok_ads,{campaign},not-a-number,SAR\n{d3},tiktok_ads,{campaign},49.50,\n"
    )


class Api:
    """A signed-in client that sends the page's CSRF token, as the page scripts do."""

    def __init__(self, url: str, email: str):
        self.client = sign_in(url, email)
        self.token = csrf_of(self.client.get("/customers").text)

    def query(self, **q):
        response = self.client.post(
            "/api/v1/query", json={"source": SOURCE, **q}, headers={"X-CSRF-Token": self.token}
        )
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, url: str, **kwargs):
        return self.client.post(url, headers={"X-CSRF-Token": self.token}, **kwargs)


@pytest.fixture(scope="module")
def owner(site):
    return Api(site.url, OWNER)


@pytest.fixture(scope="module")
def analyst(site):
    return Api(site.url, ANALYST)


@pytest.fixture(scope="module")
def viewer(site):
    return Api(site.url, VIEWER)


def login(page, url: str, email: str = OWNER, query: str = "") -> None:
    page.goto(url + "/login" + query)
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/overview**")


def en_money(value) -> str:
    return f"SAR\xa0{float(value):,.2f}"


# -- HTTP ---------------------------------------------------------------------------------------------


def test_both_pages_are_served_in_english_and_arabic(owner):
    for path, english, arabic in (
        ("/customers", "Customers", "العملاء"),
        ("/channels", "Channels", "القنوات"),
    ):
        html = owner.client.get(path + "?lang=en").text
        assert f"<h1>{english}</h1>" in html and 'dir="ltr"' in html
        html = owner.client.get(path + "?lang=ar").text
        assert f"<h1>{arabic}</h1>" in html and 'dir="rtl"' in html
    owner.client.get("/customers?lang=en")  # back to English for the other tests of this client


def test_an_analyst_saves_an_audience_and_a_viewer_is_refused(analyst, viewer, owner):
    body = {"source": SOURCE, "name": "أفضل العملاء", "example": "top_customers", "params": {"percent": "20"}}
    # A viewer, even with the right token, is refused; so is an analyst without the token.
    refused = viewer.post("/api/v1/audiences", json=body)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden_role"
    no_token = analyst.client.post("/api/v1/audiences", json=body)
    assert no_token.status_code == 403 and no_token.json()["error"]["code"] == "csrf_failed"
    saved = analyst.post("/api/v1/audiences", json=body)
    assert saved.status_code == 201, saved.text
    assert saved.json()["definition"]["all"][0] == {"type": "top_percent", "percent": 20, "by": "revenue"}
    # A definition as JSON works too; a bad one is one clear sentence.
    lapsed = {"all": [{"type": "lapsed", "factor": 3}]}
    assert (
        analyst.post(
            "/api/v1/audiences", json={"source": SOURCE, "name": "Lapsed 3×", "definition": lapsed}
        ).status_code
        == 201
    )
    bad = analyst.post(
        "/api/v1/audiences", json={"source": SOURCE, "name": "Bad", "definition": {"all": [{"type": "nope"}]}}
    )
    assert bad.status_code == 400 and "unknown condition type" in bad.json()["error"]["message"]
    # Everyone signed in reads the list; the members are the audience query's.
    names = [a["name"] for a in viewer.client.get("/api/v1/audiences", params={"source": SOURCE}).json()]
    assert {"أفضل العملاء", "Lapsed 3×"} <= set(names)
    counted = viewer.query(kind="audience", name="أفضل العملاء", limit=0)["count"]
    inline = owner.query(
        kind="audience", definition={"all": [{"type": "top_percent", "percent": 20}]}, limit=0
    )
    assert counted == inline["count"] > 0
    # Deleting needs the analyst role too.
    assert viewer.client.delete("/api/v1/audiences", params={"source": SOURCE, "name": "Lapsed 3×"},
                                headers={"X-CSRF-Token": viewer.token}).status_code == 403  # fmt: skip
    deleted = analyst.client.delete("/api/v1/audiences", params={"source": SOURCE, "name": "Lapsed 3×"},
                                    headers={"X-CSRF-Token": analyst.token})  # fmt: skip
    assert deleted.status_code == 200
    assert "Lapsed 3×" not in [
        a["name"] for a in viewer.client.get("/api/v1/audiences", params={"source": SOURCE}).json()
    ]


def test_examples_are_listed_with_their_parameters(viewer):
    examples = viewer.client.get("/api/v1/audience-examples").json()
    assert [e["key"] for e in examples] == ["cart_abandoners", "viewed_not_added", "bought_not_bought", "top_customers",
                                            "lapsed"]  # fmt: skip
    assert examples[0]["params"] == [{"name": "days", "default": 7, "help": examples[0]["params"][0]["help"]}]


def test_a_spend_file_with_a_bad_line_imports_the_good_lines(analyst, viewer):
    last_day = analyst.query(kind="acquisition")["range"]["to"]
    files = {"file": ("spend.csv", spend_csv(last_day, "wc_test_campaign").encode(), "text/csv")}
    refused = viewer.post("/api/v1/spend", data={"source": SOURCE}, files=files)
    assert refused.status_code == 403
    response = analyst.post("/api/v1/spend", data={"source": SOURCE}, files=files)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["written"] == 2 and result["rejected"] == 1
    assert result["errors"] == [{"line": 3, "reason": "amount must be a number, got 'not-a-number'"}]
    rows = analyst.query(kind="acquisition")["rows"]
    mine = [r for r in rows if r["campaign"] == "wc_test_campaign"]
    assert len(mine) == 1 and mine[0]["spend"] == "150.00"
    # A file without the needed columns is refused as a whole.
    bad = analyst.post(
        "/api/v1/spend", data={"source": SOURCE}, files={"file": ("x.csv", b"day,cost\n1,2\n", "text/csv")}
    )
    assert bad.status_code == 400 and "needs the columns" in bad.json()["error"]["message"]


def test_exchange_rates_import_the_same_way(analyst, viewer):
    text = b"date,base,quote,rate\n2026-11-01,USD,SAR,3.75\n2026-11-02,USD,SAR,-1\n"
    files = {"file": ("rates.csv", text, "text/csv")}
    assert viewer.post("/api/v1/rates", files=files).status_code == 403
    result = analyst.post("/api/v1/rates", files=files).json()
    assert result["written"] == 1 and result["errors"][0]["line"] == 3


def test_a_list_beside_the_main_table_exports(owner):
    q = {"kind": "email", "source": SOURCE}
    response = owner.post("/api/v1/export-rows", params={"part": "by_weekday", "format": "csv"}, json=q)
    assert response.status_code == 200, response.text
    rows = list(csv.DictReader(io.StringIO(response.text)))
    expected = owner.query(kind="email")["by_weekday"]
    assert [int(r["slot"]) for r in rows] == [r["slot"] for r in expected]
    assert owner.post("/api/v1/export-rows", params={"part": "currency"}, json=q).status_code == 400
    xlsx = owner.post("/api/v1/export-rows", params={"part": "by_hour", "format": "xlsx"}, json=q)
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"


# -- the Customers page in the browser ----------------------------------------------------------------


def test_segments_their_customers_and_a_profile(site, owner, page):
    login(page, site.url)
    page.goto(site.url + "/customers")
    page.wait_for_selector("body[data-loaded=customers-rfm]", timeout=120_000)
    rfm = owner.query(kind="rfm")
    # Every segment's size is the query's.
    for segment in rfm["segments"]:
        row = page.locator(f'#segments-table tbody tr[data-segment="{segment["segment"]}"]')
        assert row.locator("td").nth(0).inner_text() == f"{segment['customers']:,}"
    assert page.locator("#segments-chart svg").count() == 1 and page.locator("#grid-chart svg").count() == 1
    # Choosing the biggest segment lists its customers, highest revenue first, as rfm_customers does.
    biggest = max(rfm["segments"], key=lambda s: s["customers"])["segment"]
    page.click(f'#segments-table tbody tr[data-segment="{biggest}"] button')
    page.wait_for_selector(f'#segment-customers[data-segment="{biggest}"] tbody tr')
    assert re.search(r"[?&]segment=", page.url)
    listed = owner.query(kind="rfm_customers", segment=biggest, limit=50)
    links = page.locator("#segment-customers tbody tr a[data-person]")
    assert [int(a.get_attribute("data-person")) for a in links.all()] == [
        c["person"] for c in listed["customers"]
    ]
    # The export downloads the segment's customers.
    with page.expect_download() as download:
        page.click('#segment-customers button[data-export="csv"]')
    exported = list(csv.DictReader(io.StringIO(open(download.value.path(), encoding="utf-8").read())))
    assert len(exported) == listed["total"] and {r["segment"] for r in exported} == {biggest}
    # Opening a customer shows their profile: the same orders as the customer query.
    first = listed["customers"][0]
    links.first.click()
    page.wait_for_selector(f'#profile[data-person="{first["person"]}"]')
    customer = owner.query(kind="customer", person=first["person"], by="person")
    shown = [tr.get_attribute("data-order") for tr in page.locator("#profile .orders tbody tr").all()]
    assert shown == [o["order_key"] for o in customer["orders"]]
    assert page.locator("#tab-profile").get_attribute("aria-selected") == "true"
    assert page.locator("#profile [data-segment]").get_attribute("data-segment") == customer["rfm"]["segment"]
    assert en_money(customer["value"]["lifetime_value"]) in page.locator("#profile").inner_text()
    assert page.locator("#profile .timeline li").count() == len(customer["timeline"]) > 0
    # The browser's back button returns to the segment.
    page.go_back()
    page.wait_for_selector("#panel-rfm:not([hidden])")
    # The search box finds a customer by email.
    page.fill("#find-person", first["email"])
    page.click("#find button[type=submit]")
    page.wait_for_selector(f'#profile[data-person="{first["person"]}"]')
    assert page.errors == []


def test_an_analyst_saves_an_audience_in_the_page_and_sees_its_members(site, owner, page):
    login(page, site.url, email=ANALYST)
    page.goto(site.url + "/customers?tab=audiences")
    page.wait_for_selector("body[data-loaded=customers-audiences]", timeout=120_000)
    page.wait_for_selector("#audience-example option", state="attached")
    page.fill("#audience-name", "Top 10 percent")
    page.select_option("#audience-example", "top_customers")
    page.fill("#param-percent", "10")
    page.click("#audience-form button[type=submit]")
    page.wait_for_selector("#members[data-count]")
    expected = owner.query(kind="audience", name="Top 10 percent", limit=50)
    assert (
        page.locator("#audience-status").inner_text() == f"Saved Top 10 percent: {expected['count']} members."
    )
    assert int(page.locator("#members").get_attribute("data-count")) == expected["count"]
    persons = [
        int(a.get_attribute("data-person")) for a in page.locator("#members tbody a[data-person]").all()
    ]
    assert persons == [m["person"] for m in expected["members"]]
    page.wait_for_selector('#audiences tbody tr[data-audience="Top 10 percent"]')
    with page.expect_download() as download:
        page.click('#members button[data-export="xlsx"]')
    assert open(download.value.path(), "rb").read(2) == b"PK"
    # Or as a JSON definition: the example's fields give way to the text box.
    assert not page.is_visible("#audience-definition")
    page.check("#audience-form input[name=how][value=definition]")
    assert page.is_visible("#audience-definition") and not page.is_visible("#audience-example")
    page.fill("#audience-name", "Lapsed twice over")
    page.fill("#audience-definition", '{"all": [{"type": "lapsed", "factor": 2}]}')
    page.click("#audience-form button[type=submit]")
    page.wait_for_selector('#audiences tbody tr[data-audience="Lapsed twice over"]')
    counted = owner.query(kind="audience", name="Lapsed twice over", limit=0)["count"]
    assert page.locator("#audience-status").inner_text() == f"Saved Lapsed twice over: {counted} members."
    assert page.errors == []


def test_a_viewer_sees_audiences_but_no_form(site, page):
    login(page, site.url, email=VIEWER)
    page.goto(site.url + "/customers?tab=audiences")
    page.wait_for_selector("body[data-loaded=customers-audiences]", timeout=120_000)
    assert page.locator("#audience-form").count() == 0
    assert "Saving audiences needs the analyst role." in page.locator("#panel-audiences").inner_text()
    assert page.locator("#examples tbody tr").count() == 5
    assert page.errors == []


def test_lifetime_value_lists_the_most_valuable_customers(site, owner, page):
    login(page, site.url)
    page.goto(site.url + "/customers?tab=ltv&ltv_mode=historical&ltv_by=first_channel")
    page.wait_for_selector("body[data-loaded=customers-ltv]", timeout=120_000)
    page.wait_for_selector("#ltv-top tbody tr")
    response = owner.client.post("/api/v1/query", json={"source": SOURCE, "kind": "ltv", "mode": "historical", "limit": 10},
                                 headers={"X-CSRF-Token": owner.token})  # fmt: skip
    if response.status_code == 200:
        top = response.json()["rows"]
        assert page.locator("#ltv-groups tbody tr").count() > 0
    else:  # a server without the ltv query: the value to date, from RFM
        assert response.json()["error"]["code"] == "invalid_query"
        top = owner.query(kind="rfm_customers", limit=10)["customers"]
    persons = [
        int(a.get_attribute("data-person")) for a in page.locator("#ltv-top tbody a[data-person]").all()
    ]
    assert persons == [row["person"] for row in top]
    assert page.errors == []


def test_the_customers_page_in_arabic_mirrors(site, owner, page):
    login(page, site.url, query="?lang=ar")
    page.goto(site.url + "/customers?segment=Champions")
    page.wait_for_selector("body[data-loaded=customers-rfm]", timeout=120_000)
    page.wait_for_selector('#segment-customers[data-segment="Champions"]')
    assert page.locator("html").get_attribute("dir") == "rtl"
    assert page.locator("h1").inner_text() == "العملاء"
    assert page.locator("#tab-audiences").inner_text() == "الجماهير"
    assert page.locator("#segment-customers-title").inner_text() == "عملاء شريحة الأبطال"
    assert page.locator('#segments-table tbody tr[data-segment="Champions"] button').inner_text() == "الأبطال"
    # The tabs run from the right, and the chart's segment labels are right of its bars.
    assert page.locator("#tab-rfm").bounding_box()["x"] > page.locator("#tab-profile").bounding_box()["x"]
    box = page.locator("#segments-chart").bounding_box()
    label = page.locator("#segments-chart svg text", has_text="الأبطال").first.bounding_box()
    assert label["x"] > box["x"] + box["width"] * 0.6
    # The profile in Arabic: labels translated, the same figures.
    champion = owner.query(kind="rfm_customers", segment="Champions", limit=1)["customers"][0]
    page.locator(f'#segment-customers a[data-person="{champion["person"]}"]').click()
    page.wait_for_selector(f'#profile[data-person="{champion["person"]}"]')
    text = page.locator("#profile").inner_text()
    assert "السجل الزمني" in text and "الهوية" in text and "الأبطال" in text
    assert page.errors == []


# -- the Channels page in the browser -----------------------------------------------------------------


def test_the_channels_page_shows_the_query_apis_numbers(site, owner, page):
    login(page, site.url)
    page.goto(site.url + "/channels")
    page.wait_for_selector("body[data-loaded=channels]", timeout=120_000)
    page.wait_for_selector("#email tbody tr")
    window = {"from": page.input_value("#from"), "to": page.input_value("#to")}
    by_channel = owner.query(kind="metrics", compare=False, granularity=None, metrics=["roas", "ad_spend"],
                             breakdown="channel", breakdown_limit=100, **window)["breakdown"]  # fmt: skip
    paid = [b for b in by_channel if b["values"]["roas"] is not None]
    assert paid, "the demo store has channels with spend"
    for b in paid:
        row = page.locator(f'#channels tbody tr[data-channel="{b["value"]}"]')
        assert row.locator("td").last.inner_text() == f"{b['values']['roas']:.2f}×"
        assert row.locator("td").first.inner_text() == en_money(b["values"]["ad_spend"])
    campaigns = owner.query(kind="acquisition", **window)["rows"]
    with_roas = next(r for r in campaigns if r["roas"] is not None)
    row = page.locator(f'#campaigns tbody tr[data-campaign="{with_roas["campaign"]}"]')
    assert f"{with_roas['roas']:.2f}×" in row.inner_text()
    platforms = owner.query(kind="platforms", **window)["rows"]
    assert page.locator("#platforms tbody tr").count() == len(platforms)
    email = owner.query(kind="email", **window)
    assert page.locator("#email tbody tr").count() == len(email["rows"])
    first = page.locator(f'#email tbody tr[data-campaign="{email["rows"][0]["campaign"]}"]')
    assert f"{email['rows'][0]['open_rate'] * 100:.1f}%".replace(".0%", "%") in first.inner_text()
    for chart in ("#channel-chart", "#platform-chart", "#hour-chart", "#weekday-chart"):
        assert page.locator(chart + " svg").count() == 1
    with page.expect_download() as download:
        page.click('#campaigns button[data-export="csv"]')
    exported = list(csv.DictReader(io.StringIO(open(download.value.path(), encoding="utf-8").read())))
    assert len(exported) == len(campaigns)
    with page.expect_download() as download:
        page.click('#weekday-export button[data-export="csv"]')
    header = next(csv.reader(open(download.value.path(), encoding="utf-8")))
    assert header == ["slot", "delivered", "clicked", "click_rate"]
    assert page.errors == []


def test_an_analyst_imports_spend_in_the_page(site, page, tmp_path):
    login(page, site.url, email=ANALYST)
    page.goto(site.url + "/channels")
    page.wait_for_selector("body[data-loaded=channels]", timeout=120_000)
    path = tmp_path / "spend.csv"
    path.write_text(spend_csv(page.input_value("#to"), "wc_browser_campaign"), encoding="utf-8")
    page.set_input_files("#spend-file", str(path))
    page.click("#spend-form button[type=submit]")
    page.wait_for_selector("#spend-result .ok")
    result = page.locator("#spend-result").inner_text()
    assert "Imported 2 spend rows." in result and "1 lines were refused" in result
    cells = page.locator("#spend-result tbody tr").first.inner_text()
    assert "3" in cells and "amount must be a number, got 'not-a-number'" in cells
    assert page.errors == []


def test_the_channels_page_in_arabic(site, page):
    login(page, site.url, email=VIEWER, query="?lang=ar")
    page.goto(site.url + "/channels")
    page.wait_for_selector("body[data-loaded=channels]", timeout=120_000)
    page.wait_for_selector("#channels tbody tr")
    assert page.locator("html").get_attribute("dir") == "rtl"
    assert page.locator("h1").inner_text() == "القنوات"
    assert page.locator("#email-title").inner_text() == "حملات البريد الإلكتروني"
    assert page.locator('#channels tbody tr[data-channel="Paid Search"] th').inner_text() == "البحث المدفوع"
    assert "استيراد الإنفاق يتطلب دور المحلل." in page.locator("main").inner_text()
    # The first column of a table is on the right.
    header = page.locator("#channels thead th")
    assert header.first.bounding_box()["x"] > header.last.bounding_box()["x"]
    assert page.errors == []
