"""The leak finder (docs/leaks.md): the demo store's planted problems are found, clean data gives
nothing, a planted device break is found with its dates, the money is right, and the change
detection equals a plain exhaustive search."""

from __future__ import annotations

import json
import math
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import masar
from masar.cli import app
from masar.engine.changepoint import best_drop, find_drops
from masar.engine.significance import adjust, fisher_lower, lower_p_value
from masar.errors import InvalidInput
from tests.engine.leak_stores import STEPS, Break, day, synthetic_events, write_store

FINDING_KEYS = {"step_from", "step_to", "segment", "period", "conversion", "baseline_conversion", "p_value",
                "lost_conversions", "lost_revenue", "summary"}  # fmt: skip


# -- the change detection against a plain exhaustive search ---------------------------------------


def _ll(x: int, n: int) -> float:
    if n == 0:
        return 0.0
    p = x / n
    out = 0.0
    if x > 0:
        out += x * math.log(p)
    if n - x > 0:
        out += (n - x) * math.log(1 - p)
    return out


def reference_best_drop(n: list[int], x: list[int], min_days: int, min_trials: int, min_outside: float):
    """Every run [s, e) scored with the same statistic, by two plain loops: (best G, candidates)."""
    total_n, total_x = sum(n), sum(x)
    best = None
    candidates = 0
    for s in range(len(n)):
        for e in range(s + min_days, len(n) + 1):
            n_in, x_in = sum(n[s:e]), sum(x[s:e])
            n_out, x_out = total_n - n_in, total_x - x_in
            if n_in < min_trials or n_out < max(min_trials, min_outside * total_n) or not x_in * n_out < x_out * n_in:
                continue
            candidates += 1
            g = 2 * (_ll(x_in, n_in) + _ll(x_out, n_out) - _ll(total_x, total_n))
            if best is None or g > best:
                best = g
    return best, candidates


def _g(n: list[int], x: list[int], s: int, e: int) -> float:
    n_in, x_in = sum(n[s:e]), sum(x[s:e])
    return 2 * (_ll(x_in, n_in) + _ll(sum(x) - x_in, sum(n) - n_in) - _ll(sum(x), sum(n)))


@st.composite
def daily_counts(draw):
    days = draw(st.integers(1, 12))
    n = draw(st.lists(st.integers(0, 40), min_size=days, max_size=days))
    x = [draw(st.integers(0, k)) for k in n]
    return n, x


@settings(max_examples=300, deadline=None)
@given(daily_counts(), st.integers(1, 4), st.integers(0, 30), st.sampled_from([0.0, 0.1, 0.5]))
def test_best_drop_equals_an_exhaustive_search(counts, min_days, min_trials, min_outside):
    n, x = counts
    found = best_drop(np.array(n), np.array(x), min_days=min_days, min_trials=min_trials, min_outside=min_outside)
    best, candidates = reference_best_drop(n, x, min_days, min_trials, min_outside)
    if best is None:
        assert found is None
        return
    assert found is not None and found.candidates == candidates
    assert found.statistic == pytest.approx(best, rel=1e-9, abs=1e-9)
    assert _g(n, x, found.start, found.end) == pytest.approx(best, rel=1e-9, abs=1e-9)
    assert found.trials_in == sum(n[found.start : found.end]) and found.successes_in == sum(x[found.start : found.end])
    assert found.p_value == pytest.approx(min(1.0, 0.5 * math.erfc(math.sqrt(best / 2)) * candidates))


def test_find_drops_finds_two_separate_drops():
    n = np.full(60, 200)
    x = np.full(60, 120)
    x[10:18] = 40
    x[40:45] = 50
    drops = find_drops(n, x, min_days=3, min_trials=50)
    significant = [(d.start, d.end) for d in drops if d.p_value < 0.01]
    assert significant == [(10, 18), (40, 45)]


# -- the significance helpers -----------------------------------------------------------------------


