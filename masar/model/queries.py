"""Typed query objects: one pydantic model per analysis, with a ``kind`` literal.

The same JSON reaches the engine from Python (``store.funnel(...)``), the CLI and
``POST /api/v1/query``; defaults live here and nowhere else. Step numbers in the public API are
1-based ("step 1" is what a store owner says); the engine converts them once.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

MAX_STEPS = 30
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?|w|weeks?)?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> int:
    """``"7d"``, ``"3600s"``, ``"2h"``, ``"30m"``, ``"1w"`` or a number of seconds → whole seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text such as 7d, 2h, 30m, 3600s")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value.lower())):
        unit = (match.group(2) or "s")[0]
        seconds = float(match.group(1)) * _UNIT_SECONDS[unit]
    else:
        raise ValueError(f"{value!r} is not a duration: use a number of seconds or text such as 7d, 2h, 30m, 3600s")
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return int(round(seconds))


Duration = Annotated[int, BeforeValidator(parse_duration)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


FilterOp = Literal[
    "eq", "neq", "in", "not_in", "contains", "not_contains", "gt", "gte", "lt", "lte", "is_set", "is_not_set"
]


class PropertyFilter(_Model):
    """A condition on one property of an event: a column (``device_type``, ``price``), an event
    property (``properties.size`` or a bare name not among the columns) or a person trait
    (``person.gender``)."""

    property: str = Field(min_length=1, max_length=200)
    op: FilterOp = "eq"
    value: Any = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> PropertyFilter:
        if self.op in ("is_set", "is_not_set"):
            if self.value is not None:
                raise ValueError(f"the {self.op} filter takes no value")
        elif self.op in ("in", "not_in"):
            if not isinstance(self.value, list) or not self.value:
                raise ValueError(f"the {self.op} filter needs a non-empty list of values")
        elif self.value is None or isinstance(self.value, list | dict):
            raise ValueError(f"the {self.op} filter needs one value")
        if self.op in ("gt", "gte", "lt", "lte") and not _is_number(self.value):
            raise ValueError(f"the {self.op} filter needs a number")
        return self


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


class EventMatcher(_Model):
    """One event name (``"*"`` for any event) with optional property filters."""

    event: str = Field(min_length=1, max_length=200)
    filters: list[PropertyFilter] = Field(default_factory=list)


def _step_shorthand(value: Any) -> Any:
    return {"event": value} if isinstance(value, str) else value


class FunnelStep(_Model):
    """A step: an event with filters, or a group of alternatives ("any page view from a campaign")."""

    name: str | None = Field(default=None, max_length=200)
    group: str | None = Field(default=None, max_length=100)  # e.g. top, middle, bottom of the funnel
    event: str | None = Field(default=None, min_length=1, max_length=200)
    filters: list[PropertyFilter] = Field(default_factory=list)
    any_of: list[EventMatcher] | None = Field(default=None, min_length=1, max_length=50)
    optional: bool = False
    first_time: bool = False
    max_seconds_from_previous: Duration | None = None

    @model_validator(mode="after")
    def _one_definition(self) -> FunnelStep:
        if (self.event is None) == (self.any_of is None):
            raise ValueError("a step needs either an event or any_of (a group of events), not both")
        if self.any_of is not None and self.filters:
            raise ValueError("put filters inside each any_of entry, not beside any_of")
        return self

    @property
    def matchers(self) -> list[EventMatcher]:
        if self.any_of is not None:
            return self.any_of
        return [EventMatcher(event=self.event, filters=self.filters)]

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.event is not None:
            return self.event
        return " or ".join(m.event for m in self.any_of or [])


Step = Annotated[FunnelStep, BeforeValidator(_step_shorthand)]


class Exclusion(_Model):
    """An event between two steps of an attempt that stops the attempt there (1-based steps)."""

    event: str = Field(min_length=1, max_length=200)
    filters: list[PropertyFilter] = Field(default_factory=list)
    from_step: int = Field(default=1, ge=1, le=MAX_STEPS)
    to_step: int | None = Field(default=None, ge=2, le=MAX_STEPS)


class Breakdown(_Model):
    property: str = Field(min_length=1, max_length=200)
    attribution: Literal["first_touch", "last_touch", "all_events", "step"] = "first_touch"
    step: int | None = Field(default=None, ge=1, le=MAX_STEPS)
    limit: int = Field(default=10, ge=1, le=200)

    @model_validator(mode="after")
    def _step_attribution(self) -> Breakdown:
        if (self.attribution == "step") != (self.step is not None):
            raise ValueError("attribution 'step' needs a step number, and only it takes one")
        return self


def _breakdown_shorthand(value: Any) -> Any:
    return {"property": value} if isinstance(value, str) else value


DateBound = date | datetime


class DateRange(_Model):
    date_from: DateBound | None = Field(default=None, alias="from")
    date_to: DateBound | None = Field(default=None, alias="to")


class FunnelQuery(_Model):
    kind: Literal["funnel"] = "funnel"
    source: str = Field(min_length=1)
    steps: list[Step] = Field(min_length=2, max_length=MAX_STEPS)
    window: Duration = 7 * 86400
    order: Literal["ordered", "strict", "unordered"] = "ordered"
    counting: Literal["uniques", "totals", "sessions"] = "uniques"
    exclusions: list[Exclusion] = Field(default_factory=list, max_length=20)
    hold_constant: list[str] = Field(default_factory=list, max_length=3)
    breakdown: Annotated[Breakdown | None, BeforeValidator(_breakdown_shorthand)] = None
    date_from: DateBound | None = Field(default=None, alias="from")
    date_to: DateBound | None = Field(default=None, alias="to")
    compare: DateRange | None = None
    trend: Literal["day", "week", "month"] | None = None

    @field_validator("hold_constant")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not name or len(name) > 200:
                raise ValueError("hold_constant takes property names")
        return names

    @model_validator(mode="after")
    def _consistent(self) -> FunnelQuery:
        count = len(self.steps)
        if self.steps[0].optional:
            raise ValueError("the first step cannot be optional")
        if self.steps[-1].optional:
            raise ValueError("the last step cannot be optional")
        for ex in self.exclusions:
            to_step = ex.to_step if ex.to_step is not None else count
            if ex.from_step > count or to_step > count or to_step <= ex.from_step:
                raise ValueError(
                    f"exclusion of {ex.event!r} must name steps with 1 ≤ from_step < to_step ≤ {count}"
                )
        if self.order == "unordered":
            if self.exclusions:
                raise ValueError("exclusions need an ordered or strict funnel")
            if any(s.optional or s.max_seconds_from_previous for s in self.steps):
                raise ValueError("optional steps and times between steps need an ordered or strict funnel")
            if self.counting == "totals":
                raise ValueError("counting totals needs an ordered or strict funnel")
        if self.breakdown is not None and self.breakdown.step is not None and self.breakdown.step > count:
            raise ValueError(f"the breakdown step must be between 1 and {count}")
        if self.breakdown is not None and self.breakdown.attribution == "all_events" and self.hold_constant:
            raise ValueError("a breakdown with all_events attribution already holds its property constant")
        _check_range(self.date_from, self.date_to)
        if self.compare is not None:
            if self.compare.date_from is None or self.compare.date_to is None:
                raise ValueError("compare needs both from and to")
            _check_range(self.compare.date_from, self.compare.date_to)
        return self


def _check_range(start: DateBound | None, end: DateBound | None) -> None:
    if start is not None and end is not None:
        if _as_datetime_key(end) < _as_datetime_key(start):
            raise ValueError("the date range ends before it starts")


def _as_datetime_key(value: DateBound) -> tuple[int, int, int, int]:
    if isinstance(value, datetime):
        return (value.year, value.month, value.day, value.hour * 3600 + value.minute * 60 + value.second)
    return (value.year, value.month, value.day, 0)


class FunnelPeopleQuery(FunnelQuery):
    """The people who reached (or dropped out at) one step of a funnel, for drill-down and export."""

    kind: Literal["funnel_people"] = "funnel_people"  # type: ignore[assignment]
    step: int = Field(ge=1, le=MAX_STEPS)
    status: Literal["reached", "dropped"] = "reached"
    breakdown_value: str | None = None
    limit: int = Field(default=100, ge=1, le=100_000)
    offset: int = Field(default=0, ge=0)
