"""The settings page against a real ``masar serve`` on the demo store: every form over HTTP with
its roles and CSRF token, the install instructions run as written, and the page in Chromium in
English and Arabic."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from datetime import date

import httpx
import pytest

from tests.conftest import REPO, masar_cli_json, wait_for_count
from tests.web.conftest import OWNER, PASSWORD, csrf_of, sign_in

pytestmark = pytest.mark.timeout(240)

DEMO = "Masar Demo Store"
ANALYST = "analyst@example.com"
VIEWER = "viewer@example.com"
SECRET = re.compile(r"msk_[A-Za-z0-9_-]{20,}")
FORMS = ("/settings/sources", "/settings/keys", "/settings/keys/revoke", "/settings/users", "/settings/users/role",
         "/settings/users/delete", "/settings/targets", "/settings/rates", "/settings/digits")  # fmt: skip


def settings(client: httpx.Client, query: str = "") -> tuple[str, str]:
    """The settings page's HTML and its CSRF token."""
    page = client.get("/settings" + query)
    assert page.status_code == 200, page.text[:500]
    return page.text, csrf_of(page.text)


def code_block(page: str, block_id: str) -> str:
    found = re.search(rf'<pre id="{block_id}"[^>]*><code>(.*?)</code></pre>', page, re.S)
    assert found, f"no {block_id} on the page"
    return html.unescape(found.group(1))


def keys(site) -> list[dict]:
    return masar_cli_json("keys", "list", "--data-dir", site.data_dir)


def users(site) -> dict[str, str]:
    return {u["email"]: u["role"] for u in masar_cli_json("users", "list", "--data-dir", site.data_dir)}


def test_the_page_needs_a_session_and_lists_the_stores(site):
    anonymous = httpx.Client(base_url=site.url, timeout=30)
    assert anonymous.get("/settings").headers["location"] == "/login?next=%2Fsettings"
    page, _token = settings(sign_in(site.url, VIEWER))
    demo = masar_cli_json("sources", "list", "--data-dir", site.data_dir)[0]
    assert demo["name"] == DEMO and demo["write_key"] in page
    for section in ("sources", "install", "keys", "users", "targets", "currencies", "language"):
        assert f'id="{section}"' in page
    assert "Asia/Riyadh" in page and "SAR" in page


def test_install_shows_this_servers_address_and_the_write_key(site):
    client = sign_in(site.url, VIEWER)
    page, _token = settings(client)
    write_key = masar_cli_json("sources", "list", "--data-dir", site.data_dir)[0]["write_key"]
    snippet = code_block(page, "install-snippet")
    assert snippet.startswith(f'<script src="{site.url}/masar.js" data-write-key="{write_key}" defer></script>')
    assert f'analytics.write_key = "{write_key}"' in code_block(page, "install-python")
    assert f'analytics.host = "{site.url}"' in code_block(page, "install-python")
    assert f'-u "{write_key}:"' in code_block(page, "install-curl")
    # The address is the one the browser used (behind a proxy: the forwarded host).
    other = client.get("/settings", headers={"host": "analytics.mystore.sa"}).text
    assert '<script src="http://analytics.mystore.sa/masar.js"' in code_block(other, "install-snippet")


def test_the_install_examples_work_as_written(site):
    page, _token = settings(sign_in(site.url, VIEWER))
    before = masar_cli_json("events", "count", "--source", DEMO, "--event", "Order Completed",
                            "--data-dir", site.data_dir)["count"]  # fmt: skip
    python = subprocess.run([sys.executable, "-c", code_block(page, "install-python")], capture_output=True,
                            text=True, timeout=60, cwd=REPO)  # fmt: skip
    assert python.returncode == 0, python.stderr
    curl = subprocess.run(["bash", "-c", code_block(page, "install-curl")], capture_output=True, text=True, timeout=60)
    assert curl.returncode == 0 and '"accepted":1' in curl.stdout.replace(" ", ""), curl.stdout + curl.stderr
    wait_for_count(site.data_dir, DEMO, before + 2, event="Order Completed", timeout=30)
    tail = masar_cli_json("events", "tail", "--source", DEMO, "--limit", "5", "--data-dir", site.data_dir)
    assert {r["user_id"] for r in tail if r["event"] in ("Order Completed", "Identify")} == {"customer-1001"}