def test_fisher_and_z_test_values():
    # Fisher's tea-tasting table: 1 of 4 against 3 of 4, one-sided P(X ≤ 1) = 17/70.
    assert fisher_lower(1, 4, 3, 4) == pytest.approx(17 / 70)
    assert lower_p_value(1, 4, 3, 4) == pytest.approx(17 / 70)  # small counts go to Fisher
    # Large counts: the pooled z-test. 40/100 vs 60/100: z = -0.2 / sqrt(0.25 * 0.02) = -2.828.
    assert lower_p_value(40, 100, 60, 100) == pytest.approx(0.5 * math.erfc(2.8284271 / math.sqrt(2)), rel=1e-6)
    assert lower_p_value(60, 100, 40, 100) > 0.99
    assert lower_p_value(0, 0, 5, 10) == 1.0


def reference_adjust(p: list[float], method: str) -> list[float]:
    m = len(p)
    order = sorted(range(m), key=lambda i: (p[i], i))
    out = [0.0] * m
    for rank, i in enumerate(order, 1):
        if method == "bh":
            out[i] = min(1.0, min(p[order[j - 1]] * m / j for j in range(rank, m + 1)))
        else:
            out[i] = min(1.0, max(p[order[j - 1]] * (m - j + 1) for j in range(1, rank + 1)))
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=0, max_size=30), st.sampled_from(["bh", "holm"]))
def test_corrections_equal_their_definitions(p, method):
    assert adjust(p, method) == pytest.approx(reference_adjust(p, method))


# -- synthetic stores ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [11, 12, 13, 14, 15])
def test_clean_data_reports_nothing(tmp_path, seed):
    store, _ = write_store(tmp_path / "data", synthetic_events(seed))
    result = store.run({"kind": "leaks", "source": "Shop", "steps": STEPS}).to_dict()
    assert result["tests"] > 100
    assert result["findings"] == []


def test_a_device_that_breaks_a_step_for_a_date_range(tmp_path):
    # Android (Chrome Mobile) sessions: Checkout Started → Order Completed at 25% on days 20–34.
    store, _ = write_store(tmp_path / "data", synthetic_events(3, broken=Break(device=1, step=2, first=20, last=34,
                                                                                  rate=0.25)))  # fmt: skip
    findings = store.run({"kind": "leaks", "source": "Shop", "steps": STEPS}).to_dict()["findings"]
    assert len(findings) == 1
    f = findings[0]
    assert (f["step_from"], f["step_to"]) == ("Checkout Started", "Order Completed")
    assert f["segment"] in ({"property": "browser", "value": "Chrome Mobile"}, {"property": "os", "value": "Android"})
    start, end = date.fromisoformat(f["period"]["start"]), date.fromisoformat(f["period"]["end"])
    assert abs((start - day(20)).days) <= 2 and abs((end - day(34)).days) <= 2
    assert f["conversion"] < 0.35 and f["baseline_conversion"] > 0.55
    assert f["p_value"] < 1e-6 and f["lost_conversions"] > 50 and f["lost_revenue"] > 0
    assert "Order Completed" in f["summary"] and "SAR" in f["summary"]


