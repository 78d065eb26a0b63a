"""The funnel kernels: one linear pass over events grouped by unit (person, session, or person
and a held-constant value) and ordered by time, compiled with numba and parallel over groups.

Inputs per event: ``ts`` (µs), ``mask`` (bit k set when the event satisfies step k) and
``exmask`` (bit x set when it is exclusion x). Within a group, events at the same instant are
taken in step order, as ClickHouse's ``windowFunnel`` does.

Ordered funnels keep, for each step k, the attempt that reached step k with the latest start
(``chain[k]``: the event index of each of its steps). A later start is never worse: the window
counts from the start, and every later event comes after it. So one chain per step is enough,
and the deepest step any attempt reached is the deepest valid chain seen — the semantics of
``windowFunnel(window)`` in its default mode, extended with optional steps, maximum times between
steps and exclusions (docs/funnels.md). Strict funnels advance every chain by the next event of
the unit or drop it. Unordered funnels slide a window over the unit's step events.

tests/engine/reference_funnel.py holds the plain brute-force definitions these must agree with.
"""

from __future__ import annotations

import numba
import numpy as np

ORDERED = 0
STRICT = 1
UNORDERED = 2

_NO_STEP = 64
_MIN_TS = np.iinfo(np.int64).min
_MAX_TS = np.iinfo(np.int64).max


@numba.njit(cache=True, nogil=True)
def _lowest_bit(m: np.uint64) -> np.int64:
    if m == 0:
        return _NO_STEP
    k = 0
    while not (m >> np.uint64(k)) & np.uint64(1):
        k += 1
    return k


@numba.njit(cache=True, nogil=True)
def _has(m, k) -> bool:
    return ((m >> np.uint64(k)) & np.uint64(1)) != 0


@numba.njit(cache=True, nogil=True)
def _last_present(chain, level, upto):
    """Index of the last event present in ``chain[level, :upto+1]`` (optional steps may be -1)."""
    for s in range(upto, -1, -1):
        if chain[level, s] >= 0:
            return chain[level, s]
    return -1


@numba.njit(cache=True, nogil=True, inline="always")  # per event and step: inlined into the loops
def _predecessor(k, t, ts, chain, valid, blocked, optional, window, gaps, ex_from):
    """The chain step ``k`` may extend at time ``t``: step k-1's, or an earlier one's when the
    steps between are optional; the latest start wins, then the latest last step. A chain cannot
    skip an optional from-step of an exclusion seen since its last step (``blocked``)."""
    best = -1
    best_start = np.int64(0)
    best_last = np.int64(0)
    p = k - 1
    while p >= 0:
        usable = valid[p]
        if usable and p < k - 1 and blocked[p] != 0:
            for i in range(ex_from.shape[0]):
                if ex_from[i] < k and _has(blocked[p], i):
                    usable = False
        if usable:
            start = ts[chain[p, 0]]
            last = ts[_last_present(chain, p, p)]
            if t - start <= window and (gaps[k] <= 0 or t - last <= gaps[k]):
                if best < 0 or start > best_start or (start == best_start and last > best_last):
                    best = p
                    best_start = start
                    best_last = last
        if p > 0 and optional[p]:
            p -= 1
        else:
            break
    return best


@numba.njit(cache=True, nogil=True, inline="always")  # per event and step: inlined into the loops
def _extend(k, p, e, chain, valid, blocked, steps):
    for s in range(steps):
        chain[k, s] = chain[p, s] if s < k else -1
    for s in range(p + 1, k):
        chain[k, s] = -1
    chain[k, k] = e
    valid[k] = True
    blocked[k] = 0


@numba.njit(cache=True, nogil=True, inline="always")  # per event and step: inlined into the loops
def _start(e, chain, valid, blocked, steps):
    for s in range(steps):
        chain[0, s] = -1
    chain[0, 0] = e
    valid[0] = True
    blocked[0] = 0


@numba.njit(cache=True, nogil=True)
def _apply_exclusions(x, t, ts, chain, valid, blocked, optional, ex_from, ex_to):
    """Exclusion ``i`` at ``t`` stops every attempt that reached its from-step but not its to-step.
    An attempt below an optional from-step may yet do it, after ``t``, and go on; but if it skips
    it, its last step before counts as the from-step, and the exclusion stops it: ``blocked``
    marks it so."""
    for i in range(ex_from.shape[0]):
        if not _has(x, i):
            continue
        for level in range(ex_from[i], ex_to[i]):
            if valid[level]:
                e = _last_present(chain, level, ex_from[i])
                if e >= 0 and ts[e] < t:
                    valid[level] = False
        level = ex_from[i]
        while level > 0 and optional[level]:
            level -= 1
            if valid[level] and ts[_last_present(chain, level, level)] < t:
                blocked[level] |= np.uint64(1) << np.uint64(i)