def test_a_viewer_cannot_create_a_key_and_sees_no_button(site):
    for email in (VIEWER, ANALYST):
        client = sign_in(site.url, email)
        page, token = settings(client)
        assert 'id="key-form"' not in page and "Create a key" not in page
        assert 'action="/settings/keys/revoke' not in page
        assert "Only an owner can create or revoke secret keys." in page
        before = len(keys(site))
        refused = client.post("/settings/keys", data={"name": "sneaky", "csrf": token})
        assert refused.status_code == 403 and "owner role" in refused.text
        assert len(keys(site)) == before
    # A viewer changes nothing at all; the forms are not shown to them.
    client = sign_in(site.url, VIEWER)
    page, token = settings(client)
    for form_id in ("source-form", "user-form", "target-form", "rates-form"):
        assert f'id="{form_id}"' not in page
    assert 'action="/settings/users/delete' not in page and 'action="/settings/users/role' not in page
    for url in FORMS:
        assert client.post(url, data={"csrf": token}).status_code == 403, url


def test_the_owner_creates_a_key_shown_once_and_revokes_it(site):
    client = sign_in(site.url, OWNER)
    _page, token = settings(client)
    made = client.post("/settings/keys", data={"name": "reporting server", "scope": DEMO, "csrf": token})
    assert made.status_code == 200
    [secret] = set(SECRET.findall(made.text))
    assert "it will not be shown again" in made.text
    listed = [k for k in keys(site) if k["name"] == "reporting server"]
    assert len(listed) == 1 and secret.startswith(listed[0]["prefix"]) and listed[0]["source"] == DEMO
    # Shown once: the next page lists its prefix only.
    page, token = settings(client)
    assert secret not in page and listed[0]["prefix"] + "…" in page
    query = {"kind": "metrics", "source": DEMO, "metrics": ["orders"], "granularity": None, "compare": False}
    api = httpx.post(site.url + "/api/v1/query", json=query, headers={"authorization": f"Bearer {secret}"}, timeout=60)
    assert api.status_code == 200
    revoked = client.post("/settings/keys/revoke", data={"key_id": listed[0]["id"], "csrf": token})
    assert revoked.status_code == 303 and revoked.headers["location"] == "/settings?done=key_revoked#keys"
    page = client.get(revoked.headers["location"]).text
    assert "The key was revoked" in page and "Revoked on" in page
    again = httpx.post(site.url + "/api/v1/query", json=query, headers={"authorization": f"Bearer {secret}"}, timeout=60)
    assert again.status_code == 401
    missing = client.post("/settings/keys/revoke", data={"key_id": 9999, "csrf": token})
    assert missing.status_code == 404 and "That secret key does not exist." in missing.text


def test_every_form_refuses_a_post_without_its_token(site):
    client = sign_in(site.url, OWNER)
    before = (users(site), len(keys(site)))
    forged = {"name": "Forged", "email": "forged@example.com", "password": PASSWORD, "role": "owner",
              "currency": "SAR", "timezone": "UTC", "source": DEMO, "month": "2026-12", "revenue": "1",
              "digits": "arab", "key_id": "1"}  # fmt: skip
    for url in FORMS:
        for token in (None, "not-the-token"):
            data = forged | ({"csrf": token} if token else {})
            response = client.post(url, data=data)
            assert response.status_code == 403 and "security token" in response.text, url
    assert (users(site), len(keys(site))) == before
    assert DEMO in [s["name"] for s in masar_cli_json("sources", "list", "--data-dir", site.data_dir)]
    assert "Forged" not in [s["name"] for s in masar_cli_json("sources", "list", "--data-dir", site.data_dir)]


