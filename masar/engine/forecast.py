"""Revenue and order forecasts with prediction intervals and a rolling-origin backtest, and the
pace of a monthly target (docs/forecasts.md has every definition).

The model is exponential smoothing in its state-space form (ETS, statsmodels' ``ETSModel``) with
additive errors: a level, optionally a trend (plain or damped) and optionally a weekly seasonal
pattern, all additive. The candidates are fitted to the history and the one with the lowest AICc
is kept. Additive-error ETS is a linear Gaussian model, so the forecast errors of the coming days
are jointly normal with a covariance that follows from the fitted smoothing parameters: the
per-day intervals and the interval of the horizon's total are both exact for the model, without
simulation, so the result is deterministic.

Every forecast comes with a backtest of the same procedure (model choice included): refit on the
history without its last k·h days and compare with the h days that follow, for up to three folds.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from masar.engine.metrics import METRICS, MetricsEngine, Window
from masar.errors import InvalidInput

MIN_HISTORY = 14  # days; below two weeks neither a level nor a trend is worth estimating
MIN_SEASONAL = 21  # days; three full weeks before a weekly pattern is a candidate
MAX_HORIZON = 366
MAX_FOLDS = 3
SEASON = 7  # weekly seasonality of daily store data
# (trend, damped, seasonal) in the order ties are broken: the simplest first.
_CANDIDATES: tuple[tuple[str | None, bool, str | None], ...] = (
    (None, False, None),
    ("add", False, None),
    ("add", True, None),
    (None, False, "add"),
    ("add", False, "add"),
    ("add", True, "add"),
)


@dataclass(frozen=True)
class Interval:
    value: float
    lower: float
    upper: float

    def to_dict(self) -> dict[str, float]:
        return {"value": _num(self.value), "lower": _num(self.lower), "upper": _num(self.upper)}


@dataclass(frozen=True)
class Fold:
    """One backtest fold: the model refitted on ``history_days`` days, forecasting ``start``..``end``."""

    start: date
    end: date
    history_days: int
    model: str
    actual: np.ndarray  # the held-out days' values
    forecast: np.ndarray  # the point forecasts of those days (clipped at zero, as reported)
    lower: np.ndarray
    upper: np.ndarray
    total: Interval  # the forecast of the held-out total

    @property
    def actual_total(self) -> float:
        return float(self.actual.sum())

    @property
    def mae(self) -> float:
        return float(np.mean(np.abs(self.actual - self.forecast)))

    @property
    def smape(self) -> float:
        return float(np.mean(_smape_terms(self.actual, self.forecast)))

    @property
    def coverage(self) -> float:
        return float(np.mean((self.lower <= self.actual) & (self.actual <= self.upper)))

    @property
    def total_error(self) -> float | None:
        """|actual total − forecast total| / actual total; None when nothing happened in the fold."""
        actual = self.actual_total
        return abs(actual - self.total.value) / actual if actual > 0 else None

    @property
    def total_covered(self) -> bool:
        return self.total.lower <= self.actual_total <= self.total.upper

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(), "end": self.end.isoformat(), "history_days": self.history_days,
            "model": self.model, "actual_total": _num(self.actual_total), "forecast_total": self.total.to_dict(),
            "mae": _num(self.mae), "smape": _ratio(self.smape), "coverage": _ratio(self.coverage),
            "total_error": _ratio(self.total_error),
        }  # fmt: skip


@dataclass(frozen=True)
class Backtest:
    """Rolling-origin backtest: folds oldest first, each ``horizon`` days long."""

    horizon: int
    folds: list[Fold]

    def _days(self, attr: str) -> np.ndarray:
        return np.concatenate([getattr(f, attr) for f in self.folds])

    @property
    def mae(self) -> float | None:
        """Mean absolute error per day over every held-out day."""
        return float(np.mean(np.abs(self._days("actual") - self._days("forecast")))) if self.folds else None

    @property
    def smape(self) -> float | None:
        """Mean over every held-out day of 2|F − A| / (|A| + |F|) (0 when both are 0); between 0 and 2."""
        return (
            float(np.mean(_smape_terms(self._days("actual"), self._days("forecast")))) if self.folds else None
        )

    @property
    def mape_total(self) -> float | None:
        """Mean over folds of |actual total − forecast total| / actual total (folds with a zero actual
        total left out)."""
        errors = [f.total_error for f in self.folds if f.total_error is not None]
        return float(np.mean(errors)) if errors else None

    @property
    def coverage(self) -> float | None:
        """Share of held-out days whose value lies within the day's interval (bounds included)."""
        if not self.folds:
            return None
        actual = self._days("actual")
        return float(np.mean((self._days("lower") <= actual) & (actual <= self._days("upper"))))

    @property
    def total_coverage(self) -> float | None:
        """Share of folds whose actual total lies within the total's interval."""
        return float(np.mean([f.total_covered for f in self.folds])) if self.folds else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "horizon": self.horizon, "mae": _num(self.mae), "mape_total": _ratio(self.mape_total),
            "smape": _ratio(self.smape), "coverage": _ratio(self.coverage), "total_coverage": _ratio(self.total_coverage),
            "folds": [f.to_dict() for f in self.folds],
        }  # fmt: skip

    def table(self) -> pa.Table:
        f = self.folds
        return pa.table({
            "start": pa.array([x.start for x in f], pa.date32()), "end": pa.array([x.end for x in f], pa.date32()),
            "history_days": pa.array([x.history_days for x in f], pa.int64()), "model": pa.array([x.model for x in f], pa.string()),
            "actual_total": pa.array([x.actual_total for x in f], pa.float64()),
            "forecast_total": pa.array([x.total.value for x in f], pa.float64()),
            "lower": pa.array([x.total.lower for x in f], pa.float64()), "upper": pa.array([x.total.upper for x in f], pa.float64()),
            "mae": pa.array([x.mae for x in f], pa.float64()), "smape": pa.array([x.smape for x in f], pa.float64()),
            "coverage": pa.array([x.coverage for x in f], pa.float64()),
        })  # fmt: skip


