"""Typed query objects of the sales analyses (KPIs, customers, lifetime value, forecasts).

Same conventions as ``masar.model.queries``: a ``kind`` literal, ``extra="forbid"``, snake_case,
``from``/``to`` as local dates of the store (inclusive), defaults here and nowhere else.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field, field_validator, model_validator

from masar.model.queries import _Model

Granularity = Literal["day", "week", "month"]


class _Ranged(_Model):
    source: str
    date_from: date | None = Field(default=None, alias="from")
    date_to: date | None = Field(default=None, alias="to")

    @model_validator(mode="after")
    def _range(self) -> _Ranged:
        if self.date_from is not None and self.date_to is not None and self.date_from > self.date_to:
            raise ValueError("from must not be after to")
        return self


class MetricsQuery(_Ranged):
    """Sales KPIs for a range (default: the 30 days ending on the data's last day)."""

    kind: Literal["metrics"] = "metrics"
    metrics: list[str] | None = None  # None: the headline set
    granularity: Granularity | None = "day"
    compare: bool = True  # against the previous period of the same length
    breakdown: str | None = None
    breakdown_limit: int = Field(default=10, ge=1, le=100)
    churn_days: int | None = Field(default=None, ge=1, le=3650)

    @field_validator("metrics")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        from masar.engine.metrics import METRICS

        if value is not None:
            if not value:
                raise ValueError("name at least one metric")
            unknown = [m for m in value if m not in METRICS]
            if unknown:
                raise ValueError(f"unknown metric {unknown[0]!r}: known are {', '.join(sorted(METRICS))}")
        return value


class ProductsQuery(_Ranged):
    """Revenue by product or category, with view → purchase rates."""

    kind: Literal["products"] = "products"
    by: Literal["product", "category"] = "product"
    limit: int = Field(default=100, ge=1, le=10_000)


class EmailQuery(_Ranged):
    """Email campaign performance; orders count within ``attribution_days`` after a click."""

    kind: Literal["email"] = "email"
    attribution_days: int = Field(default=5, ge=1, le=90)


class AcquisitionQuery(_Ranged):
    """Spend, CAC, cost per lead, ROAS and LTV:CAC per channel and campaign."""

    kind: Literal["acquisition"] = "acquisition"


class CohortsQuery(_Model):
    """Retention by cohort (docs/cohorts.md); ``as_of`` defaults to the data's last day."""

    kind: Literal["cohorts"] = "cohorts"
    source: str
    by: Literal["first_order", "first_visit", "signup"] = "first_order"
    period: Literal["week", "month"] = "month"
    measure: Literal["active", "purchasing", "revenue"] = "purchasing"
    mode: Literal["first_time", "recurring"] = "first_time"
    periods: int = Field(default=12, ge=1, le=104)
    date_from: date | None = Field(default=None, alias="from")
    date_to: date | None = Field(default=None, alias="to")
    channel: str | None = None
    group: Literal["period", "channel"] = "period"
    as_of: date | None = None


class RfmQuery(_Model):
    """RFM segments (docs/segments.md); ``as_of`` defaults to the data's last day."""

    kind: Literal["rfm"] = "rfm"
    source: str
    as_of: date | None = None
    since: date | None = None


class RfmCustomersQuery(RfmQuery):
    kind: Literal["rfm_customers"] = "rfm_customers"  # type: ignore[assignment]
    segment: str | None = None
    limit: int | None = Field(default=100, ge=1, le=1_000_000)
    offset: int = Field(default=0, ge=0)


class LtvFitQuery(_Model):
    """BG/NBD and Gamma-Gamma fitted to the orders up to ``calibration_end`` (docs/ltv.md)."""

    kind: Literal["ltv_fit"] = "ltv_fit"
    source: str
    calibration_end: date
    unit: Literal["day", "week"] = "week"


_PREDICTED_ONLY = ("unit", "horizon_days", "discount_rate")


class LtvQuery(_Model):
    """Lifetime value per customer and in total or by group (docs/ltv.md): ``predicted`` (BG/NBD
    and Gamma-Gamma fitted to the orders up to ``as_of``, the calibration end, predicting the next
    ``horizon_days``) or ``historical`` (net revenue up to ``as_of``). ``as_of`` defaults to the
    data's last day. ``customer``: one person, by person id (a number) or user id (text)."""

    kind: Literal["ltv"] = "ltv"
    source: str
    mode: Literal["predicted", "historical"] = "predicted"
    as_of: date | None = None
    unit: Literal["day", "week"] = "week"
    horizon_days: int = Field(default=365, ge=1, le=3650)
    discount_rate: float = Field(default=0.0, ge=0, le=1)  # per month
    group_by: Literal["cohort_month", "first_channel", "rfm_segment"] | None = None
    customer: int | str | None = None
    sort: str | None = None  # default: predicted_value, or net_revenue when historical
    ascending: bool = False
    limit: int | None = Field(default=100, ge=0, le=1_000_000)
    offset: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _fits_the_mode(self) -> LtvQuery:
        if self.mode == "historical":
            given = [name for name in _PREDICTED_ONLY if name in self.model_fields_set]
            if given:
                raise ValueError(f"{given[0]} applies to predicted lifetime value only, not to mode historical")
        from masar.engine.ltv_report import SORTS

        if self.sort is not None and self.sort not in SORTS[self.mode]:
            raise ValueError(f"sort must be one of {', '.join(SORTS[self.mode])} for mode {self.mode}")
        return self