def test_the_owner_adds_a_user_changes_the_role_and_removes_them(site):
    client = sign_in(site.url, OWNER)
    _page, token = settings(client)
    added = client.post("/settings/users", data={"email": "Nour@Example.com", "password": PASSWORD,
                                                 "role": "analyst", "csrf": token})  # fmt: skip
    assert added.status_code == 303 and added.headers["location"] == "/settings?done=user_added#users"
    assert "The user was added." in client.get(added.headers["location"]).text
    assert users(site)["nour@example.com"] == "analyst"
    nour = sign_in(site.url, "nour@example.com")
    assert 'id="target-form"' in settings(nour)[0]
    # Errors: one sentence beside the form, the form's values kept, the status of the error.
    again = client.post("/settings/users", data={"email": "nour@example.com", "password": PASSWORD,
                                                 "role": "viewer", "csrf": token})  # fmt: skip
    assert again.status_code == 409 and "A user with this email exists already." in again.text
    weak = client.post("/settings/users", data={"email": "weak@example.com", "password": "short", "csrf": token})
    assert weak.status_code == 400 and "A password needs at least 10 characters." in weak.text
    assert 'value="weak@example.com"' in weak.text
    changed = client.post("/settings/users/role", data={"email": "nour@example.com", "role": "viewer", "csrf": token})
    assert changed.status_code == 303 and users(site)["nour@example.com"] == "viewer"
    assert 'id="target-form"' not in settings(nour)[0]
    last = client.post("/settings/users/role", data={"email": OWNER, "role": "analyst", "csrf": token})
    assert last.status_code == 409 and "The last owner cannot be removed or demoted" in last.text
    assert client.post("/settings/users/delete", data={"email": OWNER, "csrf": token}).status_code == 409
    # An answer shown at a form's address: links made from it come back to the page.
    assert client.get("/settings/users/role?lang=ar").headers["location"] == "/settings?lang=ar"
    removed = client.post("/settings/users/delete", data={"email": "nour@example.com", "csrf": token})
    assert removed.status_code == 303 and "nour@example.com" not in users(site)
    assert nour.get("/settings").status_code == 303  # signed out at once


def test_the_owner_adds_a_store_and_gets_its_install_instructions(site):
    client = sign_in(site.url, OWNER)
    _page, token = settings(client)
    form = {"name": "متجر الرياض", "currency": "sar", "timezone": "Asia/Nowhere", "domains": "riyadh.example", "csrf": token}
    wrong = client.post("/settings/sources", data=form)
    assert wrong.status_code == 400 and "A time zone is a name such as Asia/Riyadh." in wrong.text
    assert 'value="Asia/Nowhere"' in wrong.text  # kept for correcting
    made = client.post("/settings/sources", data=form | {"timezone": "Asia/Riyadh"})
    assert made.status_code == 303
    assert made.headers["location"] == "/settings?source=%D9%85%D8%AA%D8%AC%D8%B1+%D8%A7%D9%84%D8%B1%D9%8A%D8%A7%D8%B6&done=source_created#install"
    page = client.get(made.headers["location"]).text
    created = next(s for s in masar_cli_json("sources", "list", "--data-dir", site.data_dir) if s["name"] == "متجر الرياض")
    assert created["currency"] == "SAR" and created["timezone"] == "Asia/Riyadh" and created["own_domains"] == ["riyadh.example"]
    assert f'data-write-key="{created["write_key"]}"' in code_block(page, "install-snippet")
    assert "The store was created." in page
    dup = client.post("/settings/sources", data=form | {"timezone": "UTC"})
    assert dup.status_code == 409 and "A store with this name exists already." in dup.text
    assert client.post("/settings/sources", data=form | {"name": "X", "currency": "riyal"}).status_code == 400


