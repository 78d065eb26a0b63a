"""Forecasts and target pace (docs/forecasts.md): a known trend and weekly season are recovered,
nominal 90% intervals cover about 90% over many simulated series, the error structure behind the
intervals equals a plain state recursion and statsmodels' own formulas, the backtest equals a plain
recomputation, the daily series equals a plain sum over the orders, and the pace arithmetic equals
figures worked by hand."""

from __future__ import annotations

import json
import math
import time
from datetime import date, timedelta
from decimal import Decimal
from statistics import NormalDist

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masar.engine import forecast as fc
from masar.engine.forecast import (
    MIN_HISTORY,
    Forecast,
    daily_series,
    forecast_series,
    month_pace,
    month_period,
    pace,
)
from masar.engine.metrics import MetricsEngine
from masar.errors import InvalidInput

DAY0 = np.datetime64("2024-01-01")
# The true weekly effects (they sum to zero) of the synthetic series, by day index modulo 7.
PROFILE = np.array([-120.0, -60.0, 0.0, 30.0, 60.0, 150.0, -60.0])
Z90 = NormalDist().inv_cdf(0.95)


def _days(n: int, start: np.datetime64 = DAY0) -> np.ndarray:
    return np.arange(start, start + n)


def _expected(t: np.ndarray) -> np.ndarray:
    """The expected value of day t of the synthetic series: 500 + 3t plus the weekday's effect."""
    return 500 + 3.0 * t + PROFILE[t % 7]


def _synthetic(seed: int, n: int, sd: float = 40.0) -> np.ndarray:
    t = np.arange(n)
    return _expected(t) + np.random.default_rng(seed).normal(0, sd, n)


# -- a known trend and season ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_trend_and_weekly_season_are_recovered(seed):
    """Two years of 500 + 3t + weekly effects + N(0, 40²) noise: every one of the next 30 days'
    forecasts is within 3% of its expected value (2% on average), and the weekly shape of the
    forecast (minus the true trend) matches the true effects. The tolerances hold for the first 60
    seeds, not just these (the worst of 60: 3.0% on a day, 1.9% on average)."""
    n, h = 730, 30
    y = _synthetic(seed, n)
    f = forecast_series(_days(n), y, horizon=h, folds=0)
    t = np.arange(n, n + h)
    relative = np.abs(f.value / _expected(t) - 1)
    assert relative.max() <= 0.03
    assert relative.mean() <= 0.02
    assert f.model.endswith(",A)")  # a seasonal model was chosen
    detrended = f.value[:28] - (500 + 3.0 * t[:28])
    weekly = np.array([detrended[t[:28] % 7 == k].mean() for k in range(7)])
    assert np.corrcoef(weekly, PROFILE)[0, 1] >= 0.99
    assert np.abs(weekly - PROFILE).max() <= 0.25 * np.ptp(PROFILE)


def _ets_series(seed: int, n: int, sd: float = 40.0) -> np.ndarray:
    """A series drawn from the model class itself, ETS(A,A,A) with α = 0.2, β = 0.002, γ = 0.1:
    level 3000 and slope 2 a day that drift, the weekday effects of PROFILE that drift."""
    e = np.random.default_rng(seed).normal(0, sd, n)
    level, slope, season = 3000.0, 2.0, list(PROFILE)
    y = np.empty(n)
    for t in range(n):
        y[t] = level + slope + season[t % 7] + e[t]
        level, slope = level + slope + 0.2 * e[t], slope + 0.002 * e[t]
        season[t % 7] += 0.1 * e[t]
    return y


def _coverage(make, seeds: range, n: int = 240, h: int = 30) -> tuple[float, float, float]:
    """(per-day coverage, total coverage, total coverage had the daily errors been independent)."""
    days, totals, independent = [], [], []
    for seed in seeds:
        y = make(seed, n + h)
        f = forecast_series(_days(n), y[:n], horizon=h, folds=0)
        actual = y[n:]
        days.append((f.lower <= actual) & (actual <= f.upper))
        totals.append(f.total.lower <= actual.sum() <= f.total.upper)
        half = Z90 * math.sqrt(np.sum(f.sd**2))
        independent.append(abs(actual.sum() - f.mean.sum()) <= half)
    return float(np.mean(days)), float(np.mean(totals)), float(np.mean(independent))


def test_nominal_90_percent_intervals_cover_about_90_percent():
    """75 series of each kind, 240 days of history, 30 days ahead, nominal 90%.

    Standard errors, measured over 300 series of each kind: the per-day coverage of 75 series
    (2,250 days, but the 30 days of a series share their errors) has a standard error of about
    0.007 on the trend series and 0.016 on the ETS series; a coverage of totals (75 Bernoulli
    trials) about 0.035–0.045.

    * Trend + season + noise (the series above): the model lets the level drift, the series'
      level never does, so the intervals are a little wide: measured over 300 series, 0.911 per
      day and 0.927 for totals (0.925 and 0.987 for these 75). Asserted: 0.88–0.94 per day (about
      ±4 standard errors around 0.91); totals only from below, at 0.8.
    * Series drawn from the model class: the intervals assume the parameters and the model choice
      known, and both are estimated (a fifth of these series get a model without trend), so they
      under-cover, more at long horizons and for totals (measured over 300: 0.870 per day, 0.823
      for totals). Asserted: 0.84–0.93 per day; 0.70–0.96 for totals, which still separates the
      joint distribution from the two wrong ways to get a total's interval: adding the daily
      bounds covers 0.99, treating the days as independent 0.29.
    """
    day, total, _ = _coverage(_synthetic, range(3000, 3075))
    assert 0.88 <= day <= 0.94
    assert total >= 0.8
    day, total, independent = _coverage(_ets_series, range(3000, 3075))
    assert 0.84 <= day <= 0.93
    assert 0.70 <= total <= 0.96
    assert independent < 0.6