@dataclass(frozen=True)
class Forecast:
    """Daily forecasts of ``days`` (the days after the history, or a window of them: ``between``).

    ``mean`` and ``sd`` are the model's normal forecast distribution of each day, before clipping.
    For a ``nonnegative`` series (orders) the reported ``value``, ``lower`` and ``upper`` are
    clipped at zero (a day cannot sell less than nothing); net revenue is not clipped, since
    refunds can take a day below zero. ``total`` is the sum over ``days`` with its interval from
    the joint distribution.
    """

    model: str
    level: float
    history_days: int
    days: np.ndarray  # datetime64[D]
    mean: np.ndarray
    sd: np.ndarray
    parameters: dict[str, float]
    aicc: float | None
    backtest: Backtest | None
    # The joint distribution: the errors' impulse response ψ from the history's end and the
    # one-step standard deviation σ; ``days`` are steps offset+1 .. offset+len(days).
    psi: np.ndarray = field(repr=False)
    sigma: float = 0.0
    offset: int = 0
    nonnegative: bool = True

    @property
    def horizon(self) -> int:
        return len(self.days)

    @property
    def _z(self) -> float:
        return NormalDist().inv_cdf((1 + self.level) / 2)

    def _clip(self, x: Any) -> Any:
        return np.maximum(x, 0.0) if self.nonnegative else x

    @property
    def value(self) -> np.ndarray:
        return self._clip(self.mean)

    @property
    def lower(self) -> np.ndarray:
        return self._clip(self.mean - self._z * self.sd)

    @property
    def upper(self) -> np.ndarray:
        return self._clip(self.mean + self._z * self.sd)

    @property
    def total(self) -> Interval:
        mean = float(self.mean.sum())
        sd = _sum_sd(self.psi, self.sigma, self.offset + 1, self.offset + self.horizon)
        z = self._z
        return Interval(*(float(self._clip(x)) for x in (mean, mean - z * sd, mean + z * sd)))

    def between(self, first: date, last: date) -> Forecast:
        """The forecast of the days first..last only (a target's month that starts after today)."""
        day0 = _day(self.days[0])
        i, j = (first - day0).days, (last - day0).days + 1
        if not 0 <= i < j <= self.horizon:
            raise InvalidInput(
                f"the forecast covers {day0} to {_day(self.days[-1])}, not {first} to {last}",
                code="invalid_query",
            )
        return replace(
            self, days=self.days[i:j], mean=self.mean[i:j], sd=self.sd[i:j], offset=self.offset + i
        )

    def to_dict(self) -> dict[str, Any]:
        value, lower, upper = self.value, self.lower, self.upper
        return {
            "model": self.model,
            "level": self.level,
            "history_days": self.history_days,
            "parameters": {k: round(v, 6) for k, v in self.parameters.items()},
            "aicc": None if self.aicc is None else round(self.aicc, 3),
            "intervals": "normal, analytic; total from the summed covariance of the daily errors",
            "points": [
                {"day": _day(d).isoformat(), "value": _num(v), "lower": _num(lo), "upper": _num(hi)}
                for d, v, lo, hi in zip(self.days, value, lower, upper, strict=True)
            ],
            "total": self.total.to_dict(),
            "backtest": None if self.backtest is None else self.backtest.to_dict(),
        }

    def table(self) -> pa.Table:
        return pa.table({
            "day": pa.array(self.days.astype("datetime64[D]"), pa.date32()),
            "value": pa.array(self.value, pa.float64()),
            "lower": pa.array(self.lower, pa.float64()),
            "upper": pa.array(self.upper, pa.float64()),
        })  # fmt: skip