@numba.njit(cache=True, nogil=True)
def _record(k, chain, best_chain, steps):
    for s in range(steps):
        best_chain[s] = chain[k, s]


@numba.njit(cache=True, nogil=True)
def _sort_run(i, j, mask, run):
    """Events of one instant in step order (by lowest step bit, then as stored) into ``run``."""
    n_run = j - i
    for r in range(n_run):
        run[r] = i + r
    for r in range(1, n_run):
        v = run[r]
        key = _lowest_bit(mask[v])
        q = r - 1
        while q >= 0 and _lowest_bit(mask[run[q]]) > key:
            run[q + 1] = run[q]
            q -= 1
        run[q + 1] = v
    return n_run


@numba.njit(cache=True, nogil=True)
def _strict_event(e, t, m, ts, steps, window, gaps, optional, ex_from, chain, valid, blocked):
    """Every chain takes event ``e`` as its next step or ends. Returns the deepest step extended
    (-1 if none). Steps are visited from the last down, so predecessors are read before they change."""
    deepest = -1
    for k in range(steps - 1, 0, -1):
        p = -1
        if _has(m, k):
            p = _predecessor(k, t, ts, chain, valid, blocked, optional, window, gaps, ex_from)
        if p >= 0:
            _extend(k, p, e, chain, valid, blocked, steps)
            if deepest < 0:
                deepest = k
        else:
            valid[k] = False
    valid[0] = False
    return deepest


@numba.njit(cache=True, nogil=True)
def _ordered_run(run, n_run, t, m_all, mask, ts, steps, window, gaps, optional, ex_from, chain, valid, blocked,
                 can_start):  # fmt: skip
    """Steps of one instant, in step order (``windowFunnel``'s tie rule). Returns the deepest step
    reached at this instant (-1 if none)."""
    deepest = -1
    for k in range(steps):
        if not _has(m_all, k):
            continue
        e = -1
        for r in range(n_run):
            if _has(mask[run[r]], k):
                e = run[r]
                break
        if k == 0:
            if can_start:
                _start(e, chain, valid, blocked, steps)
                if deepest < 0:
                    deepest = 0
        else:
            p = _predecessor(k, t, ts, chain, valid, blocked, optional, window, gaps, ex_from)
            if p >= 0:
                _extend(k, p, e, chain, valid, blocked, steps)
                deepest = k
    return deepest


@numba.njit(cache=True, nogil=True)
def _longest_run(a, b, ts):
    longest = 1
    k = a
    while k < b:
        q = k
        while q < b and ts[q] == ts[k]:
            q += 1
        if q - k > longest:
            longest = q - k
        k = q
    return longest


@numba.njit(cache=True, nogil=True)
def _ordered_group(a, b, ts, mask, exmask, steps, window, gaps, optional, ex_from, ex_to, strict,
                   chain, valid, blocked, run, best_chain):  # fmt: skip
    """The deepest step any attempt of the unit ``[a, b)`` reached (-1: never did step 1), and in
    ``best_chain`` the attempt that reached it first."""
    for s in range(steps):
        valid[s] = False
    best = -1
    i = a
    while i < b:
        t = ts[i]
        j = i
        while j < b and ts[j] == t:
            j += 1
        n_run = _sort_run(i, j, mask, run)
        if strict:
            x_all = np.uint64(0)
            for r in range(n_run):
                e = run[r]
                m = mask[e]
                x_all |= exmask[e]
                deepest = _strict_event(
                    e, t, m, ts, steps, window, gaps, optional, ex_from, chain, valid, blocked
                )
                # Reached at the same instant as the recorded attempt: the later start is reported.
                later = deepest == best and deepest >= 0 and ts[best_chain[deepest]] == t
                if deepest > best or (later and ts[chain[deepest, 0]] > ts[best_chain[0]]):
                    best = deepest
                    _record(deepest, chain, best_chain, steps)
                if _has(m, 0):
                    _start(e, chain, valid, blocked, steps)
                    if best < 0:
                        best = 0
                        _record(0, chain, best_chain, steps)
            # An exclusion stops attempts only for steps strictly after its instant: the actions
            # that follow it at the same instant (in strict order) may still be steps.
            if x_all != 0:
                _apply_exclusions(x_all, t, ts, chain, valid, blocked, optional, ex_from, ex_to)
        else:
            m_all = np.uint64(0)
            x_all = np.uint64(0)
            for r in range(n_run):
                m_all |= mask[run[r]]
                x_all |= exmask[run[r]]
            if m_all != 0:
                for k in range(steps):
                    if not _has(m_all, k):
                        continue
                    e = -1
                    for r in range(n_run):
                        if _has(mask[run[r]], k):
                            e = run[r]
                            break
                    if k == 0:
                        _start(e, chain, valid, blocked, steps)
                        if best < 0:
                            best = 0
                            _record(0, chain, best_chain, steps)
                    else:
                        p = _predecessor(k, t, ts, chain, valid, blocked, optional, window, gaps, ex_from)
                        if p >= 0:
                            _extend(k, p, e, chain, valid, blocked, steps)
                            if k > best:
                                best = k
                                _record(k, chain, best_chain, steps)
            if x_all != 0:
                _apply_exclusions(x_all, t, ts, chain, valid, blocked, optional, ex_from, ex_to)
        i = j
    return best


