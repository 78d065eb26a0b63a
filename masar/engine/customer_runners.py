"""Runners of the customer analyses (cohorts, RFM, lifetime value, audiences, profiles, forecasts):
each gets the facts registered on the context's cursor and calls its engine module."""

from __future__ import annotations

from datetime import date
from typing import Any

from masar.engine.context import QueryContext
from masar.engine.kpis import data_window, sales_facts
from masar.model.sales_queries import CohortsQuery, LtvFitQuery, LtvQuery, RfmCustomersQuery, RfmQuery


def _as_of(ctx: QueryContext, given: date | None) -> date:
    return given if given is not None else data_window(ctx.con, None, None).end


def run_cohorts(ctx: QueryContext, query: CohortsQuery) -> Any:
    from masar.engine.cohorts import cohort_table

    sales_facts(ctx)
    return cohort_table(
        ctx.con, by=query.by, period=query.period, measure=query.measure, mode=query.mode, periods=query.periods,
        start=query.date_from, end=query.date_to, channel=query.channel, group=query.group, tz=ctx.tz.key,
        as_of=_as_of(ctx, query.as_of),
    )  # fmt: skip


def run_rfm(ctx: QueryContext, query: RfmQuery) -> Any:
    from masar.engine.rfm import rfm_segments

    sales_facts(ctx)
    return rfm_segments(ctx.con, _as_of(ctx, query.as_of), since=query.since)


def run_rfm_customers(ctx: QueryContext, query: RfmCustomersQuery) -> Any:
    from masar.engine.rfm import rfm_customers

    sales_facts(ctx)
    return rfm_customers(ctx.con, _as_of(ctx, query.as_of), query.segment, since=query.since, limit=query.limit,
                         offset=query.offset)  # fmt: skip


def run_ltv_fit(ctx: QueryContext, query: LtvFitQuery) -> Any:
    from masar.engine.ltv import fit_from_orders

    sales_facts(ctx)
    return fit_from_orders(ctx.con, query.calibration_end, query.unit)


def run_ltv(ctx: QueryContext, query: LtvQuery) -> Any:
    from masar.engine.ltv_report import ltv_report

    facts = sales_facts(ctx)
    return ltv_report(
        ctx.con, currency=facts.currency, as_of=_as_of(ctx, query.as_of), mode=query.mode, unit=query.unit,
        horizon_days=query.horizon_days, discount_rate=query.discount_rate, group_by=query.group_by,
        customer=query.customer, sort=query.sort, ascending=query.ascending, limit=query.limit, offset=query.offset,
    )  # fmt: skip