# -- the forecast ---------------------------------------------------------------------------------


def forecast_series(
    days: np.ndarray,
    values: np.ndarray,
    *,
    horizon: int,
    level: float = 0.9,
    folds: int = MAX_FOLDS,
    nonnegative: bool = True,
) -> Forecast:
    """Forecast the ``horizon`` days after the last of ``days``, with a ``level`` interval per day and
    for the total, and a backtest of up to ``folds`` folds (0: none).

    Days missing between the first and the last are zero; days before the first non-zero value
    are not history (the store was not selling yet) and are dropped. A ``nonnegative`` series
    (orders) must have no negative value and its forecasts are clipped at zero; net revenue,
    which refunds can take below zero, is forecast with ``nonnegative=False``.
    """
    if (
        isinstance(horizon, bool)
        or not isinstance(horizon, int | np.integer)
        or not 1 <= horizon <= MAX_HORIZON
    ):
        raise InvalidInput(
            f"the forecast horizon must be 1 to {MAX_HORIZON} days, got {horizon!r}", code="invalid_query"
        )
    _check_level(level)
    if isinstance(folds, bool) or not isinstance(folds, int) or not 0 <= folds <= 10:
        raise InvalidInput(f"backtest folds must be 0 to 10, got {folds!r}", code="invalid_query")
    first, y = _dense(days, values, nonnegative)
    return _forecast(first, y, int(horizon), float(level), folds, nonnegative)


def _check_level(level: float) -> None:
    if not isinstance(level, float | int) or isinstance(level, bool) or not 0 < level < 1:
        raise InvalidInput(f"the interval level must be between 0 and 1, got {level!r}", code="invalid_query")


def _forecast(
    first: date, y: np.ndarray, horizon: int, level: float, folds: int, nonnegative: bool
) -> Forecast:
    """The forecast of a dense history starting on ``first``."""
    fit = _fit(y, horizon)
    start = np.datetime64(first + timedelta(days=len(y)), "D")
    return Forecast(
        model=fit.model, level=level, history_days=len(y), days=np.arange(start, start + horizon),
        mean=fit.mean, sd=fit.sd, parameters=fit.parameters, aicc=fit.aicc,
        backtest=_backtest(first, y, horizon, level, folds, nonnegative), psi=fit.psi, sigma=fit.sigma,
        nonnegative=nonnegative,
    )  # fmt: skip


@dataclass(frozen=True)
class _Fit:
    model: str
    mean: np.ndarray
    sd: np.ndarray
    psi: np.ndarray
    sigma: float
    parameters: dict[str, float]
    aicc: float | None


