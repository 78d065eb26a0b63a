"""Breakdowns by customer characteristics — age band, gender, city (docs/metrics.md) — on a store
built through the real import path, and the normalising rules on their own.

``characteristics_store``'s cast (store days Asia/Riyadh; each orders once on Mar 10 in a visit):

==== ====================================== =============== ================================ =====
who  age traits                             gender sent     city                             order
==== ====================================== =============== ================================ =====
c1   birthday 2001-03-31 (25 on Mar 31)     "f", later ذكر  address.city "riyadh"            100
c2   birthday 2001-04-01T00:00:00.000Z      أنثى            city trait "الرياض"              50
c3   age "17" sent 2025-03-31 (18 a year on) انثى            location city "Jeddah"           30
c4   birthdate 1961-06-15 and age 30         F               address.city "RIYADH"            20
c5   birthday "15/06/1990" (not ISO)         "Male "         none                             10
c6   birthday 2030-01-01 (not born yet)      prefer not to   location city "jeddah"           —
                                            say
==== ====================================== =============== ================================ =====

Spend: 100 SAR on Mar 1 (no person: the null row of every characteristic).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from masar.engine.characteristics import age_at, age_band, city, gender, years_between
from tests.conftest import masar_cli_json
from tests.engine.sales_fixtures import Messages, Person, build_store

MARCH = {"from": "2026-03-01", "to": "2026-03-31"}
METRICS = ["gross_revenue", "orders", "buyers", "visitors", "new_customers", "ad_spend"]

C = {n: Person(f"c{n}", None, "mobile", "SA") for n in range(1, 7)}
C[3].city = "Jeddah"
C[6].city = "jeddah"


def characteristics_messages() -> Messages:
    m = Messages()
    m.identify(C[1], "2026-01-05T09:00:00Z", gender="f", birthday="2001-03-31", address={"city": "riyadh"})
    m.identify(C[1], "2026-02-05T09:00:00Z", gender="ذكر")  # the latest gender wins
    m.identify(C[2], "2026-01-05T09:00:00Z", gender="أنثى", birthday="2001-04-01T00:00:00.000Z", city="الرياض")
    m.identify(C[3], "2025-03-31T09:00:00Z", gender="انثى", age="17")
    m.identify(C[4], "2026-01-05T09:00:00Z", gender="F", birthdate="1961-06-15", age=30, address={"city": "RIYADH"})
    m.identify(C[5], "2026-01-05T09:00:00Z", gender="Male ", birthday="15/06/1990")
    m.identify(C[6], "2026-01-05T09:00:00Z", gender="prefer not to say", birthday="2030-01-01")
    for n, total in ((1, 100), (2, 50), (3, 30), (4, 20), (5, 10), (6, None)):
        m.page(C[n], "2026-03-10T09:00:00Z")
        if total is not None:
            m.track(C[n], "2026-03-10T09:10:00Z", "Order Completed", order_id=f"O{n}", total=total)
    return m


SPEND = [{"day": date(2026, 3, 1), "channel": "Paid Social", "campaign": "x", "spend": Decimal("100"),
          "currency": "SAR"}]  # fmt: skip


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("characteristics")
    build_store(directory, characteristics_messages(), spend=SPEND).close()
    yield directory


@pytest.fixture(scope="module")
def store(store_dir: Path) -> Iterator[Any]:
    import masar

    s = masar.open(store_dir / "data")
    yield s
    s.close()


def breakdown(store: Any, by: str, **options: Any) -> dict[str, Any]:
    return store.run({"kind": "metrics", "source": "S", **MARCH, "metrics": METRICS, "granularity": None,
                      "compare": False, "breakdown": by, **options}).to_dict()  # fmt: skip


def row(revenue: str, orders: int, people: int, visitors: int | None = None) -> dict[str, Any]:
    visitors = people if visitors is None else visitors
    return {"gross_revenue": revenue, "orders": orders, "buyers": people, "visitors": visitors,
            "new_customers": people, "ad_spend": "0.00"}  # fmt: skip


SPEND_ROW = {"gross_revenue": "0.00", "orders": 0, "buyers": 0, "visitors": 0, "new_customers": 0,
             "ad_spend": "100.00"}  # fmt: skip


def assert_rows_add_up(result: dict[str, Any]) -> None:
    """Each person has one value, so even the distinct counts add up to the totals."""
    total = {m["name"]: m["value"] for m in result["metrics"]}
    for name in METRICS:
        parts = [b["values"][name] for b in result["breakdown"]]
        if isinstance(total[name], str):
            assert sum(Decimal(p) for p in parts) == Decimal(total[name]), name
        else:
            assert sum(parts) == total[name], name


def test_age_bands_on_the_ranges_last_day(store):
    result = breakdown(store, "age_band")
    assert {b["value"]: b["values"] for b in result["breakdown"]} == {
        "25-34": row("100.00", 1, 1),  # c1 turns 25 on Mar 31
        "18-24": row("80.00", 2, 2),  # c2 (25 on Apr 1) and c3 (17 a year before Mar 31)
        "55-64": row("20.00", 1, 1),  # c4's birthdate wins over the age 30 it also sent
        "unknown": row("10.00", 1, 1, visitors=2),  # c5 (not an ISO date) and c6 (born in 2030)
        None: SPEND_ROW,
    }
    assert [b["value"] for b in result["breakdown"]] == ["25-34", "18-24", "55-64", "unknown", None]
    assert_rows_add_up(result)


def test_age_bands_a_day_earlier(store):
    # On Mar 30 c1 is still 24 and c3 still 17: the age trait grows only on its anniversary.
    result = breakdown(store, "age_band", to="2026-03-30")
    got = {b["value"]: b["values"]["gross_revenue"] for b in result["breakdown"]}
    assert got == {"18-24": "150.00", "55-64": "20.00", "under 18": "30.00", "unknown": "10.00", None: "0.00"}
    assert_rows_add_up(result)


def test_gender_normalised_from_arabic_and_english(store):
    result = breakdown(store, "gender")
    assert {b["value"]: b["values"] for b in result["breakdown"]} == {
        "male": row("110.00", 2, 2),  # c1's latest ذكر, c5's "Male "
        "female": row("100.00", 3, 3),  # أنثى, انثى, F
        "unknown": row("0.00", 0, 0, visitors=1),  # c6: "prefer not to say"
        None: SPEND_ROW,
    }
    assert_rows_add_up(result)


def test_city_from_address_trait_or_location(store):
    result = breakdown(store, "city", breakdown_limit=2)
    # Riyadh: c1 (riyadh) + c4 (RIYADH); الرياض (c2) 50; then "$other": Jeddah (c3, c6) and unknown (c5).
    assert {b["value"]: b["values"] for b in result["breakdown"]} == {
        "Riyadh": row("120.00", 2, 2),
        "الرياض": row("50.00", 1, 1),
        "$other": row("40.00", 2, 2, visitors=3),
        None: SPEND_ROW,
    }
    assert_rows_add_up(result)
    unlimited = breakdown(store, "city")
    assert {b["value"]: b["values"]["visitors"] for b in unlimited["breakdown"]} == {
        "Riyadh": 2, "الرياض": 1, "Jeddah": 2, "unknown": 1, None: 0
    }  # fmt: skip


def test_cli_metrics_breakdown_age_band(store_dir, store):
    got = masar_cli_json("metrics", "--source", "S", "--from", MARCH["from"], "--to", MARCH["to"], "--metric",
                         "gross_revenue", "--breakdown", "age_band", "--granularity", "none",
                         "--data-dir", store_dir / "data")  # fmt: skip
    assert got["breakdown_property"] == "age_band"
    assert [(b["value"], b["values"]["gross_revenue"]) for b in got["breakdown"]] == [
        ("25-34", "100.00"), ("18-24", "80.00"), ("55-64", "20.00"), ("unknown", "10.00")
    ]  # fmt: skip


# -- the rules on their own -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("male", "male"), (" M ", "male"), ("Male", "male"), ("ذكر", "male"), ("ذَكَر", "male"), ("رجل", "male"),
        ("female", "female"), ("F", "female"), ("أنثى", "female"), ("انثى", "female"), ("انثي", "female"),
        ("أُنْثَى", "female"), ("إمرأة", "female"), ("امرأة", "female"), ("Femme", "female"), ("féminin", "female"),
        ("non-binary", "other"), ("Other", "other"), ("آخر", "other"),
        ("", "unknown"), ("unknown", "unknown"), ("prefer not to say", "unknown"), ("zzz", "unknown"),
        (None, "unknown"),
    ],
)  # fmt: skip
def test_gender(sent, expected):
    assert gender(sent) == expected


@pytest.mark.parametrize(
    ("age", "band"),
    [(None, "unknown"), (-1, "unknown"), (0, "under 18"), (17, "under 18"), (18, "18-24"), (24, "18-24"),
     (25, "25-34"), (34, "25-34"), (35, "35-44"), (54, "45-54"), (64, "55-64"), (65, "65+"), (120, "65+"),
     (121, "unknown")],
)  # fmt: skip
def test_age_band_edges(age, band):
    assert age_band(age) == band


def test_birthdays_count_on_their_day():
    born = date(2001, 3, 31)
    assert years_between(born, date(2026, 3, 30)) == 24
    assert years_between(born, date(2026, 3, 31)) == 25  # the birthday itself
    # Feb 29: a year older on Mar 1 in a year without one.
    assert years_between(date(2004, 2, 29), date(2026, 2, 28)) == 21
    assert years_between(date(2004, 2, 29), date(2026, 3, 1)) == 22
    assert age_at(date(2026, 3, 31), "2001-03-31", None, None) == 25
    assert age_at(date(2026, 3, 31), None, "24.9", date(2025, 4, 1)) == 24  # whole years; 0 elapsed
    assert age_at(date(2026, 3, 31), None, "24", date(2025, 3, 31)) == 25
    assert age_at(date(2026, 3, 31), None, "24", date(2027, 1, 1)) == 24  # sent after the range: as sent
    assert age_at(date(2026, 3, 31), None, "abc", date(2025, 1, 1)) is None
    assert age_at(date(2026, 3, 31), None, "inf", date(2025, 1, 1)) is None
    assert age_at(date(2026, 3, 31), "2026-04-01", "30", date(2025, 1, 1)) is None  # a birthday wins


@pytest.mark.parametrize(
    ("sent", "shown"),
    [("riyadh", "Riyadh"), ("RIYADH", "Riyadh"), ("  al   khobar ", "Al Khobar"), ("McAllen", "McAllen"),
     ("الرياض", "الرياض"), ("", "unknown"), (None, "unknown")],
)  # fmt: skip
def test_city(sent, shown):
    assert city(sent) == shown
