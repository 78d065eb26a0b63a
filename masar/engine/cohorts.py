"""Cohort retention: people grouped by the week or month of their first order, first visit or
signup, and what share of each cohort came back (or bought, or how much they spent) in each later
period (docs/cohorts.md has every definition).

Periods are integer indices (weeks since Monday 1900-01-01, or year·12 + month − 1), so "period
N after the cohort" is a subtraction. One DuckDB query joins each cohort membership with the
periods its person was active in and counts per (group, cohort, N); Python then only adds up
those few hundred cells, never anything per person.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb
import pyarrow as pa

from masar.errors import InvalidInput

BY = ("first_order", "first_visit", "signup")
PERIODS = ("week", "month")
MEASURES = ("active", "purchasing", "revenue")
MODES = ("first_time", "recurring")
GROUPS = ("period", "channel")
MAX_PERIODS = 520  # columns, and cohorts: ten years of weeks; beyond that a table is scrolled, not read
_WEEK_ZERO = date(1900, 1, 1)  # a Monday: week indices count from it
_ZERO = Decimal("0.000")  # money at the storage scale (DECIMAL(18, 3))

# The period index of a DATE expression. date_trunc('week') starts weeks on Monday (ISO), so the
# day difference of two truncated days is a whole number of weeks.
_INDEX = {
    "week": "(date_diff('day', DATE '1900-01-01', date_trunc('week', {d})::DATE) // 7)",
    "month": "(year({d}) * 12 + month({d}) - 1)",
}
_NOT_CANCELLED = "NOT coalesce(cancelled, false)"


@dataclass
class CohortRow:
    cohort: date | str | None  # the cohort's first day, or the first channel (None: no channel)
    size: int
    counts: list[int | None]  # members counted in period N (None: nobody's period N is complete)
    values: list[float | None]  # counts / bases (retention share), or revenue per member
    bases: list[int]  # members whose period N is complete: the denominator of values[N]
    complete: list[bool]  # period N is over for every member of the row
    revenue: list[Decimal | None] | None = None  # measure "revenue": cumulative Σ value over the bases

    def to_dict(self) -> dict[str, Any]:
        out = {
            "cohort": self.cohort.isoformat() if isinstance(self.cohort, date) else self.cohort,
            "size": self.size, "counts": self.counts, "values": self.values, "bases": self.bases,
            "complete": self.complete,
        }  # fmt: skip
        if self.revenue is not None:
            out["revenue"] = [None if r is None else str(r) for r in self.revenue]
        return out


@dataclass
class CurvePoint:
    period: int
    value: float | None  # Σ counts / Σ bases over every cohort whose period N is complete
    cohorts: int  # cohorts (of any group) that contributed
    members: int  # Σ bases

    def to_dict(self) -> dict[str, Any]:
        return {"period": self.period, "value": self.value, "cohorts": self.cohorts, "members": self.members}


@dataclass
class CohortResult:
    by: str
    period: str
    measure: str
    mode: str
    group: str
    channel: str | None
    as_of: date
    start: date  # first day of the first cohort period
    end: date  # first day of the last cohort period
    periods: int
    rows: list[CohortRow]
    curve: list[CurvePoint]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "cohorts", "by": self.by, "period": self.period, "measure": self.measure, "mode": self.mode,
            "group": self.group, "channel": self.channel, "as_of": self.as_of.isoformat(),
            "start": self.start.isoformat(), "end": self.end.isoformat(), "periods": self.periods,
            "rows": [row.to_dict() for row in self.rows], "curve": [point.to_dict() for point in self.curve],
        }  # fmt: skip

    def table(self) -> pa.Table:
        """Long form: one row per (cohort, period N)."""
        columns: dict[str, list[Any]] = {
            "cohort": [], "size": [], "period": [], "complete": [], "base": [], "count": [], "value": [],
        }  # fmt: skip
        revenue: list[Decimal | None] = []
        for row in self.rows:
            for n in range(self.periods):
                columns["cohort"].append(row.cohort)
                columns["size"].append(row.size)
                columns["period"].append(n)
                columns["complete"].append(row.complete[n])
                columns["base"].append(row.bases[n])
                columns["count"].append(row.counts[n])
                columns["value"].append(row.values[n])
                if row.revenue is not None:
                    revenue.append(row.revenue[n])
        types = {
            "cohort": pa.string() if self.group == "channel" else pa.date32(), "size": pa.int64(),
            "period": pa.int32(), "complete": pa.bool_(), "base": pa.int64(), "count": pa.int64(),
            "value": pa.float64(),
        }  # fmt: skip
        arrays = {name: pa.array(values, types[name]) for name, values in columns.items()}
        if self.measure == "revenue":
            arrays["revenue"] = pa.array(revenue, pa.decimal128(38, 3))
        return pa.table(arrays)


def cohort_table(con: duckdb.DuckDBPyConnection, **options: Any) -> CohortResult:
    """The cohort table of the facts on a DuckDB cursor (``cohort_result``'s options)."""
    return cohort_result(lambda **kw: _cells(con, **kw), **options)


def cohort_result(
    cells_of: Callable[..., tuple[dict[tuple[Any, int, int], Cell], dict[tuple[Any, int], int]]],
    *,
    by: str = "first_order",
    period: str = "month",
    measure: str = "active",
    mode: str = "first_time",
    periods: int = 12,
    start: date | None = None,
    end: date | None = None,
    channel: str | None = None,
    group: str = "period",
    tz: str = "UTC",
    as_of: date,
) -> CohortResult:
    """The cohort table and retention curve from ``cells_of`` (a backend's ``_cells``: the counts
    per cell and the cohorts' sizes; everything after them is shared).

    Cohorts are the periods from the one containing ``start`` to the one containing ``end``
    (default: the ``periods`` periods ending with the one containing ``as_of``). ``tz`` is the
    store's time zone, used only to date ``people.signup_ts`` (the tables' ``day`` columns already
    carry it). Nothing after ``as_of`` is read.
    """
    _check(by=by, period=period, measure=measure, mode=mode, group=group, periods=periods, channel=channel)
    as_of, start, end = _dates(as_of, start, end)
    if by == "signup" and mode == "recurring":
        raise InvalidInput("recurring cohorts need an event people repeat: by first_order or first_visit, "
                           "not signup", code="invalid_query")  # fmt: skip
    if by == "signup":
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(f"unknown time zone {tz!r}", code="invalid_query") from None
    done = _index(period, as_of + timedelta(days=1))  # periods with an index below this are over
    last = _index(period, end if end is not None else as_of)
    first = _index(period, start) if start is not None else last - periods + 1
    if first > last:
        raise InvalidInput(f"start ({start}) is after end ({end})", code="invalid_query")
    if last - first + 1 > MAX_PERIODS:
        raise InvalidInput(f"the table would have {last - first + 1} cohorts, at most {MAX_PERIODS} are shown: "
                           "a later start or a longer period", code="invalid_query")  # fmt: skip
    cells, sizes = cells_of(by=by, period=period, measure=measure, mode=mode, periods=periods, channel=channel,
                          group=group, tz=tz, as_of=as_of, first=first, last=last)  # fmt: skip
    if group == "period":
        keys: list[Any] = list(range(first, last + 1))
        members = {c: [(c, sizes.get((None, c), 0))] for c in keys}
    else:
        members = {}
        for (g, c), size in sizes.items():
            members.setdefault(g, []).append((c, size))
        keys = sorted(members, key=lambda g: (-sum(s for _, s in members[g]), g is None, g or ""))
    rows = []
    for key in keys:
        g = None if group == "period" else key
        label = _first_day(period, key) if group == "period" else key
        rows.append(_row(label, g, members[key], cells, measure=measure, periods=periods, done=done))
    curve = _curve(sizes, cells, measure=measure, periods=periods, done=done)
    return CohortResult(
        by=by, period=period, measure=measure, mode=mode, group=group, channel=channel, as_of=as_of,
        start=_first_day(period, first), end=_first_day(period, last), periods=periods, rows=rows, curve=curve,
    )  # fmt: skip


# -- the query ------------------------------------------------------------------------------------

Cell = tuple[int, Decimal | None, int]  # (members counted in the period, their revenue in it, first buyers)


def _cells(con: duckdb.DuckDBPyConnection, *, by: str, period: str, measure: str, mode: str, periods: int,
           channel: str | None, group: str, tz: str, as_of: date, first: int, last: int,
           ) -> tuple[dict[tuple[Any, int, int], Cell], dict[tuple[Any, int], int]]:  # fmt: skip
    """Per (group, cohort, N) the cell's counts, and per (group, cohort) the cohort's size. The
    group is the first channel when grouping by channel, else None."""
    index = _INDEX[period]
    if mode == "recurring":
        # A membership per period in which the person did the cohort's event.
        source = "orders" if by == "first_order" else "sessions"
        where = f"{_NOT_CANCELLED} AND " if by == "first_order" else ""
        births = f"SELECT DISTINCT person, {index.format(d='day')} AS cohort FROM {source} WHERE {where}day <= $as_of"
    elif by == "first_order":
        births = (f"SELECT person, {index.format(d='min(day)')} AS cohort FROM orders "
                  f"WHERE {_NOT_CANCELLED} AND day <= $as_of GROUP BY person")  # fmt: skip
    elif by == "first_visit":
        births = (
            f"SELECT person, {index.format(d='first_day')} AS cohort FROM people WHERE first_day <= $as_of"
        )
    else:
        signup_day = "timezone($tz, signup_ts)::DATE"
        births = (f"SELECT person, {index.format(d=signup_day)} AS cohort FROM people "
                  f"WHERE signup_ts IS NOT NULL AND {signup_day} <= $as_of")  # fmt: skip
    need_people = channel is not None or group == "channel"
    grp = "people.first_channel" if group == "channel" else "NULL::VARCHAR"
    members = f"""
        SELECT births.person, births.cohort, {grp} AS grp
        FROM ({births}) AS births {"JOIN people ON people.person = births.person" if need_people else ""}
        WHERE births.cohort BETWEEN $first AND $last {"AND people.first_channel = $channel" if channel else ""}
    """
    if measure == "active":
        activity = f"SELECT DISTINCT person, {index.format(d='day')} AS k, NULL::DECIMAL(38, 3) AS revenue FROM sessions"
        where = "day BETWEEN $from_day AND $as_of"
    else:
        activity = f"SELECT person, {index.format(d='day')} AS k, sum(value) AS revenue FROM orders"
        where = f"{_NOT_CANCELLED} AND day BETWEEN $from_day AND $as_of GROUP BY person, k"
    # The sizes ride along as rows with n NULL: one query, so the members are computed once.
    # Revenue also counts cumulative buyers: rows with the count NULL carry, per first buying
    # period N, how many members first bought then (a second GROUP BY over the joined rows; a
    # window over them took half as long again on 1M people).
    buyers = ""
    if measure == "revenue":
        buyers = """
        UNION ALL
        SELECT grp, cohort, first_n, NULL, NULL, count(*)
        FROM (SELECT grp, cohort, min(n) AS first_n FROM joined GROUP BY person, grp, cohort) GROUP BY ALL
        """
    sql = f"""
        WITH members AS MATERIALIZED ({members}),
        activity AS ({activity} WHERE {where}),
        joined AS {"MATERIALIZED" if buyers else ""} (
            SELECT m.person, m.grp, m.cohort, a.k - m.cohort AS n, a.revenue
            FROM members AS m JOIN activity AS a ON a.person = m.person AND a.k >= m.cohort AND a.k < m.cohort + $periods
        )
        SELECT grp, cohort, n, count(*), sum(revenue), NULL FROM joined GROUP BY ALL
        {buyers}
        UNION ALL
        SELECT grp, cohort, NULL, count(*), NULL, NULL FROM members GROUP BY ALL
    """
    params: dict[str, Any] = {
        "as_of": as_of, "first": first, "last": last, "periods": periods,
        "from_day": _first_day(period, first),
    }  # fmt: skip
    if by == "signup" and mode == "first_time":
        params["tz"] = tz
    if channel:
        params["channel"] = channel
    return cells_from_rows(con.execute(sql, params).fetchall())


def cells_from_rows(rows) -> tuple[dict[tuple[Any, int, int], Cell], dict[tuple[Any, int], int]]:
    """The cells and cohort sizes from the rows of the cells query (every backend's):
    (group, cohort, period, count, revenue, first buyers), where a row without a period is a
    cohort's size and one without a count gives a cell's first buyers."""
    cells: dict[tuple[Any, int, int], Cell] = {}
    sizes: dict[tuple[Any, int], int] = {}
    for g, cohort, n, count, revenue, first_buyers in rows:
        if n is None:
            sizes[(g, cohort)] = count
        elif count is None:
            before = cells.get((g, cohort, n), (0, None, 0))
            cells[(g, cohort, n)] = (before[0], before[1], first_buyers)
        else:
            before = cells.get((g, cohort, n), (0, None, 0))
            cells[(g, cohort, n)] = (count, revenue, before[2])
    return cells, sizes


# -- adding up the cells --------------------------------------------------------------------------


def _row(label: Any, g: Any, cohorts: list[tuple[int, int]], cells: dict[tuple[Any, int, int], Cell], *,
         measure: str, periods: int, done: int) -> CohortRow:  # fmt: skip
    """One row of the table over its cohorts (one for a period row; several for a channel row):
    period N counts the cohorts whose period N is complete."""
    size = sum(s for _, s in cohorts)
    counts: list[int | None] = []
    values: list[float | None] = []
    bases: list[int] = []
    complete: list[bool] = []
    revenue: list[Decimal | None] = []
    cumulative = {c: (_ZERO, 0) for c, _ in cohorts}  # revenue and buyers through period N
    for n in range(periods):
        base, count, money = 0, 0, _ZERO
        for c, s in cohorts:
            count_n, revenue_n, first_n = cells.get((g, c, n), (0, None, 0))
            if measure == "revenue":
                rev, buyers = cumulative[c]
                cumulative[c] = (rev + (revenue_n or 0), buyers + first_n)
            if c + n < done:
                base += s
                if measure == "revenue":
                    money += cumulative[c][0]
                    count += cumulative[c][1]
                else:
                    count += count_n
        bases.append(base)
        complete.append(bool(cohorts) and all(c + n < done for c, _ in cohorts))
        known = any(c + n < done for c, _ in cohorts)
        counts.append(count if known else None)
        revenue.append(money if known else None)
        if measure == "revenue":
            values.append(float(money / base) if base else None)
        else:
            values.append(count / base if base else None)
    return CohortRow(label, size, counts, values, bases, complete, revenue if measure == "revenue" else None)


def _curve(sizes: dict[tuple[Any, int], int], cells: dict[tuple[Any, int, int], Cell], *, measure: str,
           periods: int, done: int) -> list[CurvePoint]:  # fmt: skip
    """The size-weighted mean of every cohort's value at N, over the cohorts whose period N is
    complete: Σ counts / Σ sizes (Σ cumulative revenue / Σ sizes for revenue). Channel groups
    are added back together: the curve is the same whatever the grouping."""
    by_cohort: dict[int, int] = {}
    for (_, c), size in sizes.items():
        by_cohort[c] = by_cohort.get(c, 0) + size
    summed: dict[tuple[int, int], tuple[int, Decimal]] = {}
    for (_, c, n), (count, revenue, _first) in cells.items():
        before = summed.get((c, n), (0, _ZERO))
        summed[(c, n)] = (before[0] + count, before[1] + (revenue or 0))
    running = dict.fromkeys(by_cohort, _ZERO)  # each cohort's revenue through period N
    curve = []
    for n in range(periods):
        count, money, cohorts, members = 0, _ZERO, 0, 0
        for c, size in by_cohort.items():
            cell_count, cell_revenue = summed.get((c, n), (0, _ZERO))
            running[c] += cell_revenue
            if c + n >= done:
                continue
            cohorts += 1
            members += size
            money += running[c]
            count += cell_count
        if not members:
            value = None
        elif measure == "revenue":
            value = float(money / members)
        else:
            value = count / members
        curve.append(CurvePoint(n, value, cohorts, members))
    return curve


# -- inputs and periods ---------------------------------------------------------------------------


def _check(
    *, by: str, period: str, measure: str, mode: str, group: str, periods: int, channel: str | None
) -> None:
    for name, value, allowed in (("by", by, BY), ("period", period, PERIODS), ("measure", measure, MEASURES),
                                 ("mode", mode, MODES), ("group", group, GROUPS)):  # fmt: skip
        if value not in allowed:
            raise InvalidInput(
                f"{name} must be one of {', '.join(allowed)}; got {value!r}", code="invalid_query"
            )
    if not isinstance(periods, int) or isinstance(periods, bool) or not 1 <= periods <= MAX_PERIODS:
        raise InvalidInput(f"periods must be a whole number from 1 to {MAX_PERIODS}, got {periods!r}",
                           code="invalid_query")  # fmt: skip
    if channel is not None and (not isinstance(channel, str) or not channel):
        raise InvalidInput(f"channel must be a non-empty text, got {channel!r}", code="invalid_query")


def _dates(as_of: Any, start: Any, end: Any) -> tuple[date, date | None, date | None]:
    for name, value in (("as_of", as_of), ("start", start), ("end", end)):
        if value is None and name != "as_of":
            continue
        if not isinstance(value, date) or isinstance(value, datetime):
            raise InvalidInput(f"{name} must be a date, got {value!r}", code="invalid_query")
    if end is not None and end > as_of:
        raise InvalidInput(
            f"end ({end}) is after as_of ({as_of}): nothing after as_of is read", code="invalid_query"
        )
    if start is not None and start > as_of:
        raise InvalidInput(f"start ({start}) is after as_of ({as_of})", code="invalid_query")
    return as_of, start, end


def _index(period: str, day: date) -> int:
    """The period index of a day, as the SQL in _INDEX computes it."""
    if period == "week":
        return (day - _WEEK_ZERO).days // 7
    return day.year * 12 + day.month - 1


def _first_day(period: str, index: int) -> date:
    if period == "week":
        return _WEEK_ZERO + timedelta(weeks=index)
    return date(index // 12, index % 12 + 1, 1)