def _dense(days: np.ndarray, values: np.ndarray, nonnegative: bool) -> tuple[date, np.ndarray]:
    """(first day, one value per day from there to the last day), zero-filled, leading zeros dropped."""
    try:
        as_days = np.asarray(days).astype("datetime64[D]")
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"days must be dates and values numbers: {exc}", code="invalid_query") from None
    if np.any(np.isnat(as_days)):
        raise InvalidInput("days must be dates, not missing", code="invalid_query")
    d = as_days.astype(np.int64)
    if d.ndim != 1 or v.shape != d.shape:
        raise InvalidInput(
            "days and values must be one-dimensional and of the same length", code="invalid_query"
        )
    if not np.all(np.isfinite(v)):
        raise InvalidInput("values must be finite numbers", code="invalid_query")
    if nonnegative and np.any(v < 0):
        raise InvalidInput("values cannot be negative unless nonnegative=False", code="invalid_query")
    if len(d) and len(np.unique(d)) != len(d):
        raise InvalidInput("each day may appear only once", code="invalid_query")
    nonzero = np.flatnonzero(v)
    # An all-zero series is a real history of no sales: keep it whole.
    start = int(d[nonzero].min()) if len(nonzero) else (int(d.min()) if len(d) else 0)
    span = int(d.max()) - start + 1 if len(d) else 0
    if span < MIN_HISTORY:
        raise InvalidInput(
            f"a forecast needs at least {MIN_HISTORY} days of history from the first day with sales, got {max(span, 0)}",
            code="invalid_query",
        )
    y = np.zeros(span)
    keep = d >= start
    y[d[keep] - start] = v[keep]
    return _day(np.datetime64(start, "D")), y


def _fit(y: np.ndarray, horizon: int) -> _Fit:
    """The candidate with the lowest AICc, its forecast means and standard deviations."""
    if np.ptp(y) == 0:
        # Nothing ever varied, so there is no estimate of the noise: the forecast is the constant
        # with an interval of zero width (docs/forecasts.md).
        return _Fit(
            "constant", np.full(horizon, float(y[0])), np.zeros(horizon), np.ones(horizon), 0.0, {}, None
        )
    # The fit is on y / max|y|: the optimum is scale-free, and the optimiser is not (AICc moves by
    # the same constant for every candidate, so the choice is unchanged).
    scale = float(np.max(np.abs(y)))
    best = None
    for trend, damped, seasonal in _CANDIDATES:
        if seasonal and len(y) < MIN_SEASONAL:
            continue
        result = _fit_ets(y / scale, trend, damped, seasonal)
        if result is not None and (best is None or result.aicc < best[0].aicc):
            best = (result, trend, damped, seasonal)
    if best is None:
        raise RuntimeError("no exponential-smoothing model could be fitted")  # pragma: no cover
    result, trend, damped, seasonal = best
    params = dict(zip(result.model.param_names, (float(p) for p in result.params), strict=True))
    psi = _psi(params, horizon)
    # The residual variance with one degree of freedom per estimated parameter (statsmodels' own
    # intervals divide by n, which is too narrow on short histories).
    sigma = scale * math.sqrt(float(result.sse) / (len(y) - len(params)))
    return _Fit(
        model=_name(trend, damped, seasonal),
        mean=scale * np.asarray(result.forecast(horizon), dtype=np.float64),
        sd=sigma * np.sqrt(np.cumsum(psi**2)),
        psi=psi,
        sigma=sigma,
        parameters={_PARAM_NAMES[k]: v for k, v in params.items()} | {"sigma": sigma},
        # AICc of the data itself: the log-likelihood of y is that of y / scale less n·log(scale).
        aicc=float(result.aicc) + 2 * len(y) * math.log(scale),
    )


_PARAM_NAMES = {
    "smoothing_level": "alpha",
    "smoothing_trend": "beta",
    "smoothing_seasonal": "gamma",
    "damping_trend": "phi",
}


