"""Funnels end to end on a real embedded store: events captured through the normal path
(normalize → enrich → segments), queried with ``store.funnel`` / ``store.run``. Expected values
are worked by hand from docs/funnels.md or come from the plain reference."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime

import numpy as np
import pytest

import masar
from masar.capture.normalize import CaptureContext, normalize_message
from masar.capture.rows import rows_to_table
from masar.errors import InvalidInput
from tests.engine import reference_funnel as ref
from tests.engine.test_frame import write_actions

T0 = int(datetime(2025, 3, 1, 12, 0, tzinfo=UTC).timestamp())  # seconds
_ids = itertools.count()


def ev(who: str, event: str, at: float, **props):
    """A track call ``at`` seconds after T0 by user ``who`` (``anon:ID`` for an anonymous id)."""
    return {"who": who, "event": event, "at": at, "props": props}


def write(store, source, events, kind="track"):
    ctx = CaptureContext(received_at_us=(T0 + 400 * 86400) * 1_000_000)
    rows = []
    for e in events:
        msg = {"type": e.get("type", kind), "messageId": f"m{next(_ids)}",
               "timestamp": int((T0 + e["at"]) * 1_000_000), "properties": e["props"]}  # fmt: skip
        if e["type" if "type" in e else "who"] == "identify":
            msg.update(anonymousId=e["anon"], userId=e["who"])
        elif e["who"].startswith("anon:"):
            msg["anonymousId"] = e["who"][5:]
        else:
            msg["userId"] = e["who"]
        if msg["type"] == "track":
            msg["event"] = e["event"]
        rows.append(normalize_message(msg, ctx))
    store.write_events(source, rows_to_table(rows))


@pytest.fixture
def store(tmp_path):
    s = masar.open(tmp_path / "data")
    yield s
    s.close()


@pytest.fixture
def shop(store):
    return store.create_source("Shop")


def counts(result) -> list[int]:
    return [s["count"] for s in result.to_dict()["steps"]]


# -- the numbers of one funnel -------------------------------------------------------------------


def test_counts_conversions_drop_off_and_times(store, shop):
    write(store, shop, [
        ev("p1", "A", 0), ev("p1", "B", 60), ev("p1", "C", 180),
        ev("p2", "A", 0), ev("p2", "B", 300),
        ev("p3", "A", 0),
        ev("p4", "A", 0), ev("p4", "C", 10),  # C without B
        ev("p5", "B", 0), ev("p5", "A", 10), ev("p5", "B", 70), ev("p5", "C", 100),  # B before A is no step
        ev("p6", "A", 0), ev("p6", "B", 3600), ev("p6", "C", 3601),  # C past the one-hour window
    ])  # fmt: skip
    data = store.funnel(source="Shop", steps=["A", "B", "C"], window="1h").to_dict()
    rows = data["steps"]
    assert [r["count"] for r in rows] == [6, 4, 2]
    assert [r["conversion_from_start"] for r in rows] == [1.0, round(4 / 6, 6), round(2 / 6, 6)]
    assert [r["conversion_from_previous"] for r in rows] == [1.0, round(4 / 6, 6), 0.5]
    assert [r["drop_off"] for r in rows] == [0, 2, 2]
    assert [r["drop_off_rate"] for r in rows] == [0.0, round(1 - 4 / 6, 6), 0.5]
    b = np.array([60, 300, 60, 3600])
    c = np.array([120, 30])
    for row, secs in ((rows[1], b), (rows[2], c)):
        assert row["median_seconds_from_previous"] == round(float(np.median(secs)), 3)
        assert row["average_seconds_from_previous"] == round(float(np.mean(secs)), 3)
        assert row["p90_seconds_from_previous"] == round(float(np.quantile(secs, 0.9)), 3)
    assert rows[0]["median_seconds_from_previous"] is None
    ttc = data["time_to_convert"]
    assert ttc["converted"] == 2 and ttc["median_seconds"] == 135.0 and ttc["average_seconds"] == 135.0
    assert sum(b["count"] for b in ttc["bins"]) == 2
    assert ttc["bins"][-1]["to_seconds"] == 3600
    [one_to_five] = [b for b in ttc["bins"] if b["from_seconds"] == 60]
    assert one_to_five == {"from_seconds": 60, "to_seconds": 300, "count": 2}


def test_an_action_without_a_name_is_no_step_but_breaks_a_strict_funnel(store, shop):
    # Person 1 views, then an action without a name, then adds; person 2 views and adds.
    write_actions(store, shop, [(1, 0, "track", "Product Viewed"), (1, 5, "page", None), (1, 9, "track", "Product Added"),
                                (2, 0, "track", "Product Viewed"), (2, 5, "track", "Product Added")])  # fmt: skip
    steps = ["Product Viewed", "Product Added"]
    assert counts(store.funnel(source="Shop", steps=steps)) == [2, 2]
    assert counts(store.funnel(source="Shop", steps=steps, order="strict")) == [2, 1]
    # It is an action: "any event" matches it, a named step does not.
    assert counts(store.funnel(source="Shop", steps=["Product Viewed", "*", "Product Added"], order="strict")) == [2, 2, 1]
    assert counts(store.funnel(source="Shop", steps=["Product Viewed", "Page Viewed"])) == [2, 0]


def test_window_edge_is_inclusive_end_to_end(store, shop):
    write(store, shop, [ev("p1", "A", 0), ev("p1", "B", 3600), ev("p2", "A", 0), ev("p2", "B", 3601)])
    assert counts(store.funnel(source="Shop", steps=["A", "B"], window=3600)) == [2, 1]


def test_identify_calls_are_not_actions(store, shop):
    # strict: an identify between the steps does not break the attempt
    write(store, shop, [ev("u1", "A", 0), {"who": "u1", "anon": "d1", "type": "identify", "event": None, "at": 1,
                                          "props": {}}, ev("u1", "B", 2)])  # fmt: skip
    assert counts(store.funnel(source="Shop", steps=["A", "B"], order="strict")) == [1, 1]


# -- randomized people against the reference ------------------------------------------------------


def random_people(seed: int, people: int = 60):
    rng = random.Random(seed)
    out = {}
    for p in range(people):
        times = sorted(rng.sample(range(0, 400), rng.randint(1, 9)))  # distinct: stored order never matters
        out[f"p{p}"] = [ev(f"p{p}", rng.choice("AABBCCDX"), t, plan=rng.choice(["gold", "free", "trial", None]))
                        for t in times]  # fmt: skip
    return out


@pytest.mark.parametrize("order", ["ordered", "strict", "unordered"])
def test_random_people_match_the_reference(store, shop, order):
    people = random_people(7 + len(order))
    write(store, shop, [e for events in people.values() for e in events])
    steps = ["A", "B", "C", "D"]
    window = 120
    f = ref.Funnel(steps=4, window=window * 1_000_000, order=order)
    levels = []
    for events in people.values():
        ts = [int(e["at"] * 1_000_000) for e in events]
        answer = ref.unit(ts, ref.masks_of([{"event": e["event"]} for e in events], steps), [0] * len(ts), f)
        levels.append(answer.level)
    expected = [sum(1 for lv in levels if lv >= k) for k in range(4)]
    assert expected[0] > 20 and expected[1] > 5
    assert counts(store.funnel(source="Shop", steps=steps, window=window, order=order)) == expected


def test_random_breakdown_rows_add_up(store, shop):
    people = random_people(3, people=80)
    write(store, shop, [e for events in people.values() for e in events])
    steps = ["A", "B", "C"]
    f = ref.Funnel(steps=3, window=200 * 1_000_000)
    by_value: dict[object, list[int]] = {}
    for events in people.values():
        ts = [int(e["at"] * 1_000_000) for e in events]
        answer = ref.unit(ts, ref.masks_of([{"event": e["event"]} for e in events], steps), [0] * len(ts), f)
        if answer.level < 0:
            continue
        value = events[answer.reported[0][0]]["props"]["plan"]  # first touch: step 1's event
        by_value.setdefault(value, [0, 0, 0])
        for k in range(answer.level + 1):
            by_value[value][k] += 1
    data = store.funnel(
        source="Shop", steps=steps, window=200, breakdown={"property": "plan", "limit": 2}
    ).to_dict()
    total = counts_of(data["steps"])
    rows = {r["value"]: counts_of(r["steps"]) for r in data["breakdown"]}
    ranked = sorted(by_value, key=lambda v: (-by_value[v][0], "" if v is None else v))
    top, rest = ranked[:2], ranked[2:]
    assert list(rows) == top + ["$other"]
    for v in top:
        assert rows[v] == by_value[v]
    assert rows["$other"] == [sum(by_value[v][k] for v in rest) for k in range(3)]
    assert data["breakdown"][-1]["other_values"] == len(rest)
    assert [sum(r[k] for r in rows.values()) for k in range(3)] == total


def counts_of(steps):
    return [s["count"] for s in steps]


# -- breakdowns ----------------------------------------------------------------------------------


def test_breakdown_attributions_and_null(store, shop):
    write(store, shop, [
        ev("p1", "A", 0, plan="gold"), ev("p1", "B", 10, plan="free"), ev("p1", "C", 20, plan="trial"),
        ev("p2", "A", 0), ev("p2", "B", 10, plan="gold"),
        ev("p3", "A", 0, plan="free"),
    ])  # fmt: skip

    def rows(**bd):
        data = store.funnel(
            source="Shop", steps=["A", "B", "C"], breakdown={"property": "plan", **bd}
        ).to_dict()
        return {r["value"]: counts_of(r["steps"]) for r in data["breakdown"]}

    assert rows() == {"gold": [1, 1, 1], None: [1, 1, 0], "free": [1, 0, 0]}
    assert rows(attribution="last_touch") == {"trial": [1, 1, 1], "gold": [1, 1, 0], "free": [1, 0, 0]}
    assert rows(attribution="step", step=2) == {None: [1, 0, 0], "free": [1, 1, 1], "gold": [1, 1, 0]}


def test_breakdown_all_events_holds_the_value(store, shop):
    write(store, shop, [
        # gold gets p1 to B, free gets p1 only to A: p1 counts under gold
        ev("p1", "A", 0, plan="free"), ev("p1", "A", 5, plan="gold"), ev("p1", "B", 10, plan="gold"),
        # no value carries both steps: gold takes p2 to A, free's B has no A before it
        ev("p2", "A", 0, plan="gold"), ev("p2", "B", 10, plan="free"),
    ])  # fmt: skip
    data = store.funnel(
        source="Shop", steps=["A", "B"], breakdown={"property": "plan", "attribution": "all_events"}
    )
    rows = {r["value"]: counts_of(r["steps"]) for r in data.to_dict()["breakdown"]}
    assert rows == {"gold": [2, 1]}
    assert counts_of(data.to_dict()["steps"]) == [2, 1]


# -- options -------------------------------------------------------------------------------------


def test_hold_constant(store, shop):
    write(store, shop, [
        ev("p1", "View", 0, product_id="x"), ev("p1", "Buy", 10, product_id="y"),
        ev("p2", "View", 0, product_id="x"), ev("p2", "View", 5, product_id="y"), ev("p2", "Buy", 10, product_id="y"),
        ev("p3", "View", 0), ev("p3", "Buy", 10),  # no product: cannot be steps
    ])  # fmt: skip
    assert counts(store.funnel(source="Shop", steps=["View", "Buy"], hold_constant=["product_id"])) == [2, 1]
    assert counts(store.funnel(source="Shop", steps=["View", "Buy"])) == [3, 3]


def test_first_time_step_over_all_data(store, shop):
    write(store, shop, [
        ev("p1", "Order", 0), ev("p1", "View", 86400 * 2), ev("p1", "Order", 86400 * 2 + 10),  # returning
        ev("p2", "View", 86400 * 2), ev("p2", "Order", 86400 * 2 + 10),  # new customer
    ])  # fmt: skip
    steps = ["View", {"event": "Order", "first_time": True}]
    assert counts(store.funnel(source="Shop", steps=steps)) == [2, 1]
    # the range starts after p1's first order: it is still not p1's first ever
    assert counts(store.funnel(source="Shop", steps=steps, **{"from": "2025-03-02"})) == [2, 1]
    assert counts(store.funnel(source="Shop", steps=["View", "Order"])) == [2, 2]


def test_optional_step_and_time_limit(store, shop):
    write(store, shop, [
        ev("p1", "A", 0), ev("p1", "C", 10),
        ev("p2", "A", 0), ev("p2", "B", 5), ev("p2", "C", 10),
        ev("p3", "A", 0), ev("p3", "B", 5), ev("p3", "C", 100),  # C too long after B
    ])  # fmt: skip
    steps = ["A", {"event": "B", "optional": True}, {"event": "C", "max_seconds_from_previous": 30}]
    assert counts(store.funnel(source="Shop", steps=steps)) == [3, 2, 2]


def test_exclusion_end_to_end(store, shop):
    write(store, shop, [
        ev("p1", "A", 0), ev("p1", "B", 5), ev("p1", "Out", 7), ev("p1", "C", 10),
        ev("p2", "A", 0), ev("p2", "Out", 3), ev("p2", "B", 5), ev("p2", "C", 10),
    ])  # fmt: skip
    result = store.funnel(source="Shop", steps=["A", "B", "C"], exclusions=[{"event": "Out", "from_step": 2}])
    assert counts(result) == [2, 2, 1]


def test_counting_sessions(store, shop):
    hour = 3600
    write(store, shop, [
        ev("p1", "A", 0), ev("p1", "B", 10),  # session 1: A, B
        ev("p1", "A", 2 * hour), ev("p1", "B", 2 * hour + 10), ev("p1", "C", 2 * hour + 20),  # session 2
        ev("p2", "A", 0), ev("p2", "B", hour),  # B in a later session: not one session's funnel
    ])  # fmt: skip
    steps = ["A", "B", "C"]
    assert counts(store.funnel(source="Shop", steps=steps, counting="sessions")) == [3, 2, 1]
    assert counts(store.funnel(source="Shop", steps=steps)) == [2, 2, 1]


def test_counting_totals(store, shop):
    write(store, shop, [
        ev("p1", "View", 0), ev("p1", "Buy", 10), ev("p1", "View", 20), ev("p1", "Buy", 30), ev("p1", "View", 40),
        ev("p2", "View", 0),
    ])  # fmt: skip
    assert counts(store.funnel(source="Shop", steps=["View", "Buy"], counting="totals")) == [4, 2]


def test_identity_merge_counts_once_with_the_whole_timeline(store, shop):
    write(store, shop, [ev("anon:d1", "A", 0), ev("anon:d1", "B", 10)])
    write(store, shop, [ev("u1", "C", 20)])
    assert counts(store.funnel(source="Shop", steps=["A", "B", "C"])) == [1, 1, 0]
    write(
        store, shop, [{"who": "u1", "anon": "d1", "type": "identify", "event": None, "at": 30, "props": {}}]
    )
    assert counts(store.funnel(source="Shop", steps=["A", "B", "C"])) == [1, 1, 1]
    people = store.run(
        {"kind": "funnel_people", "source": "Shop", "steps": ["A", "B", "C"], "step": 3}
    ).to_dict()
    assert people["total"] == 1
    [person] = people["people"]
    assert person["user_id"] == "u1" and person["anonymous_ids"] == ["d1"] and person["deepest_step"] == 3


# -- ranges, trend, compare, people --------------------------------------------------------------


def test_trend_by_day_in_the_source_time_zone(store):
    riyadh = store.create_source("Riyadh", timezone="Asia/Riyadh")  # UTC+3
    # T0 is 12:00 UTC on 1 March; +10.5 h is 22:30 UTC = 01:30 on 2 March in Riyadh.
    write(store, riyadh, [
        ev("p1", "A", 0), ev("p1", "B", 60),
        ev("p2", "A", 10.5 * 3600), ev("p2", "B", 10.5 * 3600 + 60),
        ev("p3", "A", 10.5 * 3600 + 10),
    ])  # fmt: skip
    data = store.funnel(source="Riyadh", steps=["A", "B"], trend="day").to_dict()
    assert data["trend"] == [
        {"period": "2025-03-01", "entered": 1, "converted": 1, "conversion": 1.0},
        {"period": "2025-03-02", "entered": 2, "converted": 1, "conversion": 0.5},
    ]
    # the range is in the source's days too: 2 March (Riyadh) holds p2 and p3
    assert counts(
        store.funnel(source="Riyadh", steps=["A", "B"], **{"from": "2025-03-02", "to": "2025-03-02"})
    ) == [2, 1]


def test_range_limits_step_one_only_and_compare(store, shop):
    day = 86400
    write(store, shop, [
        ev("p1", "A", 0), ev("p1", "B", 13 * 3600),  # entered 1 March 12:00, B on 2 March 01:00
        ev("p2", "A", day), ev("p2", "B", day + 60),  # entered 2 March
        ev("p3", "B", 0), ev("p3", "A", day + 5),  # entered 2 March, no B after
    ])  # fmt: skip
    result = store.funnel(source="Shop", steps=["A", "B"], window="1d", **{"from": "2025-03-01", "to": "2025-03-01"},
                          compare={"from": "2025-03-02", "to": "2025-03-02"}).to_dict()  # fmt: skip
    assert counts_of(result["steps"]) == [1, 1]
    assert counts_of(result["compare"]["steps"]) == [2, 1]
    assert result["range"] == {"from": "2025-03-01", "to": "2025-03-01"}


def test_people_reached_and_dropped(store, shop):
    write(store, shop, [
        ev("p1", "A", 0), ev("p1", "B", 10), ev("p1", "C", 20),
        ev("p2", "A", 0), ev("p2", "B", 30),
        ev("p3", "A", 0), ev("p3", "B", 40),
        ev("p4", "A", 50),
    ])  # fmt: skip
    base = {"kind": "funnel_people", "source": "Shop", "steps": ["A", "B", "C"]}
    reached = store.run({**base, "step": 2}).to_dict()
    assert reached["total"] == 3
    assert [p["user_id"] for p in reached["people"]] == ["p3", "p2", "p1"]  # newest last step first
    assert [p["deepest_step"] for p in reached["people"]] == [2, 2, 3]
    dropped = store.run({**base, "step": 3, "status": "dropped"}).to_dict()
    assert sorted(p["user_id"] for p in dropped["people"]) == ["p2", "p3"]
    dropped2 = store.run({**base, "step": 2, "status": "dropped", "limit": 1}).to_dict()
    assert dropped2["total"] == 1 and dropped2["people"][0]["user_id"] == "p4"


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ({"kind": "funnels", "steps": ["A", "B"]}, "kind"),
        ({"kind": "funnel", "steps": ["A"]}, "steps"),
        ({"kind": "funnel", "steps": [f"E{i}" for i in range(31)]}, "steps"),
        (
            {"kind": "funnel", "steps": [{"event": "A", "optional": True}, "B"]},
            "first step cannot be optional",
        ),
        (
            {"kind": "funnel", "steps": ["A", "B"], "order": "unordered", "exclusions": [{"event": "X"}]},
            "exclusions need an ordered or strict funnel",
        ),
    ],
)
def test_invalid_queries(store, shop, query, says):
    with pytest.raises(InvalidInput) as raised:
        store.run({"source": "Shop", **query})
    assert says in str(raised.value)
