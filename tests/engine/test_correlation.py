"""Correlation: the journey-count kernel against the plain reference on randomized persons, a
hand-worked store with every number checked (journey bounds, odds ratios, intervals, support),
the CLI and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import masar
from masar.engine.correlation import odds_ratio
from masar.engine.kernels.paths import journey_counts
from masar.errors import InvalidInput
from tests.conftest import masar_cli, masar_cli_json
from tests.engine import reference_paths as ref
from tests.engine.test_paths import _store

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CODES = 4


@st.composite
def journeys(draw):
    persons = draw(st.lists(
        st.lists(st.tuples(st.integers(0, 10), st.integers(-1, CODES - 1)), min_size=1, max_size=10).map(sorted),
        min_size=1, max_size=6))  # fmt: skip
    rows = []
    for p, events in enumerate(persons):
        if draw(st.booleans()):
            first = draw(st.integers(0, len(events) - 1))
            rows.append((p, first, draw(st.integers(0, 6)), draw(st.booleans())))
    return persons, rows


@FAST
@given(case=journeys())
def test_journey_kernel_equals_the_reference(case):
    persons, rows = case
    starts = np.cumsum([0] + [len(p) for p in persons]).astype(np.int64)
    ts = np.array([t for p in persons for t, _ in p], dtype=np.int64)
    codes = np.array([c for p in persons for _, c in p], dtype=np.int32)
    first = np.array([starts[p] + i for p, i, _, _ in rows], dtype=np.int64)
    lo = np.array([starts[p] for p, *_ in rows], dtype=np.int64)
    hi = np.array([starts[p + 1] for p, *_ in rows], dtype=np.int64)
    t0 = ts[first] if len(rows) else np.empty(0, dtype=np.int64)
    t_end = t0 + np.array([span for *_, span, _ in rows], dtype=np.int64)
    converted = np.array([c for *_, c in rows], dtype=np.bool_)
    counts = journey_counts(first, lo, hi, t0, t_end, converted, ts, codes, CODES)
    expected = np.zeros((CODES, 2), dtype=np.int64)
    for r, (p, _, _, yes) in enumerate(rows):
        for code in ref.journey_codes(persons[p], int(t0[r]), int(t_end[r])):
            expected[code, 0 if yes else 1] += 1
    assert counts.tolist() == expected.tolist()


def test_odds_ratio_by_hand():
    # 5 of 6 converters and 1 of 6 others: cells 6, 2 | 2, 6 after the +1 prior.
    ratio, low, high, p = odds_ratio(5, 1, 6, 6)
    se = math.sqrt(1 / 6 + 1 / 2 + 1 / 2 + 1 / 6)
    assert ratio == pytest.approx(9.0)
    assert (low, high) == pytest.approx(
        (math.exp(math.log(9) - 1.959964 * se), math.exp(math.log(9) + 1.959964 * se))
    )
    assert p == pytest.approx(math.erfc(math.log(9) / se / math.sqrt(2)))
    assert odds_ratio(3, 3, 6, 6)[0] == pytest.approx(1.0)
    assert odds_ratio(3, 3, 6, 6)[3] == pytest.approx(1.0)


def _person(user, converts, middle, *, extra=(), plan="free", code=None):
    """PV at 1000 s, ``middle`` events at 1010 s, an order at 1020 s when ``converts``."""
    rows = [(user, "identify", None, 0, {"plan": plan}), (user, "track", "Product Viewed", 1000)]
    for event in middle:
        rows.append((user, "track", event, 1010, {"code": code} if code else {}))
    if converts:
        rows.append((user, "track", "Order Completed", 1020))
    return rows + [(user, *e) for e in extra]


SHOP = [
    *_person("c1", True, ["Coupon Applied"], code="SAVE10", plan="pro",
             extra=[("track", "Error Shown", 1030)]),  # after converting: not in the journey
    *_person("c2", True, ["Coupon Applied"], code="SAVE10", plan="pro",
             extra=[("track", "Error Shown", 990)]),  # before step 1: not in the journey
    *_person("c3", True, ["Coupon Applied"], code="SAVE10", plan="pro"),
    *_person("c4", True, ["Coupon Applied"], code="X", plan="pro"),
    *_person("c5", True, ["Coupon Applied"], code="X"),
    *_person("c6", True, ["Error Shown"]),
    *_person("d1", False, ["Error Shown"], plan="pro"),
    *_person("d2", False, ["Error Shown"]),
    *_person("d3", False, ["Error Shown"]),
    *_person("d4", False, ["Error Shown"]),
    *_person("d5", False, ["Coupon Applied"], code="X"),
    *_person("d6", False, [], extra=[("track", "Error Shown", 1000 + 2 * 86400)]),  # after the window
]  # fmt: skip
QUERY = {
    "kind": "correlation",
    "source": "Shop",
    "steps": ["Product Viewed", "Order Completed"],
    "window": "1d",
}


@pytest.fixture
def shop(tmp_path):
    store = _store(tmp_path, SHOP)
    yield store
    store.close()


def _by_name(result):
    rows = result["success"] + result["failure"]
    return {(r.get("event") or f"{r['property']}={r['value']}"): r for r in rows}


def test_hand_worked_correlation(shop):
    result = shop.run({**QUERY, "properties": ["code", "person.plan"]}).to_dict()
    assert (result["people"], result["converted"], result["dropped"], result["skewed"]) == (12, 6, 6, False)
    rows = _by_name(result)
    # The funnel's own steps are not candidates; identify calls are not actions.
    assert set(rows) == {"Coupon Applied", "Error Shown", "code=SAVE10", "code=X", "person.plan=pro",
                         "person.plan=free"}  # fmt: skip
    expected = {  # (converters, others, odds ratio with the +1 prior)
        "Coupon Applied": (5, 1, 6 * 6 / (2 * 2)),
        "Error Shown": (1, 4, 2 * 3 / (6 * 5)),
        "code=SAVE10": (3, 0, 4 * 7 / (4 * 1)),
        "code=X": (2, 1, 3 * 6 / (5 * 2)),
        "person.plan=pro": (4, 1, 5 * 6 / (3 * 2)),
        "person.plan=free": (2, 5, 3 * 2 / (5 * 6)),
    }
    for name, (s, f, ratio) in expected.items():
        row = rows[name]
        assert (row["success_count"], row["failure_count"]) == (s, f), name
        assert row["odds_ratio"] == pytest.approx(ratio, abs=1e-6), name
        low, high = row["confidence_interval"]
        assert low < row["odds_ratio"] < high
        assert 0 < row["p_value"] <= row["adjusted_p_value"] <= 1
    assert [r.get("event") or r["value"] for r in result["success"]] == [
        "Coupon Applied",
        "SAVE10",
        "pro",
        "X",
    ]
    assert [r.get("event") or r["value"] for r in result["failure"]] == ["Error Shown", "free"]
    assert (
        rows["code=SAVE10"]["type"] == "event_property"
        and rows["person.plan=pro"]["type"] == "person_property"
    )


def test_support_steps_and_exclusions(shop):
    # Support: at least min(min_people, min_share × people) = min(25, 0.5 × 12) = 6 people.
    strict = shop.run({**QUERY, "min_share": 0.5}).to_dict()
    assert set(_by_name(strict)) == {"Coupon Applied"} and strict["min_support"] == 6
    with_steps = shop.run({**QUERY, "exclude_steps": False}).to_dict()
    rows = _by_name(with_steps)
    assert rows["Order Completed"]["odds_ratio"] == pytest.approx(49.0)  # 6 of 6 against 0 of 6
    assert "Product Viewed" not in rows  # everyone did it: odds ratio 1, neither list
    excluded = shop.run({**QUERY, "exclude_events": ["Coupon Applied"]}).to_dict()
    assert set(_by_name(excluded)) == {"Error Shown"}
    limited = shop.run({**QUERY, "properties": ["code"], "limit": 1}).to_dict()
    assert len(limited["success"]) == 1 and len(limited["failure"]) == 1


def test_date_range_and_nobody_converting(shop):
    empty = shop.run({**QUERY, "from": "2027-01-01"}).to_dict()
    assert (empty["people"], empty["success"], empty["failure"]) == (0, [], [])
    nobody = shop.run({**QUERY, "steps": ["Product Viewed", "Refund Requested"]}).to_dict()
    assert nobody["converted"] == 0 and nobody["tested"] == 0 and nobody["success"] == nobody["failure"] == []


def test_bad_input(shop):
    with pytest.raises(InvalidInput, match="ordered or strict"):
        shop.run({**QUERY, "order": "unordered"})
    with pytest.raises(InvalidInput, match="uniques"):
        shop.run({**QUERY, "counting": "totals"})
    with pytest.raises(InvalidInput, match="nothing to correlate"):
        shop.run({**QUERY, "events": False})
    with pytest.raises(InvalidInput, match="cannot be used"):
        shop.run({**QUERY, "properties": ["ip"]})


def test_cli_correlation_json_equals_store_run(shop, tmp_path):
    shop.close()
    data_dir = tmp_path / "data"
    cli = masar_cli_json("correlation", "--source", "Shop", "--step", "Product Viewed", "--step", "Order Completed",
                         "--window", "1d", "--property", "code", "--data-dir", data_dir)  # fmt: skip
    store = masar.open(data_dir)
    direct = store.run({**QUERY, "properties": ["code"]}).to_dict()
    store.close()
    assert cli == direct
    table = masar_cli("correlation", "--source", "Shop", "--step", "Product Viewed", "--step", "Order Completed",
                      "--window", "1d", "--data-dir", data_dir).stdout  # fmt: skip
    assert "Coupon" in table and "Error" in table and "6 converted" in table
