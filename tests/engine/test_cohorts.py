"""Cohorts: two hand-worked stores (monthly cohorts by first order and by signup; weekly cohorts by
first visit, first-time and recurring, by channel), incomplete periods, the engine against the
plain reference (tests/engine/reference_segments.py) on random orders, sessions and people, and
bad input."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masar.engine.cohorts import cohort_table
from masar.errors import InvalidInput
from tests.engine import reference_segments as ref

FAST = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
D = Decimal
N = None


def _order(person, day, value, cancelled=False):
    return {"person": person, "day": date.fromisoformat(day), "value": None if value is None else D(value),
            "refunded": D(0), "cancelled": cancelled}  # fmt: skip


def _person(person, first_day, channel=None, signup=None):
    return {"person": person, "first_day": date.fromisoformat(first_day), "first_channel": channel,
            "signup_ts": None if signup is None else datetime.fromisoformat(signup).replace(tzinfo=UTC)}  # fmt: skip


def _rows(result):
    return [(r.cohort, r.size, r.counts, r.values, r.bases, r.complete) for r in result.rows]


def _curve(result):
    return [(p.value, p.cohorts, p.members) for p in result.curve]


# -- a monthly store: cohorts by first order ------------------------------------------------------
# as_of 15 April 2026: January–March are over, April is not.

MONTHLY_ORDERS = [
    _order(1, "2026-01-05", "100"), _order(1, "2026-02-10", "50"), _order(1, "2026-04-02", "30"),   # A
    _order(2, "2026-01-20", "200"),                                                                 # B
    _order(3, "2026-01-31", "80"), _order(3, "2026-03-03", "40"),                                   # C
    _order(4, "2025-12-15", "60"), _order(4, "2026-01-10", "70"),                                   # D: a December cohort
    _order(5, "2026-02-01", "120"), _order(5, "2026-02-20", "30"), _order(5, "2026-03-05", None),   # E
    _order(6, "2026-02-14", "500", cancelled=True), _order(6, "2026-03-01", "90"),                  # F: first order March
    _order(7, "2026-02-28", "45"),                                                                  # G
    _order(8, "2026-03-10", "25"), _order(8, "2026-03-20", "25"),                                   # H
    _order(9, "2026-04-01", "300"),                                                                 # I
    _order(10, "2026-01-02", "10"), _order(10, "2026-03-30", "20"),                                 # J
    _order(11, "2026-01-03", "75", cancelled=True),                                                 # K: never ordered
    _order(12, "2026-04-20", "99"),                                                                 # L: after as_of
]  # fmt: skip
MONTHLY_PEOPLE = [
    _person(1, "2026-01-01", "ads", signup="2026-01-31T22:00:00"),  # Riyadh (UTC+3): 1 February
    _person(2, "2026-01-01", "ads", signup="2026-01-15T10:00:00"),
    _person(3, "2026-01-01", "seo"),
    _person(4, "2025-12-01", "seo"),
    _person(5, "2026-02-01", "seo", signup="2026-02-02T08:00:00"),
    _person(6, "2026-02-01", "ads"),
    _person(7, "2026-02-01"),
    _person(8, "2026-03-01", "ads"),
    _person(9, "2026-03-01", "seo", signup="2026-03-31T21:30:00"),  # Riyadh: 1 April
    _person(10, "2026-01-01", "ads", signup="2025-12-20T12:00:00"),
    _person(11, "2026-01-01", "ads"),
    _person(12, "2026-04-01", "ads"),
]
MONTHLY = {
    "by": "first_order",
    "period": "month",
    "periods": 4,
    "start": date(2026, 1, 1),
    "as_of": date(2026, 4, 15),
}
JAN, FEB, MAR, APR = date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1), date(2026, 4, 1)


@pytest.fixture(scope="module")
def monthly():
    return ref.tables(MONTHLY_ORDERS, people=MONTHLY_PEOPLE)


def test_monthly_purchasing(monthly):
    # January: A, B, C, J (D's first order is in December). February: E, G. March: F (its
    # February order was cancelled), H. April: I.
    result = cohort_table(monthly, measure="purchasing", **MONTHLY)
    assert _rows(result) == [
        #            counts          values                    bases         complete
        (
            JAN,
            4,
            [4, 1, 2, N],
            [1.0, 0.25, 0.5, N],
            [4, 4, 4, 0],
            [True, True, True, False],
        ),  # Feb: A; Mar: C, J
        (
            FEB,
            2,
            [2, 1, N, N],
            [1.0, 0.5, N, N],
            [2, 2, 0, 0],
            [True, True, False, False],
        ),  # Mar: E (no value)
        (MAR, 2, [2, N, N, N], [1.0, N, N, N], [2, 0, 0, 0], [True, False, False, False]),
        (APR, 1, [N, N, N, N], [N, N, N, N], [0, 0, 0, 0], [False, False, False, False]),
    ]
    assert _curve(result) == [(1.0, 3, 8), (2 / 6, 2, 6), (0.5, 1, 4), (N, 0, 0)]
    assert (result.start, result.end) == (JAN, APR)


def test_monthly_revenue(monthly):
    result = cohort_table(monthly, measure="revenue", **MONTHLY)
    assert [r.revenue for r in result.rows] == [
        [D("390"), D("440"), D("500"), N],  # 100 + 200 + 80 + 10; + A's 50; + C's 40 and J's 20
        [D("195"), D("195"), N, N],  # 120 + 30 + 45; E's March order has no value
        [D("140"), N, N, N],  # 90 + 25 + 25
        [N, N, N, N],
    ]
    assert _rows(result) == [
        (JAN, 4, [4, 4, 4, N], [97.5, 110.0, 125.0, N], [4, 4, 4, 0], [True, True, True, False]),
        (FEB, 2, [2, 2, N, N], [97.5, 97.5, N, N], [2, 2, 0, 0], [True, True, False, False]),
        (MAR, 2, [2, N, N, N], [70.0, N, N, N], [2, 0, 0, 0], [True, False, False, False]),
        (APR, 1, [N, N, N, N], [N, N, N, N], [0, 0, 0, 0], [False, False, False, False]),
    ]
    assert _curve(result) == [(725 / 8, 3, 8), (635 / 6, 2, 6), (125.0, 1, 4), (N, 0, 0)]
    table = result.table()
    assert table.num_rows == 16 and table.column("revenue").type == pa.decimal128(38, 3)
    assert table.slice(1, 1).to_pylist() == [{"cohort": JAN, "size": 4, "period": 1, "complete": True, "base": 4,
                                              "count": 4, "value": 110.0, "revenue": D("440")}]  # fmt: skip
    data = json.loads(json.dumps(result.to_dict()))
    assert data["rows"][0]["revenue"] == ["390.000", "440.000", "500.000", None]
    assert data["rows"][0]["cohort"] == "2026-01-01" and data["start"] == "2026-01-01"


def test_the_last_day_of_a_period_completes_it(monthly):
    result = cohort_table(monthly, measure="purchasing", **{**MONTHLY, "as_of": date(2026, 3, 31)})
    assert [r.complete for r in result.rows[:3]] == [[True, True, True, False], [True, True, False, False],
                                                     [True, False, False, False]]  # fmt: skip
    assert result.rows[0].counts == [4, 1, 2, N]


def test_monthly_signup_cohorts_use_the_store_time_zone(monthly):
    kw = {**MONTHLY, "by": "signup", "measure": "purchasing"}
    riyadh = cohort_table(monthly, tz="Asia/Riyadh", **kw)
    assert _rows(riyadh) == [
        (JAN, 1, [1, 0, 0, N], [1.0, 0.0, 0.0, N], [1, 1, 1, 0], [True, True, True, False]),  # B
        (FEB, 2, [2, 1, N, N], [1.0, 0.5, N, N], [2, 2, 0, 0], [True, True, False, False]),  # A, E
        (MAR, 0, [0, N, N, N], [N, N, N, N], [0, 0, 0, 0], [True, False, False, False]),
        (APR, 1, [N, N, N, N], [N, N, N, N], [0, 0, 0, 0], [False, False, False, False]),  # I
    ]
    utc = cohort_table(monthly, **kw)
    assert [r.size for r in utc.rows] == [2, 1, 1, 0]  # A in January, I in March


def test_monthly_by_channel(monthly):
    result = cohort_table(monthly, measure="purchasing", group="channel", **MONTHLY)
    # ads: A, B, J (January), F, H (March); seo: C (January), E (February), I (April); none: G
    # (February). A cell counts the members whose period N is over: ads period 1 is January's.
    assert _rows(result) == [
        ("ads", 5, [5, 1, 1, N], [1.0, 1 / 3, 1 / 3, N], [5, 3, 3, 0], [True, False, False, False]),
        ("seo", 3, [2, 1, 1, N], [1.0, 0.5, 1.0, N], [2, 2, 1, 0], [False, False, False, False]),
        (N, 1, [1, 0, N, N], [1.0, 0.0, N, N], [1, 1, 0, 0], [True, True, False, False]),
    ]
    # The curve does not depend on the grouping.
    assert _curve(result) == _curve(cohort_table(monthly, measure="purchasing", **MONTHLY))
    assert result.table().column("cohort").to_pylist()[::4] == ["ads", "seo", None]
    only_ads = cohort_table(monthly, measure="purchasing", channel="ads", **MONTHLY)
    assert [(r.size, r.counts) for r in only_ads.rows] == [(3, [3, 1, 1, N]), (0, [0, 0, N, N]), (2, [2, N, N, N]),
                                                           (0, [N, N, N, N])]  # fmt: skip


def test_default_cohorts_end_with_as_of(monthly):
    result = cohort_table(monthly, by="first_order", period="month", measure="purchasing", periods=3,
                          as_of=date(2026, 4, 15))  # fmt: skip
    assert [r.cohort for r in result.rows] == [FEB, MAR, APR]
    result = cohort_table(monthly, by="first_order", period="month", measure="purchasing", periods=2,
                          end=date(2026, 2, 3), as_of=date(2026, 4, 15))  # fmt: skip
    assert [(r.cohort, r.size) for r in result.rows] == [(JAN, 4), (FEB, 2)]


# -- a weekly store: cohorts by first visit -------------------------------------------------------
# Weeks start on Monday: 2 March, 9 March, 16 March 2026. as_of Wednesday 18 March: the weeks of
# 2 and 9 March are over.

W2, W9, W16 = date(2026, 3, 2), date(2026, 3, 9), date(2026, 3, 16)
WEEKLY_PEOPLE = [
    _person(21, "2026-03-02", "ads"),  # A
    _person(22, "2026-03-08", "ads"),  # B: Sunday, still the week of 2 March
    _person(23, "2026-03-04", "seo"),  # C
    _person(24, "2026-03-09", "ads"),  # D
    _person(25, "2026-03-12", "seo"),  # E
    _person(26, "2026-03-01", "seo"),  # F: Sunday 1 March, the week of 23 February
    _person(27, "2026-03-03"),  # G: no session in its first week
    _person(28, "2026-03-17", "ads"),  # H
]
WEEKLY_SESSIONS = [
    {"person": p, "day": date.fromisoformat(d)}
    for p, d in [(21, "2026-03-02"), (21, "2026-03-10"), (22, "2026-03-08"), (22, "2026-03-16"), (23, "2026-03-04"),
                 (24, "2026-03-09"), (24, "2026-03-15"), (25, "2026-03-12"), (25, "2026-03-17"), (26, "2026-03-01"),
                 (27, "2026-03-11"), (28, "2026-03-17"), (21, "2026-03-19")]  # the last one is after as_of
]  # fmt: skip
WEEKLY = {"by": "first_visit", "period": "week", "measure": "active", "periods": 3, "start": date(2026, 3, 4),
          "as_of": date(2026, 3, 18)}  # fmt: skip


@pytest.fixture(scope="module")
def weekly():
    return ref.tables([], WEEKLY_SESSIONS, WEEKLY_PEOPLE)


def test_weekly_active_first_time(weekly):
    result = cohort_table(weekly, **WEEKLY)
    assert _rows(result) == [
        (W2, 4, [3, 2, N], [0.75, 0.5, N], [4, 4, 0], [True, True, False]),  # A, B, C, G; week 1: A, G
        (W9, 2, [2, N, N], [1.0, N, N], [2, 0, 0], [True, False, False]),  # D, E
        (W16, 1, [N, N, N], [N, N, N], [0, 0, 0], [False, False, False]),  # H
    ]
    assert _curve(result) == [(5 / 6, 2, 6), (0.5, 1, 4), (N, 0, 0)]


def test_weekly_active_recurring(weekly):
    result = cohort_table(weekly, **{**WEEKLY, "mode": "recurring"})
    # A person is in the cohort of every week they visited: week of 2 March A, B, C; of 9 March
    # A, D, E, G; of 16 March B, E, H (A's visit on the 19th is after as_of).
    assert _rows(result) == [
        (W2, 3, [3, 1, N], [1.0, 1 / 3, N], [3, 3, 0], [True, True, False]),
        (W9, 4, [4, N, N], [1.0, N, N], [4, 0, 0], [True, False, False]),
        (W16, 3, [N, N, N], [N, N, N], [0, 0, 0], [False, False, False]),
    ]
    assert _curve(result) == [(1.0, 2, 7), (1 / 3, 1, 3), (N, 0, 0)]


def test_weekly_by_channel(weekly):
    result = cohort_table(weekly, **{**WEEKLY, "group": "channel"})
    # ads: A, B (2 March), D (9 March), H (16 March); seo: C (2 March), E (9 March); none: G.
    # A cell counts the members whose period N is over: ads week 0 leaves out H.
    assert _rows(result) == [
        ("ads", 4, [3, 1, N], [1.0, 0.5, N], [3, 2, 0], [False, False, False]),
        ("seo", 2, [2, 0, N], [1.0, 0.0, N], [2, 1, 0], [True, False, False]),
        (N, 1, [0, 1, N], [0.0, 1.0, N], [1, 1, 0], [True, True, False]),
    ]
    assert _curve(result) == [(5 / 6, 2, 6), (0.5, 1, 4), (N, 0, 0)]


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"by": "first_purchase"}, "by must be one of"),
        ({"period": "day"}, "period must be one of"),
        ({"measure": "orders"}, "measure must be one of"),
        ({"mode": "rolling"}, "mode must be one of"),
        ({"group": "country"}, "group must be one of"),
        ({"periods": 0}, "periods must be"),
        ({"periods": 10_000}, "periods must be"),
        ({"periods": True}, "periods must be"),
        ({"channel": ""}, "channel must be"),
        ({"by": "signup", "mode": "recurring"}, "recurring cohorts need"),
        ({"by": "signup", "tz": "Mars/Olympus"}, "unknown time zone"),
        ({"end": date(2026, 5, 1)}, "after as_of"),
        ({"start": date(2026, 5, 1)}, "after as_of"),
        ({"start": date(2026, 3, 1), "end": date(2026, 2, 1)}, "after end"),
        ({"as_of": datetime(2026, 4, 15, tzinfo=UTC)}, "as_of must be a date"),
        ({"start": "2026-01-01"}, "start must be a date"),
        ({"period": "week", "start": date(2010, 1, 1)}, "cohorts, at most 520"),
    ],
)
def test_bad_input(monthly, kw, message):
    with pytest.raises(InvalidInput, match=message) as info:
        cohort_table(monthly, **{"as_of": date(2026, 4, 15), **kw})
    assert info.value.code == "invalid_query"


# -- against the reference ------------------------------------------------------------------------

DAY0 = date(2026, 1, 1)
CHANNELS = ["ads", "seo", None]


@st.composite
def stores(draw):
    persons = range(draw(st.integers(1, 8)))
    days = st.integers(0, 100).map(lambda d: DAY0 + timedelta(days=d))
    people = []
    for p in persons:
        # Hours near midnight UTC, so the store's time zone often moves a signup to another day.
        signup = draw(st.one_of(st.none(), st.tuples(st.integers(0, 100), st.sampled_from([0, 3, 12, 21, 22, 23])).map(
            lambda dh: datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=dh[0], hours=dh[1]))))  # fmt: skip
        people.append({"person": p, "first_day": draw(days), "first_channel": draw(st.sampled_from(CHANNELS)),
                       "signup_ts": signup})  # fmt: skip
    orders = [
        {"person": draw(st.sampled_from(persons)), "day": draw(days),
         "value": draw(st.one_of(st.none(), st.integers(0, 999).map(lambda c: D(c) / 10))),
         "refunded": D(0), "cancelled": draw(st.integers(0, 7)) == 0}
        for _ in range(draw(st.integers(0, 20)))
    ]  # fmt: skip
    sessions = [
        {"person": draw(st.sampled_from(persons)), "day": draw(days)} for _ in range(draw(st.integers(0, 25)))
    ]
    return orders, sessions, people


@st.composite
def queries(draw):
    by = draw(st.sampled_from(["first_order", "first_visit", "signup"]))
    mode = "first_time" if by == "signup" else draw(st.sampled_from(["first_time", "recurring"]))
    as_of = DAY0 + timedelta(days=draw(st.integers(20, 110)))
    start = draw(st.one_of(st.none(), st.integers(0, 60).map(lambda d: DAY0 + timedelta(days=d))))
    start = None if start is None or start > as_of else start
    end = draw(st.one_of(st.none(), st.integers(0, 110).map(lambda d: DAY0 + timedelta(days=d))))
    end = None if end is None or end > as_of or (start is not None and end < start) else end
    if start is not None and end is not None:
        # a start in a later period than end's is an error, tested above
        start = min(start, end)
    return {
        "by": by, "mode": mode, "period": draw(st.sampled_from(["week", "month"])),
        "measure": draw(st.sampled_from(["active", "purchasing", "revenue"])), "periods": draw(st.integers(1, 5)),
        "start": start, "end": end, "channel": draw(st.sampled_from([None, None, "ads"])),
        "group": draw(st.sampled_from(["period", "channel"])), "tz": draw(st.sampled_from(["UTC", "Asia/Riyadh",
        "America/Los_Angeles"])), "as_of": as_of,
    }  # fmt: skip


@FAST
@given(stores(), queries())
def test_engine_matches_reference(store, query):
    orders, sessions, people = store
    result = cohort_table(ref.tables(orders, sessions, people), **query)
    expected = ref.cohorts(orders, sessions, people, **query)
    got = [{"cohort": r.cohort, "size": r.size, "counts": r.counts, "values": r.values, "bases": r.bases,
            "complete": r.complete, **({"revenue": r.revenue} if r.revenue is not None else {})}
           for r in result.rows]  # fmt: skip
    assert got == expected["rows"]
    assert _curve(result) == expected["curve"]
    # A cell is never a drop because its period has not ended: incomplete means no value.
    for row in result.rows:
        for n in range(query["periods"]):
            if row.bases[n] == 0:
                assert row.values[n] is None
            if not row.complete[n] and query["group"] == "period":
                assert row.counts[n] is None and row.values[n] is None
    assert result.table().num_rows == len(result.rows) * query["periods"]
    json.dumps(result.to_dict())


@FAST
@given(
    st.lists(st.tuples(st.integers(0, 100), st.sampled_from([0, 2, 21, 22, 23])), min_size=1, max_size=6),
    st.sampled_from(["week", "month"]),
    st.sampled_from(["Asia/Riyadh", "America/Los_Angeles", "Pacific/Kiritimati"]),
)
def test_signup_days_in_the_store_time_zone(signups, period, tz):
    """Signups near midnight UTC, every one inside the table: the store's time zone decides the
    cohort (the broad comparison above rarely puts a signup on a period's edge)."""
    people = [{"person": p, "first_day": DAY0, "first_channel": None,
               "signup_ts": datetime(2026, 1, 1, h, tzinfo=UTC) + timedelta(days=d)}
              for p, (d, h) in enumerate(signups)]  # fmt: skip
    query = {"by": "signup", "mode": "first_time", "period": period, "measure": "active", "periods": 2,
             "start": DAY0 - timedelta(days=7), "end": None, "channel": None, "group": "period", "tz": tz,
             "as_of": date(2026, 4, 30)}  # fmt: skip
    result = cohort_table(ref.tables([], [], people), **query)
    expected = ref.cohorts([], [], people, **query)
    assert [(r.cohort, r.size) for r in result.rows] == [(r["cohort"], r["size"]) for r in expected["rows"]]
    assert sum(r.size for r in result.rows) == len(people)
