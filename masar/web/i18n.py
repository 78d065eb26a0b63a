"""Languages of the dashboard: Arabic and English as equals.

Every label goes through a gettext message catalogue (Babel): ``masar/web/locale/<lang>/
LC_MESSAGES/*.po``, one file per area of the dashboard, merged at start; English is the source
language, so its catalogue is the msgids themselves. The language of a request is ``?lang=``
(then remembered in a cookie), else the cookie, else the best match of ``Accept-Language``,
else English. Numbers, dates and money are formatted per locale with Babel (server side) and
``Intl`` (in the browser), with Arabic-Indic or Latin digits as the user's setting says.
"""

from __future__ import annotations

import gettext
import io
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from babel import Locale
from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal, format_percent

LANGUAGES = ("en", "ar")
DEFAULT = "en"
RTL = {"ar"}
DIGITS = ("latn", "arab")
COOKIE = "masar_lang"
LOCALE_DIR = Path(__file__).parent / "locale"


@cache
def translations(lang: str) -> gettext.NullTranslations:
    """Every catalogue of ``lang`` merged (English: no catalogue, the msgids are the text)."""
    merged: gettext.NullTranslations = gettext.NullTranslations()
    folder = LOCALE_DIR / lang / "LC_MESSAGES"
    for po in sorted(folder.glob("*.po")) if lang != DEFAULT else []:
        with po.open("rb") as handle:
            catalog = read_po(handle, locale=lang)
        buffer = io.BytesIO()
        write_mo(buffer, catalog)
        buffer.seek(0)
        part = gettext.GNUTranslations(buffer)
        if isinstance(merged, gettext.GNUTranslations):
            merged._catalog.update(part._catalog)  # type: ignore[attr-defined]
        else:
            merged = part
    return merged


@cache
def catalog(lang: str) -> dict[str, str]:
    """msgid → translation, for the browser's ``t()`` (plural forms are keyed by their msgid)."""
    found = translations(lang)
    raw = getattr(found, "_catalog", {})
    out: dict[str, str] = {}
    for key, value in raw.items():
        if isinstance(key, str) and key:
            out[key] = value
        elif isinstance(key, tuple) and key[1] == 0 and key[0]:
            out[key[0]] = value
    return out


def choose(query_lang: str | None, cookie_lang: str | None, accept: str | None) -> str:
    for candidate in (query_lang, cookie_lang):
        if candidate in LANGUAGES:
            return candidate  # type: ignore[return-value]
    for lang, _q in _accepted(accept or ""):
        base = lang.split("-")[0].lower()
        if base in LANGUAGES:
            return base
    return DEFAULT


def _accepted(header: str) -> list[tuple[str, float]]:
    out = []
    for part in header.split(","):
        lang, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if lang:
            out.append((lang, q))
    return sorted(out, key=lambda item: -item[1])


@dataclass(frozen=True)
class Lang:
    """A request's language and digits, with the formatting helpers templates use."""

    code: str
    digits: str = "latn"

    @property
    def dir(self) -> str:
        return "rtl" if self.code in RTL else "ltr"

    @property
    def locale(self) -> Locale:
        return Locale.parse(self.code)

    @property
    def intl(self) -> str:
        """The BCP 47 tag for ``Intl`` in the browser, with the numbering system."""
        return f"{self.code}-u-nu-{self.digits}"

    def gettext(self, message: str, **values: Any) -> str:
        text = translations(self.code).gettext(message)
        return text % values if values else text

    def ngettext(self, singular: str, plural: str, n: int, **values: Any) -> str:
        text = translations(self.code).ngettext(singular, plural, n)
        return text % ({"num": self.number(n)} | values)

    def number(self, value: Any, places: int | None = None) -> str:
        if value is None:
            return "–"
        fmt = None if places is None else "#,##0" + ("." + "0" * places if places else "")
        return self._digits(format_decimal(Decimal(str(value)), format=fmt, locale=self.code, numbering_system=self._system))

    def money(self, value: Any, currency: str) -> str:
        if value is None:
            return "–"
        return self._digits(format_currency(Decimal(str(value)), currency, locale=self.code, numbering_system=self._system))

    def percent(self, value: Any) -> str:
        if value is None:
            return "–"
        return self._digits(format_percent(float(value), format="#,##0.0%", locale=self.code, numbering_system=self._system))

    def date(self, value: date | None, form: str = "medium") -> str:
        if value is None:
            return "–"
        text = format_date(value, format=form, locale=self.code)
        return self._digits(text)

    @property
    def _system(self) -> str:
        return self.digits

    def _digits(self, text: str) -> str:
        """Babel gives the numbering system's separators but Latin digits: map the digits."""
        arabic = "٠١٢٣٤٥٦٧٨٩"
        if self.digits == "arab":
            return text.translate(str.maketrans("0123456789", arabic))
        return text.translate(str.maketrans(arabic, "0123456789"))
