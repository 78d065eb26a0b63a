"""The ``ltv`` query (docs/ltv.md, "The ltv query") on real stores built through the import path:
historical values worked out by hand on the hand store (tests/engine/sales_fixtures.py), their
reconciliation with the sales metrics' net revenue, the acquisition report's LTV:CAC, predictions
equal to ``ltv.predict`` on the same summary, and, on generated order sets, totals and groups
that are the sums of the customers' values, which agree with tests/engine/reference_ltv.py.

The hand store's customers as of its last day, Apr 1 2026 (SAR; the orders are listed in
tests/engine/test_metrics.py):

====== ========= ======= ============= ====== ========= ======== ======= ======
person first day cohort  first channel orders revenue   refunded net     tenure
====== ========= ======= ============= ====== ========= ======== ======= ======
u10    Jan 30    2026-01 Email         1      102.00    0        102.00  61
u1     Feb 12    2026-02 Paid Search   3      450.00    0        450.00  48
u7     Mar 1     2026-03 Direct        2      120.00    0        120.00  31
u2     Mar 2     2026-03 Paid Social   2      308.00    51.50    256.50  30
u3     Mar 8     2026-03 Email         2      223.56    100.03   123.53  24
P4     Mar 10    2026-03 Direct        1      80.00     0        80.00   22
u6     Mar 15    2026-03 Direct        2      100.00    0        100.00  17
u8     Mar 26    2026-03 Direct        1      90.00     0        90.00   6
u9     Mar 28    2026-03 Direct        1      (no rate) 0        0       4
====== ========= ======= ============= ====== ========= ======== ======= ======

P4 never identified (no user id: an anonymous buyer is a customer all the same); u8's cancelled
O12 is no order; u9's EGP order counts as an order without a value; P5 never ordered.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from masar.engine import ltv
from masar.engine.kpis import sales_facts
from masar.engine.ltv_report import ltv_report
from masar.errors import InvalidInput, NotFound
from tests.engine import reference_ltv as ref
from tests.engine import reference_segments as ref_segments
from tests.engine.sales_fixtures import (
    LTV_REFUND_OF_CANCELLED,
    LTV_REFUND_OF_NO_ORDER,
    LTV_REFUND_WITHOUT_VALUE,
    hand_store,
    ltv_store,
)

D = Decimal
# user id → (first day, cohort, first channel, orders, orders without value, revenue, refunded, net, tenure)
HAND: dict[str | None, tuple] = {
    "u10": ("2026-01-30", "2026-01", "Email", 1, 0, D("102.00"), D(0), D("102.00"), 61),
    "u1": ("2026-02-12", "2026-02", "Paid Search", 3, 0, D("450.00"), D(0), D("450.00"), 48),
    "u7": ("2026-03-01", "2026-03", "Direct", 2, 0, D("120.00"), D(0), D("120.00"), 31),
    "u2": ("2026-03-02", "2026-03", "Paid Social", 2, 0, D("308.00"), D("51.50"), D("256.50"), 30),
    "u3": ("2026-03-08", "2026-03", "Email", 2, 0, D("223.56"), D("100.03"), D("123.53"), 24),
    None: ("2026-03-10", "2026-03", "Direct", 1, 0, D("80.00"), D(0), D("80.00"), 22),  # P4
    "u6": ("2026-03-15", "2026-03", "Direct", 2, 0, D("100.00"), D(0), D("100.00"), 17),
    "u8": ("2026-03-26", "2026-03", "Direct", 1, 0, D("90.00"), D(0), D("90.00"), 6),
    "u9": ("2026-03-28", "2026-03", "Direct", 1, 1, D(0), D(0), D(0), 4),
}
HAND_NET = D("1322.03")  # = Σ net above = gross 1473.56 − refunds 151.53


@pytest.fixture(scope="module")
def hand(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    s = hand_store(tmp_path_factory.mktemp("hand"))
    yield s
    s.close()


@pytest.fixture(scope="module")
def returning(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    s = ltv_store(tmp_path_factory.mktemp("returning"))
    yield s
    s.close()


def historical(store: Any, **options: Any) -> dict[str, Any]:
    return store.run({"kind": "ltv", "source": "S", "mode": "historical", "limit": None, **options}).to_dict()


def all_time_net_revenue(store: Any) -> Decimal:
    result = store.run({"kind": "metrics", "source": "S", "metrics": ["net_revenue"], "from": "2000-01-01",
                        "to": "2030-12-31", "granularity": None, "compare": False}).to_dict()  # fmt: skip
    return Decimal(result["metrics"][0]["value"])


# -- historical value, by hand -----------------------------------------------------------------------


def test_historical_value_per_customer_by_hand(hand):
    out = historical(hand)
    assert (out["kind"], out["mode"], out["currency"], out["as_of"]) == ("ltv", "historical", "SAR", "2026-04-01")
    got = {row["user_id"]: row for row in out["rows"]}
    assert set(got) == set(HAND)  # P5, who never ordered, is no customer
    for user, (first, cohort, channel, orders, without, revenue, refunded, net, tenure) in HAND.items():
        row = got[user]
        assert (row["first_day"], row["cohort_month"], row["first_channel"], row["orders"],
                row["orders_without_value"], row["tenure_days"]) == (first, cohort, channel, orders, without, tenure)  # fmt: skip
        assert (D(row["revenue"]), D(row["refunded"]), D(row["net_revenue"])) == (revenue, refunded, net), user
    assert got["u1"]["email"] == "sara@example.com" and got[None]["email"] is None
    # highest net revenue first
    assert [row["user_id"] for row in out["rows"]] == ["u1", "u2", "u3", "u7", "u10", "u6", "u8", None, "u9"]
    assert (out["customers"], out["total"], out["orders"], out["orders_without_value"]) == (9, 9, 15, 1)
    assert (D(out["revenue"]), D(out["refunded"]), D(out["net_revenue"])) == (D("1473.56"), D("151.53"), HAND_NET)
    assert out["net_revenue_per_customer"] == pytest.approx(float(HAND_NET) / 9)
    assert json.loads(json.dumps(out)) == out


def test_historical_value_by_cohort_and_channel_by_hand(hand):
    cohorts = {g["cohort_month"]: g for g in historical(hand, group_by="cohort_month")["groups"]}
    assert list(cohorts) == ["2026-01", "2026-02", "2026-03"]
    assert {k: (g["customers"], D(g["net_revenue"])) for k, g in cohorts.items()} == {
        "2026-01": (1, D("102.00")), "2026-02": (1, D("450.00")),
        # 120 + 256.50 + 123.53 + 80 + 100 + 90 + 0
        "2026-03": (7, D("770.03")),
    }  # fmt: skip
    assert cohorts["2026-03"]["net_revenue_per_customer"] == pytest.approx(770.03 / 7)
    assert cohorts["2026-03"]["mean_tenure_days"] == pytest.approx((31 + 30 + 24 + 22 + 17 + 6 + 4) / 7)
    channels = historical(hand, group_by="first_channel")["groups"]
    # most customers first
    assert [(g["first_channel"], g["customers"], D(g["net_revenue"]), D(g["refunded"])) for g in channels] == [
        ("Direct", 5, D("390.00"), D(0)),  # 120 + 80 + 100 + 90 + 0
        ("Email", 2, D("225.53"), D("100.03")),  # 102 + 123.53
        ("Paid Search", 1, D("450.00"), D(0)),
        ("Paid Social", 1, D("256.50"), D("51.50")),
    ]  # fmt: skip
    segments = historical(hand, group_by="rfm_segment")
    assert sum(D(g["net_revenue"]) for g in segments["groups"]) == HAND_NET
    assert {row["rfm_segment"] for row in segments["rows"]} == {g["rfm_segment"] for g in segments["groups"]}


def test_historical_value_as_of_an_earlier_day(hand):
    """As of Mar 15: O14, O7 and later orders are out; refunds are the ones known now, so O5's
    refund of Mar 14 counts and so would a later one."""
    got = {row["user_id"]: row for row in historical(hand, as_of="2026-03-15")["rows"]}
    assert set(got) == {"u10", "u1", "u7", "u2", "u3", None, "u6"}
    assert (got["u1"]["orders"], D(got["u1"]["net_revenue"])) == (2, D("350.00"))  # O1 + O2
    assert (got["u3"]["orders"], D(got["u3"]["net_revenue"])) == (1, D("123.53"))  # O6 only
    assert D(got["u2"]["net_revenue"]) == D("256.50")
    assert (got["u6"]["orders"], got["u6"]["tenure_days"]) == (1, 0)  # O9 on the day itself


def test_value_in_the_first_months_by_hand(hand):
    """u10's first order is Jan 30: its first 3 months, to Apr 29, have passed by May 1; u1's
    (Feb 12 to May 11) have not. By Jun 30 2027 everyone's first 12 months have passed, and every
    hand-store order falls in the first 3 months of its customer."""
    may = historical(hand, as_of="2026-05-01", group_by="cohort_month")
    assert (may["value_3m_customers"], may["value_3m_per_customer"]) == (1, 102.0)
    assert [(g["cohort_month"], g["value_3m_customers"], g["value_3m_per_customer"]) for g in may["groups"]] == [
        ("2026-01", 1, 102.0), ("2026-02", 0, None), ("2026-03", 0, None),
    ]  # fmt: skip
    later = historical(hand, as_of="2027-06-30")
    for row in later["rows"]:
        assert row["value_3m"] == row["value_6m"] == row["value_12m"] == row["net_revenue"]
    assert later["value_12m_customers"] == 9
    assert later["value_12m_per_customer"] == pytest.approx(float(HAND_NET) / 9)


def test_one_customer(hand):
    one = historical(hand, customer="u2")
    assert (one["total"], [row["user_id"] for row in one["rows"]]) == (1, ["u2"])
    assert one["customers"] == 9  # the totals stay those of every customer
    p4 = next(row for row in historical(hand)["rows"] if row["user_id"] is None)
    by_person = historical(hand, customer=p4["person"])
    assert by_person["rows"] == [p4]
    for who in ("u5", "nobody", 10**9):  # u5 never ordered
        with pytest.raises(NotFound):
            historical(hand, customer=who)


def test_pages_and_sorts(hand):
    every = historical(hand)["rows"]
    page = hand.run({"kind": "ltv", "source": "S", "mode": "historical", "limit": 3, "offset": 2}).to_dict()
    assert (page["total"], page["rows"]) == (9, every[2:5])
    oldest = historical(hand, sort="tenure_days")["rows"]
    assert [row["tenure_days"] for row in oldest] == sorted((row["tenure_days"] for row in every), reverse=True)
    fewest = historical(hand, sort="orders", ascending=True)["rows"]
    assert [row["orders"] for row in fewest] == sorted(row["orders"] for row in every)
    # ties keep the person order
    ones = [row["person"] for row in fewest if row["orders"] == 1]
    assert ones == sorted(ones)


def test_query_errors(hand):
    cases = [
        ({"mode": "historical", "horizon_days": 30}, "horizon_days applies to predicted"),
        ({"mode": "historical", "sort": "p_alive"}, "sort must be one of"),
        ({"group_by": "country"}, "group_by"),
        ({"horizon_days": 0}, "horizon_days"),
        ({"discount_rate": -0.1}, "discount_rate"),
        ({}, "at least 10 customers"),  # predicted on the hand store's 9
    ]
    for options, message in cases:
        with pytest.raises(InvalidInput, match=message) as caught:
            hand.run({"kind": "ltv", "source": "S", **options})
        assert caught.value.code == "invalid_query"


# -- reconciliation -----------------------------------------------------------------------------------


def test_historical_value_adds_up_to_net_revenue(hand, returning):
    """Σ customers' net revenue = net revenue over all time, except for the refunds historical
    value does not count and the metrics do: of orders without a value and of unknown orders
    (docs/ltv.md). A cancelled order's refund counts in neither. The hand store has none of those;
    the returning store has one of each of the three."""
    assert all_time_net_revenue(hand) == HAND_NET == sum(D(row["net_revenue"]) for row in historical(hand)["rows"])
    out = historical(returning)
    customers = sum(D(row["net_revenue"]) for row in out["rows"])
    assert customers == D(out["net_revenue"])
    left_out = LTV_REFUND_WITHOUT_VALUE + LTV_REFUND_OF_NO_ORDER
    assert LTV_REFUND_OF_CANCELLED > 0  # the store has one, and it is in neither sum
    assert customers == all_time_net_revenue(returning) + left_out
    for group_by in ltv.GROUPINGS:
        groups = historical(returning, group_by=group_by)["groups"]
        assert sum(D(g["net_revenue"]) for g in groups) == customers
        assert sum(g["customers"] for g in groups) == out["customers"] == 40


def test_ltv_to_cac_reads_historical_value(hand, returning):
    """The acquisition report's LTV is the historical value of the customers a campaign acquired,
    to the data's last day. Hand store, Feb 1 – Mar 31: "brand" acquired u1 (net 450.00) for
    200 + 300 SAR; "spring" u2 (net 256.50) for 100 AED × 1.03 = 103.00 SAR."""
    rows = {r["campaign"]: r for r in hand.run({"kind": "acquisition", "source": "S", "from": "2026-02-01",
                                                "to": "2026-03-31"}).to_dict()["rows"]}  # fmt: skip
    assert rows["brand"]["ltv_to_cac"] == pytest.approx(450 / 500)
    assert rows["spring"]["ltv_to_cac"] == pytest.approx(256.50 / 103, abs=1e-6)
    # The returning store's brand customer 1 has a refunded order without a value: historical
    # value leaves that refund out, as LTV:CAC must (it used to subtract it).
    acquisition = returning.run({"kind": "acquisition", "source": "S", "from": "2025-01-01", "to": "2025-12-31"})
    ratios = {r["campaign"]: r["ltv_to_cac"] for r in acquisition.to_dict()["rows"]}
    values = historical(returning)["rows"]
    for campaign, channel, spend in (("brand", "Paid Search", 900), ("spring", "Paid Social", 400)):
        value = sum(D(row["net_revenue"]) for row in values if row["first_channel"] == channel)
        assert ratios[campaign] == pytest.approx(float(value) / spend, abs=1e-6), campaign


# -- predictions ----------------------------------------------------------------------------------------


def test_predictions_equal_predict_on_the_same_summary(returning):
    query = {"kind": "ltv", "source": "S", "horizon_days": 180, "discount_rate": 0.01, "group_by": "first_channel",
             "limit": None}  # fmt: skip
    out = returning.run(query).to_dict()
    ctx = returning.query_context(returning.source("S"))
    sales_facts(ctx)
    summary = ltv.summary_from_orders(ctx.con, date(2025, 12, 31), "week")
    fit = ltv.fit_summary(summary)
    direct = ltv.predict(summary, fit.bgnbd, fit.gamma_gamma, 180 / 7, discount_rate=0.01)
    assert out["fit"] == fit.to_dict()
    assert (out["as_of"], out["calibration_end"], out["horizon_days"], out["horizon"]) == (
        "2025-12-31", "2025-12-31", 180, 180 / 7,
    )  # fmt: skip
    rows = {row["person"]: row for row in out["rows"]}
    assert sorted(rows) == summary.person.tolist() and out["total"] == out["customers"] == 40
    for i, person in enumerate(summary.person.tolist()):
        row = rows[person]
        assert (row["frequency"], row["recency"], row["T"]) == (summary.x[i], summary.t_x[i], summary.T[i])
        for name in ("p_alive", "expected_purchases", "expected_value", "predicted_value"):
            assert row[name] == pytest.approx(float(getattr(direct, name)[i]), rel=1e-12, abs=1e-300), name
    assert out["predicted_value"] == pytest.approx(float(direct.predicted_value.sum()), rel=1e-12)
    predicted = [row["predicted_value"] for row in out["rows"]]
    assert predicted == sorted(predicted, reverse=True)
    assert all(np.isfinite(predicted)) and sum(predicted) > 0


def test_one_customers_prediction(returning):
    every = returning.run({"kind": "ltv", "source": "S", "limit": None}).to_dict()
    chosen = next(row for row in every["rows"] if row["user_id"] == "c4")
    one = returning.run({"kind": "ltv", "source": "S", "customer": "c4"}).to_dict()
    assert one["rows"] == [chosen] and one["total"] == 1
    assert one["predicted_value"] == every["predicted_value"]  # the model is fitted on everybody


# -- aggregates = sums of the customers, on generated order sets -------------------------------------------


@st.composite
def order_sets(draw) -> tuple[list[dict], dict[int, str | None]]:
    """12–30 customers, each a first order on one of 2024's first 200 days and up to 6 more after
    gaps of 1–60 days; some values unknown, some orders cancelled; first channels from a few,
    some people unknown to ``people``."""
    orders, channels = [], {}
    for person in range(1, draw(st.integers(12, 30)) + 1):
        day = date(2024, 1, 1) + timedelta(days=draw(st.integers(0, 200)))
        typical = draw(st.sampled_from([20, 60, 200]))
        for gap in [0, *draw(st.lists(st.integers(1, 60), max_size=6))]:
            day += timedelta(days=gap)
            share = draw(st.sampled_from([None, 0.5, 0.8, 1.0, 1.3, 1.9]))
            value = None if share is None else (D(typical) * D(str(share))).quantize(D("0.001"))
            orders.append({"person": person, "day": day, "value": value, "refunded": D(0),
                           "cancelled": draw(st.sampled_from([False] * 9 + [True]))})  # fmt: skip
        channel = draw(st.sampled_from(["Direct", "Email", "Paid Search", None, "missing"]))
        if channel != "missing":
            channels[person] = channel
    return orders, channels


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    order_sets(), st.dates(date(2024, 6, 1), date(2025, 3, 31)), st.sampled_from(["day", "week"]),
    st.sampled_from([30, 365]), st.sampled_from([0.0, 0.02]), st.sampled_from([None, *ltv.GROUPINGS]),
)  # fmt: skip
def test_totals_and_groups_are_sums_of_the_customers(data, as_of, unit, horizon_days, rate, group_by):
    orders, channels = data
    people = [{"person": p, "first_day": date(2024, 1, 1), "first_channel": c, "signup_ts": None,
               "user_id": f"u{p}"} for p, c in channels.items()]  # fmt: skip
    con = ref_segments.tables(orders, people=people)
    try:
        report = ltv_report(con, currency="SAR", as_of=as_of, unit=unit, horizon_days=horizon_days,
                            discount_rate=rate, group_by=group_by, limit=None)  # fmt: skip
    except InvalidInput as exc:  # data a model cannot be fitted to: one of the fit's own errors
        fit_errors = ("no purchases", "needs at least", "first purchase is on", "did not converge", "q = ",
                      "is the same", "outside the range")  # fmt: skip
        assert any(s in exc.message for s in fit_errors), exc.message
        event("not fitted")
        return
    event("fitted")
    out = report.to_dict()
    rows = out["rows"]
    summary = ref.summary([(o["person"], o["day"], None if o["value"] is None else float(o["value"]))
                           for o in orders if not o["cancelled"]], as_of, ltv.UNITS[unit])  # fmt: skip
    assert sorted(row["person"] for row in rows) == sorted(summary)
    assert out["customers"] == out["total"] == len(rows)
    for name, total in (("predicted_value", "predicted_value"), ("expected_purchases", "expected_purchases"),
                        ("p_alive", "expected_active")):  # fmt: skip
        assert out[total] == pytest.approx(sum(row[name] for row in rows), rel=1e-9)
    assert out["mean_p_alive"] == pytest.approx(out["expected_active"] / len(rows), rel=1e-12)
    assert out["mean_predicted_value"] == pytest.approx(out["predicted_value"] / len(rows), rel=1e-12)
    if group_by is not None:
        labels = _labels(group_by, summary, channels, orders, as_of)
        assert {row["person"]: row[group_by] for row in rows} == labels
        assert sum(g["customers"] for g in out["groups"]) == len(rows)
        for g in out["groups"]:
            members = [row for row in rows if row[group_by] == g[group_by]]
            assert g["customers"] == len(members)
            assert g["predicted_value"] == pytest.approx(sum(row["predicted_value"] for row in members), rel=1e-9)
            assert g["expected_active"] == pytest.approx(sum(row["p_alive"] for row in members), rel=1e-9)
    # each customer against the plain formulas, with the fitted parameters
    b, g = out["fit"]["bgnbd"], out["fit"]["gamma_gamma"]
    horizon = horizon_days / ltv.UNITS[unit]
    month = 365.25 / 12 / ltv.UNITS[unit]
    for row in rows[:4]:
        x, t_x, T, m, m_count, _first = summary[row["person"]]
        assert (row["frequency"], row["recency"], row["T"]) == (x, t_x, T)
        args = (b["r"], b["alpha"], b["a"], b["b"])
        purchases = (ref.discounted_purchases(*args, horizon, month, rate, x, t_x, T) if rate
                     else ref.expected_purchases(*args, horizon, x, t_x, T))  # fmt: skip
        value = ref.gamma_gamma_mean(g["p"], g["q"], g["gamma"], m_count, m)
        assert row["predicted_value"] == pytest.approx(purchases * value, rel=1e-6)
        assert row["p_alive"] == pytest.approx(ref.p_alive(*args, x, t_x, T), rel=1e-9)


def _labels(group_by: str, summary: dict, channels: dict, orders: list[dict], as_of: date) -> dict:
    if group_by == "cohort_month":
        return {p: s[5].strftime("%Y-%m") for p, s in summary.items()}
    if group_by == "first_channel":
        return {p: channels.get(p) for p in summary}
    segments = ref_segments.rfm(orders, as_of)
    return {p: segments[p]["segment"] for p in summary}