@numba.njit(cache=True, nogil=True)
def _totals_group(a, b, ts, mask, exmask, steps, window, gaps, optional, ex_from, ex_to, strict,
                  chain, valid, blocked, run, best_chain, out_levels, out_chains, out_at):  # fmt: skip
    """Attempts one after another: an attempt starts at a step-1 event when none is in progress
    and lasts until it completes, its window ends or every way on is stopped; an event used by
    an attempt does not start the next. Writes one record per attempt from ``out_at``."""
    written = 0
    active = False
    best = -1
    start_ts = np.int64(0)
    i = a
    while i <= b:
        if i == b:
            if active:
                out_levels[out_at + written] = best
                for s in range(steps):
                    out_chains[out_at + written, s] = best_chain[s]
                written += 1
            break
        t = ts[i]
        j = i
        while j < b and ts[j] == t:
            j += 1
        if active and t - start_ts > window:
            out_levels[out_at + written] = best
            for s in range(steps):
                out_chains[out_at + written, s] = best_chain[s]
            written += 1
            active = False
        n_run = _sort_run(i, j, mask, run)
        # Strict funnels go action by action, but an exclusion stops an attempt only for the steps
        # strictly after its instant: the instant's exclusions are applied after its last action.
        x_instant = np.uint64(0)
        for r in range(n_run if strict else 1):
            used = False
            if strict:
                x_instant |= exmask[run[r]]
            if active:
                if strict:
                    e = run[r]
                    deepest = _strict_event(e, t, mask[e], ts, steps, window, gaps, optional, ex_from, chain, valid,
                                             blocked)  # fmt: skip
                    x = np.uint64(0)
                else:
                    m_all = np.uint64(0)
                    x = np.uint64(0)
                    for q in range(n_run):
                        m_all |= mask[run[q]]
                        x |= exmask[run[q]]
                    m_all &= ~np.uint64(1)
                    deepest = _ordered_run(run, n_run, t, m_all, mask, ts, steps, window, gaps, optional,
                                           ex_from, chain, valid, blocked, False)  # fmt: skip
                if deepest >= 0:
                    used = True
                    if deepest > best:
                        best = deepest
                        _record(deepest, chain, best_chain, steps)
                if x != 0:
                    _apply_exclusions(x, t, ts, chain, valid, blocked, optional, ex_from, ex_to)
                alive = False
                for s in range(steps - 1):
                    alive = alive or valid[s]
                if best == steps - 1 or not alive:
                    out_levels[out_at + written] = best
                    for s in range(steps):
                        out_chains[out_at + written, s] = best_chain[s]
                    written += 1
                    active = False
            if not active and not used:
                if strict:
                    e = run[r]
                    if _has(mask[e], 0):
                        for s in range(steps):
                            valid[s] = False
                        _start(e, chain, valid, blocked, steps)
                        active = True
                        start_ts = t
                        best = 0
                        _record(0, chain, best_chain, steps)
                else:
                    m_all = np.uint64(0)
                    x = np.uint64(0)
                    for q in range(n_run):
                        m_all |= mask[run[q]]
                        x |= exmask[run[q]]
                    if _has(m_all, 0):
                        for s in range(steps):
                            valid[s] = False
                        deepest = _ordered_run(run, n_run, t, m_all, mask, ts, steps, window, gaps, optional,
                                               ex_from, chain, valid, blocked, True)  # fmt: skip
                        active = True
                        start_ts = t
                        best = deepest
                        _record(deepest, chain, best_chain, steps)
                        if x != 0:
                            _apply_exclusions(x, t, ts, chain, valid, blocked, optional, ex_from, ex_to)
                        if best == steps - 1:
                            out_levels[out_at + written] = best
                            for s in range(steps):
                                out_chains[out_at + written, s] = best_chain[s]
                            written += 1
                            active = False
        if active and x_instant != 0:
            _apply_exclusions(x_instant, t, ts, chain, valid, blocked, optional, ex_from, ex_to)
            alive = False
            for s in range(steps - 1):
                alive = alive or valid[s]
            if not alive:
                out_levels[out_at + written] = best
                for s in range(steps):
                    out_chains[out_at + written, s] = best_chain[s]
                written += 1
                active = False
        i = j
    return written


