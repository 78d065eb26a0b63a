"""Plain definitions of RFM scores, segments and cohort retention, written for clarity, not
speed: masar/engine/rfm.py and masar/engine/cohorts.py must agree with these (docs/segments.md,
docs/cohorts.md). Loops over dicts and calendar arithmetic, nothing shared with the engine.

The data are plain dicts:

- an order: ``{"person", "day", "value" (Decimal | None), "refunded" (Decimal), "cancelled"}``
  (optional: ``order_key``, ``channel``);
- a session: ``{"person", "day"}``;
- a person: ``{"person", "first_day", "first_channel", "signup_ts" (aware datetime | None)}``
  (optional: ``user_id``, ``email``).

``tables`` loads them into an in-memory DuckDB with exactly the columns the engine reads.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import duckdb

# -- the tables -----------------------------------------------------------------------------------

_ORDERS = """CREATE TABLE orders (order_key VARCHAR, person BIGINT, ts TIMESTAMPTZ, day DATE, value DECIMAL(18, 3),
    discount DECIMAL(18, 3), items BIGINT, refunded DECIMAL(18, 3), cancelled BOOLEAN, order_number INTEGER,
    channel VARCHAR, campaign VARCHAR, device_type VARCHAR, country VARCHAR, session_id BIGINT)"""
_SESSIONS = """CREATE TABLE sessions (session_id BIGINT, person BIGINT, ts TIMESTAMPTZ, day DATE, channel VARCHAR,
    source VARCHAR, medium VARCHAR, campaign VARCHAR, device_type VARCHAR, country VARCHAR, events BIGINT,
    orders BIGINT)"""
_PEOPLE = """CREATE TABLE people (person BIGINT, user_id VARCHAR, email VARCHAR, first_seen TIMESTAMPTZ,
    first_day DATE, first_channel VARCHAR, first_campaign VARCHAR, signup_ts TIMESTAMPTZ,
    first_order_ts TIMESTAMPTZ, last_order_ts TIMESTAMPTZ, orders BIGINT, revenue DECIMAL(18, 3))"""


def tables(
    orders: list[dict], sessions: list[dict] = (), people: list[dict] = ()
) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(_ORDERS)
    con.execute(_SESSIONS)
    con.execute(_PEOPLE)
    if orders:
        con.executemany(
            "INSERT INTO orders (order_key, person, ts, day, value, refunded, cancelled, channel)"
            " VALUES (?, ?, ?::DATE::TIMESTAMPTZ, ?, ?, ?, ?, ?)",
            [[o.get("order_key", f"o{i}"), o["person"], o["day"], o["day"], o["value"], o["refunded"],
              o["cancelled"], o.get("channel")] for i, o in enumerate(orders)],
        )  # fmt: skip
    if sessions:
        con.executemany(
            "INSERT INTO sessions (session_id, person, ts, day) VALUES (?, ?, ?::DATE::TIMESTAMPTZ, ?)",
            [[i, s["person"], s["day"], s["day"]] for i, s in enumerate(sessions)],
        )
    if people:
        con.executemany(
            "INSERT INTO people (person, user_id, email, first_day, first_channel, signup_ts) VALUES (?, ?, ?, ?, ?, ?)",
            [[p["person"], p.get("user_id"), p.get("email"), p["first_day"], p["first_channel"], p["signup_ts"]]
             for p in people],
        )  # fmt: skip
    return con


# -- RFM ------------------------------------------------------------------------------------------


def segment(r: int, f: int) -> str:
    """The R×F map, cell by cell as docs/segments.md draws it."""
    if r in (1, 2):
        if f in (1, 2):
            return "Hibernating"
        if f in (3, 4):
            return "At Risk"
        return "Can't Lose Them"
    if r == 3:
        if f in (1, 2):
            return "About to Sleep"
        if f == 3:
            return "Need Attention"
        return "Loyal Customers"
    if r == 4:
        if f == 1:
            return "Promising"
        if f in (2, 3):
            return "Potential Loyalists"
        return "Loyal Customers"
    if f == 1:
        return "New Customers"
    if f in (2, 3):
        return "Potential Loyalists"
    return "Champions"


def rfm(orders: list[dict], as_of: date, since: date | None = None) -> dict[int, dict[str, Any]]:
    """Per customer: recency_days, frequency, monetary, r, f, m, segment."""
    customers: dict[int, dict[str, Any]] = {}
    for o in orders:
        if o["cancelled"] or o["day"] > as_of or (since is not None and o["day"] < since):
            continue
        c = customers.setdefault(o["person"], {"last": o["day"], "frequency": 0, "monetary": None})
        c["last"] = max(c["last"], o["day"])
        c["frequency"] += 1
        if o["value"] is not None:
            c["monetary"] = (c["monetary"] or Decimal(0)) + o["value"] - o["refunded"]
    for c in customers.values():
        c["recency_days"] = (as_of - c.pop("last")).days
    n = len(customers)
    known = [c for c in customers.values() if c["monetary"] is not None]
    for c in customers.values():
        # b = how many customers are strictly worse; score = 1 + floor(5 b / n).
        worse_r = sum(1 for d in customers.values() if d["recency_days"] > c["recency_days"])
        worse_f = sum(1 for d in customers.values() if d["frequency"] < c["frequency"])
        c["r"] = 1 + (5 * worse_r) // n
        c["f"] = 1 + (5 * worse_f) // n
        if c["monetary"] is None:
            c["m"] = None
        else:
            worse_m = sum(1 for d in known if d["monetary"] < c["monetary"])
            c["m"] = 1 + (5 * worse_m) // len(known)
        c["segment"] = segment(c["r"], c["f"])
    return customers


def rfm_summary(customers: dict[int, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per segment that has customers: customers, revenue, mean recency, frequency and monetary."""
    out: dict[str, dict[str, Any]] = {}
    for c in customers.values():
        s = out.setdefault(c["segment"], {"customers": 0, "revenue": Decimal(0), "recency": 0, "frequency": 0,
                                          "known": 0})  # fmt: skip
        s["customers"] += 1
        s["recency"] += c["recency_days"]
        s["frequency"] += c["frequency"]
        if c["monetary"] is not None:
            s["revenue"] += c["monetary"]
            s["known"] += 1
    for s in out.values():
        s["mean_recency_days"] = s.pop("recency") / s["customers"]
        s["mean_frequency"] = s.pop("frequency") / s["customers"]
        s["mean_monetary"] = float(s["revenue"] / s["known"]) if s["known"] else None
    return out