# -- the error structure against plain references ------------------------------------------------


def reference_psi(
    alpha: float, beta: float, gamma: float, phi: float, trend: bool, seasonal: bool, h: int
) -> list[float]:
    """Run the additive ETS recursion from zero states with one unit innovation on day 1 and none
    after; ψ_j is the one-step prediction j days later (ψ_0 = 1, the innovation itself)."""
    if not trend:
        beta, phi = 0.0, 0.0
    if not seasonal:
        gamma = 0.0
    level, slope = 0.0, 0.0
    season = [0.0] * 7  # season[t % 7] holds s_{t−7} when day t is predicted
    out = []
    for t in range(1, h + 1):
        predicted = level + phi * slope + season[t % 7]
        out.append(predicted if t > 1 else 1.0)
        e = 1.0 if t == 1 else 0.0
        level = level + phi * slope + alpha * e
        slope = phi * slope + beta * e
        season[t % 7] = season[t % 7] + gamma * e
    return out


_SPECS = st.sampled_from(fc._CANDIDATES)


@settings(max_examples=200, deadline=None)
@given(
    spec=_SPECS,
    alpha=st.floats(0.0001, 0.9999),
    beta_star=st.floats(0.0001, 0.9999),
    gamma_star=st.floats(0.0001, 0.9999),
    phi=st.floats(0.8, 0.98),
    h=st.integers(1, 60),
)
def test_psi_equals_the_state_recursion(spec, alpha, beta_star, gamma_star, phi, h):
    trend, damped, seasonal = spec
    beta, gamma = beta_star * alpha, gamma_star * (1 - alpha)
    params = {"smoothing_level": alpha}
    if trend:
        params["smoothing_trend"] = beta
    if seasonal:
        params["smoothing_seasonal"] = gamma
    if damped:
        params["damping_trend"] = phi
    expected = reference_psi(alpha, beta, gamma, phi if damped else 1.0, bool(trend), bool(seasonal), h)
    np.testing.assert_allclose(fc._psi(params, h), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spec", fc._CANDIDATES, ids=lambda s: fc._name(*s))
def test_psi_and_variances_match_statsmodels(spec):
    """ψ_h is how far statsmodels' own forecast h days ahead moves when the last observation moves
    by δ (with the parameters held); Σ_{j<h} ψ_j² is statsmodels' closed-form relative variance."""
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    trend, damped, seasonal = spec
    y = _synthetic(3, 200)
    y = y / y.max()
    result = fc._fit_ets(y, trend, damped, seasonal)
    h, delta = 40, 1e-3
    moved = y.copy()
    moved[-1] += delta
    kwargs = dict(error="add", trend=trend, damped_trend=damped, seasonal=seasonal,
                  seasonal_periods=7 if seasonal else None, initialization_method="heuristic")  # fmt: skip
    other = ETSModel(moved, **kwargs).smooth(result.params)
    response = (np.asarray(other.forecast(h)) - np.asarray(result.forecast(h))) / delta
    params = dict(zip(result.model.param_names, map(float, result.params), strict=True))
    psi = fc._psi(params, h + 1)
    np.testing.assert_allclose(response, psi[1:], rtol=1e-6, atol=1e-9)
    relative = result._relative_forecast_variance(np.arange(1, h + 1))
    np.testing.assert_allclose(np.cumsum(psi[:h] ** 2), relative, rtol=1e-9)


def reference_window_variance(psi: list[float], sigma: float, a: int, b: int) -> float:
    """Var(Σ_{h=a..b} e_h) from the full covariance matrix, e_h = Σ_{k=1..h} ψ_{h−k} ε_k."""
    weights = [[psi[h - k] if k <= h else 0.0 for k in range(1, b + 1)] for h in range(1, b + 1)]
    total = 0.0
    for i in range(a, b + 1):
        for j in range(a, b + 1):
            total += sigma**2 * sum(weights[i - 1][k] * weights[j - 1][k] for k in range(b))
    return total


@settings(max_examples=200, deadline=None)
@given(
    tail=st.lists(st.floats(-2, 2, allow_nan=False), min_size=0, max_size=30),
    sigma=st.floats(0.01, 100),
    data=st.data(),
)
def test_window_sd_equals_the_covariance_matrix(tail, sigma, data):
    psi = [1.0, *tail]
    b = data.draw(st.integers(1, len(psi)))
    a = data.draw(st.integers(1, b))
    expected = reference_window_variance(psi, sigma, a, b)
    assert fc._sum_sd(np.array(psi), sigma, a, b) ** 2 == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_total_interval_comes_from_the_joint_distribution():
    """The total's interval is mean ∓ z·√(1ᵀΣ1) with Σ the reference covariance of the daily errors
    (narrower than adding the daily bounds); statsmodels' own simulation of the fitted model agrees
    with the variance of the total; and a window of the forecast (``between``) gets the same
    treatment."""
    n, h = 400, 60
    y = _synthetic(7, n)
    f = forecast_series(_days(n), y, horizon=h, folds=0)
    variance = reference_window_variance(list(f.psi), f.sigma, 1, h)
    assert f.total.value == pytest.approx(f.mean.sum())
    assert f.total.lower == pytest.approx(f.mean.sum() - Z90 * math.sqrt(variance), rel=1e-9)
    assert f.total.upper == pytest.approx(f.mean.sum() + Z90 * math.sqrt(variance), rel=1e-9)
    assert f.total.upper - f.total.lower < (f.upper - f.lower).sum()
    np.testing.assert_allclose(
        f.sd**2, [reference_window_variance(list(f.psi), f.sigma, d, d) for d in range(1, h + 1)]
    )

    window = f.between(fc._day(f.days[10]), fc._day(f.days[39]))
    assert window.horizon == 30 and window.days[0] == f.days[10]
    part = reference_window_variance(list(f.psi), f.sigma, 11, 40)
    assert window.total.upper == pytest.approx(f.mean[10:40].sum() + Z90 * math.sqrt(part), rel=1e-9)
    with pytest.raises(InvalidInput, match="covers"):
        f.between(fc._day(f.days[0]) - timedelta(days=1), fc._day(f.days[5]))
    with pytest.raises(InvalidInput, match="covers"):
        f.between(fc._day(f.days[5]), fc._day(f.days[-1]) + timedelta(days=1))

    # statsmodels' simulation of the same fitted model (its noise scale is √(SSE/n), ours
    # √(SSE/(n − k)); k = 3 smoothing parameters for the chosen ETS(A,A,A)).
    scale = y.max()
    trend, damped, seasonal = ("add", f.model == "ETS(A,Ad,A)", "add")
    result = fc._fit_ets(y / scale, trend, damped, seasonal)
    paths = (
        np.asarray(result.simulate(h, anchor="end", repetitions=20_000, rng=np.random.default_rng(11)))
        * scale
    )
    sums = paths.sum(axis=0)
    k = len(result.params)
    expected = ((f.total.upper - f.total.value) / Z90) ** 2 * (n - k) / n
    # The variance of 20,000 normal draws has a relative standard error of √(2/20000) = 1%.
    assert np.var(sums) == pytest.approx(expected, rel=0.05)
    assert np.mean(sums) == pytest.approx(f.mean.sum(), rel=1e-3)


# -- the backtest against a plain recomputation -------------------------------------------------


def reference_backtest(y: list[float], horizon: int, level: float) -> dict:
    """Refit on the history without its last k·h days (k = 1, 2, 3 while at least 14 days remain)
    and score the next h days, by plain loops."""
    first = next(i for i, v in enumerate(y) if v != 0)
    y = y[first:]
    folds = []
    for k in (1, 2, 3):
        cut = len(y) - k * horizon
        if cut < MIN_HISTORY:
            break
        f = forecast_series(_days(cut), np.array(y[:cut]), horizon=horizon, level=level, folds=0)
        actual = y[cut : cut + horizon]
        folds.insert(0, (actual, list(f.value), list(f.lower), list(f.upper), f.total))
    if not folds:
        return {"folds": 0}
    days = [(a, v, lo, hi) for actual, value, lower, upper, _ in folds
            for a, v, lo, hi in zip(actual, value, lower, upper, strict=True)]  # fmt: skip
    mae = sum(abs(a - v) for a, v, _, _ in days) / len(days)
    smape = sum(
        (2 * abs(v - a) / (abs(a) + abs(v)) if abs(a) + abs(v) > 0 else 0.0) for a, v, _, _ in days
    ) / len(days)
    coverage = sum(1 for a, _, lo, hi in days if lo <= a <= hi) / len(days)
    errors = [abs(sum(actual) - total.value) / sum(actual) for actual, *_, total in folds if sum(actual) > 0]
    covered = [total.lower <= sum(actual) <= total.upper for actual, *_, total in folds]
    return {
        "folds": len(folds), "mae": mae, "smape": smape, "coverage": coverage,
        "mape_total": sum(errors) / len(errors) if errors else None, "total_coverage": sum(covered) / len(covered),
        "forecast_totals": [total.value for *_, total in folds],
    }  # fmt: skip


def _assert_backtest_equals_reference(y: np.ndarray, horizon: int, level: float) -> None:
    f = forecast_series(_days(len(y)), y, horizon=horizon, level=level)
    expected = reference_backtest(list(map(float, y)), horizon, level)
    bt = f.backtest
    assert len(bt.folds) == expected["folds"]
    if not bt.folds:
        assert bt.mae is None and bt.coverage is None and bt.mape_total is None
        return
    assert bt.mae == pytest.approx(expected["mae"], rel=1e-9, abs=1e-12)
    assert bt.smape == pytest.approx(expected["smape"], rel=1e-9, abs=1e-12)
    assert bt.coverage == pytest.approx(expected["coverage"])
    assert bt.total_coverage == pytest.approx(expected["total_coverage"])
    if expected["mape_total"] is None:
        assert bt.mape_total is None
    else:
        assert bt.mape_total == pytest.approx(expected["mape_total"], rel=1e-9, abs=1e-12)
    assert [x.total.value for x in bt.folds] == pytest.approx(expected["forecast_totals"], rel=1e-9, abs=1e-9)
    # Consecutive, oldest first, ending the day before the forecast starts.
    assert bt.folds[-1].end == fc._day(f.days[0]) - timedelta(days=1)
    for earlier, later in zip(bt.folds, bt.folds[1:], strict=False):
        assert later.start == earlier.end + timedelta(days=1)


def test_backtest_equals_a_plain_recomputation():
    _assert_backtest_equals_reference(_synthetic(5, 150), 30, 0.9)
    _assert_backtest_equals_reference(_synthetic(6, 400), 90, 0.8)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(st.one_of(st.just(0.0), st.floats(0, 1000)), min_size=14, max_size=90),
    horizon=st.integers(1, 25),
)
def test_backtest_equals_a_plain_recomputation_on_any_series(values, horizon):
    values[0] = values[0] or 1.0  # the history starts with a sale: no day is dropped
    _assert_backtest_equals_reference(np.array(values), horizon, 0.9)


