"""A plain audience evaluator: loops over each person's events and orders, written for reading.

It reads the same rows the tests load into DuckDB (``load``) and a definition as the dict
``AudienceDefinition.model_dump(by_alias=True)`` gives (defaults filled in); it shares no code
with masar/engine/audiences.py beyond that parse. docs/audiences.md is the specification both
follow.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa

EVENTS_SCHEMA = pa.schema([
    ("person", pa.int64()), ("ts", pa.timestamp("us", tz="UTC")), ("day", pa.date32()), ("type", pa.string()),
    ("event", pa.string()), ("session_id", pa.int64()), ("product_id", pa.string()), ("category", pa.string()),
    ("order_id", pa.string()), ("currency", pa.string()), ("price", pa.decimal128(18, 3)),
    ("total", pa.decimal128(18, 3)), ("quantity", pa.int64()), ("channel", pa.string()),
    ("device_type", pa.string()), ("country", pa.string()), ("properties", pa.string()), ("traits", pa.string()),
])  # fmt: skip
ORDERS_SCHEMA = pa.schema([
    ("order_key", pa.string()), ("person", pa.int64()), ("ts", pa.timestamp("us", tz="UTC")), ("day", pa.date32()),
    ("value", pa.decimal128(18, 3)), ("discount", pa.decimal128(18, 3)), ("items", pa.int64()),
    ("refunded", pa.decimal128(18, 3)), ("cancelled", pa.bool_()), ("order_number", pa.int32()),
    ("channel", pa.string()), ("campaign", pa.string()), ("device_type", pa.string()), ("country", pa.string()),
    ("session_id", pa.int64()),
])  # fmt: skip
PEOPLE_SCHEMA = pa.schema([
    ("person", pa.int64()), ("user_id", pa.string()), ("email", pa.string()),
    ("first_seen", pa.timestamp("us", tz="UTC")), ("first_day", pa.date32()), ("first_channel", pa.string()),
    ("first_campaign", pa.string()), ("signup_ts", pa.timestamp("us", tz="UTC")),
    ("first_order_ts", pa.timestamp("us", tz="UTC")), ("last_order_ts", pa.timestamp("us", tz="UTC")),
    ("orders", pa.int64()), ("revenue", pa.decimal128(18, 3)),
])  # fmt: skip

COLUMNS = {"type", "event", "session_id", "product_id", "category", "order_id", "currency", "price", "total",
           "quantity", "channel", "device_type", "country"}  # fmt: skip
NUMERIC = {"session_id", "price", "total", "quantity"}


def _rows(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist([{name: row.get(name) for name in schema.names} for row in rows], schema=schema)


def people_of(events: list[dict], orders: list[dict]) -> list[dict]:
    """One people row per person, as the sales facts describe them (first seen = first event)."""
    seen: dict[int, list] = {}
    for row in sorted([*events, *orders], key=lambda r: r["ts"]):
        seen.setdefault(row["person"], []).append(row)
    people = []
    for person, rows in sorted(seen.items()):
        bought = [o for o in orders if o["person"] == person and not o.get("cancelled")]
        people.append({
            "person": person, "user_id": f"u{person}", "email": f"p{person}@example.com",
            "first_seen": rows[0]["ts"], "first_day": rows[0]["day"], "first_channel": next((r["channel"] for r in rows if r.get("channel")), "Unassigned"),
            "first_order_ts": min((o["ts"] for o in bought), default=None),
            "last_order_ts": max((o["ts"] for o in bought), default=None),
            "orders": len(bought), "revenue": sum((o["value"] for o in bought if o["value"] is not None), Decimal(0)),
        })  # fmt: skip
    return people


def load(events: list[dict], orders: list[dict], people: list[dict] | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB holding the three tables, with exactly the facts' columns."""
    con = duckdb.connect()
    for name, rows, schema in (
        ("events", events, EVENTS_SCHEMA),
        ("orders", orders, ORDERS_SCHEMA),
        ("people", people if people is not None else people_of(events, orders), PEOPLE_SCHEMA),
    ):
        con.register(f"_{name}", _rows(rows, schema))
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM _{name}")
        con.unregister(f"_{name}")
    return con


# -- the evaluator --------------------------------------------------------------------------------