@numba.njit(cache=True, nogil=True)
def _unordered_group(a, b, ts, mask, steps, window, counts, firsts, best_chain):
    """Deepest number of distinct steps (minus one) done within ``window`` after a step event,
    and in ``best_chain`` the first event of each, in the order they were done, of the window
    that reached that number first (on a tie, the one that started latest)."""
    for s in range(steps):
        counts[s] = 0
        best_chain[s] = -1
    distinct = 0
    best = -1
    r = a
    for i in range(a, b):
        if mask[i] == 0:
            continue
        t = ts[i]
        if r < i:
            r = i
        while r < b and ts[r] - t <= window:
            distinct += _add(mask[r], counts, steps, 1)
            r += 1
        if distinct - 1 > best:
            best = distinct - 1
        distinct += _add(mask[i], counts, steps, -1)
    if best < 0:
        return best
    # Second pass: when each window reaches ``best + 1`` distinct steps. The earliest such moment
    # only moves later as the start does, so one pointer serves every start.
    for s in range(steps):
        counts[s] = 0
    distinct = 0
    best_anchor = -1
    best_end = -1
    best_reach = np.int64(0)
    r = a
    for i in range(a, b):
        if mask[i] == 0:
            continue
        t = ts[i]
        if r < i:
            r = i
        while r < b and distinct <= best and ts[r] - t <= window:
            distinct += _add(mask[r], counts, steps, 1)
            r += 1
        if distinct > best:
            reach = ts[r - 1]
            if best_anchor < 0 or reach < best_reach or (reach == best_reach and t > ts[best_anchor]):
                best_anchor = i
                best_end = r
                best_reach = reach
        distinct += _add(mask[i], counts, steps, -1)
    for s in range(steps):
        firsts[s] = -1
    for e in range(best_anchor, best_end):
        m = mask[e]
        for s in range(steps):
            if _has(m, s) and firsts[s] < 0:
                firsts[s] = e
    placed = 0
    for e in range(best_anchor, best_end):
        for s in range(steps):
            if firsts[s] == e:
                best_chain[placed] = e
                placed += 1
    return best


@numba.njit(cache=True, nogil=True)
def _add(m, counts, steps, by):
    """Count the steps of one event in or out of a window; returns the change in distinct steps."""
    change = 0
    for s in range(steps):
        if _has(m, s):
            if by > 0 and counts[s] == 0:
                change += 1
            counts[s] += by
            if by < 0 and counts[s] == 0:
                change -= 1
    return change


@numba.njit(cache=True, nogil=True)
def _ordered_simple_group(a, b, ts, lut, codes, use_codes, lo, hi, steps, window, chain, valid, start_ts, chains, g,
                          best=-1, reset=True):  # fmt: skip
    """``_ordered_group`` for the common case — no optional steps, no times between steps, no
    exclusions — written flat: this loop is the funnel's hot path (a few ns per event).

    An event's step bits are ``lut[codes[i]]`` (``use_codes``: steps by event name alone, no mask
    array is built) or ``lut[i]`` (a mask per event). Step 1 counts only in ``[lo, hi)``. With
    ``reset`` False it goes on from the state (and ``best``) an earlier call left."""
    if reset:
        for s in range(steps):
            valid[s] = False
    i = a
    while i < b:
        m = lut[codes[i]] if use_codes else lut[i]
        if m == 0:
            i += 1
            continue
        t = ts[i]
        j = i + 1
        while j < b and ts[j] == t:
            m |= lut[codes[j]] if use_codes else lut[j]
            j += 1
        if t < lo or t >= hi:
            m &= ~np.uint64(1)
        while m != 0:  # the steps of this instant, in step order
            k = 0
            while not (m >> np.uint64(k)) & np.uint64(1):
                k += 1
            bit = np.uint64(1) << np.uint64(k)
            m ^= bit
            e = i
            if j - i > 1:
                for r in range(i, j):
                    if (lut[codes[r]] if use_codes else lut[r]) & bit:
                        e = r
                        break
            if k == 0:
                start_ts[0] = t
                valid[0] = True
                chain[0, 0] = e
                if best < 0:
                    best = 0
                    chains[g, 0] = e
            elif valid[k - 1] and t - start_ts[k - 1] <= window:
                start_ts[k] = start_ts[k - 1]
                valid[k] = True
                for s in range(k):
                    chain[k, s] = chain[k - 1, s]
                chain[k, k] = e
                if k > best:
                    best = k
                    for s in range(k + 1):
                        chains[g, s] = chain[k, s]
        i = j
    return best