def _fit_ets(y: np.ndarray, trend: str | None, damped: bool, seasonal: str | None) -> Any:
    """The maximum-likelihood fit of one candidate (statsmodels' ETSModel), or None.

    The initial states are statsmodels' "heuristic" ones (a decomposition of the first weeks), so
    only the smoothing parameters are estimated, by maximising statsmodels' likelihood. Two
    departures from ``ETSModel.fit`` (one L-BFGS-B run from a fixed guess), both measured:

    * the likelihood often has several modes (α near 0.1 and near 1 for a seasonal series fitted
      without season), so a coarse grid is evaluated and Nelder–Mead runs from its two best points;
    * SciPy ≥ 1.15's L-BFGS-B calls multi-threaded OpenBLAS on vectors of four numbers, which on
      a busy machine made the whole forecast seven times slower (scipy/scipy#22438); Nelder–Mead
      calls no BLAS.
    """
    from scipy.optimize import minimize
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel  # slow to import: only when used

    with warnings.catch_warnings():
        # Numerical chatter on flat or short series: the candidate is still a valid fit, and AICc
        # judges it against the others.
        warnings.simplefilter("ignore")
        try:
            model = ETSModel(
                y, error="add", trend=trend, damped_trend=damped, seasonal=seasonal,
                seasonal_periods=SEASON if seasonal else None, initialization_method="heuristic",
            )  # fmt: skip
            keys = ["alpha"] + [k for k, on in (("beta", trend), ("gamma", seasonal), ("phi", damped)) if on]

            def cost(u: np.ndarray) -> float:
                value = model.loglike(_external(u, trend, damped, seasonal))
                return -float(value) if np.isfinite(value) else np.inf

            grid = list(itertools.product(*(_GRID[k] for k in keys)))
            costs = np.array([cost(np.array(u)) for u in grid])
            runs = [
                minimize(cost, np.array(grid[i]), method="Nelder-Mead", bounds=[_BOUNDS[k] for k in keys],
                         options={"xatol": 1e-3, "fatol": 1e-5})
                for i in np.argsort(costs, kind="stable")[:_STARTS]
            ]  # fmt: skip
            best = min(runs, key=lambda run: run.fun)
            result = model.smooth(_external(best.x, trend, damped, seasonal))
        except (ValueError, np.linalg.LinAlgError):
            return None
    return result if np.isfinite(result.aicc) and np.isfinite(result.sse) else None


# The search is over (α, β/α, γ/(1−α), φ): each axis then stays inside the ETS constraints
# 0 < β < α and 0 < γ < 1 − α whatever the others are (statsmodels searches the same way), with
# statsmodels' default bounds.
_GRID = {
    "alpha": (0.02, 0.1, 0.3, 0.6, 0.95),
    "beta": (0.01, 0.1, 0.4),
    "gamma": (0.01, 0.1, 0.4),
    "phi": (0.85, 0.98),
}
_BOUNDS = {"alpha": (1e-4, 1 - 1e-4), "beta": (1e-4, 1 - 1e-4), "gamma": (1e-4, 1 - 1e-4), "phi": (0.8, 0.98)}
_STARTS = 2


def _external(u: np.ndarray, trend: str | None, damped: bool, seasonal: str | None) -> np.ndarray:
    """(α, β/α, γ/(1−α), φ) → statsmodels' parameters (α, β, γ, φ), the absent ones left out."""
    alpha = u[0]
    out, i = [alpha], 1
    if trend:
        out.append(u[i] * alpha)
        i += 1
    if seasonal:
        out.append(u[i] * (1 - alpha))
        i += 1
    if damped:
        out.append(u[i])
    return np.array(out)


def _name(trend: str | None, damped: bool, seasonal: str | None) -> str:
    return f"ETS(A,{'N' if trend is None else 'Ad' if damped else 'A'},{'A' if seasonal else 'N'})"


def _psi(params: dict[str, float], horizon: int) -> np.ndarray:
    """ψ_0..ψ_{H−1}: how much an innovation moves the forecast j days later (ψ_0 = 1).

    For additive ETS (Hyndman et al. 2008, ch. 6): ψ_j = α + β·(φ + φ² + … + φ^j) + γ·[j a multiple
    of 7], with φ = 1 for an undamped trend and β = 0, γ = 0 for a model without trend, season.
    """
    j = np.arange(1, horizon)
    alpha = params["smoothing_level"]
    beta = params.get("smoothing_trend", 0.0)
    gamma = params.get("smoothing_seasonal", 0.0)
    phi = params.get("damping_trend", 1.0)
    trend_sum = np.cumsum(np.power(phi, j.astype(np.float64)))
    psi = alpha + beta * trend_sum + gamma * (j % SEASON == 0)
    return np.concatenate([[1.0], psi])