# -- cohorts --------------------------------------------------------------------------------------


def period_start(day: date, period: str) -> date:
    if period == "week":
        return day - timedelta(days=day.weekday())  # Monday
    return day.replace(day=1)


def add_periods(start: date, n: int, period: str) -> date:
    if period == "week":
        return start + timedelta(weeks=n)
    months = start.year * 12 + start.month - 1 + n
    return date(months // 12, months % 12 + 1, 1)


def period_over(start: date, period: str, as_of: date) -> bool:
    """The period starting on ``start`` has ended by the end of ``as_of``."""
    return add_periods(start, 1, period) - timedelta(days=1) <= as_of


def cohorts(orders: list[dict], sessions: list[dict], people: list[dict], *, by: str, period: str, measure: str,
            mode: str, periods: int, start: date | None, end: date | None, channel: str | None, group: str,
            tz: str, as_of: date) -> dict[str, Any]:  # fmt: skip
    """``{"rows": [{cohort, size, counts, values, bases, complete, revenue?}], "curve": [(value, cohorts,
    members)]}`` as docs/cohorts.md defines them."""
    placed = [o for o in orders if not o["cancelled"] and o["day"] <= as_of]
    visits = [s for s in sessions if s["day"] <= as_of]
    first_channel = {p["person"]: p["first_channel"] for p in people}

    # Memberships (person, first day of the cohort period).
    memberships: set[tuple[int, date]] = set()
    if mode == "recurring":
        for e in placed if by == "first_order" else visits:
            memberships.add((e["person"], period_start(e["day"], period)))
    elif by == "first_order":
        first: dict[int, date] = {}
        for o in placed:
            first[o["person"]] = min(first.get(o["person"], o["day"]), o["day"])
        memberships = {(p, period_start(d, period)) for p, d in first.items()}
    elif by == "first_visit":
        memberships = {
            (p["person"], period_start(p["first_day"], period)) for p in people if p["first_day"] <= as_of
        }
    else:
        for p in people:
            if p["signup_ts"] is not None:
                day = p["signup_ts"].astimezone(ZoneInfo(tz)).date()
                if day <= as_of:
                    memberships.add((p["person"], period_start(day, period)))

    last = period_start(end or as_of, period)
    first_cohort = period_start(start, period) if start else add_periods(last, -(periods - 1), period)
    memberships = {
        (p, c) for p, c in memberships
        if first_cohort <= c <= last and (channel is None or first_channel.get(p) == channel)
        and (group != "channel" or p in first_channel)
    }  # fmt: skip

    def cell(p: int, c: date, n: int) -> tuple[bool, Decimal]:
        """Did member (p, c) count in period n, and (revenue) their Σ value over periods 0..n."""
        lo, hi = add_periods(c, n, period), add_periods(c, n + 1, period)
        if measure == "active":
            return any(s["person"] == p and lo <= s["day"] < hi for s in visits), Decimal(0)
        if measure == "purchasing":
            return any(o["person"] == p and lo <= o["day"] < hi for o in placed), Decimal(0)
        mine = [o for o in placed if o["person"] == p and c <= o["day"] < hi]
        return bool(mine), sum((o["value"] for o in mine if o["value"] is not None), Decimal(0))

    if group == "period":
        keys: list[Any] = []
        c = first_cohort
        while c <= last:
            keys.append(c)
            c = add_periods(c, 1, period)
        row_members = {k: [(p, c) for p, c in memberships if c == k] for k in keys}
        row_cohorts = {k: [k] for k in keys}
    else:
        row_members = {}
        for p, c in memberships:
            row_members.setdefault(first_channel[p], []).append((p, c))
        keys = sorted(row_members, key=lambda g: (-len(row_members[g]), g is None, g or ""))
        row_cohorts = {g: sorted({c for _, c in row_members[g]}) for g in keys}

    rows = []
    for key in keys:
        members = row_members[key]
        row = {"cohort": key, "size": len(members), "counts": [], "values": [], "bases": [], "complete": [],
               "revenue": []}  # fmt: skip
        for n in range(periods):
            over = [period_over(add_periods(c, n, period), period, as_of) for c in row_cohorts[key]]
            base, count, money = 0, 0, Decimal(0)
            for p, c in members:
                if period_over(add_periods(c, n, period), period, as_of):
                    base += 1
                    counted, revenue = cell(p, c, n)
                    count += counted
                    money += revenue
            row["bases"].append(base)
            row["complete"].append(bool(over) and all(over))
            row["counts"].append(count if any(over) else None)
            row["revenue"].append(money if any(over) else None)
            if not base:
                row["values"].append(None)
            elif measure == "revenue":
                row["values"].append(float(money / base))
            else:
                row["values"].append(count / base)
        if measure != "revenue":
            del row["revenue"]
        rows.append(row)

    curve = []
    for n in range(periods):
        complete = [(p, c) for p, c in memberships if period_over(add_periods(c, n, period), period, as_of)]
        if not complete:
            curve.append((None, 0, 0))
            continue
        results = [cell(p, c, n) for p, c in complete]
        if measure == "revenue":
            value = float(sum((r for _, r in results), Decimal(0)) / len(complete))
        else:
            value = sum(counted for counted, _ in results) / len(complete)
        curve.append((value, len({c for _, c in complete}), len(complete)))
    return {"rows": rows, "curve": curve}
