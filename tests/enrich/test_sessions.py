"""The sessionize kernel against a plainly written reference, on random data (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from masar.enrich.sessions import NO_CAMPAIGN, session_ids, sessionize_kernel

GAP = 30


def reference(rows, state, gap):
    """rows: list of (key, ts, campaign) sorted by (key, ts); state: {key: (start, last, campaign)}.

    Returns per row (session start, continues carried session) following the documented rules.
    """
    out = []
    current = {}
    late = {}
    for key, t, campaign in rows:
        if key not in current:
            if key in state:
                start, last, camp = state[key]
                current[key] = {"start": start, "last": last, "campaign": camp, "carried": True}
            else:
                current[key] = None
        cur = current[key]
        if cur is not None and cur["carried"] and t < cur["last"]:
            inside = t >= cur["start"] - gap and (campaign == NO_CAMPAIGN or campaign == cur["campaign"])
            if inside:
                out.append((cur["start"], True))
                continue
            lt = late.get(key)
            if lt is None or t - lt["last"] > gap or (campaign != NO_CAMPAIGN and campaign != lt["campaign"]):
                lt = {"start": t, "last": t, "campaign": campaign}
                late[key] = lt
            lt["last"] = t
            out.append((lt["start"], False))
            continue
        if cur is None or t - cur["last"] > gap or (campaign != NO_CAMPAIGN and campaign != cur["campaign"]):
            cur = {"start": t, "last": t, "campaign": campaign, "carried": False}
            current[key] = cur
        cur["last"] = t
        out.append((cur["start"], cur["carried"]))
    return out


def run_kernel(rows, state, n_keys, gap):
    keys = np.array([r[0] for r in rows], dtype=np.int64)
    ts = np.array([r[1] for r in rows], dtype=np.int64)
    camps = np.array([r[2] for r in rows], dtype=np.int64)
    has = np.zeros(n_keys, dtype=np.bool_)
    s_start = np.zeros(n_keys, dtype=np.int64)
    s_last = np.zeros(n_keys, dtype=np.int64)
    s_camp = np.full(n_keys, NO_CAMPAIGN, dtype=np.int64)
    for key, (start, last, camp) in state.items():
        has[key], s_start[key], s_last[key], s_camp[key] = True, start, last, camp
    starts, carried = sessionize_kernel(keys, ts, camps, has, s_start, s_last, s_camp, np.int64(gap))
    return list(zip(starts.tolist(), carried.tolist(), strict=True))


row_strategy = st.tuples(
    st.integers(0, 3), st.integers(0, 400), st.sampled_from([NO_CAMPAIGN, NO_CAMPAIGN, NO_CAMPAIGN, 0, 1])
)
state_strategy = st.dictionaries(
    st.integers(0, 3),
    st.tuples(st.integers(0, 300), st.integers(0, 100), st.sampled_from([NO_CAMPAIGN, 0, 1])).map(
        lambda t: (t[0], t[0] + t[1], t[2])
    ),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(row_strategy, max_size=60), state_strategy)
def test_kernel_matches_reference(rows, state):
    rows = sorted(rows, key=lambda r: (r[0], r[1]))
    assert run_kernel(rows, state, 4, GAP) == reference(rows, state, GAP)


def test_gap_and_campaign_rules():
    rows = [(0, 0, NO_CAMPAIGN), (0, 30, NO_CAMPAIGN), (0, 61, NO_CAMPAIGN), (0, 70, 1), (0, 80, NO_CAMPAIGN),
            (0, 85, 1), (0, 90, 0)]  # fmt: skip
    starts = [s for s, _ in run_kernel(rows, {}, 1, GAP)]
    # 30 later is the same session (inclusive gap); 31 later is a new one; a new campaign starts one;
    # a row without campaign info continues; the same campaign continues; another campaign starts one.
    assert starts == [0, 0, 61, 70, 70, 70, 90]


def test_carried_session_continues_and_late_events():
    state = {0: (100, 150, NO_CAMPAIGN)}
    rows = [(0, 20, NO_CAMPAIGN), (0, 25, NO_CAMPAIGN), (0, 90, NO_CAMPAIGN), (0, 160, NO_CAMPAIGN), (0, 400, 0)]
    assert run_kernel(rows, state, 1, GAP) == [(20, False), (20, False), (100, True), (100, True), (400, False)]


def test_session_ids_are_stable_and_distinct():
    one = session_ids(1, np.array([7, 7, 8]), np.array([123, 124, 123]))
    assert (one == session_ids(1, np.array([7, 7, 8]), np.array([123, 124, 123]))).all()
    assert len(set(one.tolist())) == 3 and (one >= 0).all()
    assert session_ids(2, np.array([7]), np.array([123]))[0] != one[0]
    many = session_ids(1, np.arange(200_000) % 1000, np.arange(200_000) // 1000)
    assert len(np.unique(many)) == 200_000