def _hand_built(tmp_path: Path):
    """3 steps over 10 days. Device A: 30 carts a day, 6 checkouts (20%), 3 orders of SAR 150.
    Device B: 30 carts, 18 checkouts (60%), 9 orders of SAR 100. The same every day."""
    rows = []
    session = 0
    for d in range(10):
        for device, checkouts, orders, value in (("A", 6, 3, 150.0), ("B", 18, 9, 100.0)):
            for i in range(30):
                session += 1
                t0 = (d * 86400 + 3600 + session * 10) * 1_000_000 + 1_767_225_600_000_000
                rows.append((session, t0, "Product Added", device, None))
                if i < checkouts:
                    rows.append((session, t0 + 60_000_000, "Checkout Started", device, None))
                if i < orders:
                    rows.append((session, t0 + 120_000_000, "Order Completed", device, value))
    # The data goes on a day later, so no entrant is too recent to have converted.
    rows.append((session + 1, 1_767_225_600_000_000 + 11 * 86400 * 1_000_000, "Page Viewed", None, None))
    rows.sort(key=lambda r: (r[0], r[1]))
    table = pa.table({
        "person_id": pa.array([r[0] for r in rows], pa.int64()),
        "session_id": pa.array([r[0] for r in rows], pa.int64()),
        "ts": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
        "event": [r[2] for r in rows],
        "device_type": [r[3] for r in rows],
        "revenue": pa.array([r[4] for r in rows], pa.float64()),
        "currency": [("SAR" if r[4] is not None else None) for r in rows],
    })  # fmt: skip
    return write_store(tmp_path / "data", table)


def test_lost_conversions_and_revenue_by_hand(tmp_path):
    store, _ = _hand_built(tmp_path)
    query = {"kind": "leaks", "source": "Shop", "steps": ["Product Added", "Checkout Started", "Order Completed"]}
    result = store.run(query).to_dict()
    assert [(t["entrants"], t["converted"]) for t in result["transitions"]] == [(600, 240), (240, 120)]
    [f] = result["findings"]
    assert f["segment"] == {"property": "device_type", "value": "A"} and f["period"] is None
    assert (f["step_from"], f["step_to"]) == ("Product Added", "Checkout Started")
    assert f["conversion"] == pytest.approx(0.2) and f["baseline_conversion"] == pytest.approx(0.6)
    # (0.6 − 0.2) × 300 carts = 120 fewer checkouts; A's own onward rate 30/60 = 0.5 → 60 orders;
    # A's own average order (30 orders ≥ 20) SAR 150 → SAR 9,000.
    assert f["lost_conversions"] == pytest.approx(120)
    assert f["lost_orders"] == pytest.approx(60)
    assert f["lost_revenue"] == pytest.approx(9000)
    assert f["summary"] == ("Sessions with device A: Product Added → Checkout Started 20% vs 60% elsewhere, "
                            "about 120 fewer reached Checkout Started, about 60 lost orders, about SAR 9,000")  # fmt: skip
    assert set(f) >= FINDING_KEYS


