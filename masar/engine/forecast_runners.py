"""Runners of the forecast and targets queries (docs/forecasts.md, docs/metrics.md#targets).

Both read the sales facts through the metrics engine, so a forecast's history and a target's
actual are the numbers the metrics query shows for the same days; the model and the pace
arithmetic are masar/engine/forecast.py's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np
import pyarrow as pa

from masar.engine.context import QueryContext
from masar.engine.forecast import (
    MEASURES,
    Forecast,
    Pace,
    Period,
    daily_series,
    forecast_series,
    month_paces,
    month_period,
)
from masar.engine.kpis import data_window, sales_facts
from masar.engine.metrics import METRICS, MetricsEngine
from masar.errors import InvalidInput
from masar.model.money import minor_units
from masar.model.sales_queries import ForecastQuery, TargetsQuery


def _engine(ctx: QueryContext) -> MetricsEngine:
    facts = sales_facts(ctx)
    # churn_days is read by the churn metric only, never by orders or net revenue.
    return MetricsEngine(ctx.con, currency=facts.currency, tz=ctx.tz.key, churn_days=90)


def last_complete_day(engine: MetricsEngine, tz: Any) -> date:
    """The data's last day (docs/metrics.md), or yesterday when the data reaches today: today is
    not over, and its few hours would read as a slump to the model and as a finished day to a pace."""
    today = datetime.now(tz).date()
    return min(data_window(engine, None, None).end, today - timedelta(days=1))


# -- forecast -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForecastResult:
    measure: str
    currency: str
    start: date
    end: date
    history: np.ndarray  # the daily series start..end, as the metrics query gives it
    forecast: Forecast

    @property
    def _unit(self) -> str:
        return METRICS[MEASURES[self.measure]].unit

    def _shown(self, value: float) -> float | int:
        return int(value) if self._unit == "count" else round(float(value), 3)

    def to_dict(self) -> dict[str, Any]:
        days = [self.start + timedelta(days=i) for i in range(len(self.history))]
        return {
            "measure": self.measure,
            "metric": MEASURES[self.measure],
            "unit": self._unit,
            "currency": self.currency,
            "history": {
                "from": self.start.isoformat(),
                "to": self.end.isoformat(),
                "series": [{"day": d.isoformat(), "value": self._shown(v)} for d, v in zip(days, self.history, strict=True)],
            },
            **self.forecast.to_dict(),
        }  # fmt: skip

    def table(self) -> pa.Table:
        """History and forecast in one chart-ready table: actual on the history's days; forecast,
        lower and upper on the forecast's."""
        n, h = len(self.history), self.forecast.horizon
        first = np.datetime64(self.start, "D")
        days = np.concatenate([np.arange(first, first + n), self.forecast.days.astype("datetime64[D]")])
        gap = [None] * n
        return pa.table({
            "day": pa.array(days, pa.date32()),
            "actual": pa.array([*map(float, self.history), *[None] * h], pa.float64()),
            "forecast": pa.array([*gap, *map(float, self.forecast.value)], pa.float64()),
            "lower": pa.array([*gap, *map(float, self.forecast.lower)], pa.float64()),
            "upper": pa.array([*gap, *map(float, self.forecast.upper)], pa.float64()),
        })  # fmt: skip


def run_forecast(ctx: QueryContext, query: ForecastQuery) -> ForecastResult:
    return compute_forecast(_engine(ctx), ctx.source.name, ctx.tz, query)


def compute_forecast(engine: MetricsEngine, source_name: str, tz: Any, query: ForecastQuery) -> ForecastResult:
    """The forecast query on any backend's metrics engine."""
    end = query.date_to or last_complete_day(engine, tz)
    start = query.date_from
    if start is None:
        start = engine.first_order_day(end)
        if start is None:
            raise InvalidInput(
                f"{source_name!r} has no orders up to {end}: there is nothing to forecast from",
                code="invalid_query",
            )
    days, values = daily_series(engine, query.measure, start, end)
    forecast = forecast_series(
        days, values, horizon=query.horizon, level=query.level, folds=query.folds,
        nonnegative=query.measure == "orders",
    )  # fmt: skip
    return ForecastResult(query.measure, engine.currency, start, end, values, forecast)


# -- targets --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetMonth:
    month: str
    period: Period  # seen from the day after as_of
    revenue: Pace | None  # None: no revenue target for the month
    orders: Pace | None

    @property
    def status(self) -> str:
        """past: every day is actual; current: some are; future: none is yet."""
        if not self.period.remaining_days:
            return "past"
        return "current" if self.period.elapsed_days else "future"


