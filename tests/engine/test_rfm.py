"""RFM: a hand-scored store of ten customers; the R×F map as a partition; the engine against the
plain reference (tests/engine/reference_segments.py) on random orders with ties, NULL values,
refunds, cancellations and a lookback; customer lists, paging, export; bad input."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masar.engine.rfm import GRID, SEGMENT_RULES, SEGMENTS, rfm_customers, rfm_segments, segment_of
from masar.errors import InvalidInput
from tests.engine import reference_segments as ref

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
AS_OF = date(2026, 3, 31)
D = Decimal


def _order(person, day, value, refunded="0", cancelled=False):
    return {"person": person, "day": date.fromisoformat(day), "value": None if value is None else D(value),
            "refunded": D(refunded), "cancelled": cancelled}  # fmt: skip


# Ten customers, so the fifths are exact: b = 0–1 → 1, 2–3 → 2, 4–5 → 3, 6–7 → 4, 8–9 → 5.
HAND = [
    # 1: recency 1, 6 orders, 650 − 50 refunded = 600
    *[_order(1, d, "100") for d in ("2026-01-10", "2026-01-25", "2026-02-10", "2026-02-25", "2026-03-15")],
    _order(1, "2026-03-30", "150", refunded="50"),
    # 2: recency 2, 5 orders, 500; a cancelled order on as_of changes nothing
    *[_order(2, d, "100") for d in ("2026-01-05", "2026-01-30", "2026-02-20", "2026-03-10", "2026-03-29")],
    _order(2, "2026-03-31", "999", cancelled=True),
    # 3: recency 6, 1 order, 50; an order after as_of is not read
    _order(3, "2026-03-25", "50"),
    _order(3, "2026-04-05", "500"),
    # 4: recency 11, 4 orders, 300
    *[_order(4, d, "75") for d in ("2026-01-02", "2026-02-02", "2026-03-02", "2026-03-20")],
    # 5: recency 21, 2 orders, 120 (the second has no value: counted, not summed)
    _order(5, "2026-02-01", "120"),
    _order(5, "2026-03-10", None),
    # 6: recency 21 (tied with 5), 3 orders, 200
    _order(6, "2026-01-15", "50"),
    _order(6, "2026-02-15", "50"),
    _order(6, "2026-03-10", "100"),
    # 7: recency 44, 1 order, 40
    _order(7, "2026-02-15", "40"),
    # 8: recency 70, 5 orders, 450 (three of them in 2025)
    *[_order(8, d, "90") for d in ("2025-10-01", "2025-11-01", "2025-12-01", "2026-01-02", "2026-01-20")],
    # 9: recency 85, 1 order, 30
    _order(9, "2026-01-05", "30"),
    # 10: recency 120, 2 orders, no value known: no M score
    _order(10, "2025-11-15", None),
    _order(10, "2025-12-01", None),
    # 11: only a cancelled order; 12: only an order after as_of — neither is a customer
    _order(11, "2026-03-01", "70", cancelled=True),
    _order(12, "2026-04-02", "80"),
]  # fmt: skip
PEOPLE = [{"person": p, "user_id": f"u{p}", "email": f"p{p}@example.com", "first_day": date(2025, 1, 1),
           "first_channel": None, "signup_ts": None} for p in range(1, 13)]  # fmt: skip

# Worked by hand from the comments above (docs/segments.md):
#   recency, worst first: 120 (10), 85 (9), 70 (8), 44 (7), 21 (5, 6), 11 (4), 6 (3), 2 (2), 1 (1)
#     b:                  0        1       2       3       4  4       6       7      8      9
#     R:                  1        1       2       2       3  3       4       4      5      5
#   frequency, worst first: 1 (3, 7, 9) b=0 F1; 2 (5, 10) b=3 F2; 3 (6) b=5 F3; 4 (4) b=6 F4;
#     5 (2, 8) b=7 F4; 6 (1) b=9 F5
#   monetary over the 9 known: 30 (9) 40 (7) 50 (3) 120 (5) 200 (6) 300 (4) 450 (8) 500 (2) 600 (1)
#     b = 0..8, M = 1 + ⌊5b/9⌋: 1 1 2 2 3 3 4 4 5
EXPECTED = {  # person: (recency, frequency, monetary, R, F, M, segment)
    1: (1, 6, D("600"), 5, 5, 5, "Champions"),
    2: (2, 5, D("500"), 5, 4, 4, "Champions"),
    3: (6, 1, D("50"), 4, 1, 2, "Promising"),
    4: (11, 4, D("300"), 4, 4, 3, "Loyal Customers"),
    5: (21, 2, D("120"), 3, 2, 2, "About to Sleep"),
    6: (21, 3, D("200"), 3, 3, 3, "Need Attention"),
    7: (44, 1, D("40"), 2, 1, 1, "Hibernating"),
    8: (70, 5, D("450"), 2, 4, 4, "At Risk"),
    9: (85, 1, D("30"), 1, 1, 1, "Hibernating"),
    10: (120, 2, None, 1, 2, None, "Hibernating"),
}


# -- the R×F map ----------------------------------------------------------------------------------


def test_every_grid_cell_is_in_exactly_one_segment():
    for r in range(1, 6):
        for f in range(1, 6):
            owners = [name for name, rs, fs in SEGMENT_RULES if r in rs and f in fs]
            assert len(owners) == 1, (r, f, owners)
            assert segment_of(r, f) == owners[0] == ref.segment(r, f) == GRID[(r - 1) * 5 + f - 1]
    assert sorted({name for name, _, _ in SEGMENT_RULES}) == sorted(SEGMENTS)
    assert len(SEGMENTS) == 10 and set(GRID) == set(SEGMENTS)
    with pytest.raises(ValueError):
        segment_of(0, 3)


# -- the hand-scored store ------------------------------------------------------------------------


def test_hand_scored_customers():
    con = ref.tables(HAND, people=PEOPLE)
    rows = rfm_customers(con, AS_OF, limit=None).table().to_pylist()
    got = {row["person"]: (row["recency_days"], row["frequency"], row["monetary"], row["r"], row["f"], row["m"],
                           row["segment"]) for row in rows}  # fmt: skip
    assert got == EXPECTED
    assert [row["person"] for row in rows] == [
        1,
        2,
        8,
        4,
        6,
        5,
        3,
        7,
        9,
        10,
    ]  # highest monetary first, NULL last
    assert rows[0]["user_id"] == "u1" and rows[0]["email"] == "p1@example.com"


def test_hand_scored_segments():
    result = rfm_segments(ref.tables(HAND, people=PEOPLE), AS_OF)
    assert result.customers == 10
    assert result.revenue == D("2290")
    by_name = {s.segment: s for s in result.segments}
    assert [s.segment for s in result.segments] == list(SEGMENTS)
    expected = {  # segment: (customers, revenue, mean recency, mean frequency, mean monetary)
        "Champions": (2, D("1100"), 1.5, 5.5, 550.0),
        "Loyal Customers": (1, D("300"), 11.0, 4.0, 300.0),
        "Promising": (1, D("50"), 6.0, 1.0, 50.0),
        "About to Sleep": (1, D("120"), 21.0, 2.0, 120.0),
        "Need Attention": (1, D("200"), 21.0, 3.0, 200.0),
        "At Risk": (1, D("450"), 70.0, 5.0, 450.0),
        # 7, 9, 10: recency (44 + 85 + 120) / 3, frequency 4 / 3, monetary 70 over the 2 known
        "Hibernating": (3, D("70"), 83.0, 4 / 3, 35.0),
    }
    for name in SEGMENTS:
        s = by_name[name]
        if name in expected:
            n, revenue, recency, frequency, monetary = expected[name]
            assert (s.customers, s.revenue, s.mean_recency_days, s.mean_frequency, s.mean_monetary) == (
                n, revenue, recency, pytest.approx(frequency), monetary)  # fmt: skip
            assert s.share == n / 10
            assert s.revenue_share == pytest.approx(float(revenue / D("2290")))
        else:
            assert (s.customers, s.revenue, s.share, s.revenue_share, s.mean_recency_days) == (
                0,
                0,
                0.0,
                0.0,
                None,
            )
    assert result.r_scores == [2, 2, 2, 2, 2]
    assert result.f_scores == [3, 2, 1, 3, 1]
    assert result.m_scores == [2, 2, 2, 2, 1] and result.m_unknown == 1
    assert result.grid == [
        [1, 1, 0, 0, 0],  # R1: 9 (F1), 10 (F2)
        [1, 0, 0, 1, 0],  # R2: 7 (F1), 8 (F4)
        [0, 1, 1, 0, 0],  # R3: 5 (F2), 6 (F3)
        [1, 0, 0, 1, 0],  # R4: 3 (F1), 4 (F4)
        [0, 0, 0, 1, 1],  # R5: 2 (F4), 1 (F5)
    ]
    data = json.loads(json.dumps(result.to_dict()))
    assert data["revenue"] == "2290.000" and data["segments"][0]["revenue"] == "1100.000"
    table = result.table()
    assert table.num_rows == 10 and table.column("revenue").type == pa.decimal128(38, 3)
    assert sum(table.column("customers").to_pylist()) == 10


def test_lookback_reads_only_orders_since():
    con = ref.tables(HAND, people=PEOPLE)
    rows = {
        r["person"]: r
        for r in rfm_customers(con, AS_OF, since=date(2026, 1, 1), limit=None).table().to_pylist()
    }
    assert 10 not in rows  # every order of 10 is in 2025
    assert (rows[8]["frequency"], rows[8]["monetary"]) == (2, D("180"))
    assert rfm_segments(con, AS_OF, since=date(2026, 1, 1)).customers == 9


def test_customer_pages():
    con = ref.tables(HAND, people=PEOPLE)
    page = rfm_customers(con, AS_OF, "Hibernating", limit=2, offset=1)
    assert page.total == 3
    assert [r["person"] for r in page.table().to_pylist()] == [9, 10]  # 7 (40), 9 (30), 10 (no value)
    data = json.loads(json.dumps(page.to_dict()))
    assert data["customers"][0]["monetary"] == "30.000" and data["customers"][1]["monetary"] is None
    assert data["customers"][1]["m"] is None and data["customers"][1]["email"] == "p10@example.com"
    past_the_end = rfm_customers(con, AS_OF, "Hibernating", limit=5, offset=10)
    assert past_the_end.total == 3 and past_the_end.table().num_rows == 0
    assert rfm_customers(con, AS_OF, "Champions", limit=None).table().column_names == [
        "person", "user_id", "email", "recency_days", "frequency", "monetary", "r", "f", "m", "segment"]  # fmt: skip
    assert rfm_customers(con, AS_OF, "New Customers").total == 0


def test_no_customers():
    result = rfm_segments(ref.tables([_order(1, "2026-03-01", "5", cancelled=True)]), AS_OF)
    assert result.customers == 0 and result.revenue == 0
    assert all(s.customers == 0 and s.share is None and s.revenue_share is None for s in result.segments)
    assert result.grid == [[0] * 5 for _ in range(5)]


def test_ties_fill_one_score():
    """Seven of ten customers with one order: they all get F1 (b = 0), and the next value starts at
    b = 7, F4 — scores 2 and 3 stay empty rather than splitting equal customers."""
    orders = [_order(p, "2026-03-01", "10") for p in range(10)]
    orders += [_order(p, "2026-03-02", "10") for p in (7, 8, 9)]
    result = rfm_segments(ref.tables(orders), AS_OF)
    assert result.f_scores == [7, 0, 0, 3, 0]
    # recency: 7 customers 30 days (b = 0, R1), 3 customers 29 days (b = 7, R4)
    assert result.r_scores == [7, 0, 0, 3, 0]


def test_bad_input():
    con = ref.tables(HAND)
    with pytest.raises(InvalidInput, match="unknown segment"):
        rfm_customers(con, AS_OF, "Champs")
    with pytest.raises(InvalidInput, match="since"):
        rfm_segments(con, AS_OF, since=AS_OF + timedelta(days=1))
    with pytest.raises(InvalidInput, match="as_of must be a date"):
        rfm_segments(con, "2026-03-31")
    with pytest.raises(InvalidInput, match="limit"):
        rfm_customers(con, AS_OF, limit=-1)
    with pytest.raises(InvalidInput, match="offset"):
        rfm_customers(con, AS_OF, offset=-3)
    with pytest.raises(InvalidInput) as info:
        rfm_customers(con, AS_OF, "nope")
    assert info.value.code == "invalid_query"


# -- against the reference ------------------------------------------------------------------------

DAY0 = date(2026, 1, 1)


@st.composite
def order_lists(draw):
    orders = []
    for _ in range(draw(st.integers(0, 30))):
        value = draw(st.one_of(st.none(), st.integers(0, 5_000)))  # few distinct values: ties
        value = None if value is None else D(value) / 100
        refunded = (
            D(0) if value is None or draw(st.booleans()) else value * draw(st.sampled_from([D("0.5"), 1]))
        )
        orders.append({"person": draw(st.integers(0, 12)), "day": DAY0 + timedelta(days=draw(st.integers(0, 40))),
                       "value": value, "refunded": refunded, "cancelled": draw(st.integers(0, 9)) == 0})  # fmt: skip
    return orders


@FAST
@given(order_lists(), st.integers(0, 45), st.one_of(st.none(), st.integers(0, 40)))
def test_engine_matches_reference(orders, as_of_day, since_day):
    as_of = DAY0 + timedelta(days=as_of_day)
    since = None if since_day is None else DAY0 + timedelta(days=min(since_day, as_of_day))
    con = ref.tables(orders)
    expected = ref.rfm(orders, as_of, since)

    rows = rfm_customers(con, as_of, since=since, limit=None).table().to_pylist()
    got = {r["person"]: {k: r[k] for k in ("recency_days", "frequency", "monetary", "r", "f", "m", "segment")}
           for r in rows}  # fmt: skip
    assert got == expected
    order = sorted(
        expected, key=lambda p: (expected[p]["monetary"] is None, -(expected[p]["monetary"] or 0), p)
    )
    assert [r["person"] for r in rows] == order

    # Ties never split: customers with equal values have equal scores.
    for a in rows:
        for b in rows:
            for value, score in (("recency_days", "r"), ("frequency", "f"), ("monetary", "m")):
                if a[value] == b[value]:
                    assert a[score] == b[score]

    result = rfm_segments(con, as_of, since)
    summary = ref.rfm_summary(expected)
    assert result.customers == len(expected)
    assert sum(s.customers for s in result.segments) == result.customers
    assert sum(sum(row) for row in result.grid) == result.customers
    assert sum(result.m_scores) + result.m_unknown == result.customers
    total = sum((c["monetary"] for c in expected.values() if c["monetary"] is not None), D(0))
    assert result.revenue == total
    for s in result.segments:
        want = summary.get(s.segment)
        if want is None:
            assert s.customers == 0 and s.revenue == 0
            continue
        assert (s.customers, s.revenue) == (want["customers"], want["revenue"])
        assert s.mean_recency_days == pytest.approx(want["mean_recency_days"])
        assert s.mean_frequency == pytest.approx(want["mean_frequency"])
        assert s.mean_monetary == (
            None if want["mean_monetary"] is None else pytest.approx(want["mean_monetary"])
        )
        assert s.revenue_share == (pytest.approx(float(want["revenue"] / total)) if total > 0 else None)
    for r in range(5):
        for f in range(5):
            want = sum(1 for c in expected.values() if (c["r"], c["f"]) == (r + 1, f + 1))
            assert result.grid[r][f] == want
    json.dumps(result.to_dict())
