"""Arabic and English: every label has its Arabic translation, placeholders survive translation,
the language is chosen as documented, and numbers follow the locale and the digits setting."""

from __future__ import annotations

import re
from datetime import date

import pytest

from masar.engine.metrics import METRICS
from masar.enrich.channels import CHANNELS
from masar.web.i18n import Lang, catalog, choose
from masar.web.messages import all_msgids, extracted

PERCENT_25 = "٢٥٫٠%"  # Arabic-Indic digits and decimal separator, the % sign after
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def test_extraction_finds_the_labels_of_templates_scripts_and_code():
    found = extracted()
    # One from a template, one from a page script, one from Python (the navigation).
    assert {"Sign in to Masar", "Revenue over time", "Funnels"} <= found
    assert {m.label for m in METRICS.values()} <= all_msgids()


def test_every_label_has_an_arabic_translation():
    arabic = catalog("ar")
    missing = sorted(m for m in all_msgids() if not arabic.get(m))
    assert missing == [], f"{len(missing)} labels lack Arabic (python -m masar.web.messages ar): {missing[:20]}"


def test_translations_keep_their_placeholders_and_are_arabic():
    arabic = catalog("ar")
    for msgid in all_msgids():
        text = arabic[msgid]
        assert sorted(PLACEHOLDER.findall(text)) == sorted(PLACEHOLDER.findall(msgid)), msgid
    # Real Arabic, not copies of the English (a few are the same on purpose: CSV, SMS codes).
    letters = [m for m in all_msgids() if re.search(r"[A-Za-z]{4,}", m) and m not in {"CSV"}]
    same = [m for m in letters if arabic[m] == m]
    assert same == [], same
    assert all(re.search("[\u0600-\u06ff]", arabic[c]) for c in CHANNELS)


@pytest.mark.parametrize(
    ("query", "cookie", "accept", "expected"),
    [
        ("ar", None, "en-US,en;q=0.9", "ar"),
        (None, "ar", "en", "ar"),
        ("fr", "en", "ar", "en"),
        (None, None, "fr-FR,ar-SA;q=0.8,en;q=0.5", "ar"),
        (None, None, "de, fr;q=0.5", "en"),
        (None, None, None, "en"),
        (None, None, "en;q=0.2, ar;q=0.9", "ar"),
    ],
)
def test_the_language_comes_from_the_url_then_the_cookie_then_the_browser(query, cookie, accept, expected):
    assert choose(query, cookie, accept) == expected


def test_numbers_money_and_dates_per_locale_and_digits():
    assert Lang("en").money("1234.5", "KWD") == "KWD1,234.500"  # three decimals for dinars
    assert Lang("en").money("1234.5", "SAR") == "SAR1,234.50"
    assert Lang("ar", "latn").number(1234567) == "1,234,567"
    assert Lang("ar", "arab").number(1234567) == "١٬٢٣٤٬٥٦٧"
    assert "١٬٢٣٤٫٥٠٠" in Lang("ar", "arab").money("1234.5", "KWD")
    assert Lang("ar", "arab").percent(0.25) == PERCENT_25
    assert Lang("en").date(date(2026, 3, 1)) == "Mar 1, 2026"
    assert "٢٠٢٦" in Lang("ar", "arab").date(date(2026, 3, 1))
    assert Lang("ar").dir == "rtl" and Lang("en").dir == "ltr"
    assert Lang("ar", "arab").intl == "ar-u-nu-arab"
