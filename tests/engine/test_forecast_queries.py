"""The ``forecast`` and ``targets`` queries on real stores (docs/forecasts.md, docs/metrics.md
Targets): their series and actuals are the metrics query's, a target's pace is its actual plus the
forecast of its remaining days, and a known trend and weekly season come back through the import
path. The model itself is tests/engine/test_forecast.py's.

The hand store is tests/engine/sales_fixtures.py's; its March, by local day (SAR, worked out in
tests/engine/test_metrics.py): Mar 1 O10 50, Mar 2 O4 102, Mar 5 O2 150, Mar 8 O6 123.53, Mar 10
O8 80, Mar 12 O5 206, Mar 14 O5's refund −51.50, Mar 15 O9 40, Mar 16 O7 100.03, Mar 18 O7's
refund −100.03, Mar 20 O3 100, Mar 26 O13 90, Mar 27 O11 70, Mar 28 O15 (no value). The first
order is O16 on Jan 30, the data's last day Apr 1 (O14, 60).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from masar.engine.forecast import forecast_series
from masar.errors import InvalidInput, NotFound
from tests.engine.sales_fixtures import Messages, Person, build_store, hand_store

MARCH_15 = date(2026, 3, 15)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    s = hand_store(tmp_path_factory.mktemp("hand"))
    source = s.source("S")
    s.set_target(source, "2026-03", revenue=Decimal("2000"), orders=20)
    s.set_target(source, "2026-04", revenue=Decimal("1500.5"), orders=None)
    s.set_target(source, "2027-06", revenue=None, orders=40)  # beyond a year after the data
    yield s
    s.close()


def forecast(store: Any, **options: Any) -> dict[str, Any]:
    return store.run({"kind": "forecast", "source": "S", **options}).to_dict()


def targets(store: Any, **options: Any) -> dict[str, Any]:
    return store.run({"kind": "targets", "source": "S", **options}).to_dict()


def metrics_series(store: Any, start: str, end: str) -> dict[str, dict[str, Any]]:
    result = store.run({"kind": "metrics", "source": "S", "metrics": ["net_revenue", "orders"], "from": start,
                        "to": end, "granularity": "day", "compare": False}).to_dict()  # fmt: skip
    return {row["period"]: row["values"] for row in result["series"]}


# -- the forecast's history is the metrics query's series --------------------------------------------


def test_forecast_history_is_the_metrics_series(store):
    expected = metrics_series(store, "2026-01-30", "2026-04-01")
    for measure, metric in (("revenue", "net_revenue"), ("orders", "orders")):
        result = forecast(store, measure=measure, horizon=7, folds=0)
        # By default the history runs from the first order to the data's last day.
        assert (result["history"]["from"], result["history"]["to"]) == ("2026-01-30", "2026-04-01")
        assert result["metric"] == metric and result["currency"] == "SAR"
        got = {row["day"]: row["value"] for row in result["history"]["series"]}
        assert list(got) == list(expected)
        for day, value in got.items():
            if measure == "revenue":
                assert Decimal(str(value)) == Decimal(expected[day][metric]), day
            else:
                assert value == expected[day][metric] and isinstance(value, int), day
        assert result["points"][0]["day"] == "2026-04-02" and len(result["points"]) == 7
    # Net revenue: refunds on their own days take those days below zero, and are history too.
    history = {row["day"]: row["value"] for row in forecast(store, horizon=7, folds=0)["history"]["series"]}
    assert (history["2026-03-14"], history["2026-03-18"], history["2026-03-28"]) == (-51.5, -100.03, 0.0)


def test_forecast_of_a_chosen_history(store):
    result = forecast(store, **{"from": "2026-02-01", "to": "2026-03-15"}, horizon=16, level=0.8, folds=1)
    assert (result["history"]["from"], result["history"]["to"]) == ("2026-02-01", "2026-03-15")
    assert len(result["history"]["series"]) == 43 and result["level"] == 0.8
    # Leading days without sales are not history: from Feb 12 (O1), the first with any.
    assert result["history_days"] == 32
    assert (result["points"][0]["day"], result["points"][-1]["day"]) == ("2026-03-16", "2026-03-31")
    assert len(result["backtest"]["folds"]) == 1 and result["backtest"]["folds"][0]["end"] == "2026-03-15"
    assert {"mae", "smape", "coverage", "mape_total", "total_coverage"} <= set(result["backtest"])
    table = store.run({"kind": "forecast", "source": "S", "to": "2026-03-15", "horizon": 16}).table()
    assert table.column_names == ["day", "actual", "forecast", "lower", "upper"]
    assert table.num_rows == 45 + 16  # Jan 30 .. Mar 15, then Mar 16 .. 31
    assert table.column("actual")[44].as_py() == 40.0 and table.column("forecast")[44].as_py() is None
    assert table.column("actual")[45].as_py() is None and table.column("forecast")[45].as_py() is not None


# -- targets: attainment by hand, pace = actual + forecast ------------------------------------------


def test_attainment_to_date_by_hand(store):
    """As of Mar 15: net revenue 50 + 102 + 150 + 123.53 + 80 + 206 − 51.50 + 40 = 700.03 of 2000
    (35.0015%); orders O10 O4 O2 O6 O8 O5 O9 = 7 of 20 (35%)."""
    result = targets(store, as_of="2026-03-15", month="2026-03")
    assert result["currency"] == "SAR" and result["as_of"] == "2026-03-15" and result["level"] == 0.9
    (march,) = result["months"]
    assert (march["status"], march["days"], march["elapsed_days"], march["remaining_days"]) == ("current", 31, 15, 16)
    revenue, orders = march["revenue"], march["orders"]
    assert (revenue["target"], revenue["actual"], revenue["attainment"]) == ("2000.00", "700.03", 0.350015)
    assert (orders["target"], orders["actual"], orders["attainment"]) == (20, 7, 0.35)
    # 700.03 / 15 × 31 = 1446.7287; (2000 − 700.03) / 16 = 81.248; 7 / 15 × 31 = 14.4667.
    assert (revenue["straight_line"], revenue["required_daily"]) == ("1446.73", "81.25")
    assert (orders["straight_line"], orders["required_daily"]) == (14.467, 0.812)
    # The same numbers as the metrics query for Mar 1-15.
    totals = store.run({"kind": "metrics", "source": "S", "metrics": ["net_revenue", "orders"], "from": "2026-03-01",
                        "to": "2026-03-15", "granularity": None, "compare": False}).to_dict()["metrics"]  # fmt: skip
    assert [m["value"] for m in totals] == ["700.03", 7]


def test_pace_is_the_actual_plus_the_forecast_of_the_remaining_days(store):
    """As of Mar 15 the projection of March is its 15 days' actual plus the forecast total of Mar
    16-31 from the history up to Mar 15; April's is the forecast's April days alone."""
    result = targets(store, as_of="2026-03-15")
    march, april = result["months"][0], result["months"][1]
    for measure, actual in (("revenue", 700.03), ("orders", 7)):
        rest = forecast(store, measure=measure, to="2026-03-15", horizon=16, folds=0)["total"]
        projected = march[measure]["projected"]
        for key in ("value", "lower", "upper"):
            assert float(projected[key]) == pytest.approx(actual + rest[key], abs=0.006), (measure, key)
        target = 2000 if measure == "revenue" else 20
        assert march[measure]["on_track"] is (float(projected["value"]) >= target)
        assert march[measure]["projected_attainment"]["value"] == pytest.approx(
            float(projected["value"]) / target, abs=1e-4  # projected is rounded
        )
        assert float(march[measure]["expected_daily"]) == pytest.approx(rest["value"] / 16, abs=0.006)

    # April has not started: no actual; its projection is the forecast's Apr 1-30 window, whose
    # interval comes from the joint distribution of those days.
    assert (april["status"], april["elapsed_days"], april["orders"]) == ("future", 0, None)
    assert april["revenue"]["actual"] is None and april["revenue"]["attainment"] is None
    assert april["revenue"]["target"] == "1500.50"
    history = forecast(store, to="2026-03-15", horizon=1, folds=0)["history"]["series"]
    days = np.array([row["day"] for row in history], dtype="datetime64[D]")
    window = forecast_series(days, np.array([row["value"] for row in history]), horizon=46,
                             nonnegative=False).between(date(2026, 4, 1), date(2026, 4, 30)).total  # fmt: skip
    for key in ("value", "lower", "upper"):
        assert float(april["revenue"]["projected"][key]) == pytest.approx(getattr(window, key), abs=0.006)


def test_past_and_far_months(store):
    """As of the data's last day (Apr 1): March is over, its projection is its final actual; April
    has one day of actual; June 2027 is more than 366 days after the history, so no projection."""
    result = targets(store)
    assert result["as_of"] == "2026-04-01"
    march, april, june = result["months"]
    assert (march["month"], march["status"], march["remaining_days"]) == ("2026-03", "past", 0)
    # March: net 960.03 of 2000 (48.0015%), 12 orders of 20.
    revenue = march["revenue"]
    assert (revenue["actual"], revenue["attainment"], revenue["on_track"]) == ("960.03", 0.480015, False)
    assert revenue["projected"] == {"value": "960.03", "lower": "960.03", "upper": "960.03"}
    assert revenue["required_daily"] is None and revenue["expected_daily"] is None
    assert (march["orders"]["actual"], march["orders"]["attainment"]) == (12, 0.6)
    # April: O14's 60.00 on Apr 1, then 29 days of forecast.
    assert (april["status"], april["elapsed_days"], april["revenue"]["actual"]) == ("current", 1, "60.00")
    assert april["revenue"]["projected"] is not None and april["revenue"]["note"] is None
    assert (june["month"], june["status"], june["revenue"]) == ("2027-06", "future", None)
    assert june["orders"]["projected"] is None and "366 days" in june["orders"]["note"]
    assert june["orders"]["on_track"] is None

    table = store.run({"kind": "targets", "source": "S"}).table()
    assert table.column("month").to_pylist() == ["2026-03", "2026-04", "2027-06"]
    assert table.column("revenue_actual").to_pylist() == [Decimal("960.03"), Decimal("60.00"), None]
    assert table.column("orders_target").to_pylist() == [20, None, 40]


def test_one_month_and_none(store):
    assert [m["month"] for m in targets(store, month="2026-04")["months"]] == ["2026-04"]
    assert targets(store, month="2026-05")["months"] == []


def test_bad_queries_are_clear_errors(store, tmp_path):
    with pytest.raises(InvalidInput, match="YYYY-MM, got '2026-13'"):
        targets(store, month="2026-13")
    with pytest.raises(NotFound, match="no source named 'Nope'"):
        store.run({"kind": "targets", "source": "Nope"})
    with pytest.raises(InvalidInput, match="horizon"):
        forecast(store, horizon=0)
    with pytest.raises(InvalidInput, match="measure"):
        forecast(store, measure="profit")
    empty = build_store(tmp_path, Messages(), name="Empty")
    try:
        with pytest.raises(InvalidInput, match="'Empty' has no orders up to .*nothing to forecast from"):
            empty.run({"kind": "forecast", "source": "Empty"})
        empty.set_target(empty.source("Empty"), "2026-03", revenue=Decimal("100"), orders=None)
        (month,) = empty.run({"kind": "targets", "source": "Empty", "as_of": "2026-03-10"}).to_dict()["months"]
        assert month["revenue"]["actual"] == "0.00" and month["revenue"]["projected"] is None
        assert "no orders" in month["revenue"]["note"]
    finally:
        empty.close()


# -- a known series through the import path ----------------------------------------------------------

WEEKLY = [-150.0, -80.0, 0.0, 40.0, 90.0, 200.0, -100.0]  # by day index modulo 7; they sum to zero


def _expected(t: np.ndarray) -> np.ndarray:
    return 1000 + 5.0 * t + np.array(WEEKLY)[t % 7]


def test_known_trend_and_season_are_forecast_within_their_intervals(tmp_path):
    """140 days of 1000 + 5t + a weekday effect + N(0, 30²) net revenue, as two orders a day (and a
    refund of 20 every tenth day) imported as Segment messages: forecast from the first 126 days,
    the 14 held-out days' expected values all lie in their 90% intervals, and the held-out total
    (from the metrics query) in the total's."""
    n, h = 126, 14
    t = np.arange(n + h)
    noise = np.random.default_rng(5).normal(0, 30, n + h)
    first = date(2026, 1, 5)
    m = Messages()
    who = Person("u1", None, None, None)
    for k in t:
        day = first + timedelta(days=int(k))
        refund = 20 if k % 10 == 0 else 0
        cents = round((_expected(t)[k] + noise[k] + refund) * 100)
        for i, amount in enumerate((cents // 2, cents - cents // 2)):
            m.track(who, f"{day}T0{6 + i}:00:00Z", "Order Completed", server=True, order_id=f"o{k}-{i}",
                    total=f"{amount / 100:.2f}", currency="SAR")  # fmt: skip
        if refund:
            m.track(who, f"{day}T08:00:00Z", "Order Refunded", server=True, order_id=f"o{k}-0", total="20.00",
                    currency="SAR")  # fmt: skip
    s = build_store(tmp_path, m)
    try:
        last = first + timedelta(days=n - 1)
        result = s.run({"kind": "forecast", "source": "S", "to": last.isoformat(), "horizon": h}).to_dict()
        assert result["history_days"] == n and result["model"].endswith(",A)")
        expected = _expected(t[n:])
        for point, value in zip(result["points"], expected, strict=True):
            assert point["lower"] <= value <= point["upper"], point
        assert np.mean(np.abs([p["value"] for p in result["points"]] / expected - 1)) < 0.03
        held_out = s.run({"kind": "metrics", "source": "S", "metrics": ["net_revenue"],
                          "from": (last + timedelta(days=1)).isoformat(), "to": (last + timedelta(days=h)).isoformat(),
                          "granularity": None, "compare": False}).to_dict()["metrics"][0]["value"]  # fmt: skip
        assert result["total"]["lower"] <= float(held_out) <= result["total"]["upper"]
        assert result["backtest"]["coverage"] >= 0.7 and len(result["backtest"]["folds"]) == 3
    finally:
        s.close()


# -- today is not over -------------------------------------------------------------------------------


def test_today_is_not_history(tmp_path):
    """Orders up to now: by default the history and the actuals end yesterday (local), and today is
    one of the month's remaining days, forecast rather than counted half-done."""
    tz = ZoneInfo("Asia/Riyadh")
    now = datetime.now(UTC)
    today = now.astimezone(tz).date()
    m = Messages()
    who = Person("u1", None, None, None)
    for k in range(30):
        at = now - timedelta(days=k, minutes=1)
        m.track(who, at, "Order Completed", server=True, order_id=f"o{k}", total="100", currency="SAR")
    s = build_store(tmp_path, m)
    try:
        month = today.strftime("%Y-%m")
        s.set_target(s.source("S"), month, revenue=None, orders=31)
        result = s.run({"kind": "forecast", "source": "S", "horizon": 3, "folds": 0}).to_dict()
        if datetime.now(tz).date() != today:
            pytest.skip("the day changed while the test ran")
        yesterday = today - timedelta(days=1)
        assert result["history"]["to"] == yesterday.isoformat()
        assert result["points"][0]["day"] == today.isoformat()
        (row,) = s.run({"kind": "targets", "source": "S"}).to_dict()["months"]
        assert row["elapsed_days"] == today.day - 1
        # One order a day for the last 30 days; on the 1st no day of the month is over yet.
        assert row["orders"]["actual"] == (None if today.day == 1 else min(today.day - 1, 29))
    finally:
        s.close()
