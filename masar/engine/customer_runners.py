"""Runners of the customer analyses (cohorts, RFM, lifetime value, audiences, profiles, forecasts):
each gets the facts registered on the context's cursor and calls its engine module."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date
from typing import Any

from masar.engine.context import QueryContext
from masar.engine.facts import Facts
from masar.engine.kpis import data_window, sales_facts
from masar.errors import InvalidInput, NotFound
from masar.model.sales_queries import (
    AudienceQuery,
    CohortsQuery,
    CustomerQuery,
    LtvFitQuery,
    LtvQuery,
    PersonBy,
    RfmCustomersQuery,
    RfmQuery,
)

_READINGS: dict[str, str] = {"person": "person id", "user_id": "user id", "email": "email",
                             "anonymous_id": "anonymous id"}  # fmt: skip
_MAX_PERSON = 2**63 - 1


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


def run_audience(ctx: QueryContext, query: AudienceQuery) -> Any:
    from masar.engine.audiences import audience_members

    saved = query.definition if query.name is None else ctx.store.audience(ctx.source, query.name).definition
    sales_facts(ctx)
    result = audience_members(ctx.con, saved, _as_of(ctx, query.as_of), query.limit, query.offset)
    return replace(result, name=query.name)


def run_customer(ctx: QueryContext, query: CustomerQuery) -> Any:
    from masar.engine.customers import Customer, customer_profile
    from masar.engine.rfm import rfm_customer

    facts = sales_facts(ctx)
    as_of = _as_of(ctx, query.as_of)
    person = resolve_person(ctx, query.person, query.by)
    identity = ctx.store.identities_of(ctx.source, [person])[person]
    saved = {a.name: a.definition for a in ctx.store.audiences(ctx.source)}
    profile = customer_profile(ctx.con, person, as_of, query.timeline_limit,
                               anonymous_ids=identity["anonymous_ids"], audiences=saved)  # fmt: skip
    if not query.predict:
        prediction, note = None, "not asked for (predict: false)"
    elif not profile.placed:
        prediction, note = None, f"no order up to {as_of.isoformat()}: the models predict for customers"
    else:
        prediction, note = _prediction(ctx, facts, as_of, person)
    return Customer(profile, rfm_customer(ctx.con, as_of, person), prediction, note)


def _prediction(ctx: QueryContext, facts: Facts, as_of: date, person: int) -> tuple[dict[str, Any] | None, str | None]:
    """The person's predicted value. The fit reads every customer (seconds for a million), so it is
    kept with the frame for the facts it was fitted to: one fit per version of the data and day."""
    from masar.engine.customers import predict_customer
    from masar.engine.ltv import fit_from_orders

    key = ("customer_ltv_fit", as_of)
    cached = ctx.frame.cached(key)
    if cached is None or cached[0] is not facts:
        try:
            fitted = (facts, fit_from_orders(ctx.con, as_of, "week"), None)
        except InvalidInput as exc:  # too few customers or repeat buyers, or no convergence
            fitted = (facts, None, exc.message)
        cached = ctx.frame.remember(key, fitted)
    _, fit, note = cached
    if fit is None:
        return None, note
    try:
        return predict_customer(fit, person), None
    except InvalidInput as exc:
        return None, exc.message


def resolve_person(ctx: QueryContext, given: int | str, by: PersonBy | None = None) -> int:
    """The person that a person id, user id, email or anonymous id names, after identity merges.
    Without ``by`` every reading is tried, and readings that name different people are an error
    (a user id "42" and person 42 may be two people)."""
    return pick_person(ctx.source.name, given, by, lambda reading, text: _persons(ctx, reading, text))


def pick_person(source_name: str, given: int | str, by: PersonBy | None,
                persons_of: Callable[[str, str], list[int]]) -> int:  # fmt: skip
    """The one person the readings of ``given`` find (``persons_of(reading, text)``: the persons
    one reading finds, after merges); the errors of resolve_person."""
    text = str(given)
    found: dict[str, list[int]] = {}
    for reading in [by] if by else list(_READINGS):
        persons = persons_of(reading, text)
        if persons:
            found[reading] = persons
    distinct = sorted({p for persons in found.values() for p in persons})
    if not distinct:
        what = _READINGS[by] if by else "person id, user id, email or anonymous id"
        raise NotFound(f"no person of {source_name!r} has the {what} {text!r}", code="person_not_found")
    if len(distinct) > 1:
        readings = "; ".join(f"{_READINGS[r]}: person {', '.join(map(str, ps))}" for r, ps in found.items())
        raise InvalidInput(f"{text!r} names more than one person ({readings}); ask by person id, or say which "
                           "it is with by", code="invalid_query")  # fmt: skip
    return distinct[0]


def _persons(ctx: QueryContext, reading: str, text: str) -> list[int]:
    def merged(person: int) -> int:
        return ctx.overrides.get(person, person)

    if reading == "person":
        if not text.isdecimal() or int(text) > _MAX_PERSON:
            return []
        person = merged(int(text))
        return [person] if ctx.con.execute("SELECT 1 FROM people WHERE person = ?", [person]).fetchall() else []
    if reading == "email":
        rows = ctx.con.execute(
            "SELECT person FROM people WHERE lower(email) = lower(?) ORDER BY person", [text]
        ).fetchall()
        return [int(r[0]) for r in rows]
    person = ctx.store.identities.person_of(ctx.source.id, **{reading: text})
    return [] if person is None else [merged(person)]
def run_ltv(ctx: QueryContext, query: LtvQuery) -> Any:
    from masar.engine.ltv_report import ltv_report

    facts = sales_facts(ctx)
    return ltv_report(
        ctx.con, currency=facts.currency, as_of=_as_of(ctx, query.as_of), mode=query.mode, unit=query.unit,
        horizon_days=query.horizon_days, discount_rate=query.discount_rate, group_by=query.group_by,
        customer=query.customer, sort=query.sort, ascending=query.ascending, limit=query.limit, offset=query.offset,
    )  # fmt: skip
