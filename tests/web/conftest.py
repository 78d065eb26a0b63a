"""Fixtures of the dashboard tests: a real ``masar serve`` on a small demo store, signed-in HTTP
clients, and Debian's Chromium driven by Playwright (``make test`` / ``.ci/run`` install it)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import masar_cli, masar_cli_json

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery"
OWNER = "owner@example.com"


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """A small demo store (2,000 visitors, 30 days), built once per run, with users of each role."""
    path = tmp_path_factory.mktemp("web") / "data"
    masar_cli("demo", "--no-serve", "--visitors", "2000", "--days", "30", "--data-dir", path, timeout=300)
    for email, role in ((OWNER, "owner"), ("analyst@example.com", "analyst"), ("viewer@example.com", "viewer")):
        masar_cli_json("users", "create", "--email", email, "--role", role, "--password", PASSWORD, "--data-dir", path)
    return path


@pytest.fixture(scope="module")
def site(demo_dir, module_server):
    """The server over a copy of the demo store (each module gets its own copy)."""
    copy = demo_dir.parent / f"copy-{len(module_server.started)}-{id(module_server)}"
    shutil.copytree(demo_dir, copy)
    return module_server(copy)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html) or re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def sign_in(url: str, email: str, password: str = PASSWORD) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=60, follow_redirects=False)
    page = client.get("/login")
    response = client.post("/login", data={"email": email, "password": password, "csrf": csrf_of(page.text)})
    assert response.status_code == 303, response.text[:500]
    return client


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise AssertionError(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (scripts/ensure-chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(chromium):
    """A page in a fresh browser context (no cookies). ``page.errors`` collects the page's script
    errors and console errors — a refused request the page then explains is not one."""
    context = chromium.new_context(viewport={"width": 1300, "height": 900}, accept_downloads=True)
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text)
            if m.type == "error" and "Failed to load resource" not in m.text else None)  # fmt: skip
    page.errors = errors
    yield page
    context.close()
