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


class PathCleaning(_Model):
    """A path-cleaning rule: labels matching ``pattern`` (a Python regular expression, searched
    anywhere in the label; anchor it with ``^``) become ``alias`` ("^/products/" → "Product page")."""

    pattern: str = Field(min_length=1, max_length=500)
    alias: str = Field(min_length=1, max_length=200)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from None
        return pattern


class PathFunnel(_Model):
    """The funnel whose drop-outs a paths query follows: people who reached step ``dropped_after``
    and not the step after it (1-based), from their step event on."""

    steps: list[Step] = Field(min_length=2, max_length=MAX_STEPS)
    dropped_after: int = Field(ge=1, le=MAX_STEPS - 1)
    window: Duration = 7 * 86400
    order: Literal["ordered", "strict"] = "ordered"
    exclusions: list[Exclusion] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _step_in_funnel(self) -> PathFunnel:
        if self.dropped_after >= len(self.steps):
            raise ValueError(f"dropped_after must be a step before the last, 1 to {len(self.steps) - 1}")
        if self.steps[self.dropped_after - 1].optional or self.steps[self.dropped_after].optional:
            raise ValueError("dropped_after and the step after it cannot be optional steps")
        return self


class PathsQuery(_Model):
    """Journeys: the sequences of events people did after (or before) an anchor — a step, a
    funnel step they dropped out after, or their first event in the range (docs/paths.md)."""

    kind: Literal["paths"] = "paths"
    source: str = Field(min_length=1)
    step: Step | None = None  # the anchor; None: each person's first event in the range
    direction: Literal["after", "before"] = "after"
    funnel: PathFunnel | None = None
    window: Literal["session"] | Duration = 86400  # after (before) the anchor, or its session
    length: int = Field(default=5, ge=2, le=20)  # events in a path, the anchor included
    occurrence: Literal["first", "every"] = "first"
    label: Literal["event", "path", "url"] = "event"
    cleaning: list[PathCleaning] = Field(default_factory=list, max_length=100)
    collapse_repeats: bool = True
    exclude_events: list[str] = Field(default_factory=list, max_length=100)
    limit: int = Field(default=20, ge=1, le=1000)  # top paths and loops listed
    node_limit: int = Field(default=30, ge=2, le=500)
    edge_limit: int = Field(default=100, ge=1, le=5000)
    date_from: DateBound | None = Field(default=None, alias="from")
    date_to: DateBound | None = Field(default=None, alias="to")

    @model_validator(mode="after")
    def _one_anchor(self) -> PathsQuery:
        if self.funnel is not None:
            if self.step is not None:
                raise ValueError("give either a step or a funnel to follow drop-outs from, not both")
            if self.direction != "after":
                raise ValueError("drop-outs are followed after the step they dropped out after")
        if self.step is None and self.funnel is None and self.direction == "before":
            raise ValueError("paths before need a step to end at")
        _check_range(self.date_from, self.date_to)
        return self


class CorrelationQuery(FunnelQuery):
    """Which events, event property values and person properties go with converting through a
    funnel or dropping out of it, by odds ratio (docs/correlation.md). The funnel fields mean what
    they mean for a funnel."""

    kind: Literal["correlation"] = "correlation"  # type: ignore[assignment]
    properties: list[str] = Field(default_factory=list, max_length=20)
    events: bool = True  # event names as candidates
    exclude_steps: bool = True
    exclude_events: list[str] = Field(default_factory=list, max_length=100)
    min_people: int = Field(default=25, ge=1)
    min_share: float = Field(default=0.02, ge=0, le=1)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    limit: int = Field(default=10, ge=1, le=500)

    @field_validator("properties")
    @classmethod
    def _property_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not name or len(name) > 200:
                raise ValueError("properties takes property names")
        return names

    @model_validator(mode="after")
    def _correlation_funnel(self) -> CorrelationQuery:
        if self.breakdown is not None or self.compare is not None or self.trend is not None:
            raise ValueError("correlation takes no breakdown, compare or trend")
        if self.order == "unordered":
            raise ValueError("correlation needs an ordered or strict funnel")
        if self.counting != "uniques":
            raise ValueError("correlation counts people: use counting uniques")
        if not self.events and not self.properties:
            raise ValueError("nothing to correlate: keep events or name properties")
        return self


# The segments the leak finder always looks at (docs/leaks.md); ``customer`` is new vs returning.
LEAK_SEGMENTS = ("device_type", "browser", "os", "channel", "session_source", "session_campaign", "country",
                 "customer")  # fmt: skip


class LeaksQuery(FunnelQuery):
    """The leak finder: for each step of a funnel, the segments and periods whose conversion to
    the next step fell, with the conversions and revenue lost. The funnel fields mean what they
    mean for a funnel; the rest are the statistics' parameters (docs/leaks.md)."""

    kind: Literal["leaks"] = "leaks"  # type: ignore[assignment]
    # Sessions, not people: a person's many visits would each be dated by the one attempt the
    # funnel reports, which moves non-converters early and converters late (docs/leaks.md).
    counting: Literal["uniques", "totals", "sessions"] = "sessions"
    segment_by: list[str] = Field(default_factory=list, max_length=20)  # besides LEAK_SEGMENTS
    default_segments: bool = True
    min_sample: int = Field(default=50, ge=5)  # units in a segment/period and in what it is compared with
    alpha: float = Field(default=0.05, gt=0, lt=1)  # after the correction over all tests run
    correction: Literal["bh", "holm"] = "bh"
    min_effect: float = Field(default=0.3, gt=0, lt=1)  # relative drop: 1 − conversion / baseline
    min_days: int = Field(default=3, ge=1, le=366)  # shortest period reported
    max_values: int = Field(default=50, ge=1, le=500)  # values of one property tested, most traffic first
    order_event: str = Field(default="Order Completed", min_length=1, max_length=200)
    limit: int = Field(default=20, ge=1, le=500)

    @field_validator("segment_by")
    @classmethod
    def _segment_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not name or len(name) > 200:
                raise ValueError("segment_by takes property names")
        return names

    @model_validator(mode="after")
    def _leak_funnel(self) -> LeaksQuery:
        if self.breakdown is not None or self.compare is not None or self.trend is not None:
            raise ValueError("the leak finder takes no breakdown, compare or trend: it finds its own segments and periods")
        if self.order == "unordered":
            raise ValueError("the leak finder needs an ordered or strict funnel")
        return self