@numba.njit(cache=True, nogil=True)
def _by_event_group(a, b, ts, codes, lut, single, lo, hi, steps, window, chain, valid, start_ts, chains, g):
    """``_ordered_simple_group`` over event codes, with a shortcut for an event alone at its instant
    (``single[code]`` is its one step, -1 when the code stands for several)."""
    for s in range(steps):
        valid[s] = False
    best = -1
    i = a
    while i < b:
        c = codes[i]
        m = lut[c]
        if m == 0:
            i += 1
            continue
        if i + 1 < b and ts[i + 1] == ts[i]:
            # Several events at this instant: the general loop takes them in step order.
            j = i + 1
            while j < b and ts[j] == ts[i]:
                j += 1
            best = _ordered_simple_group(i, j, ts, lut, codes, True, lo, hi, steps, window, chain, valid,
                                         start_ts, chains, g, best, False)  # fmt: skip
            i = j
            continue
        t = ts[i]
        k = single[c]
        while True:  # the event's steps in step order (usually just one)
            if k < 0:
                if m == 0:
                    break
                k = 0
                while not (m >> np.uint64(k)) & np.uint64(1):
                    k += 1
                m ^= np.uint64(1) << np.uint64(k)
            else:
                m = np.uint64(0)
            if k == 0:
                if lo <= t < hi:
                    start_ts[0] = t
                    valid[0] = True
                    chain[0, 0] = i
                    if best < 0:
                        best = 0
                        chains[g, 0] = i
            elif valid[k - 1] and t - start_ts[k - 1] <= window:
                start_ts[k] = start_ts[k - 1]
                valid[k] = True
                for s in range(k):
                    chain[k, s] = chain[k - 1, s]
                chain[k, k] = i
                if k > best:
                    best = k
                    for s in range(k + 1):
                        chains[g, s] = chain[k, s]
            k = -1
        i += 1
    return best


@numba.njit(cache=True, nogil=True, parallel=True)
def funnel_units_by_event(starts, ts, codes, lut, lo, hi, steps, window):
    """``funnel_units`` for plain ordered funnels whose steps are event names: the step bits of an
    event are ``lut[event code]``, and step 1 counts only in ``[lo, hi)`` (µs)."""
    groups = starts.shape[0] - 1
    levels = np.full(groups, -1, dtype=np.int8)
    chains = np.full((groups, steps), -1, dtype=np.int32)  # half the memory traffic of int64
    single = np.full(lut.shape[0], -1, dtype=np.int64)
    for c in range(lut.shape[0]):
        m = lut[c]
        if m != 0 and (m & (m - np.uint64(1))) == 0:
            k = 0
            while not (m >> np.uint64(k)) & np.uint64(1):
                k += 1
            single[c] = k
    chunks = min(groups, 256)
    for c in numba.prange(chunks):
        chain = np.empty((steps, steps), dtype=np.int64)
        valid = np.zeros(steps, dtype=np.bool_)
        start_ts = np.zeros(steps, dtype=np.int64)
        lo_g = groups * c // chunks
        hi_g = groups * (c + 1) // chunks
        for g in range(lo_g, hi_g):
            if starts[g] < starts[g + 1]:
                levels[g] = _by_event_group(starts[g], starts[g + 1], ts, codes, lut, single, lo, hi, steps, window,
                                            chain, valid, start_ts, chains, g)  # fmt: skip
    return levels, chains


