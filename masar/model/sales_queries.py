"""Typed query objects of the sales analyses (KPIs, customers, lifetime value, forecasts).

Same conventions as ``masar.model.queries``: a ``kind`` literal, ``extra="forbid"``, snake_case,
``from``/``to`` as local dates of the store (inclusive), defaults here and nowhere else.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Literal

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


class PlatformsQuery(_Ranged):
    """Sessions, orders, revenue, spend and ROAS per social and ad platform, paid and organic."""

    kind: Literal["platforms"] = "platforms"


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


class ForecastQuery(_Ranged):
    """Daily forecast of net revenue or orders with prediction intervals and a backtest
    (docs/forecasts.md). ``from``/``to`` bound the history: by default from the first order to the
    data's last complete day; the forecast covers the ``horizon`` days after ``to``."""

    kind: Literal["forecast"] = "forecast"
    measure: Literal["revenue", "orders"] = "revenue"
    horizon: int = Field(default=30, ge=1, le=366)
    level: float = Field(default=0.9, gt=0, lt=1)
    folds: int = Field(default=3, ge=0, le=10)


class TargetsQuery(_Model):
    """Monthly targets: attainment to date and the projected end of the month (docs/metrics.md).
    ``as_of`` is the last day that counts as actual (default: the data's last complete day)."""

    kind: Literal["targets"] = "targets"
    source: str
    month: str | None = None  # YYYY-MM; None: every month with a target
    as_of: date | None = None
    level: float = Field(default=0.9, gt=0, lt=1)

    @field_validator("month")
    @classmethod
    def _month(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
            raise ValueError(f"a month is written YYYY-MM, got {value!r}")
        return value


class AudienceQuery(_Model):
    """An audience's members (docs/audiences.md): a saved one by ``name`` or an inline
    ``definition``; ``as_of`` defaults to the data's last day. ``limit`` None lists every member
    (an export); 0 only counts."""

    kind: Literal["audience"] = "audience"
    source: str
    name: str | None = None
    definition: dict[str, Any] | None = None
    as_of: date | None = None
    limit: int | None = Field(default=100, ge=0, le=1_000_000)
    offset: int = Field(default=0, ge=0)

    @field_validator("definition")
    @classmethod
    def _parsed(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        from masar.engine.audiences import parse_audience
        from masar.errors import InvalidInput

        if value is None:
            return None
        try:
            return parse_audience(value).to_dict()
        except InvalidInput as exc:
            raise ValueError(exc.message) from None

    @model_validator(mode="after")
    def _one(self) -> AudienceQuery:
        if (self.name is None) == (self.definition is None):
            raise ValueError("give the name of a saved audience or a definition: one of the two")
        return self


PersonBy = Literal["person", "user_id", "email", "anonymous_id"]


class CustomerQuery(_Model):
    """One customer's profile, RFM segment and lifetime value (docs/audiences.md, "The customer
    query"). ``person`` is a person id, a user id, an email or an anonymous id; ``by`` says which
    when one text could be several."""

    kind: Literal["customer"] = "customer"
    source: str
    person: int | str
    by: PersonBy | None = None
    as_of: date | None = None
    timeline_limit: int = Field(default=200, ge=0, le=10_000)
    predict: bool = True  # the predicted value needs the store's BG/NBD fit (once per data version)

    @field_validator("person", mode="before")
    @classmethod
    def _person(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError("a person id, a user id, an email or an anonymous id (a number or text)")
        if isinstance(value, str) and not 1 <= len(value.strip()) <= 500:
            raise ValueError("1 to 500 characters")
        return value.strip() if isinstance(value, str) else value


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