@dataclass(frozen=True)
class TargetsResult:
    currency: str
    as_of: date
    level: float
    months: list[TargetMonth]

    @property
    def _places(self) -> int:
        return minor_units(self.currency)

    def _amount(self, value: Any, measure: str) -> Any:
        """Money as decimal text in the currency's minor unit (like the metrics query); projections
        are estimates rounded to it. Counts as integers, projected counts as floats."""
        if value is None:
            return None
        if measure == "orders":
            return int(value) if isinstance(value, int) else round(float(value), 3)
        return str(_decimal(value, self._places))

    def _measure(self, row: TargetMonth, measure: str) -> dict[str, Any] | None:
        p: Pace | None = getattr(row, measure)
        if p is None:
            return None
        started = row.status != "future"
        projected, attainment = p.projected, p.projected_attainment
        amount = lambda v: self._amount(v, measure)  # noqa: E731
        return {
            "target": _target_text(p.target, self._places) if measure == "revenue" else int(p.target),
            "actual": amount(p.actual_to_date) if started else None,
            "attainment": round(p.attainment, 6) if started else None,
            "projected": None if projected is None else {k: amount(v) for k, v in vars(projected).items()},
            "projected_attainment": None if attainment is None else {k: round(v, 6) for k, v in vars(attainment).items()},
            "on_track": None if projected is None else projected.value >= float(p.target),
            "straight_line": amount(p.straight_line),
            "required_daily": amount(p.required_daily),
            "expected_daily": amount(p.expected_daily),
            "note": p.note,
        }  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "as_of": self.as_of.isoformat(),
            "level": self.level,
            "months": [
                {
                    "month": row.month, "from": row.period.start.isoformat(), "to": row.period.end.isoformat(),
                    "status": row.status, "days": row.period.days, "elapsed_days": row.period.elapsed_days,
                    "remaining_days": row.period.remaining_days,
                    "revenue": self._measure(row, "revenue"), "orders": self._measure(row, "orders"),
                }
                for row in self.months
            ],
        }  # fmt: skip

    def table(self) -> pa.Table:
        """One row per month; money as exact decimals (numbers in Excel, exact text in CSV)."""
        rows = self.to_dict()["months"]

        def column(kind: pa.DataType, measure: str, key: str, part: str | None = None) -> pa.Array:
            values = [(row[measure] or {}).get(key) for row in rows]
            if part is not None:
                values = [None if v is None else v[part] for v in values]
            if pa.types.is_decimal(kind):
                # A target set more finely than the currency's minor unit is rounded here only.
                values = [None if v is None else _decimal(Decimal(v), self._places) for v in values]
            return pa.array(values, kind)

        columns = {
            "month": pa.array([row["month"] for row in rows], pa.string()),
            "status": pa.array([row["status"] for row in rows], pa.string()),
            "elapsed_days": pa.array([row["elapsed_days"] for row in rows], pa.int64()),
            "remaining_days": pa.array([row["remaining_days"] for row in rows], pa.int64()),
        }
        money = pa.decimal128(38, self._places)
        for measure, exact, estimate in (("revenue", money, money), ("orders", pa.int64(), pa.float64())):
            columns |= {
                f"{measure}_target": column(exact, measure, "target"),
                f"{measure}_actual": column(exact, measure, "actual"),
                f"{measure}_attainment": column(pa.float64(), measure, "attainment"),
                f"{measure}_projected": column(estimate, measure, "projected", "value"),
                f"{measure}_projected_lower": column(estimate, measure, "projected", "lower"),
                f"{measure}_projected_upper": column(estimate, measure, "projected", "upper"),
                f"{measure}_projected_attainment": column(
                    pa.float64(), measure, "projected_attainment", "value"
                ),
                f"{measure}_on_track": column(pa.bool_(), measure, "on_track"),
            }
        return pa.table(columns)


def run_targets(ctx: QueryContext, query: TargetsQuery) -> TargetsResult:
    return compute_targets(_engine(ctx), ctx.store.targets(ctx.source), ctx.tz, query)


def compute_targets(engine: MetricsEngine, targets: list[dict[str, Any]], tz: Any, query: TargetsQuery) -> TargetsResult:
    """The targets query on any backend's metrics engine, for the source's stored ``targets``."""
    as_of = query.as_of or last_complete_day(engine, tz)
    # forecast.py's periods are seen from the first day that is not over: the day after as_of.
    following = as_of + timedelta(days=1)
    stored = [t for t in targets if query.month in (None, t["month"])]
    paces = {
        measure: month_paces(
            engine, measure, {t["month"]: t[measure] for t in stored if t[measure] is not None}, following,
            level=query.level,
        )
        for measure in ("revenue", "orders")
    }  # fmt: skip
    months = [
        TargetMonth(t["month"], month_period(t["month"], following), paces["revenue"].get(t["month"]),
                    paces["orders"].get(t["month"]))
        for t in stored
    ]  # fmt: skip
    return TargetsResult(engine.currency, as_of, query.level, months)


def _decimal(value: Decimal | int | float, places: int) -> Decimal:
    exact = value if isinstance(value, Decimal | int) else Decimal(repr(float(value)))
    return Decimal(exact).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def _target_text(target: Decimal | int, places: int) -> str:
    """The target as set: in the currency's minor unit, unless it was set more finely than that."""
    shown = _decimal(target, places)
    return str(shown if shown == target else target)