def _sum_sd(psi: np.ndarray, sigma: float, a: int, b: int) -> float:
    """Standard deviation of the sum of the forecast errors of steps a..b (1-based, inclusive).

    The error of step h is Σ_{k=1..h} ψ_{h−k} ε_k with independent ε_k ~ N(0, σ²), so the sum's
    weight on ε_k is Σ_{h=max(a,k)..b} ψ_{h−k} = C(b−k) − C(a−1−k), with C the running sum of ψ
    and C(m) = 0 for m < 0; the variance is σ² times the sum of the squared weights.
    """
    if sigma == 0:
        return 0.0
    c = np.cumsum(psi[:b])
    k = np.arange(1, b + 1)
    upper = c[b - k]
    lower_index = a - 1 - k
    lower = np.where(lower_index >= 0, c[np.maximum(lower_index, 0)], 0.0)
    return sigma * math.sqrt(float(np.sum((upper - lower) ** 2)))


# -- the backtest ---------------------------------------------------------------------------------


def _backtest(
    first: date, y: np.ndarray, horizon: int, level: float, folds: int, nonnegative: bool
) -> Backtest:
    """Fold k (1 = most recent) runs the whole procedure on y without its last k·h days and
    forecasts the h days after the cut."""
    out = []
    for k in range(1, folds + 1):
        cut = len(y) - k * horizon
        if cut < MIN_HISTORY:
            break
        f = _forecast(first, y[:cut], horizon, level, 0, nonnegative)
        start = _day(f.days[0])
        out.append(Fold(
            start=start, end=_day(f.days[-1]), history_days=cut, model=f.model, actual=y[cut:cut + horizon],
            forecast=f.value, lower=f.lower, upper=f.upper, total=f.total,
        ))  # fmt: skip
    return Backtest(horizon, out[::-1])


def _smape_terms(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    denominator = np.abs(actual) + np.abs(forecast)
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, 2 * np.abs(forecast - actual) / safe, 0.0)


# -- the daily series ---------------------------------------------------------------------------

Metric = Literal["revenue", "orders"]
# What each measure is: a metric of the metrics query (docs/metrics.md), computed by its engine,
# so a forecast's history and a target's actual are the numbers the metrics query shows.
MEASURES: dict[str, str] = {"revenue": "net_revenue", "orders": "orders"}


def _check_metric(metric: str) -> None:
    if metric not in MEASURES:
        raise InvalidInput(f"metric must be 'revenue' or 'orders', got {metric!r}", code="invalid_query")


def daily_series(
    engine: MetricsEngine, metric: Metric, start: date, end: date
) -> tuple[np.ndarray, np.ndarray]:
    """(days, values) for every local day start..end: net revenue (orders' values less refunds, each
    on its own day) or the number of orders, as the metrics query counts them; days without either
    are zero."""
    _check_metric(metric)
    if start > end:
        raise InvalidInput(f"the series starts after it ends ({start} > {end})", code="invalid_query")
    n = (end - start).days + 1
    values = np.zeros(n)
    for day, value in _by_day(engine, metric, start, end).items():
        values[(day - start).days] = float(value)
    first = np.datetime64(start, "D")
    return np.arange(first, first + n), values


def _by_day(engine: MetricsEngine, metric: Metric, start: date, end: date) -> dict[date, Decimal | int]:
    m = METRICS[MEASURES[metric]]
    rows = engine.components(set(m.needs), Window(start, end), engine.by_period("day"))
    return {day: m.formula(c) for day, c in rows.items()}


def total(engine: MetricsEngine, metric: Metric, start: date, end: date) -> Decimal | int:
    """The measure over start..end, exactly as the metrics query gives it (a Decimal for money)."""
    _check_metric(metric)
    m = METRICS[MEASURES[metric]]
    return m.formula(engine.components(set(m.needs), Window(start, end), None).get(None, {}))


