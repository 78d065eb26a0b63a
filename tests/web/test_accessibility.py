"""Accessibility checks every page must pass, in English and Arabic, in Chromium: one h1, a main
landmark, a language, every visible control with an accessible name, table headers with a scope,
charts labelled, and the keyboard reaching the navigation with a visible focus."""

from __future__ import annotations

import pytest

from masar.web.pages import PAGES
from tests.web.conftest import OWNER, PASSWORD

pytestmark = pytest.mark.timeout(600)

# Run in the page: the visible controls without an accessible name, tables' header cells without
# a scope, charts without a label.
AUDIT = """() => {
  const visible = (el) => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  const named = (el) => {
    if ((el.getAttribute("aria-label") || "").trim()) return true;
    const by = el.getAttribute("aria-labelledby");
    if (by && by.split(/\\s+/).some((id) => (document.getElementById(id)?.textContent || "").trim())) return true;
    if (el.id && document.querySelector(`label[for="${CSS.escape(el.id)}"]`)) return true;
    if (el.closest("label")) return true;
    if (el.tagName === "BUTTON" || el.tagName === "A") return (el.textContent || "").trim().length > 0;
    if (el.type === "submit" || el.type === "button") return !!(el.value || "").trim();
    return !!(el.getAttribute("title") || "").trim();
  };
  const controls = [...document.querySelectorAll("input:not([type=hidden]), select, textarea, button, a[href]")]
    .filter(visible).filter((el) => !named(el)).map((el) => el.outerHTML.slice(0, 120));
  const unscoped = [...document.querySelectorAll("table thead th")].filter((th) => !th.getAttribute("scope"))
    .map((th) => th.outerHTML.slice(0, 80));
  const charts = [...document.querySelectorAll(".chart")].filter(visible)
    .filter((c) => c.querySelector("svg") && !c.getAttribute("aria-label") && !c.querySelector("[aria-label]"))
    .map((c) => c.id || c.className);
  return {
    controls, unscoped, charts,
    h1: document.querySelectorAll("h1").length,
    main: document.querySelectorAll("main").length,
    lang: document.documentElement.lang,
  };
}"""


@pytest.mark.parametrize("lang", ["en", "ar"])
def test_every_page_passes_the_audit(site, page, lang):
    page.goto(f"{site.url}/login?lang={lang}")
    page.fill("#email", OWNER)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/overview**")
    problems = {}
    for p in PAGES:
        response = page.goto(f"{site.url}/{p.name}")
        assert response is not None and response.status == 200, p.name
        page.wait_for_selector(f"body[data-loaded^={p.name}]", timeout=120_000)
        found = page.evaluate(AUDIT)
        assert (found["h1"], found["main"], found["lang"]) == (1, 1, lang), (p.name, found)
        bad = {k: found[k] for k in ("controls", "unscoped", "charts") if found[k]}
        if bad:
            problems[p.name] = bad
    assert problems == {}, problems
    assert page.errors == []


def test_the_keyboard_reaches_the_navigation_with_a_visible_focus(site, page):
    page.goto(f"{site.url}/login")
    page.fill("#email", OWNER)
    page.fill("#password", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url("**/overview**")
    page.wait_for_selector("body[data-loaded=overview]", timeout=120_000)
    reached = []
    for _ in range(40):
        page.keyboard.press("Tab")
        info = page.evaluate("""() => {
          const el = document.activeElement;
          const style = getComputedStyle(el);
          return {href: el.getAttribute('href'), outline: style.outlineStyle !== 'none' && style.outlineWidth !== '0px'};
        }""")
        if info["href"] and info["href"].startswith("/funnels"):
            reached.append(info)
            break
    assert reached, "Tab never reached the Funnels link of the navigation"
    assert reached[0]["outline"], "the focused link shows no outline"
    page.keyboard.press("Enter")
    page.wait_for_url("**/funnels**")


def test_the_audit_catches_what_it_looks_for(site, page):
    """The audit itself can fail: an unnamed control, a header without scope and an unlabelled
    chart injected into a page are reported."""
    page.goto(f"{site.url}/login")
    page.fill("#email", OWNER)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("body[data-loaded=overview]", timeout=120_000)
    page.evaluate("""() => {
      const main = document.querySelector("main");
      main.insertAdjacentHTML("beforeend",
        '<input id="nameless"><table><thead><tr><th>x</th></tr></thead></table>' +
        '<div class="chart" id="bare"><svg width="10" height="10"></svg></div>');
    }""")
    found = page.evaluate(AUDIT)
    assert any('id="nameless"' in c for c in found["controls"])
    assert found["unscoped"] == ["<th>x</th>"]
    assert found["charts"] == ["bare"]
