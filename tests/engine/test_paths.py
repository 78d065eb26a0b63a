"""Journeys: the walk and loop kernels against the plain reference (tests/engine/reference_paths.py)
on randomized persons with ties, ignored events and sessions; hand-worked stores through
``store.run``, the CLI, cleaning rules, limits and ``$other``, loops, drop-outs and bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import masar
from masar.capture.normalize import CaptureContext, normalize_message
from masar.capture.rows import rows_to_table
from masar.engine.kernels.paths import find_loops, walk_paths
from masar.engine.paths import UNNAMED, first_per_person
from masar.errors import InvalidInput
from tests.conftest import masar_cli, masar_cli_json
from tests.engine import reference_paths as ref
from tests.engine.test_frame import write_actions

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
START = datetime(2026, 3, 2, 9, tzinfo=UTC)


# -- kernels against the reference ----------------------------------------------------------------

events_st = st.lists(
    st.tuples(st.integers(0, 12), st.integers(-1, 3), st.integers(0, 2), st.booleans()),
    min_size=1,
    max_size=14,
)


@st.composite
def frames(draw):
    persons = draw(st.lists(events_st, min_size=1, max_size=6))
    # Within a person, time order (ties kept in drawn order, as the frame keeps stored order).
    return [sorted(p, key=lambda e: e[0]) for p in persons]


def _flatten(persons):
    ts, labels, sessions, anchor, person, starts = [], [], [], [], [], [0]
    for p_id, events in enumerate(persons):
        for t, label, session, is_anchor in events:
            ts.append(t)
            labels.append(label)
            sessions.append(session)
            anchor.append(is_anchor)
            person.append(p_id)
        starts.append(len(ts))
    return (np.array(ts, dtype=np.int64), np.array(labels, dtype=np.int32), np.array(sessions, dtype=np.int64),
            np.array(anchor, dtype=bool), np.array(person, dtype=np.int64), np.array(starts, dtype=np.int64))  # fmt: skip


def _kernel_paths(persons, *, forward, window, length, collapse, same_session, occurrence):
    ts, labels, sessions, anchor, person, starts = _flatten(persons)
    candidates = np.flatnonzero(anchor).astype(np.int64)
    anchors = candidates if occurrence == "every" else first_per_person(person, candidates)
    group = np.searchsorted(starts, anchors, side="right") - 1
    # The anchor keeps its own label even when the walk ignores events like it (label -1 → 9).
    first_label = np.where(labels[anchors] >= 0, labels[anchors], 9).astype(np.int32)
    out = walk_paths(anchors, starts[group], starts[group + 1], ts, labels, first_label, sessions, same_session,
                     forward, np.int64(window), length, collapse)  # fmt: skip
    return [[c for c in row if c >= 0] for row in out.tolist()], out


def _reference_paths(persons, *, forward, window, length, collapse, same_session, occurrence):
    out = []
    for events in persons:
        plain = [(t, label, s) for t, label, s, _ in events]
        for a in ref.anchors(plain, [e[3] for e in events], occurrence):
            anchor_label = plain[a][1] if plain[a][1] >= 0 else 9
            out.append(ref.path(plain, a, anchor_label, forward=forward, window=window, length=length,
                                collapse=collapse, same_session=same_session))  # fmt: skip
    return out


@FAST
@given(persons=frames(), forward=st.booleans(), window=st.integers(0, 8), length=st.integers(2, 6),
       collapse=st.booleans(), same_session=st.booleans(), occurrence=st.sampled_from(["first", "every"]))  # fmt: skip
def test_walk_kernel_equals_the_reference(
    persons, forward, window, length, collapse, same_session, occurrence
):
    options = dict(forward=forward, window=window, length=length, collapse=collapse, same_session=same_session,
                   occurrence=occurrence)  # fmt: skip
    kernel, _ = _kernel_paths(persons, **options)
    assert kernel == _reference_paths(persons, **options)


@FAST
@given(paths=st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=8), min_size=0, max_size=8))
def test_loop_kernel_equals_the_reference(paths):
    width = 8
    matrix = np.full((len(paths), width), -1, dtype=np.int32)
    for r, p in enumerate(paths):
        matrix[r, : len(p)] = p
    found, rows = find_loops(matrix)
    kernel: dict[int, list[tuple[int, ...]]] = {}
    for loop, r in zip(found.tolist(), rows.tolist(), strict=True):
        kernel.setdefault(r, []).append(tuple(c for c in loop if c >= 0))
    for r, p in enumerate(paths):
        listed = kernel.get(r, [])
        assert len(listed) == len(set(listed))  # a path's identical loops are listed once
        assert set(listed) == ref.loops(p)


# -- hand-worked stores ---------------------------------------------------------------------------


def _messages(rows):
    """(user, type, event or path, seconds after START[, extra properties]) → capture messages."""
    out = []
    for n, row in enumerate(rows):
        user, kind, what, seconds, *extra = row
        message = {"type": kind, "userId": user, "messageId": f"m{n}",
                   "timestamp": (START + timedelta(seconds=seconds)).isoformat()}  # fmt: skip
        if kind == "track":
            message["event"] = what
            message["properties"] = extra[0] if extra else {}
        elif kind == "page":
            message["properties"] = {"path": what, "url": f"https://shop.example{what}"}
        else:
            message["traits"] = extra[0] if extra else {}
        out.append(message)
    return out


def _store(tmp_path, rows):
    store = masar.open(tmp_path / "data")
    source = store.create_source("Shop")
    ctx = CaptureContext(received_at_us=int(START.timestamp() * 1e6) + 10**11)
    store.write_events(
        source, rows_to_table([normalize_message(m, ctx) for m in _messages(rows)]), origin="test"
    )
    return store


# u1: views a product, browses two product pages, checks out and buys.
# u2: product → cart → shipping → cart → shipping (a loop), never buys.
# u3: product → cart, then comes back two days later (outside a one-day window).
# u4: only a home page.
SHOP = [
    ("u1", "page", "/", 0), ("u1", "track", "Product Viewed", 10), ("u1", "page", "/products/red-shoe", 20),
    ("u1", "page", "/products/blue-shoe", 30), ("u1", "track", "Cart Viewed", 40), ("u1", "track", "Shipping", 45),
    ("u1", "track", "Order Completed", 50),
    ("u2", "track", "Product Viewed", 0), ("u2", "track", "Cart Viewed", 10), ("u2", "track", "Shipping", 20),
    ("u2", "track", "Cart Viewed", 30), ("u2", "track", "Shipping", 40),
    ("u3", "track", "Product Viewed", 0), ("u3", "track", "Cart Viewed", 5), ("u3", "track", "Shipping", 2 * 86400),
    ("u4", "page", "/", 100),
]  # fmt: skip


@pytest.fixture
def shop(tmp_path):
    store = _store(tmp_path, SHOP)
    yield store
    store.close()


def _paths(result):
    return {tuple(p["events"]): p["count"] for p in result["paths"]}


# Actions stored without an event name (tests/engine/test_frame.py ``write_actions``): person 1's
# nameless page carries a product path, person 2's the home page, person 3 starts with one.
NAMELESS = [
    (1, 0, "track", "Product Viewed"), (1, 10, "page", None, "/products/red"),
    (1, 20, "page", "Page Viewed", "/products/blue"), (1, 30, "track", "Order Completed"),
    (2, 0, "track", "Product Viewed"), (2, 10, "page", None, "/"), (2, 20, "track", "Product Added"),
    (3, 0, "page", None, "/"), (3, 5, "track", "Product Viewed"),
]  # fmt: skip


def nameless_store(tmp_path):
    store = masar.open(tmp_path / "data")
    write_actions(store, store.create_source("Shop"), NAMELESS)
    return store


def test_an_action_without_a_name_is_labelled_unnamed_and_never_a_page(tmp_path):
    store = nameless_store(tmp_path)
    query = {"kind": "paths", "source": "Shop", "step": "Product Viewed", "length": 4}
    by_event = {
        ("Product Viewed", UNNAMED, "Page Viewed", "Order Completed"): 1,
        ("Product Viewed", UNNAMED, "Product Added"): 1,
        ("Product Viewed",): 1,
    }
    assert _paths(store.run(query).to_dict()) == by_event
    # Its path does not make it a page: only the named page view takes its (cleaned) path.
    by_page = store.run({**query, "label": "path", "cleaning": [{"pattern": "^/products/", "alias": "Product page"}]})
    assert _paths(by_page.to_dict()) == {
        ("Product Viewed", UNNAMED, "Product page", "Order Completed"): 1,
        ("Product Viewed", UNNAMED, "Product Added"): 1,
        ("Product Viewed",): 1,
    }
    # No name leaves it out, not even the empty one.
    assert _paths(store.run({**query, "exclude_events": ["", "Page Viewed"]}).to_dict()) == {
        ("Product Viewed", UNNAMED, "Order Completed"): 1,
        ("Product Viewed", UNNAMED, "Product Added"): 1,
        ("Product Viewed",): 1,
    }
    # Any event is an anchor, the nameless one too.
    first = store.run({"kind": "paths", "source": "Shop", "step": "*", "length": 2}).to_dict()
    assert _paths(first)[(UNNAMED, "Product Viewed")] == 1
    store.close()


def test_paths_after_a_step_with_page_cleaning(shop):
    result = shop.run({"kind": "paths", "source": "Shop", "step": "Product Viewed", "label": "path",
                       "cleaning": [{"pattern": "^/products/", "alias": "Product page"}]}).to_dict()  # fmt: skip
    assert result["total"] == result["people"] == 3
    assert _paths(result) == {
        # The two product pages are one "Product page" once cleaned, and collapse into one step.
        ("Product Viewed", "Product page", "Cart Viewed", "Shipping", "Order Completed"): 1,
        ("Product Viewed", "Cart Viewed", "Shipping", "Cart Viewed", "Shipping"): 1,
        ("Product Viewed", "Cart Viewed"): 1,  # u3's shipping is two days later, outside the window
    }
    assert result["loops"]["paths"] == 1
    assert {tuple(x["events"]): x["count"] for x in result["loops"]["top"]} == {
        ("Cart Viewed", "Shipping", "Cart Viewed"): 1, ("Shipping", "Cart Viewed", "Shipping"): 1}  # fmt: skip
    nodes = {n["id"]: n for n in result["sankey"]["nodes"]}
    assert nodes["0:Product Viewed"]["count"] == 3
    assert nodes["1:Cart Viewed"] == {"id": "1:Cart Viewed", "position": 1, "label": "Cart Viewed", "count": 2,
                                      "ends": 1}  # fmt: skip
    edges = {(e["source"], e["target"]): e["count"] for e in result["sankey"]["edges"]}
    assert edges[("0:Product Viewed", "1:Cart Viewed")] == 2
    assert edges[("0:Product Viewed", "1:Product page")] == 1
    # Every node's outflow plus the paths that end there is its count.
    for node in result["sankey"]["nodes"]:
        if node["ends"] is not None:
            out = sum(c for (s, _), c in edges.items() if s == node["id"])
            assert out + node["ends"] == node["count"]


def test_without_cleaning_or_collapsing_each_page_is_its_own_step(shop):
    result = shop.run({"kind": "paths", "source": "Shop", "step": "Product Viewed", "label": "url",
                       "collapse_repeats": False, "length": 4}).to_dict()  # fmt: skip
    assert ("Product Viewed", "https://shop.example/products/red-shoe", "https://shop.example/products/blue-shoe",
            "Cart Viewed") in _paths(result)  # fmt: skip
    labelled_by_event = shop.run({"kind": "paths", "source": "Shop", "step": "Product Viewed", "length": 3,
                                  "collapse_repeats": False}).to_dict()  # fmt: skip
    assert ("Product Viewed", "Page Viewed", "Page Viewed") in _paths(labelled_by_event)
    collapsed = shop.run({"kind": "paths", "source": "Shop", "step": "Product Viewed", "length": 3}).to_dict()
    assert ("Product Viewed", "Page Viewed", "Cart Viewed") in _paths(collapsed)


def test_paths_before_a_step_run_in_time_order(shop):
    result = shop.run({"kind": "paths", "source": "Shop", "step": "Order Completed", "direction": "before",
                       "length": 3, "exclude_events": ["Page Viewed"]}).to_dict()  # fmt: skip
    assert _paths(result) == {("Cart Viewed", "Shipping", "Order Completed"): 1}
    positions = sorted({n["position"] for n in result["sankey"]["nodes"]})
    assert positions == [-2, -1, 0]
    assert {(e["source"], e["target"]) for e in result["sankey"]["edges"]} == {
        ("-2:Cart Viewed", "-1:Shipping"), ("-1:Shipping", "0:Order Completed")}  # fmt: skip


def test_paths_after_dropping_out_of_a_funnel_step(shop):
    result = shop.run(
        {
            "kind": "paths",
            "source": "Shop",
            "funnel": {
                "steps": ["Product Viewed", "Cart Viewed", "Order Completed"],
                "dropped_after": 2,
                "window": "1d",
            },
        }
    ).to_dict()
    assert result["funnel"] == {"steps": ["Product Viewed", "Cart Viewed", "Order Completed"], "dropped_after": 2,
                                "step": "Cart Viewed", "entered": 3, "dropped": 2}  # fmt: skip
    assert result["anchor"] == "Cart Viewed"
    assert _paths(result) == {("Cart Viewed", "Shipping", "Cart Viewed", "Shipping"): 1, ("Cart Viewed",): 1}


def test_window_session_and_every_occurrence(shop):
    two_days = shop.run(
        {"kind": "paths", "source": "Shop", "step": "Product Viewed", "window": "3d"}
    ).to_dict()
    assert ("Product Viewed", "Cart Viewed", "Shipping") in _paths(two_days)
    # u3's late shipping is a new session (30 minutes of inactivity end one).
    session = shop.run(
        {"kind": "paths", "source": "Shop", "step": "Product Viewed", "window": "session"}
    ).to_dict()
    assert ("Product Viewed", "Cart Viewed") in _paths(session)
    assert session["same_session"] is True and session["window_seconds"] is None
    every = shop.run({"kind": "paths", "source": "Shop", "step": "Cart Viewed", "occurrence": "every",
                      "length": 2}).to_dict()  # fmt: skip
    assert every["total"] == 4 and every["people"] == 3  # u2 has two carts


def test_journeys_without_an_anchor_start_at_each_persons_first_event_in_range(shop):
    result = shop.run(
        {"kind": "paths", "source": "Shop", "length": 2, "from": "2026-03-02", "to": "2026-03-02"}
    ).to_dict()
    assert result["anchor"] is None and result["total"] == 4
    assert _paths(result) == {("Page Viewed", "Product Viewed"): 1, ("Product Viewed", "Cart Viewed"): 2,
                              ("Page Viewed",): 1}  # fmt: skip
    later = shop.run({"kind": "paths", "source": "Shop", "length": 2, "from": "2026-03-03"}).to_dict()
    assert _paths(later) == {("Shipping",): 1}


def test_node_and_path_limits_fold_the_rest(shop):
    result = shop.run({"kind": "paths", "source": "Shop", "step": "Product Viewed", "node_limit": 3,
                       "edge_limit": 2, "limit": 1}).to_dict()  # fmt: skip
    nodes = result["sankey"]["nodes"]
    real = [n for n in nodes if n["label"] != "$other"]
    assert len(real) == 3
    # Folding keeps every path: each position's counts still add up to the paths reaching it.
    for position in {n["position"] for n in nodes}:
        total = sum(n["count"] for n in nodes if n["position"] == position)
        reaching = sum(c for p, c in _paths_all(shop).items() if len(p) > position)
        assert total == reaching
    assert len(result["sankey"]["edges"]) == 2
    listed = sum(e["count"] for e in result["sankey"]["edges"])
    assert result["sankey"]["other_edges"]["count"] + listed == sum(
        max(len(p) - 1, 0) * c for p, c in _paths_all(shop).items())  # fmt: skip
    assert len(result["paths"]) == 1
    assert result["other_paths"] == {"paths": 2, "count": 2}


def _paths_all(store):
    return _paths(store.run({"kind": "paths", "source": "Shop", "step": "Product Viewed"}).to_dict())


def test_bad_input_is_a_clear_error(shop):
    with pytest.raises(InvalidInput, match="not a valid regular expression"):
        shop.run({"kind": "paths", "source": "Shop", "cleaning": [{"pattern": "([a-z", "alias": "x"}]})
    with pytest.raises(InvalidInput, match="need a step"):
        shop.run({"kind": "paths", "source": "Shop", "direction": "before"})
    with pytest.raises(InvalidInput, match="dropped_after"):
        shop.run({"kind": "paths", "source": "Shop", "funnel": {"steps": ["A", "B"], "dropped_after": 2}})
    with pytest.raises(InvalidInput):
        shop.run({"kind": "paths", "source": "Shop", "length": 1})
    with pytest.raises(InvalidInput):
        shop.run({"kind": "paths", "source": "Shop", "label": "colour"})


def test_unknown_anchor_gives_empty_results(shop):
    result = shop.run({"kind": "paths", "source": "Shop", "step": "Nothing Like It"}).to_dict()
    assert result["total"] == 0 and result["paths"] == [] and result["sankey"]["nodes"] == []
    assert result["loops"] == {"paths": 0, "share": None, "top": []}


def test_cli_paths_json_equals_store_run(shop, tmp_path):
    shop.close()
    data_dir = tmp_path / "data"
    cli = masar_cli_json("paths", "--source", "Shop", "--after", "Product Viewed", "--label", "path",
                         "--clean", "^/products/=>Product page", "--data-dir", data_dir)  # fmt: skip
    store = masar.open(data_dir)
    direct = store.run({"kind": "paths", "source": "Shop", "step": "Product Viewed", "label": "path",
                        "cleaning": [{"pattern": "^/products/", "alias": "Product page"}]}).to_dict()  # fmt: skip
    store.close()
    assert cli == direct
    table = masar_cli("paths", "--source", "Shop", "--after", "Product Viewed", "--data-dir", data_dir).stdout
    assert "Product Viewed → Cart Viewed" in table


def test_cli_refuses_a_bad_cleaning_rule_in_one_sentence(tmp_path):
    import subprocess
    import sys

    masar_cli("sources", "create", "Shop", "--data-dir", tmp_path / "d")
    done = subprocess.run([sys.executable, "-m", "masar.cli", "paths", "--source", "Shop", "--clean", "(=>x",
                           "--data-dir", str(tmp_path / "d")], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 1
    assert "not a valid regular expression" in done.stderr and "Traceback" not in done.stderr