def test_an_analyst_sets_targets_and_imports_rates(site, tmp_path):
    client = sign_in(site.url, ANALYST)
    _page, token = settings(client)
    month = date.today().strftime("%Y-%m")
    saved = client.post(f"/settings/targets?source={DEMO}",
                        data={"source": DEMO, "month": month, "revenue": "250,000", "orders": "٤٠٠", "csrf": token})  # fmt: skip
    assert saved.status_code == 303 and "done=target_saved" in saved.headers["location"]
    shown = masar_cli_json("targets", "show", "--source", DEMO, "--month", month, "--data-dir", site.data_dir)
    assert shown["months"][0]["revenue"]["target"] == "250000.00" and shown["months"][0]["orders"]["target"] == 400
    bad = client.post(f"/settings/targets?source={DEMO}", data={"source": DEMO, "month": month, "revenue": "-5", "csrf": token})
    assert bad.status_code == 400 and "A revenue target is a positive amount." in bad.text
    bad_month = client.post(f"/settings/targets?source={DEMO}", data={"source": DEMO, "month": "2026-13", "orders": "1", "csrf": token})
    assert bad_month.status_code == 400 and "Choose a month." in bad_month.text
    # Rates: the good rows are kept, each bad one is named with its line.
    csv = "date,base,quote,rate\n2026-11-01,GBP,SAR,4.7512\n2026-11-01,EUR,SAR,oops\n2026-11-02,GBP,SAR,4.7601\n"
    imported = client.post("/settings/rates", data={"csrf": token}, files={"file": ("rates.csv", csv.encode(), "text/csv")})
    assert imported.status_code == 200
    assert "Exchange rates loaded: 2." in imported.text and "Rows left out: 1." in imported.text
    assert "line 3: &#39;oops&#39; is not a number" in imported.text
    assert "4.7601 SAR" in imported.text
    columns = client.post("/settings/rates", data={"csrf": token}, files={"file": ("r.csv", b"day,rate\n", "text/csv")})
    assert columns.status_code == 400 and "The file needs the columns date, base, quote and rate." in columns.text
    empty = client.post("/settings/rates", data={"csrf": token})
    assert empty.status_code == 400 and "Choose a CSV file to import." in empty.text
    # An analyst manages neither stores nor users.
    assert client.post("/settings/users", data={"email": "x@example.com", "password": PASSWORD, "csrf": token}).status_code == 403
    assert client.post("/settings/sources", data={"name": "Mine", "currency": "SAR", "timezone": "UTC", "csrf": token}).status_code == 403


def test_digits_are_set_for_everyone_and_the_language_per_browser(site):
    analyst = sign_in(site.url, ANALYST)
    _page, token = settings(analyst)
    assert analyst.post("/settings/digits", data={"digits": "roman", "csrf": token}).status_code == 400
    saved = analyst.post("/settings/digits", data={"digits": "arab", "csrf": token})
    assert saved.status_code == 303 and saved.headers["location"] == "/settings?done=digits_saved#language"
    try:
        viewer = sign_in(site.url, VIEWER)
        arabic = viewer.get("/settings?lang=ar&done=language_saved").text
        assert '"intl":"ar-u-nu-arab"' in arabic and "حُفظت اللغة لهذا المتصفح." in arabic
        assert viewer.get("/settings").text.count('dir="rtl"') >= 1  # the cookie keeps Arabic
        assert re.search(r"[٠-٩]{2}\u200f/[٠-٩]{2}\u200f/[٠-٩]{4}", arabic)  # dates in Arabic-Indic digits
    finally:
        analyst.post("/settings/digits", data={"digits": "latn", "csrf": token})


# -- in the browser ---------------------------------------------------------------------------------


def login(page, url: str, email: str, query: str = "") -> None:
    page.goto(url + "/login" + query)
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/overview**")


