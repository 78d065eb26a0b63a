"""Customer characteristics for breakdowns: age band, gender and city, read from a person's traits
and normalised, one value per person (docs/metrics.md, breakdowns).

Traits are read like ``person.TRAIT``: the latest value a person's ``identify`` calls sent (after
identity merges). Every person gets a value — ``unknown`` when nothing usable was sent — so the
rows of a breakdown hold every person exactly once. Normalising runs once per distinct raw value.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import date

import duckdb
import pyarrow as pa

from masar.enrich.pipeline import map_distinct

UNKNOWN = "unknown"
CHARACTERISTICS = ("age_band", "gender", "city")
# GA4's age brackets, with the under-18s kept apart rather than hidden in "unknown".
AGE_BANDS = ("under 18", "18-24", "25-34", "35-44", "45-54", "55-64", "65+", UNKNOWN)
BIRTHDAY_TRAITS = ("birthday", "birthdate", "birth_date", "date_of_birth")
_OLDEST = 120  # an age above this is a typo or a placeholder birthday (1900-01-01)

# Gender as sent → male / female / other; compared after _fold. Anything else is unknown:
# a spelling not listed here is more likely a language or a typo than another gender, and
# ``person.gender`` still shows the raw values.
_GENDERS = {
    "male": {"m", "male", "man", "men", "boy", "mr", "masculine", "homme", "masculin", "hombre", "masculino",
             "ذكر", "رجل", "ولد"},
    "female": {"f", "female", "woman", "women", "girl", "mrs", "ms", "miss", "feminine", "femme", "feminin",
               "mujer", "femenino", "انثي", "امراه", "مراه", "بنت", "سيده"},
    "other": {"other", "non-binary", "nonbinary", "non binary", "nb", "enby", "genderqueer", "agender", "x",
              "diverse", "divers", "اخر", "اخري", "غير ذلك"},
}  # fmt: skip
_GENDER_OF = {spelling: gender for gender, spellings in _GENDERS.items() for spelling in spellings}
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:$|[T ])")
# Arabic spellings vary in hamza, alif maqsura and ta marbuta (أنثى, انثى, انثي all mean female).
_ARABIC_FOLD = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ى": "ي", "ة": "ه", "ـ": None})


def _fold(text: str) -> str:
    """Lowercased, without accents or Arabic diacritics, hamza/alif/ta variants folded, spaces single."""
    decomposed = unicodedata.normalize("NFKD", text.strip().lower())
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(plain.translate(_ARABIC_FOLD).split())


def gender(value: str | None) -> str:
    """male, female, other or unknown."""
    if value is None:
        return UNKNOWN
    return _GENDER_OF.get(_fold(value), UNKNOWN)


def city(value: str | None) -> str:
    """The city as sent, spaces trimmed; all-lowercase or all-uppercase text in title case, so
    "riyadh", "RIYADH" and "Riyadh" are one row (mixed case is kept: "McAllen")."""
    if value is None:
        return UNKNOWN
    text = " ".join(value.split())
    if not text:
        return UNKNOWN
    return text.title() if text in (text.lower(), text.upper()) and text.lower() != text.upper() else text


def years_between(earlier: date, later: date) -> int:
    """Whole years from ``earlier`` to ``later``: a birthday counts on its own day (someone born
    on Feb 29 is a year older on Mar 1 in years without one)."""
    return later.year - earlier.year - ((later.month, later.day) < (earlier.month, earlier.day))


def _date(text: str | None) -> date | None:
    m = _DATE.match(text.strip()) if text else None
    if m is None:
        return None
    try:
        return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None


def age_band(age: int | None) -> str:
    if age is None or age < 0 or age > _OLDEST:
        return UNKNOWN
    for low, band in ((65, "65+"), (55, "55-64"), (45, "45-54"), (35, "35-44"), (25, "25-34"), (18, "18-24")):
        if age >= low:
            return band
    return "under 18"


def age_at(as_of: date, birthday: str | None, age: str | None, age_day: date | None) -> int | None:
    """A person's age on ``as_of``: from their birthday when they sent one (any of
    BIRTHDAY_TRAITS, ``YYYY-MM-DD``, optionally with a time), else from their ``age`` trait plus
    the whole years since the day they sent it; None when neither is usable."""
    born = _date(birthday)
    if born is not None:
        return years_between(born, as_of) if born <= as_of else None
    try:
        years = int(float(age)) if age is not None else None
    except (ValueError, OverflowError):  # not a number, NaN, infinity
        return None
    if years is None or age_day is None:
        return None
    # An age sent after the range's end is taken as it was sent.
    return years + max(0, years_between(age_day, as_of))


def person_characteristic(con: duckdb.DuckDBPyConnection, name: str, as_of: date) -> pa.Table:
    """(person, value) for every person of the ``people`` facts; ``events`` must be registered
    (kpis.sales_facts). Ages are on ``as_of`` (the range's last day)."""
    identify = "FROM events WHERE type = 'identify' GROUP BY person"
    if name == "age_band":
        birthday = ", ".join(f"json_extract_string(traits, '$.{key}')" for key in BIRTHDAY_TRAITS)
        # One text key per person (birthday, age, the day the age was sent): the band is worked
        # out once per distinct key.
        sql = f"""
            SELECT p.person,
                   CASE WHEN t.birthday IS NOT NULL OR t.age IS NOT NULL THEN
                       concat_ws(chr(31), coalesce(t.birthday, ''), coalesce(t.age, ''),
                                 coalesce(CAST(t.age_day AS VARCHAR), '')) END AS key
            FROM people p LEFT JOIN (
                SELECT person,
                       arg_max(coalesce({birthday}), ts) FILTER (WHERE coalesce({birthday}) IS NOT NULL) AS birthday,
                       arg_max(json_extract_string(traits, '$.age'), ts)
                           FILTER (WHERE json_extract_string(traits, '$.age') IS NOT NULL) AS age,
                       arg_max(day, ts) FILTER (WHERE json_extract_string(traits, '$.age') IS NOT NULL) AS age_day
                {identify}) t USING (person)
        """
        table = con.sql(sql).to_arrow_table()
        return _mapped(table, table.column("key"), value_of(name, as_of))
    if name == "gender":
        table = con.sql(
            f"""SELECT p.person, t.value FROM people p LEFT JOIN (
                    SELECT person, arg_max(json_extract_string(traits, '$.gender'), ts)
                               FILTER (WHERE json_extract_string(traits, '$.gender') IS NOT NULL) AS value
                    {identify}) t USING (person)"""
        ).to_arrow_table()
        return _mapped(table, table.column("value"), value_of(name, as_of))
    if name == "city":
        # The city the person gave (address.city, else a city trait), else where their latest
        # event with a location was sent from.
        trait = "coalesce(json_extract_string(traits, '$.address.city'), json_extract_string(traits, '$.city'))"
        table = con.sql(
            f"""SELECT p.person, coalesce(t.value, s.value) AS value FROM people p
                LEFT JOIN (SELECT person, arg_max({trait}, ts) FILTER (WHERE {trait} IS NOT NULL) AS value
                           {identify}) t USING (person)
                LEFT JOIN (SELECT person, arg_max(city, ts) AS value FROM events WHERE city IS NOT NULL
                           GROUP BY person) s USING (person)"""
        ).to_arrow_table()
        return _mapped(table, table.column("value"), value_of(name, as_of))
    raise ValueError(f"unknown characteristic {name!r}")


def value_of(name: str, as_of: date) -> Callable[[str], str]:
    """The characteristic of a person's raw text (what person_characteristic's SQL reads for them:
    for the age band, birthday, age and the day the age was sent, joined by chr(31))."""
    if name == "age_band":

        def band(key: str) -> str:
            b, a, d = key.split("\x1f")
            return age_band(age_at(as_of, b or None, a or None, date.fromisoformat(d) if d else None))

        return band
    if name == "gender":
        return gender
    if name == "city":
        return city
    raise ValueError(f"unknown characteristic {name!r}")


def _mapped(table: pa.Table, raw: pa.Array | pa.ChunkedArray, fn: Callable[[str], str]) -> pa.Table:
    """``fn`` over the distinct raw values; a person without one (no trait sent) is unknown."""
    (values,) = map_distinct(raw, lambda v: (fn(v),), [pa.string()])
    return pa.table({"person": table.column("person"), "value": values.fill_null(UNKNOWN)})