# -- target pace ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """A target's period in the store's local days; ``elapsed_days`` are the complete days before
    ``as_of`` (today is not over, so it is not yet actual)."""

    start: date
    end: date
    as_of: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def elapsed_days(self) -> int:
        return min(max((self.as_of - self.start).days, 0), self.days)

    @property
    def remaining_days(self) -> int:
        return self.days - self.elapsed_days


def month_period(month: str, as_of: date) -> Period:
    """The calendar month ``YYYY-MM`` as a Period seen from ``as_of``."""
    try:
        year, number = (int(part) for part in month.split("-"))
        start = date(year, number, 1)
    except (ValueError, AttributeError):
        raise InvalidInput(f"a month is written YYYY-MM, got {month!r}", code="invalid_query") from None
    following = date(year + number // 12, number % 12 + 1, 1)
    return Period(start, following - timedelta(days=1), as_of)


@dataclass(frozen=True)
class Pace:
    target: Decimal | int
    actual_to_date: Decimal | int | float  # as given: exact when read from the store
    elapsed_days: int
    period_days: int
    level: float | None  # of the projection's interval; None without a forecast
    projected: Interval | None  # actual to date + the forecast total of the remaining days
    note: str | None = None  # why there is no projection

    @property
    def remaining_days(self) -> int:
        return self.period_days - self.elapsed_days

    @property
    def _actual(self) -> float:
        return float(self.actual_to_date)

    @property
    def attainment(self) -> float:
        return self._actual / float(self.target)

    @property
    def projected_attainment(self) -> Interval | None:
        p, t = self.projected, float(self.target)
        return None if p is None else Interval(p.value / t, p.lower / t, p.upper / t)

    @property
    def straight_line(self) -> float | None:
        """actual ÷ elapsed days × period days: the end if every remaining day sold the average so far."""
        return self._actual / self.elapsed_days * self.period_days if self.elapsed_days else None

    @property
    def required_daily(self) -> float | None:
        """What each remaining day must bring to meet the target (0 once it is met)."""
        if not self.remaining_days:
            return None
        return max(float(self.target) - self._actual, 0.0) / self.remaining_days

    @property
    def expected_daily(self) -> float | None:
        """The forecast's mean per remaining day, to set against ``required_daily``."""
        if not self.remaining_days or self.projected is None:
            return None
        return (self.projected.value - self._actual) / self.remaining_days

    def to_dict(self) -> dict[str, Any]:
        straight = self.straight_line
        return {
            "target": str(self.target) if isinstance(self.target, Decimal) else int(self.target),
            "actual_to_date": _num(self.actual_to_date),
            "attainment": _ratio(self.attainment),
            "elapsed_days": self.elapsed_days,
            "remaining_days": self.remaining_days,
            "period_days": self.period_days,
            "level": self.level,
            "projected": None if self.projected is None else self.projected.to_dict(),
            "projected_attainment": None if self.projected is None else {
                k: _ratio(v) for k, v in self.projected_attainment.to_dict().items()},
            "straight_line": _num(straight),
            "straight_line_attainment": None if straight is None else _ratio(straight / float(self.target)),
            "required_daily": _num(self.required_daily),
            "expected_daily": _num(self.expected_daily),
            "note": self.note,
        }  # fmt: skip

    def table(self) -> pa.Table:
        d = self.to_dict()
        projected = d["projected"] or {}
        attainment = d["projected_attainment"] or {}
        row = {
            "target": pa.array([float(self.target)], pa.float64()),
            **{k: pa.array([d[k]], pa.float64()) for k in ("actual_to_date", "attainment")},
            **{k: pa.array([d[k]], pa.int64()) for k in ("elapsed_days", "remaining_days", "period_days")},
            **{f"projected_{k}": pa.array([projected.get(k)], pa.float64()) for k in ("value", "lower", "upper")},
            **{f"projected_attainment_{k}": pa.array([attainment.get(k)], pa.float64()) for k in ("value", "lower", "upper")},
            **{k: pa.array([d[k]], pa.float64()) for k in ("straight_line", "required_daily", "expected_daily")},
        }  # fmt: skip
        return pa.table(row)