@numba.njit(cache=True, nogil=True, parallel=True)
def funnel_units(starts, ts, mask, exmask, mode, steps, window, gaps, optional, ex_from, ex_to):  # fmt: skip
    """One counted attempt per unit (events ``[starts[g], starts[g+1])``): the deepest step reached
    (-1 when the unit never did step 1) and the event index of each of its steps (-1 where none)."""
    groups = starts.shape[0] - 1
    levels = np.full(groups, -1, dtype=np.int8)
    chains = np.full((groups, steps), -1, dtype=np.int64)
    simple = mode == ORDERED and ex_from.shape[0] == 0
    no_codes = np.empty(0, dtype=np.int32)
    for s in range(steps):
        if gaps[s] > 0 or optional[s]:
            simple = False
    chunks = min(groups, 256)
    for c in numba.prange(chunks):
        chain = np.empty((steps, steps), dtype=np.int64)
        valid = np.zeros(steps, dtype=np.bool_)
        blocked = np.zeros(steps, dtype=np.uint64)
        start_ts = np.zeros(steps, dtype=np.int64)
        best_chain = np.empty(steps, dtype=np.int64)
        counts = np.zeros(steps, dtype=np.int64)
        firsts = np.zeros(steps, dtype=np.int64)
        run = np.empty(64, dtype=np.int64)
        lo = groups * c // chunks
        hi = groups * (c + 1) // chunks
        for g in range(lo, hi):
            a = starts[g]
            b = starts[g + 1]
            if a == b:
                continue
            if simple:
                levels[g] = _ordered_simple_group(a, b, ts, mask, no_codes, False, _MIN_TS, _MAX_TS, steps, window,
                                                  chain, valid, start_ts, chains, g)  # fmt: skip
                continue
            if mode == UNORDERED:
                level = _unordered_group(a, b, ts, mask, steps, window, counts, firsts, best_chain)
            else:
                longest = _longest_run(a, b, ts)
                if longest > run.shape[0]:
                    run = np.empty(longest, dtype=np.int64)
                level = _ordered_group(a, b, ts, mask, exmask, steps, window, gaps, optional, ex_from, ex_to,
                                       mode == STRICT, chain, valid, blocked, run, best_chain)  # fmt: skip
            levels[g] = level
            if level >= 0:
                for s in range(steps):
                    chains[g, s] = best_chain[s]
    return levels, chains


@numba.njit(cache=True, nogil=True, parallel=True)
def funnel_attempts(starts, ts, mask, exmask, mode, steps, window, gaps, optional, ex_from, ex_to):  # fmt: skip
    """Every attempt of every unit (counting "totals"): (unit, deepest step, chain) per attempt."""
    groups = starts.shape[0] - 1
    # At most one attempt per step-1 event: each group writes into its own slice.
    capacity = np.zeros(groups + 1, dtype=np.int64)
    for g in range(groups):
        n = 0
        for e in range(starts[g], starts[g + 1]):
            if mask[e] & np.uint64(1):
                n += 1
        capacity[g + 1] = capacity[g] + n
    total = capacity[groups]
    units = np.empty(total, dtype=np.int64)
    levels = np.full(total, -1, dtype=np.int8)
    chains = np.full((total, steps), -1, dtype=np.int64)
    written = np.zeros(groups, dtype=np.int64)
    chunks = min(groups, 256)
    for c in numba.prange(chunks):
        chain = np.empty((steps, steps), dtype=np.int64)
        valid = np.zeros(steps, dtype=np.bool_)
        blocked = np.zeros(steps, dtype=np.uint64)
        best_chain = np.empty(steps, dtype=np.int64)
        run = np.empty(64, dtype=np.int64)
        lo = groups * c // chunks
        hi = groups * (c + 1) // chunks
        for g in range(lo, hi):
            a = starts[g]
            b = starts[g + 1]
            if capacity[g + 1] == capacity[g]:
                continue
            longest = _longest_run(a, b, ts)
            if longest > run.shape[0]:
                run = np.empty(longest, dtype=np.int64)
            n = _totals_group(a, b, ts, mask, exmask, steps, window, gaps, optional, ex_from, ex_to,
                              mode == STRICT, chain, valid, blocked, run, best_chain, levels, chains, capacity[g])  # fmt: skip
            written[g] = n
            for w in range(n):
                units[capacity[g] + w] = g
    keep = np.zeros(total, dtype=np.bool_)
    for g in range(groups):
        for w in range(written[g]):
            keep[capacity[g] + w] = True
    return units[keep], levels[keep], chains[keep]