@pytest.mark.parametrize(
    ("n", "horizon", "folds"),
    [(43, 30, 0), (44, 30, 1), (73, 30, 1), (74, 30, 2), (104, 30, 3), (730, 90, 3)],
)
def test_backtest_folds_need_14_days_of_history(n, horizon, folds):
    f = forecast_series(_days(n), _synthetic(1, n), horizon=horizon)
    assert len(f.backtest.folds) == folds
    assert all(x.history_days >= MIN_HISTORY for x in f.backtest.folds)


# -- the daily series against a plain sum -------------------------------------------------------

# The columns of the sales facts (masar/engine/facts.py) that the metrics engine's orders and
# refunds families read; the series is computed by that engine.
_FACTS_DDL = [
    """CREATE TABLE orders (order_key VARCHAR, person BIGINT, ts TIMESTAMPTZ, day DATE,
    value DECIMAL(18,3), discount DECIMAL(18,3), items BIGINT, refunded DECIMAL(18,3), cancelled BOOLEAN,
    order_number INTEGER, channel VARCHAR, campaign VARCHAR, device_type VARCHAR, country VARCHAR,
    session_id BIGINT, previous_ts TIMESTAMPTZ)""",
    """CREATE TABLE refunds (order_key VARCHAR, person BIGINT, ts TIMESTAMPTZ, day DATE, value DECIMAL(18,3),
    cancelled BOOLEAN)""",
    "CREATE TABLE people (person BIGINT, first_seen TIMESTAMPTZ, first_channel VARCHAR, first_campaign VARCHAR)",
]
_START = date(2026, 3, 1)


