"""Journey kernels: walks from anchor events over a person's events (grouped by person, ordered by
time), compiled with numba.

Inputs per event: ``ts`` (µs), ``labels`` (int32 code of the event's cleaned label, -1 for an
event the analysis ignores) and ``sessions`` (session id). A walk visits each event between its
anchor and the window's edge once, so a query with one anchor per person is one linear pass over
the frame. tests/engine/reference_paths.py holds the plain definitions these must agree with.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, parallel=True)
def walk_paths(
    anchors, lo, hi, ts, labels, first_label, sessions, use_session, forward, window, length, collapse
):
    """One path per anchor: ``out[r, 0]`` is the anchor's label, then the labels of the events
    after it (``forward``) or before it, walking away from the anchor, while within ``window`` µs
    of it (inclusive) and inside the person's events ``[lo[r], hi[r])``; with ``use_session`` only
    events of the anchor's session. Ignored events (label -1) are skipped; with ``collapse`` an
    event with the same label as the one kept before it is skipped too. -1 pads short paths."""
    n = anchors.shape[0]
    out = np.full((n, length), -1, dtype=np.int32)
    for r in numba.prange(n):
        a = anchors[r]
        t0 = ts[a]
        session = sessions[a]
        out[r, 0] = first_label[r]
        prev = first_label[r]
        pos = 1
        e = a + 1 if forward else a - 1
        while pos < length and (e < hi[r] if forward else e >= lo[r]):
            gap = ts[e] - t0 if forward else t0 - ts[e]
            if gap > window:
                break
            label = labels[e]
            if (
                label >= 0
                and not (use_session and sessions[e] != session)
                and not (collapse and label == prev)
            ):
                out[r, pos] = label
                prev = label
                pos += 1
            e = e + 1 if forward else e - 1
    return out


@numba.njit(cache=True, nogil=True)
def _loop_is_new(out, count, row_loops_from, path, i, j):
    """Whether path[i..j] differs from the loops already found in this path."""
    for m in range(row_loops_from, count):
        same = True
        for k in range(out.shape[1]):
            expected = path[i + k] if k <= j - i else -1
            if out[m, k] != expected:
                same = False
                break
        if same:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def find_loops(paths):
    """Loops in each path: a label that recurs after something else. For every position j whose
    label occurred before, at latest at i < j - 1, the loop is ``path[i..j]`` (the shortest one
    ending at j). Returns (loops padded with -1, the path row of each loop); a path's identical
    loops are listed once."""
    n, length = paths.shape
    cap = 16
    out = np.full((cap, length), -1, dtype=np.int32)
    rows = np.empty(cap, dtype=np.int64)
    count = 0
    for r in range(n):
        path = paths[r]
        first = count
        for j in range(2, length):
            label = path[j]
            if label < 0:
                break
            i = j - 1
            while i >= 0 and path[i] != label:
                i -= 1
            if i < 0 or i == j - 1:
                continue
            if not _loop_is_new(out, count, first, path, i, j):
                continue
            if count == cap:
                cap *= 2
                grown = np.full((cap, length), -1, dtype=np.int32)
                grown[:count] = out[:count]
                out = grown
                grown_rows = np.empty(cap, dtype=np.int64)
                grown_rows[:count] = rows[:count]
                rows = grown_rows
            for k in range(j - i + 1):
                out[count, k] = path[i + k]
            rows[count] = r
            count += 1
    return out[:count], rows[:count]


@numba.njit(cache=True, nogil=True)
def journey_counts(first, lo, hi, t0, t_end, converted, ts, codes, n_codes):
    """For each counted person (row), the codes seen on their events with ``t0 ≤ ts ≤ t_end``
    (searched around ``first``, their step-1 event, inside their events ``[lo, hi)``); each code
    counted once per person: ``counts[code, 0]`` converters, ``counts[code, 1]`` the others."""
    counts = np.zeros((n_codes, 2), dtype=np.int64)
    stamp = np.full(n_codes, -1, dtype=np.int64)
    for r in range(first.shape[0]):
        side = 0 if converted[r] else 1
        e = first[r]
        while e > lo[r] and ts[e - 1] >= t0[r]:
            e -= 1
        while e < hi[r] and ts[e] <= t_end[r]:
            code = codes[e]
            if code >= 0 and stamp[code] != r:
                stamp[code] = r
                counts[code, side] += 1
            e += 1
    return counts