def json_text(value: Any) -> str | None:
    """What DuckDB's json_extract_string gives for a JSON value."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"))


def value_of(event: dict, name: str) -> Any:
    if name in COLUMNS:
        return event.get(name)
    key = name[len("properties.") :] if name.startswith("properties.") else name
    props = json.loads(event["properties"]) if event.get("properties") else {}
    return json_text(props.get(key)) if isinstance(props, dict) else None


def as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def passes(value: Any, op: str, target: Any, numeric: bool) -> bool:
    negative = {"not_equals": "equals", "not_in": "in", "not_contains": "contains", "is_not_set": "is_set"}
    if op in negative:
        return not passes(value, negative[op], target, numeric)
    if op == "is_set":
        return value is not None
    if value is None:
        return False
    if op in ("gt", "gte", "lt", "lte"):
        if numeric:
            x, t = Decimal(value), Decimal(str(target))
        else:
            if not re.fullmatch(r"-?\d+(\.\d+)?", value):
                return False
            x, t = float(value), float(Decimal(str(target)))
        return {"gt": x > t, "gte": x >= t, "lt": x < t, "lte": x <= t}[op]
    if op == "contains":
        return as_text(target).lower() in str(value).lower()
    targets = target if op == "in" else [target]
    if numeric:
        return any(Decimal(value) == Decimal(str(t)) for t in targets)
    return any(value == as_text(t) for t in targets)


def in_window(day: date, spec: dict, as_of: date) -> bool:
    if day > as_of:
        return False
    if spec.get("within_days") is not None:
        return day >= as_of - timedelta(days=spec["within_days"] - 1)
    if spec.get("from_date") is not None and day < spec["from_date"]:
        return False
    return spec.get("to_date") is None or day <= spec["to_date"]


def matches(event: dict, spec: dict, as_of: date, window: bool = True) -> bool:
    if window and not in_window(event["day"], spec, as_of):
        return False
    if event["day"] > as_of:
        return False
    if spec["event"] != "*" and event["event"] != spec["event"]:
        return False
    return all(
        passes(value_of(event, f["property"]), f["op"], f["value"], f["property"] in NUMERIC) for f in spec["filters"]
    )


class World:
    def __init__(self, events: list[dict], orders: list[dict], people: list[dict], as_of: date):
        self.as_of = as_of
        self.events = defaultdict(list)
        for e in events:
            self.events[e["person"]].append(e)
        self.orders = [o for o in orders if o["day"] <= as_of]
        self.cancelled = {o["order_key"] for o in orders if o.get("cancelled")}
        self.people = [p["person"] for p in people if p["first_day"] <= as_of]

    def members(self, definition: dict) -> set[int]:
        return {p for p in self.people if self.holds(p, {"all": definition["all"]})}

    def holds(self, person: int, node: dict) -> bool:
        if "all" in node and "type" not in node:
            return all(self.holds(person, child) for child in node["all"])
        if "any" in node and "type" not in node:
            return any(self.holds(person, child) for child in node["any"])
        if "not" in node and "type" not in node:
            return not self.holds(person, node["not"])
        return getattr(self, node["type"])(person, node)

    def did(self, person: int, c: dict) -> bool:
        events = self.events[person]
        low, high = c["at_least"], c["at_most"] if c.get("at_most") is not None else float("inf")
        if c.get("per_property") is None:
            return low <= sum(matches(e, c, self.as_of) for e in events) <= high
        prop = c["per_property"]
        values = {value_of(e, prop) for e in events} - {None}
        for v in values:
            same = [e for e in events if value_of(e, prop) == v]
            if not low <= sum(matches(e, c, self.as_of) for e in same) <= high:
                continue
            if all(self._inner(same, s) for s in c["same_value"]):
                return True
        return False

    def _inner(self, events: list[dict], s: dict) -> bool:
        n = sum(matches(e, s, self.as_of) for e in events)
        if s["type"] == "did_not":
            return n == 0
        high = s["at_most"] if s.get("at_most") is not None else float("inf")
        return s["at_least"] <= n <= high

    def did_not(self, person: int, c: dict) -> bool:
        return not any(matches(e, c, self.as_of) for e in self.events[person])

    def did_not_since(self, person: int, c: dict) -> bool:
        anchors = [e["ts"] for e in self.events[person] if matches(e, c["since"], self.as_of)]
        if not anchors:
            return False
        start = max(anchors) if c["anchor"] == "last" else min(anchors)
        spec = {"event": c["event"], "filters": c["filters"]}
        return not any(e["ts"] >= start for e in self.events[person] if matches(e, spec, self.as_of, window=False))

    def bought_category(self, person: int, c: dict) -> bool:
        for e in self.events[person]:
            if e["event"] != "Order Completed" or not in_window(e["day"], c, self.as_of):
                continue
            if e.get("order_id") in self.cancelled:
                continue
            props = json.loads(e["properties"]) if e.get("properties") else {}
            categories = {e.get("category")} | {p.get("category") for p in props.get("products") or []}
            if categories & set(c["categories"]):
                return True
        return False

    def never_bought_category(self, person: int, c: dict) -> bool:
        return not self.bought_category(person, c)

    def top_percent(self, person: int, c: dict) -> bool:
        measure: dict[int, Any] = {}
        for o in self.orders:
            if o.get("cancelled") or not in_window(o["day"], c, self.as_of):
                continue
            if c["by"] == "orders":
                measure[o["person"]] = measure.get(o["person"], 0) + 1
            else:
                net = o["value"] - (o["refunded"] or 0) if o["value"] is not None else Decimal(0)
                measure[o["person"]] = measure.get(o["person"], Decimal(0)) + net
        if person not in measure:
            return False
        rank = 1 + sum(m > measure[person] for m in measure.values())
        return 100 * (rank - 1) < Decimal(str(c["percent"])) * len(measure)

    def lapsed(self, person: int, c: dict) -> bool:
        days = sorted({o["day"] for o in self.orders if o["person"] == person and not o.get("cancelled")})
        if len(days) < c["min_orders"]:
            return False
        usual = statistics.median([(b - a).days for a, b in zip(days, days[1:], strict=False)])
        return (self.as_of - days[-1]).days > c["factor"] * usual

    def trait(self, person: int, c: dict) -> bool:
        latest: tuple[datetime, str] | None = None
        for e in self.events[person]:
            if e["type"] != "identify" or e["day"] > self.as_of or not e.get("traits"):
                continue
            v = json_text(json.loads(e["traits"]).get(c["trait"]))
            if v is not None and (latest is None or (e["ts"], v) > latest):
                latest = (e["ts"], v)
        return passes(None if latest is None else latest[1], c["op"], c["value"], False)