def pace(
    target: Decimal | int,
    actual_to_date: Decimal | int | float,
    elapsed_days: int,
    remaining_forecast: Forecast | None,
    period_days: int,
    *,
    note: str | None = None,
) -> Pace:
    """Attainment to date and the projected end of the period: actual to date + the forecast total
    of the remaining days (None when there is no forecast and days remain)."""
    if (
        isinstance(target, bool)
        or not isinstance(target, Decimal | int)
        or (isinstance(target, Decimal) and not target.is_finite())
        or not target > 0
    ):
        raise InvalidInput(f"a target must be a positive number, got {target!r}", code="invalid_query")
    if not period_days >= 1 or not 0 <= elapsed_days <= period_days:
        raise InvalidInput(
            f"elapsed days must be 0 to the period's {period_days} days, got {elapsed_days}",
            code="invalid_query",
        )
    # Net revenue to date can be below zero (refunds of last month's orders before any sale).
    actual = float(actual_to_date)
    if not math.isfinite(actual):
        raise InvalidInput(
            f"the actual to date must be a finite number, got {actual_to_date!r}", code="invalid_query"
        )
    remaining = period_days - elapsed_days
    if remaining == 0:
        if remaining_forecast is not None:
            raise InvalidInput("the period is over: there is nothing left to forecast", code="invalid_query")
        return Pace(
            target, actual_to_date, elapsed_days, period_days, None, Interval(actual, actual, actual), note
        )
    if remaining_forecast is None:
        return Pace(target, actual_to_date, elapsed_days, period_days, None, None, note)
    if remaining_forecast.horizon != remaining:
        raise InvalidInput(
            f"the forecast covers {remaining_forecast.horizon} days but {remaining} days of the period remain",
            code="invalid_query",
        )
    total = remaining_forecast.total
    projected = Interval(actual + total.value, actual + total.lower, actual + total.upper)
    return Pace(target, actual_to_date, elapsed_days, period_days, remaining_forecast.level, projected, note)


def month_pace(
    engine: MetricsEngine,
    metric: Metric,
    month: str,
    target: Decimal | int,
    as_of: date,
    *,
    level: float = 0.9,
    history_days: int = 730,
) -> Pace:
    """The pace of a monthly target seen from ``as_of`` (the first day that is not over): the
    actual of the month's days before ``as_of``, and a forecast of its remaining days from up to
    ``history_days`` days before it."""
    return month_paces(engine, metric, {month: target}, as_of, level=level, history_days=history_days)[month]


def month_paces(
    engine: MetricsEngine,
    metric: Metric,
    targets: Mapping[str, Decimal | int],
    as_of: date,
    *,
    level: float = 0.9,
    history_days: int = 730,
) -> dict[str, Pace]:
    """``month_pace`` of several months, from one forecast that reaches the last of them."""
    periods = {month: month_period(month, as_of) for month in targets}
    # Checked here: a forecast's own errors below become the projection's note, these must not.
    _check_metric(metric)
    _check_level(level)
    if isinstance(history_days, bool) or not isinstance(history_days, int) or history_days < MIN_HISTORY:
        raise InvalidInput(
            f"the history must be at least {MIN_HISTORY} days, got {history_days!r}", code="invalid_query"
        )
    reach = as_of + timedelta(days=MAX_HORIZON - 1)  # the last day a forecast from as_of covers
    ends = [p.end for p in periods.values() if p.remaining_days and p.end <= reach]
    forecast, note = (None, None)
    if ends:
        forecast, note = _remaining_forecast(engine, metric, as_of, max(ends), level, history_days)
    out = {}
    for month, period in periods.items():
        actual: Decimal | int = 0
        if period.elapsed_days:
            actual = total(
                engine, metric, period.start, period.start + timedelta(days=period.elapsed_days - 1)
            )
        remaining, why = None, None
        if period.remaining_days:
            if period.end > reach:
                why = f"the month ends more than {MAX_HORIZON} days after the last day of history"
            elif forecast is None:
                why = note
            else:
                remaining = forecast.between(max(as_of, period.start), period.end)
        out[month] = pace(targets[month], actual, period.elapsed_days, remaining, period.days, note=why)
    return out


def _remaining_forecast(
    engine: MetricsEngine, metric: Metric, as_of: date, last: date, level: float, history_days: int
) -> tuple[Forecast | None, str | None]:
    """The forecast from ``as_of`` to ``last``, or None and why (too little history, no orders)."""
    first_sale = engine.first_order_day(as_of - timedelta(days=1))
    if first_sale is None:
        return None, "no orders before this day to forecast from"
    history_end = as_of - timedelta(days=1)
    days, values = daily_series(
        engine, metric, max(first_sale, as_of - timedelta(days=history_days)), history_end
    )
    try:
        forecast = forecast_series(
            days,
            values,
            horizon=(last - history_end).days,
            level=level,
            folds=0,
            nonnegative=metric == "orders",
        )
    except InvalidInput as exc:
        return None, exc.message
    return forecast, None


# -- small helpers --------------------------------------------------------------------------------


def _day(value: np.datetime64) -> date:
    return date(1970, 1, 1) + timedelta(days=int(np.datetime64(value, "D").astype(np.int64)))


def _num(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def _ratio(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)