def test_json_shape_and_the_cli_agree(tmp_path):
    store, _ = _hand_built(tmp_path)
    query = {"kind": "leaks", "source": "Shop", "steps": ["Product Added", "Checkout Started", "Order Completed"]}
    from_python = store.run(query).to_dict()
    store.close()
    runner = CliRunner()
    args = ["leaks", "--source", "Shop", "--step", "Product Added", "--step", "Checkout Started", "--step",
            "Order Completed", "--data-dir", str(tmp_path / "data")]  # fmt: skip
    done = runner.invoke(app, [*args, "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == json.loads(json.dumps(from_python))
    table = runner.invoke(app, args)
    text = " ".join(table.stdout.split())  # rich wraps at the terminal's width
    assert table.exit_code == 0 and "1 leak found" in text and "about SAR 9,000" in text
    bad = runner.invoke(app, ["leaks", "--source", "Shop", "--step", "A", "--step", "B", "--min-effect", "2",
                              "--data-dir", str(tmp_path / "data")])  # fmt: skip
    assert bad.exit_code == 1 and "min_effect" in bad.stderr


def test_query_validation(tmp_path):
    store, _ = _hand_built(tmp_path)
    base = {"kind": "leaks", "source": "Shop", "steps": ["Product Added", "Checkout Started"]}
    for extra, fragment in (({"breakdown": "device_type"}, "no breakdown"), ({"order": "unordered"}, "ordered"),
                            ({"alpha": 0}, "alpha"), ({"nonsense": 1}, "nonsense")):  # fmt: skip
        with pytest.raises(InvalidInput, match=fragment):
            store.run({**base, **extra})


# -- the demo store -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from masar.demo.load import load_demo

    directory = tmp_path_factory.mktemp("demo")
    store = masar.open(directory)
    # 20,000 visitors over 90 days: ~220,000 events in ~20 s, with ~80 iPhone Safari checkouts in
    # the broken fortnight and ~350 perfume carts after the price rise (docs/demo.md).
    load_demo(store, seed=7, visitors=20_000, days=90)
    planted = {p["id"]: p for p in json.loads((directory / "demo" / "planted.json").read_text())}
    yield store, planted
    store.close()


def _near(found: str, expected: str, days: int = 2) -> bool:
    return abs((date.fromisoformat(found) - date.fromisoformat(expected)).days) <= days


def test_the_demo_stores_planted_problems_are_found(demo):
    store, planted = demo
    steps = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed"]
    result = store.run({"kind": "leaks", "source": "Masar Demo Store", "steps": steps, "segment_by": ["category"]})
    findings = result.to_dict()["findings"]

    perfume = planted["perfume_price_increase"]
    [f] = [f for f in findings if f["segment"] == {"property": "category", "value": "Perfumes"}]
    assert (f["step_from"], f["step_to"]) == ("Product Added", "Checkout Started")
    assert _near(f["period"]["start"], perfume["start"]) and _near(f["period"]["end"], perfume["end"])
    assert f["conversion"] < 0.3 and f["baseline_conversion"] > 0.45

    tiktok = [f for f in findings if f["segment"] == {"property": "session_source", "value": "tiktok"}]
    assert tiktok and all(f["period"] is None for f in tiktok)
    assert {f["step_to"] for f in tiktok} >= {"Product Added"}

    iphone = planted["ios_safari_payment_step"]
    payment = [{"event": "Checkout Step Completed", "filters": [{"property": "step", "op": "eq", "value": 2}]},
               "Payment Info Entered", "Order Completed"]  # fmt: skip
    pay = store.run({"kind": "leaks", "source": "Masar Demo Store", "steps": payment}).to_dict()["findings"]
    [f] = [f for f in pay if f["step_to"] == "Payment Info Entered"]
    assert f["segment"] == {"property": "browser", "value": "Mobile Safari"}
    assert _near(f["period"]["start"], iphone["start"]) and _near(f["period"]["end"], iphone["end"])
    # Planted: 35% against 80%. The demo ends today, so its draws (and the period the finder
    # settles on, which may take in a day either side of the break) shift from day to day: on
    # 2026-11-25 the finding read exactly 50%. What must hold is a large, clear drop.
    assert f["conversion"] <= 0.55 and f["baseline_conversion"] > 0.7
    assert f["baseline_conversion"] - f["conversion"] >= 0.2

    # Nothing else of similar strength: every finding is one of the three problems.
    planted_segments = [{"property": "category", "value": "Perfumes"}, {"property": "session_source", "value": "tiktok"},
                        {"property": "browser", "value": "Mobile Safari"}]  # fmt: skip
    for f in findings + pay:
        assert f["segment"] in planted_segments or (f["segment"] or {}).get("value", "").startswith("tt_"), f["summary"]
    # Most costly first.
    costs = [(f["lost_revenue"] or 0, f["lost_conversions"]) for f in findings]
    assert costs == sorted(costs, reverse=True)


def test_a_date_range_narrows_the_search(demo):
    store, planted = demo
    iphone = planted["ios_safari_payment_step"]
    start = date.fromisoformat(iphone["start"])
    payment = [{"event": "Checkout Step Completed", "filters": [{"property": "step", "op": "eq", "value": 2}]},
               "Payment Info Entered"]  # fmt: skip
    before = store.run({"kind": "leaks", "source": "Masar Demo Store", "steps": payment,
                        "to": (start - timedelta(days=3)).isoformat()}).to_dict()  # fmt: skip
    assert before["transitions"][0]["entrants"] > 500
    assert before["findings"] == []