def _orders_db(
    rows: list[tuple[date, Decimal | None, bool]], refunds: list[tuple[date, Decimal | None]] = (),
    linked: bool = True,
) -> MetricsEngine:
    """Orders (day, value, cancelled) and refunds (day, value) on a metrics engine's cursor. With
    ``linked``, refund i is of order i (when there is one), so it is a cancelled order's when that
    order is; else every refund is of an order that is not cancelled."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for ddl in _FACTS_DDL:
        con.execute(ddl)
    if rows:
        con.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?, ?, 0, 1, 0, ?, NULL, 'direct', NULL, 'desktop', 'SA', NULL, NULL)",
            [(f"o{i}", i % 7, f"{d} 12:00:00+00", d, v, c) for i, (d, v, c) in enumerate(rows)],
        )
    if refunds:
        con.executemany(
            "INSERT INTO refunds VALUES (?, ?, ?, ?, ?, ?)",
            [(f"o{i}", i % 7, f"{d} 13:00:00+00", d, v, linked and i < len(rows) and rows[i][2])
             for i, (d, v) in enumerate(refunds)],
        )  # fmt: skip
    return MetricsEngine(con, currency="SAR", tz="UTC", churn_days=90)


_ORDER = st.tuples(
    st.integers(0, 30).map(lambda k: _START + timedelta(days=k)),
    st.one_of(st.none(), st.decimals(0, 10_000, places=3, allow_nan=False, allow_infinity=False)),
    st.booleans(),
)
_REFUND = st.tuples(
    st.integers(0, 30).map(lambda k: _START + timedelta(days=k)),
    st.one_of(st.none(), st.decimals(0, 10_000, places=3, allow_nan=False, allow_infinity=False)),
)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(_ORDER, max_size=60),
    refunds=st.lists(_REFUND, max_size=10),
    first=st.integers(0, 30),
    length=st.integers(1, 31),
)
def test_daily_series_equals_a_plain_sum(rows, refunds, first, length):
    """Revenue is net: the day's orders that are not cancelled less the day's refunds of orders that
    are not cancelled, values that could not be converted (NULL) adding nothing."""
    engine = _orders_db(rows, refunds)
    start = _START + timedelta(days=first)
    end = start + timedelta(days=length - 1)
    for metric in ("revenue", "orders"):
        days, values = daily_series(engine, metric, start, end)
        assert len(days) == length and days[0] == np.datetime64(start) and days[-1] == np.datetime64(end)
        for d, v in zip(days, values, strict=True):
            kept = [value for day, value, cancelled in rows if day == fc._day(d) and not cancelled]
            refunded = [value for i, (day, value) in enumerate(refunds)
                        if day == fc._day(d) and value is not None and not (i < len(rows) and rows[i][2])]  # fmt: skip
            if metric == "orders":
                assert v == len(kept)
            else:
                net = sum((x for x in kept if x is not None), Decimal(0)) - sum(refunded, Decimal(0))
                assert v == pytest.approx(float(net), abs=1e-6)
        exact = fc.total(engine, metric, start, end)
        assert float(exact) == pytest.approx(values.sum(), abs=1e-6)
        assert isinstance(exact, Decimal if metric == "revenue" else int)


def test_daily_series_rejects_bad_input():
    engine = _orders_db([])
    with pytest.raises(InvalidInput, match="metric"):
        daily_series(engine, "profit", _START, _START)
    with pytest.raises(InvalidInput, match="starts after"):
        daily_series(engine, "orders", _START, _START - timedelta(days=1))


# -- target pace against figures worked by hand -------------------------------------------------


def _flat_forecast(days: int, daily: float, sd: float, first: date = date(2026, 12, 11)) -> Forecast:
    """A forecast of ``daily`` per day with independent N(0, sd²) errors (ψ = 1, 0, 0, ...)."""
    return Forecast(
        model="test", level=0.9, history_days=100, days=_days(days, np.datetime64(first)),
        mean=np.full(days, daily), sd=np.full(days, sd), parameters={}, aicc=None, backtest=None,
        psi=np.r_[1.0, np.zeros(days - 1)], sigma=sd,
    )  # fmt: skip


def test_pace_arithmetic():
    """December: 31 days, 10 elapsed with 180,000 sold; the forecast of the other 21 days is 10,000
    a day with independent errors of standard deviation 100.

    projected = 180,000 + 21 × 10,000 = 390,000; the total's sd = 100·√21 = 458.25757, and
    z(0.95) = 1.6448536, so the 90% half-width is 753.76663: 389,246.23337 to 390,753.76663.
    attainment = 180,000 / 500,000 = 0.36; projected attainment 390,000 / 500,000 = 0.78
    (0.77849247 to 0.78150753); straight line = 180,000 / 10 × 31 = 558,000 (1.116 of target);
    required per remaining day = (500,000 − 180,000) / 21 = 15,238.0952; expected = 10,000.
    """
    p = pace(Decimal("500000"), 180_000.0, 10, _flat_forecast(21, 10_000.0, 100.0), 31)
    assert p.attainment == pytest.approx(0.36)
    assert p.projected.value == pytest.approx(390_000.0)
    assert p.projected.lower == pytest.approx(389_246.23337, abs=1e-4)
    assert p.projected.upper == pytest.approx(390_753.76663, abs=1e-4)
    assert p.projected_attainment.value == pytest.approx(0.78)
    assert p.projected_attainment.lower == pytest.approx(0.77849247, abs=1e-8)
    assert p.projected_attainment.upper == pytest.approx(0.78150753, abs=1e-8)
    assert p.straight_line == pytest.approx(558_000.0)
    assert p.required_daily == pytest.approx(15_238.0952, abs=1e-4)
    assert p.expected_daily == pytest.approx(10_000.0)
    d = p.to_dict()
    assert d["target"] == "500000" and d["straight_line_attainment"] == pytest.approx(1.116)
    assert d["remaining_days"] == 21 and d["level"] == 0.9
    json.dumps(d)
    table = p.table()
    assert table.num_rows == 1 and table.column("projected_value")[0].as_py() == pytest.approx(390_000.0)


def test_pace_edges():
    # Orders target, nothing elapsed yet: no straight line, the projection is the forecast alone.
    p = pace(300, 0.0, 0, _flat_forecast(30, 9.0, 2.0), 30)
    assert p.attainment == 0 and p.straight_line is None and p.projected.value == pytest.approx(270.0)
    assert p.required_daily == pytest.approx(10.0) and p.to_dict()["target"] == 300
    # Target already met: nothing more is required.
    assert pace(100, 150.0, 20, _flat_forecast(10, 5.0, 1.0), 30).required_daily == 0.0
    # The period is over: the projection is the actual, exactly.
    over = pace(Decimal("1000.50"), 1200.0, 31, None, 31)
    assert over.projected.value == over.projected.lower == over.projected.upper == 1200.0
    assert over.required_daily is None and over.remaining_days == 0
    assert over.attainment == pytest.approx(1200 / 1000.5)
    # No forecast (too little history): attainment and the straight line only, with the reason.
    none = pace(1000, 300.0, 10, None, 30, note="not enough history")
    assert none.projected is None and none.projected_attainment is None and none.expected_daily is None
    assert none.straight_line == pytest.approx(900.0) and none.to_dict()["note"] == "not enough history"
    assert none.table().column("projected_value")[0].as_py() is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 10.0, 5, None, 30), "positive"),
        ((Decimal("-1"), 10.0, 5, None, 30), "positive"),
        ((Decimal("NaN"), 10.0, 5, None, 30), "positive"),
        ((True, 10.0, 5, None, 30), "positive"),
        ((100, 10.0, 31, None, 30), "elapsed"),
        ((100, 10.0, -1, None, 30), "elapsed"),
        ((100, float("inf"), 5, None, 30), "finite"),
        ((100, float("nan"), 5, None, 30), "finite"),
        ((100, 10.0, 30, _flat_forecast(3, 1.0, 1.0), 30), "over"),
        ((100, 10.0, 5, _flat_forecast(24, 1.0, 1.0), 30), "25 days"),
    ],
)
def test_pace_rejects_bad_input(args, message):
    with pytest.raises(InvalidInput, match=message):
        pace(*args)


def test_month_period():
    feb = month_period("2028-02", date(2028, 2, 11))
    assert (feb.start, feb.end, feb.days, feb.elapsed_days, feb.remaining_days) == (
        date(2028, 2, 1),
        date(2028, 2, 29),
        29,
        10,
        19,
    )
    dec = month_period("2026-12", date(2026, 12, 1))
    assert dec.end == date(2026, 12, 31) and dec.elapsed_days == 0 and dec.remaining_days == 31
    assert month_period("2026-12", date(2027, 1, 5)).elapsed_days == 31
    assert month_period("2026-12", date(2026, 11, 5)).elapsed_days == 0
    assert month_period("2026-12", date(2026, 12, 31)).elapsed_days == 30
    for bad in ("2026-13", "2026/12", "december", "2026-00", ""):
        with pytest.raises(InvalidInput, match="YYYY-MM"):
            month_period(bad, date(2026, 12, 1))


def _store_orders(first: date, last: date) -> tuple[MetricsEngine, dict[date, float], dict[date, float]]:
    """Two orders a day (one more on Saturdays) of a value growing with the day, plus one cancelled
    order and one unconvertible (NULL value) order a day, and a refund of 25 every Monday; returns
    the net revenue and the orders by day."""
    rows, refunds, revenue, orders = [], [], {}, {}
    d = first
    while d <= last:
        k = (d - first).days
        values = [Decimal(100 + k), Decimal(50 + k % 7 * 10)] + ([Decimal(300)] if d.weekday() == 5 else [])
        rows += [(d, v, False) for v in values] + [(d, Decimal(999), True), (d, None, False)]
        refunds += [(d, Decimal(25))] if d.weekday() == 0 else []
        revenue[d] = float(sum(values)) - (25.0 if d.weekday() == 0 else 0.0)
        orders[d] = len(values) + 1.0
        d += timedelta(days=1)
    return _orders_db(rows, refunds, linked=False), revenue, orders


def test_month_pace_reads_the_store():
    as_of = date(2026, 12, 11)
    con, revenue, counts = _store_orders(
        date(2026, 7, 1), date(2026, 12, 20)
    )  # orders after as_of are ignored
    p = month_pace(con, "revenue", "2026-12", Decimal("150000"), as_of)
    actual = sum(v for d, v in revenue.items() if date(2026, 12, 1) <= d < as_of)
    assert p.actual_to_date == pytest.approx(actual) and p.elapsed_days == 10 and p.period_days == 31
    history_days = [date(2026, 7, 1) + timedelta(days=i) for i in range((as_of - date(2026, 7, 1)).days)]
    expected = forecast_series(_days(len(history_days), np.datetime64("2026-07-01")),
                               np.array([revenue[d] for d in history_days]), horizon=21, nonnegative=False)  # fmt: skip
    assert p.projected.value == pytest.approx(actual + expected.total.value)
    assert p.projected.upper == pytest.approx(actual + expected.total.upper)
    assert isinstance(p.actual_to_date, Decimal)  # exact, as the metrics query shows it

    orders = month_pace(con, "orders", "2026-12", 200, as_of)
    saturdays = sum(1 for i in range(10) if date(2026, 12, 1 + i).weekday() == 5)
    assert orders.actual_to_date == 3 * 10 + saturdays  # NULL-valued orders count; cancelled do not

    # Several months from one forecast: the same paces as one month at a time.
    both = fc.month_paces(con, "orders", {"2026-12": 200, "2027-01": 300}, as_of)
    assert both["2026-12"] == orders

    # A month that starts after as_of: the forecast's days of that month only.
    later = month_pace(con, "orders", "2027-01", 300, as_of)
    full = forecast_series(_days(len(history_days), np.datetime64("2026-07-01")),
                           np.array([counts[d] for d in history_days]), horizon=(date(2027, 1, 31) - as_of).days + 1)  # fmt: skip
    window = full.between(date(2027, 1, 1), date(2027, 1, 31))
    assert later.elapsed_days == 0 and later.actual_to_date == 0
    assert later.projected.value == pytest.approx(window.total.value)
    assert later.projected.lower == pytest.approx(window.total.lower)
    assert both["2027-01"].projected.value == pytest.approx(later.projected.value, rel=1e-12)

    # A month already over: the actual, no forecast.
    past = month_pace(con, "revenue", "2026-08", Decimal("1"), as_of)
    assert past.projected.value == pytest.approx(sum(v for d, v in revenue.items() if d.month == 8))
    assert past.level is None


def test_month_pace_without_enough_history():
    con, _, _ = _store_orders(date(2026, 12, 5), date(2026, 12, 20))
    p = month_pace(con, "revenue", "2026-12", Decimal("1000"), date(2026, 12, 11))
    assert p.projected is None and "14 days" in p.note and p.actual_to_date > 0
    empty = month_pace(_orders_db([]), "orders", "2026-12", 10, date(2026, 12, 11))
    assert empty.projected is None and "no orders" in empty.note and empty.actual_to_date == 0
    far = month_pace(con, "orders", "2028-01", 10, date(2026, 12, 11))
    assert far.projected is None and "366" in far.note
    # The caller's own mistakes are errors, not notes.
    with pytest.raises(InvalidInput, match="level"):
        month_pace(con, "orders", "2026-12", 10, date(2026, 12, 11), level=1.5)
    with pytest.raises(InvalidInput, match="at least 14"):
        month_pace(con, "orders", "2026-12", 10, date(2026, 12, 11), history_days=7)
    with pytest.raises(InvalidInput, match="metric"):
        month_pace(_orders_db([]), "profit", "2026-11", 10, date(2026, 12, 11))


# -- short, empty, constant and zero series ----------------------------------------------------


def test_too_short_or_empty_history_is_an_error_naming_the_minimum():
    with pytest.raises(InvalidInput, match="at least 14 days") as err:
        forecast_series(_days(0), np.array([]), horizon=7)
    assert err.value.code == "invalid_query"
    with pytest.raises(InvalidInput, match="at least 14 days.*got 13"):
        forecast_series(_days(13), _synthetic(0, 13), horizon=7)
    # Days before the first sale are not history: 30 days given, sales from the 20th.
    values = np.r_[np.zeros(19), _synthetic(0, 11)]
    with pytest.raises(InvalidInput, match="got 11"):
        forecast_series(_days(30), values, horizon=7)


@pytest.mark.parametrize("n", [14, 20])
def test_short_history_has_no_season(n):
    f = forecast_series(_days(n), _synthetic(2, n), horizon=10)
    assert f.model.endswith(",N)") and f.history_days == n
    assert np.all(np.isfinite(f.mean)) and np.all(f.lower <= f.value) and np.all(f.value <= f.upper)


def test_three_weeks_allow_a_season():
    f = forecast_series(_days(21), _synthetic(2, 21, sd=5.0), horizon=7)
    assert f.model.endswith(",A)")


@pytest.mark.parametrize("level", [0.0, 5.0, 123.25])
def test_constant_history_forecasts_the_constant_with_no_width(level):
    f = forecast_series(_days(80), np.full(80, level), horizon=30)
    assert f.model == "constant" and f.history_days == 80 and len(f.backtest.folds) == 2
    assert np.all(f.value == level) and np.all(f.lower == level) and np.all(f.upper == level)
    assert f.total == fc.Interval(30 * level, 30 * level, 30 * level)
    assert f.backtest.mae == 0 and f.backtest.coverage == 1
    if level == 0:
        assert f.backtest.mape_total is None  # every fold sold nothing: no percentage error
    json.dumps(f.to_dict())


def test_missing_days_are_zero_and_leading_zeros_are_dropped():
    y = _synthetic(4, 60)
    y[[5, 17, 33]] = 0.0
    kept = np.flatnonzero(y)
    sparse = forecast_series(_days(60)[kept], y[kept], horizon=14)
    dense = forecast_series(_days(60), y, horizon=14)
    np.testing.assert_array_equal(sparse.mean, dense.mean)
    assert sparse.days[0] == DAY0 + 60
    padded = forecast_series(_days(70, DAY0 - 10), np.r_[np.zeros(10), y], horizon=14)
    assert padded.history_days == 60
    np.testing.assert_allclose(padded.mean, dense.mean)


@pytest.mark.parametrize(
    ("days", "values", "kwargs", "message"),
    [
        (_days(30), -np.ones(30), {}, "negative"),
        (_days(30), np.r_[np.ones(29), np.nan], {}, "finite"),
        (np.r_[_days(29), DAY0], np.ones(30), {}, "once"),
        (_days(30), np.ones(29), {}, "same length"),
        (["not a day"] * 30, np.ones(30), {}, "dates"),
        (np.r_[_days(29), np.datetime64("NaT")], np.ones(30), {}, "dates"),
        (_days(30), np.ones(30), {"horizon": 0}, "horizon"),
        (_days(30), np.ones(30), {"horizon": 367}, "horizon"),
        (_days(30), np.ones(30), {"horizon": 7.5}, "horizon"),
        (_days(30), np.ones(30), {"level": 1.0}, "level"),
        (_days(30), np.ones(30), {"level": 0}, "level"),
        (_days(30), np.ones(30), {"folds": -1}, "folds"),
    ],
)
def test_bad_input_is_a_clear_error(days, values, kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        forecast_series(days, values, **({"horizon": 7} | kwargs))


def test_forecasts_cannot_go_below_zero():
    """A store selling 20 fewer a day: the model's means fall below zero within the horizon; the
    reported values and bounds are clipped at zero, the means are kept."""
    n = 60
    y = np.maximum(1300 - 20.0 * np.arange(n) + np.random.default_rng(3).normal(0, 15, n), 0)
    f = forecast_series(_days(n), y, horizon=60)
    assert (f.mean < 0).any()
    assert np.all(f.value >= 0) and np.all(f.lower >= 0) and np.all(f.upper >= 0)
    assert np.all(f.value[f.mean < 0] == 0)
    assert f.total.lower >= 0


def test_net_revenue_is_not_clipped():
    """Refunds take some days' net revenue below zero: with ``nonnegative=False`` negative days are
    history like any other and nothing is clipped; the fit is the same as for a clipped series."""
    n = 90
    y = 30 + np.random.default_rng(8).normal(0, 40, n)
    assert (y < 0).sum() > 10
    with pytest.raises(InvalidInput, match="negative"):
        forecast_series(_days(n), y, horizon=30)
    f = forecast_series(_days(n), y, horizon=30, nonnegative=False)
    assert f.history_days == n
    np.testing.assert_array_equal(f.value, f.mean)
    assert (f.lower < 0).all()
    assert f.total.value == pytest.approx(f.mean.sum())
    assert any((fold.forecast < 0).any() or (fold.lower < 0).any() for fold in f.backtest.folds)
    positive = _synthetic(8, n)
    clipped = forecast_series(_days(n), positive, horizon=30, folds=0)
    signed = forecast_series(_days(n), positive, horizon=30, folds=0, nonnegative=False)
    assert signed.model == clipped.model
    np.testing.assert_array_equal(signed.mean, clipped.mean)


# -- any series ----------------------------------------------------------------------------------

_SERIES = st.lists(st.one_of(st.just(0.0), st.floats(0, 50), st.floats(0, 1e6)), min_size=14, max_size=120)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=_SERIES, horizon=st.integers(1, 40), level=st.floats(0.5, 0.99))
def test_any_series_gives_a_sound_forecast(values, horizon, level):
    values[0] = values[0] or 1.0
    f = forecast_series(_days(len(values)), np.array(values), horizon=horizon, level=level)
    assert f.horizon == horizon and len(f.table()) == horizon
    for array in (f.mean, f.sd, f.value, f.lower, f.upper):
        assert np.all(np.isfinite(array))
    assert np.all((0 <= f.lower) & (f.lower <= f.value) & (f.value <= f.upper))
    total = f.total
    assert 0 <= total.lower <= total.value <= total.upper
    if np.all(f.mean >= 0):
        assert total.value == pytest.approx(f.value.sum(), rel=1e-9, abs=1e-9)
    json.dumps(f.to_dict())


@settings(max_examples=15, deadline=None)
@given(factor=st.floats(1e-3, 1e6), seed=st.integers(0, 100))
def test_forecast_scales_with_the_data(factor, seed):
    """Revenue in cents or in thousands: the same model and the forecast times the factor."""
    y = np.abs(_synthetic(seed, 60, sd=80.0))
    a = forecast_series(_days(60), y, horizon=14, folds=0)
    b = forecast_series(_days(60), y * factor, horizon=14, folds=0)
    assert a.model == b.model
    np.testing.assert_allclose(b.mean, a.mean * factor, rtol=1e-6)
    np.testing.assert_allclose(b.sd, a.sd * factor, rtol=1e-6)


def test_fit_on_scaled_data_is_statsmodels_on_the_data():
    """The fit runs on y / max(y); its parameters applied to the data itself by statsmodels give
    the same forecast and the reported AICc."""
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    y = _synthetic(12, 300) * 37.5
    f = forecast_series(_days(300), y, horizon=20, folds=0)
    assert f.model == "ETS(A,A,A)"
    p = f.parameters
    result = ETSModel(y, error="add", trend="add", seasonal="add", seasonal_periods=7,
                      initialization_method="heuristic").smooth(np.array([p["alpha"], p["beta"], p["gamma"]]))  # fmt: skip
    np.testing.assert_allclose(f.mean, np.asarray(result.forecast(20)), rtol=1e-9)
    assert f.aicc == pytest.approx(result.aicc, rel=1e-9)
    assert p["sigma"] == pytest.approx(math.sqrt(result.sse / (300 - 3)), rel=1e-9)


def test_to_dict_and_table():
    f = forecast_series(_days(100), _synthetic(9, 100), horizon=30)
    d = f.to_dict()
    assert set(d) >= {"model", "level", "history_days", "points", "total", "backtest"}
    assert d["points"][0] == {"day": "2024-04-10", "value": pytest.approx(f.value[0], abs=1e-3),
                              "lower": pytest.approx(f.lower[0], abs=1e-3), "upper": pytest.approx(f.upper[0], abs=1e-3)}  # fmt: skip
    assert set(d["backtest"]) >= {"mae", "mape_total", "smape", "coverage", "total_coverage", "folds"}
    assert len(d["backtest"]["folds"]) == 2
    json.dumps(d)
    table = f.table()
    assert table.schema.field("day").type == pa.date32() and table.column_names == [
        "day",
        "value",
        "lower",
        "upper",
    ]
    assert f.backtest.table().num_rows == 2


def test_two_years_ninety_days_with_backtest_is_fast():
    """docs/forecasts.md: the figure reported there. The bound is the issue's 2 s; the best of three
    runs discounts a busy machine."""
    y = _synthetic(0, 730)
    forecast_series(_days(730), y, horizon=90)  # imports statsmodels
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        f = forecast_series(_days(730), y, horizon=90)
        best = min(best, time.perf_counter() - started)
    assert len(f.backtest.folds) == 3
    assert best < 2.0
