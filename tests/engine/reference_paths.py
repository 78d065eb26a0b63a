"""Plain definitions of journeys and correlation counts, written for clarity, not speed: the
kernels in masar/engine/kernels/paths.py must agree with these (docs/paths.md, docs/correlation.md).

A person is a list of events ``(ts, label, session)`` in time order; label -1 is an event the
analysis ignores. Events are referred to by their position in the person's list.
"""

from __future__ import annotations

from itertools import groupby

Event = tuple[int, int, int]  # (ts, label, session)


def anchors(events: list[Event], is_anchor: list[bool], occurrence: str) -> list[int]:
    found = [i for i, yes in enumerate(is_anchor) if yes]
    return found[:1] if occurrence == "first" else found


def path(events: list[Event], a: int, anchor_label: int, *, forward: bool, window: int, length: int,
         collapse: bool, same_session: bool) -> list[int]:  # fmt: skip
    """The anchor's label, then the labels of the events the analysis looks at that lie within
    ``window`` of the anchor on its side (in the anchor's session if asked), walking away from
    it; runs of one label merged when collapsing; the first ``length``."""
    t0, _, session = events[a]
    side = events[a + 1 :] if forward else events[:a][::-1]
    near = [
        label
        for ts, label, s in side
        if abs(ts - t0) <= window and label >= 0 and (not same_session or s == session)
    ]
    labels = [anchor_label, *near]
    if collapse:
        labels = [label for label, _ in groupby(labels)]
    return labels[:length]


def loops(labels: list[int]) -> set[tuple[int, ...]]:
    """Every stretch ``labels[i..j]`` whose ends are the same label, with something else between
    and no other occurrence of that label inside."""
    found = set()
    for j in range(len(labels)):
        for i in range(j - 1):
            inside = labels[i + 1 : j]
            if labels[i] == labels[j] and labels[j] not in inside:
                found.add(tuple(labels[i : j + 1]))
    return found


def journey_codes(events: list[tuple[int, int]], t0: int, t_end: int) -> set[int]:
    """The codes (≥ 0) on a person's events ``(ts, code)`` with t0 ≤ ts ≤ t_end."""
    return {code for ts, code in events if t0 <= ts <= t_end and code >= 0}