def test_the_owner_uses_the_page_in_the_browser(site, page):
    month = date.today().strftime("%Y-%m")
    masar_cli_json("targets", "set", "--source", DEMO, "--month", month, "--revenue", "300000", "--orders", "500",
                   "--data-dir", site.data_dir)  # fmt: skip
    login(page, site.url, OWNER)
    page.goto(site.url + "/settings")
    page.wait_for_selector("body[data-loaded=settings]", timeout=120_000)
    # Attainment from the targets query, as the API gives it.
    targets = masar_cli_json("targets", "show", "--source", DEMO, "--month", month, "--data-dir", site.data_dir)
    revenue = targets["months"][0]["revenue"]
    cell = page.locator(f'#targets-table tr[data-month="{month}"] [data-attainment="revenue"]').inner_text()
    assert cell.startswith(f"{revenue['attainment'] * 100:.1f}%".replace(".0%", "%")) and "to date" in cell
    # Copy puts the snippet, exactly as shown, on the clipboard.
    page.click('button[data-copy="install-snippet"]')
    assert page.evaluate("navigator.clipboard.readText()") == page.locator("#install-snippet").text_content()
    assert page.locator("#copy-status").inner_text() == "Copied to the clipboard."
    # Create a key through the form; it is shown once, then revoked after confirming.
    page.fill('#key-form input[name="name"]', "browser key")
    page.click('#key-form button[type="submit"]')
    secret = page.locator("#secret-value").inner_text().strip()
    assert SECRET.fullmatch(secret)
    assert page.url == site.url + "/settings#keys"  # the answer to the form, at the page's address
    row = page.locator("#keys-table tbody tr", has_text="browser key")
    page.once("dialog", lambda dialog: dialog.accept())
    row.locator("button", has_text="Revoke").click()
    page.wait_for_selector("#keys .notice[role=status]")
    assert page.locator("#keys .notice").inner_text().startswith("The key was revoked")
    assert "Revoked on" in page.locator("#keys-table tbody tr", has_text="browser key").inner_text()
    assert secret not in page.content()
    # The address is the page's again (no one-time notice to show twice, no form address).
    assert page.url == site.url + "/settings#keys"
    page.click("nav.langs a[data-lang=ar]")
    page.wait_for_selector("html[dir=rtl]")
    assert page.url.startswith(site.url + "/settings?lang=ar")
    assert page.errors == []


def test_a_viewer_sees_no_management_buttons(site, page):
    login(page, site.url, VIEWER)
    page.goto(site.url + "/settings")
    page.wait_for_selector("body[data-loaded=settings]", timeout=120_000)
    for hidden in ("#key-form", "#user-form", "#source-form", "#target-form", "#rates-form"):
        assert page.locator(hidden).count() == 0, hidden
    assert page.get_by_role("button", name="Revoke").count() == 0
    assert page.get_by_role("button", name="Remove").count() == 0
    assert page.locator("#digits-form input[value=arab]").is_disabled()  # inside a disabled fieldset
    assert page.errors == []


def test_the_arabic_page_is_right_to_left_and_translated(site, page):
    login(page, site.url, OWNER, query="?lang=ar")
    page.goto(site.url + "/settings")
    page.wait_for_selector("body[data-loaded=settings]", timeout=120_000)
    assert page.locator("html").get_attribute("dir") == "rtl" and page.locator("html").get_attribute("lang") == "ar"
    assert page.locator("h1").inner_text() == "الإعدادات"
    headings = page.locator("main h2").all_inner_texts()
    assert headings[0] == "المتاجر" and "المفاتيح السرية" in headings and "المستخدمون والأدوار" in headings
    assert all(re.search("[\u0600-\u06ff]", h) for h in headings), headings
    # No English label left: every button and table heading reads in Arabic.
    labels = page.locator("main button, main th[scope=col], main label, main legend, main summary").all_inner_texts()
    english = [t for t in labels if re.search(r"\b(the|a|and|of|Copy|Save|Add|Remove|Revoke|Change)\b", t)]
    assert english == [], english
    # Mirrored: the navigation right of the content, the toc starting from the right.
    assert page.locator("nav.side").bounding_box()["x"] > page.locator("main").bounding_box()["x"]
    first, last = page.locator("nav.toc a").first.bounding_box(), page.locator("nav.toc a").last.bounding_box()
    assert first["x"] > last["x"]
    # Code stays left to right inside the Arabic page.
    assert page.locator("#install-snippet").evaluate("el => getComputedStyle(el).direction") == "ltr"
    assert page.errors == []
