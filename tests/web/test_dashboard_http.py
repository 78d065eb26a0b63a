"""The dashboard over HTTP against a real server: first run, sign-in, cookies, CSRF, roles, the
login rate limit, languages."""

from __future__ import annotations

import csv
import io
import re

import httpx
import pytest

from tests.conftest import masar_cli
from tests.web.conftest import OWNER, PASSWORD, csrf_of, sign_in


def test_first_run_creates_the_owner_once(data_dir, server):
    srv = server(data_dir)
    client = httpx.Client(base_url=srv.url, timeout=30)
    assert client.get("/").headers["location"] == "/setup"
    assert client.get("/overview").headers["location"] == "/setup"
    form = client.get("/setup")
    assert form.status_code == 200 and "Welcome to Masar" in form.text
    # Without the form's token: refused, and no user is made.
    refused = client.post("/setup", data={"email": OWNER, "password": PASSWORD})
    assert refused.status_code == 403
    weak = client.post("/setup", data={"email": OWNER, "password": "short", "csrf": csrf_of(form.text)})
    assert weak.status_code == 400 and "at least 10 characters" in weak.text
    made = client.post("/setup", data={"email": OWNER, "password": PASSWORD, "csrf": csrf_of(form.text)})
    assert made.status_code == 303 and made.headers["location"] == "/overview"
    cookie = made.headers["set-cookie"]
    assert "masar_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert client.get("/overview").status_code == 200
    # The first run is over: /setup now sends people to sign in, and makes no second owner.
    other = httpx.Client(base_url=srv.url, timeout=30)
    assert other.get("/setup").headers["location"] == "/login"
    again = other.post("/setup", data={"email": "x@example.com", "password": PASSWORD, "csrf": "x"})
    assert again.status_code == 303 and again.headers["location"] == "/login"


def test_sign_in_out_and_pages_need_a_session(site):
    anonymous = httpx.Client(base_url=site.url, timeout=30)
    assert anonymous.get("/overview?lang=ar").headers["location"] == "/login?next=%2Foverview%3Flang%3Dar"
    assert anonymous.get("/status").status_code == 401
    wrong = anonymous.get("/login")
    bad = anonymous.post("/login", data={"email": OWNER, "password": "nope nope nope", "csrf": csrf_of(wrong.text)})
    assert bad.status_code == 401 and "Wrong email or password." in bad.text
    client = sign_in(site.url, OWNER)
    page = client.get("/overview")
    assert page.status_code == 200 and "Revenue over time" in page.text
    assert client.get("/status").status_code == 200
    out = client.post("/logout", data={"csrf": csrf_of(page.text)})
    assert out.status_code == 303
    assert client.get("/overview").status_code == 303


def test_login_attempts_are_rate_limited(site):
    # A user of its own (made with the CLI beside the running server), so other tests can sign in.
    masar_cli("users", "create", "--email", "limited@example.com", "--password", PASSWORD, "--data-dir", site.data_dir)
    client = httpx.Client(base_url=site.url, timeout=30)
    token = csrf_of(client.get("/login").text)
    codes = [
        client.post("/login", data={"email": "limited@example.com", "password": f"wrong {i} wrong", "csrf": token}).status_code
        for i in range(6)
    ]
    assert codes == [401] * 5 + [429]
    # Locked even with the right password, until the window passes; another account from the same
    # address is not (the address allows 20 failures).
    locked = client.post("/login", data={"email": "limited@example.com", "password": PASSWORD, "csrf": token})
    assert locked.status_code == 429 and "too many failed sign-ins" in locked.text
    sign_in(site.url, "analyst@example.com")


def test_the_query_api_takes_a_session_with_its_csrf_header(site):
    client = sign_in(site.url, "viewer@example.com")
    page = client.get("/overview")
    body = {"kind": "metrics", "source": "Masar Demo Store", "metrics": ["orders"]}
    no_token = client.post("/api/v1/query", json=body)
    assert no_token.status_code == 403 and no_token.json()["error"]["code"] == "csrf_failed"
    ok = client.post("/api/v1/query", json=body, headers={"X-CSRF-Token": csrf_of(page.text)})
    assert ok.status_code == 200 and ok.json()["metrics"][0]["name"] == "orders"
    # Another site's page cannot borrow the cookie: the token is the session's own.
    other = client.post("/api/v1/query", json=body, headers={"X-CSRF-Token": "forged"})
    assert other.status_code == 403
    assert httpx.post(site.url + "/api/v1/query", json=body).status_code == 401


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_any_query_exports(site, fmt):
    client = sign_in(site.url, "viewer@example.com")
    token = csrf_of(client.get("/overview").text)
    body = {"kind": "metrics", "source": "Masar Demo Store", "metrics": ["orders", "net_revenue"], "breakdown": "channel"}
    response = client.post(f"/api/v1/export?format={fmt}", json=body, headers={"X-CSRF-Token": token})
    assert response.status_code == 200
    assert response.headers["content-disposition"] == f'attachment; filename="masar-metrics.{fmt}"'
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(response.text)))
        assert rows[0] == ["metric", "value", "previous"]
        assert any(row[0] == "orders" and row[1].isdigit() for row in rows)
    else:
        assert response.content[:2] == b"PK"  # a zip: the xlsx container


def test_arabic_pages_are_right_to_left_and_translated(site):
    client = sign_in(site.url, OWNER)
    page = client.get("/overview?lang=ar")
    assert '<html lang="ar" dir="rtl">' in page.text
    shown = re.sub(r"<script>.*?</script>", "", page.text, flags=re.S)  # the catalogue for scripts aside
    assert "نظرة عامة" in shown and "الإيرادات عبر الزمن" in shown
    assert "Revenue over time" not in shown and "Sign out" not in shown
    assert "masar_lang=ar" in page.headers["set-cookie"]
    # Remembered: the next page without ?lang is Arabic too; the browser's language comes last.
    assert 'dir="rtl"' in client.get("/overview", headers={"Accept-Language": "en"}).text
    fresh = sign_in(site.url, OWNER)
    assert 'dir="rtl"' in fresh.get("/overview", headers={"Accept-Language": "ar-SA,ar;q=0.9"}).text
    assert 'dir="ltr"' in fresh.get("/overview", headers={"Accept-Language": "en-GB"}).text
