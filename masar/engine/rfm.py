"""RFM: every customer scored 1–5 on recency, frequency and monetary value, and placed in one of
ten segments by their recency and frequency scores (docs/segments.md has every definition).

Everything is one DuckDB query over ``orders``: the per-customer figures are a GROUP BY, the
scores come from running counts over the distinct values, and the segment is a lookup into the
25-cell R×F grid bound as a list parameter. No Python runs per customer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa

from masar.errors import InvalidInput

_ZERO = Decimal("0.000")  # money at the storage scale (DECIMAL(18, 3))

# The ten segments, best first; the order of rows in every result.
SEGMENTS: tuple[str, ...] = (
    "Champions", "Loyal Customers", "Potential Loyalists", "New Customers", "Promising",
    "Need Attention", "About to Sleep", "At Risk", "Can't Lose Them", "Hibernating",
)  # fmt: skip

# The well-known partition of the 5×5 R×F grid: (segment, recency scores, frequency scores).
SEGMENT_RULES: tuple[tuple[str, range, range], ...] = (
    ("Hibernating", range(1, 3), range(1, 3)),
    ("At Risk", range(1, 3), range(3, 5)),
    ("Can't Lose Them", range(1, 3), range(5, 6)),
    ("About to Sleep", range(3, 4), range(1, 3)),
    ("Need Attention", range(3, 4), range(3, 4)),
    ("Loyal Customers", range(3, 5), range(4, 6)),
    ("Promising", range(4, 5), range(1, 2)),
    ("New Customers", range(5, 6), range(1, 2)),
    ("Potential Loyalists", range(4, 6), range(2, 4)),
    ("Champions", range(5, 6), range(4, 6)),
)


def _grid() -> tuple[str, ...]:
    """The segment of each cell, at index (r − 1)·5 + (f − 1). Fails at import if the rules
    leave a cell empty or put one cell in two segments."""
    cells: dict[tuple[int, int], str] = {}
    for name, rs, fs in SEGMENT_RULES:
        for r in rs:
            for f in fs:
                if (r, f) in cells:
                    raise AssertionError(f"R{r} F{f} is in both {cells[(r, f)]} and {name}")
                cells[(r, f)] = name
    missing = [(r, f) for r in range(1, 6) for f in range(1, 6) if (r, f) not in cells]
    if missing:
        raise AssertionError(f"R×F cells without a segment: {missing}")
    return tuple(cells[(r, f)] for r in range(1, 6) for f in range(1, 6))


GRID = _grid()


def segment_of(r: int, f: int) -> str:
    """The segment of a customer with recency score ``r`` and frequency score ``f`` (1–5)."""
    if not (1 <= r <= 5 and 1 <= f <= 5):
        raise ValueError(f"scores run from 1 to 5, got R{r} F{f}")
    return GRID[(r - 1) * 5 + (f - 1)]


# One row per customer. A score is 1 + ⌊5·b / n⌋, where b is the number of customers with a
# strictly worse value and n the number of customers scored: equal values share b, so they never
# split across scores, and distinct values fall in exact fifths when n is a multiple of 5.
# b comes from the distinct values and their counts (a running sum of the counts of worse values)
# rather than a rank over every customer: sorting a few hundred recencies and a dozen frequencies
# instead of a million rows is what keeps this well under the 2 s.
_SCORED = """
WITH customer AS (
    SELECT person,
           date_diff('day', max(day), $as_of) AS recency_days,
           count(*) AS frequency,
           sum(value - coalesce(refunded, 0)) AS monetary
    FROM orders
    WHERE NOT coalesce(cancelled, false) AND day <= $as_of AND ($since IS NULL OR day >= $since)
    GROUP BY person
), n AS (
    SELECT count(*) AS customers, count(monetary) AS known FROM customer
), worse_r AS (
    SELECT recency_days, sum(count(*)) OVER (ORDER BY recency_days DESC ROWS UNBOUNDED PRECEDING) - count(*) AS b
    FROM customer GROUP BY recency_days
), worse_f AS (
    SELECT frequency, sum(count(*)) OVER (ORDER BY frequency ROWS UNBOUNDED PRECEDING) - count(*) AS b
    FROM customer GROUP BY frequency
), worse_m AS (
    SELECT monetary, sum(count(*)) OVER (ORDER BY monetary ROWS UNBOUNDED PRECEDING) - count(*) AS b
    FROM customer WHERE monetary IS NOT NULL GROUP BY monetary
), scored AS (
    SELECT customer.*,
           (1 + 5 * worse_r.b::BIGINT // n.customers)::INTEGER AS r,
           (1 + 5 * worse_f.b::BIGINT // n.customers)::INTEGER AS f,
           (1 + 5 * worse_m.b::BIGINT // n.known)::INTEGER AS m  -- NULL when monetary is unknown
    FROM customer CROSS JOIN n
    JOIN worse_r USING (recency_days) JOIN worse_f USING (frequency) LEFT JOIN worse_m USING (monetary)
)
SELECT *, list_extract($grid::VARCHAR[], (r - 1) * 5 + f) AS segment FROM scored
"""


@dataclass
class SegmentSummary:
    segment: str
    customers: int
    share: float | None  # of all customers
    revenue: Decimal  # Σ monetary of the segment's customers (NULL monetary left out)
    revenue_share: float | None  # of the revenue of all customers; None when that is not positive
    mean_recency_days: float | None
    mean_frequency: float | None
    mean_monetary: float | None  # over the segment's customers whose monetary is known

    def to_dict(self) -> dict[str, Any]:
        return {
            "segment": self.segment, "customers": self.customers, "share": self.share,
            "revenue": str(self.revenue), "revenue_share": self.revenue_share,
            "mean_recency_days": self.mean_recency_days, "mean_frequency": self.mean_frequency,
            "mean_monetary": self.mean_monetary,
        }  # fmt: skip


@dataclass
class RfmResult:
    as_of: date
    since: date | None
    customers: int
    revenue: Decimal
    segments: list[SegmentSummary]  # all ten, in SEGMENTS order, empty ones included
    r_scores: list[int]  # customers with score 1..5
    f_scores: list[int]
    m_scores: list[int]
    m_unknown: int  # customers without a known monetary value (every order's value NULL): no M score
    grid: list[list[int]]  # grid[r − 1][f − 1]: customers with that R and F score

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "rfm",
            "as_of": self.as_of.isoformat(),
            "since": self.since.isoformat() if self.since else None,
            "customers": self.customers,
            "revenue": str(self.revenue),
            "segments": [s.to_dict() for s in self.segments],
            "scores": {
                "r": self.r_scores,
                "f": self.f_scores,
                "m": self.m_scores,
                "m_unknown": self.m_unknown,
            },
            "grid": self.grid,
        }

    def table(self) -> pa.Table:
        return pa.table({
            "segment": pa.array([s.segment for s in self.segments], pa.string()),
            "customers": pa.array([s.customers for s in self.segments], pa.int64()),
            "share": pa.array([s.share for s in self.segments], pa.float64()),
            "revenue": pa.array([s.revenue for s in self.segments], pa.decimal128(38, 3)),
            "revenue_share": pa.array([s.revenue_share for s in self.segments], pa.float64()),
            "mean_recency_days": pa.array([s.mean_recency_days for s in self.segments], pa.float64()),
            "mean_frequency": pa.array([s.mean_frequency for s in self.segments], pa.float64()),
            "mean_monetary": pa.array([s.mean_monetary for s in self.segments], pa.float64()),
        })  # fmt: skip


@dataclass
class RfmCustomers:
    """One page of customers (all of them when ``limit`` was None), best spenders first."""

    as_of: date
    since: date | None
    segment: str | None
    total: int  # customers in the segment (all customers without one), whatever the page
    limit: int | None
    offset: int
    rows: pa.Table  # person, user_id, email, recency_days, frequency, monetary, r, f, m, segment

    def to_dict(self) -> dict[str, Any]:
        rows = self.rows.to_pylist()
        for row in rows:
            if row["monetary"] is not None:
                row["monetary"] = str(row["monetary"])
        return {
            "kind": "rfm_customers",
            "as_of": self.as_of.isoformat(),
            "since": self.since.isoformat() if self.since else None,
            "segment": self.segment,
            "total": self.total,
            "limit": self.limit,
            "offset": self.offset,
            "customers": rows,
        }

    def table(self) -> pa.Table:
        return self.rows


def rfm_segments(con: duckdb.DuckDBPyConnection, as_of: date, since: date | None = None) -> RfmResult:
    """Segment sizes, revenue, means and score distributions of the customers as of ``as_of``
    (orders on days ``since``..``as_of``, both included; all days up to ``as_of`` without ``since``)."""
    params = check_dates(as_of, since)
    sql = f"""
        SELECT grouping(segment) AS g_segment, grouping(r) AS g_r, grouping(f) AS g_f, grouping(m) AS g_m,
               segment, r, f, m, count(*) AS customers, sum(monetary) AS revenue, count(monetary) AS known,
               sum(recency_days) AS recency_sum, sum(frequency) AS frequency_sum
        FROM ({_SCORED})
        GROUP BY GROUPING SETS ((segment), (r, f), (m), ())
    """
    return segments_from_rows(as_of, since, con.execute(sql, params).fetchall())


def segments_from_rows(as_of: date, since: date | None, rows: list[tuple]) -> RfmResult:
    """The RFM result from the grouping-set rows of a backend's query: (grouping flags of segment,
    r, f and m; segment, r, f, m; customers, Σ monetary, customers with a known monetary,
    Σ recency days, Σ frequency), one row per segment, per (r, f), per m and one for all."""
    by_segment: dict[str, tuple] = {}
    grid = [[0] * 5 for _ in range(5)]
    m_scores = [0] * 5
    m_unknown = 0
    customers, revenue = 0, _ZERO
    for g_segment, g_r, _g_f, g_m, segment, r, f, m, n, rev, known, rec_sum, freq_sum in rows:
        if not g_segment:
            by_segment[segment] = (n, rev, known, rec_sum, freq_sum)
        elif not g_r:
            grid[r - 1][f - 1] = n
        elif not g_m:
            if m is None:
                m_unknown = n
            else:
                m_scores[m - 1] = n
        else:
            customers, revenue = n, rev if rev is not None else _ZERO
    segments = []
    for name in SEGMENTS:
        n, rev, known, rec_sum, freq_sum = by_segment.get(name, (0, None, 0, 0, 0))
        rev = rev if rev is not None else _ZERO
        segments.append(SegmentSummary(
            segment=name, customers=n, share=n / customers if customers else None, revenue=rev,
            revenue_share=float(rev / revenue) if revenue > 0 else None,
            mean_recency_days=float(rec_sum) / n if n else None,
            mean_frequency=float(freq_sum) / n if n else None,
            mean_monetary=float(rev / known) if known else None,
        ))  # fmt: skip
    return RfmResult(
        as_of=as_of, since=since, customers=customers, revenue=revenue, segments=segments,
        r_scores=[sum(row) for row in grid], f_scores=[sum(row[f] for row in grid) for f in range(5)],
        m_scores=m_scores, m_unknown=m_unknown, grid=grid,
    )  # fmt: skip


def rfm_customers(
    con: duckdb.DuckDBPyConnection,
    as_of: date,
    segment: str | None = None,
    *,
    since: date | None = None,
    limit: int | None = 100,
    offset: int = 0,
) -> RfmCustomers:
    """The customers of one segment (all customers when ``segment`` is None) with their figures
    and scores, highest monetary first (then by person), ``limit`` rows from ``offset``;
    ``limit=None`` returns every row (for export)."""
    params = check_dates(as_of, since)
    check_page(segment, limit, offset)
    columns = """people.user_id, people.email, recency_days, frequency, monetary::DECIMAL(38, 3) AS monetary,
                 r::TINYINT AS r, f::TINYINT AS f, m::TINYINT AS m, segment"""
    params.update(segment=segment)
    if limit is None and offset == 0:
        # The whole list (an export): one join and one sort; the total is the row count.
        sql = f"""
            SELECT scored.person, {columns}
            FROM ({_SCORED}) AS scored LEFT JOIN people ON people.person = scored.person
            WHERE $segment IS NULL OR segment = $segment
            ORDER BY monetary DESC NULLS LAST, scored.person
        """
        rows = con.sql(sql, params=params).to_arrow_table()
        return RfmCustomers(as_of=as_of, since=since, segment=segment, total=rows.num_rows, limit=limit,
                            offset=offset, rows=rows)  # fmt: skip
    # The page is cut before joining people, so a page of 100 joins 100 rows, not a million.
    sql = f"""
        WITH page AS (
            SELECT *, count(*) OVER () AS total
            FROM ({_SCORED})
            WHERE $segment IS NULL OR segment = $segment
            ORDER BY monetary DESC NULLS LAST, person
            LIMIT $limit OFFSET $offset
        )
        SELECT page.person, {columns}, total
        FROM page LEFT JOIN people ON people.person = page.person
        ORDER BY monetary DESC NULLS LAST, page.person
    """
    params.update(limit=limit, offset=offset)
    rows = con.sql(sql, params=params).to_arrow_table()
    # A page past the end has no row to carry the total.
    total = rows.column("total")[0].as_py() if rows.num_rows else _count(con, params)
    rows = rows.drop_columns(["total"])
    return RfmCustomers(
        as_of=as_of, since=since, segment=segment, total=total, limit=limit, offset=offset, rows=rows
    )


def check_page(segment: str | None, limit: int | None, offset: int) -> None:
    if segment is not None and segment not in SEGMENTS:
        raise InvalidInput(
            f"unknown segment {segment!r}; the segments are: {', '.join(SEGMENTS)}", code="invalid_query"
        )
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise InvalidInput(f"limit must be a whole number ≥ 0 or none, got {limit!r}", code="invalid_query")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise InvalidInput(f"offset must be a whole number ≥ 0, got {offset!r}", code="invalid_query")


def rfm_customer(
    con: duckdb.DuckDBPyConnection, as_of: date, person: int, *, since: date | None = None
) -> dict[str, Any] | None:
    """One customer's row of ``rfm_customers`` (scored among every customer), without the identity
    columns; None when the person has no order that counts."""
    params = check_dates(as_of, since)
    params["person"] = person
    rows = con.execute(
        f"SELECT recency_days, frequency, monetary::DECIMAL(38, 3), r, f, m, segment FROM ({_SCORED}) "
        "WHERE person = $person",
        params,
    ).fetchall()
    if not rows:
        return None
    names = ("recency_days", "frequency", "monetary", "r", "f", "m", "segment")
    return {"person": person, **dict(zip(names, rows[0], strict=True))}


def segment_labels(con: duckdb.DuckDBPyConnection, as_of: date) -> pa.Table:
    """Every customer's segment as of ``as_of``: ``person``, ``segment``, sorted by person (the
    labels lifetime value groups by)."""
    sql = f"SELECT person, segment FROM ({_SCORED}) ORDER BY person"
    return con.sql(sql, params=check_dates(as_of, None)).to_arrow_table()


def _count(con: duckdb.DuckDBPyConnection, params: dict[str, Any]) -> int:
    params = {k: params[k] for k in ("as_of", "since", "grid", "segment")}
    sql = f"SELECT count(*) FROM ({_SCORED}) WHERE $segment IS NULL OR segment = $segment"
    return con.execute(sql, params).fetchall()[0][0]


def check_dates(as_of: date, since: date | None) -> dict[str, Any]:
    if not isinstance(as_of, date) or isinstance(as_of, datetime):
        raise InvalidInput(f"as_of must be a date, got {as_of!r}", code="invalid_query")
    if since is not None:
        if not isinstance(since, date) or isinstance(since, datetime):
            raise InvalidInput(f"since must be a date, got {since!r}", code="invalid_query")
        if since > as_of:
            raise InvalidInput(f"since ({since}) is after as_of ({as_of})", code="invalid_query")
    return {"as_of": as_of, "since": since, "grid": list(GRID)}
