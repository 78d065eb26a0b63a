"""docs/funnels.md written out plainly: every chain of events an attempt could be, searched
exhaustively, no cleverness. The numba kernels (masar/engine/kernels/funnel.py) must agree.

A unit's events are given as parallel lists in the order the engine holds them (by time; events
at the same instant in their stored order): ``ts`` (µs), ``mask`` (bit k set when the event
matches step k) and ``exmask`` (bit x set when it is exclusion x). Steps are 0-based here.

A *chain* is a list with one entry per step up to the level it reached: the event index of that
step, or -1 for a skipped optional step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NO_STEP = 64


@dataclass
class Funnel:
    """The options a kernel sees (times in µs; gaps 0 = no limit)."""

    steps: int
    window: int
    order: str = "ordered"  # ordered | strict | unordered
    gaps: list[int] = field(default_factory=list)
    optional: list[bool] = field(default_factory=list)
    exclusions: list[tuple[int, int]] = field(default_factory=list)  # (from step, to step), 0-based

    def __post_init__(self) -> None:
        self.gaps = self.gaps or [0] * self.steps
        self.optional = self.optional or [False] * self.steps


def has(m: int, k: int) -> bool:
    return (m >> k) & 1 == 1


def lowest_step(m: int) -> int:
    for k in range(NO_STEP):
        if has(m, k):
            return k
    return NO_STEP


def strict_positions(ts: list[int], mask: list[int]) -> list[int]:
    """Position of each event in the strict order: time, then lowest step (no step last), then stored."""
    order = sorted(range(len(ts)), key=lambda i: (ts[i], lowest_step(mask[i]), i))
    pos = [0] * len(ts)
    for p, i in enumerate(order):
        pos[i] = p
    return pos


# -- chains (ordered and strict) ------------------------------------------------------------------


def all_chains(ts, mask, exmask, f: Funnel, *, start: int | None = None, upto=None) -> list[list[int]]:
    """Every valid chain (each reaching its own last entry), optionally from a fixed start event and
    using only the events ``upto(i)`` accepts."""
    n = len(ts)
    allowed = upto or (lambda i: True)
    pos = strict_positions(ts, mask) if f.order == "strict" else None
    found: list[list[int]] = []

    def follows(prev: int, e: int, k: int, first: int) -> bool:
        if f.order == "strict":
            # consecutive actions; each action is one step
            if pos[e] != pos[prev] + 1:
                return False
        elif ts[e] < ts[prev]:
            # same instant is fine: taken in step order (the same event may even be two steps)
            return False
        if ts[e] - ts[first] > f.window:
            return False
        if f.gaps[k] > 0 and ts[e] - ts[prev] > f.gaps[k]:
            return False
        return True

    def grow(chain: list[int]) -> None:
        k = len(chain)
        if k == f.steps:
            return
        first = chain[0]
        prev = last_present(chain)
        for e in range(n):
            if allowed(e) and has(mask[e], k) and follows(prev, e, k, first):
                nxt = chain + [e]
                if valid_exclusions(nxt, ts, exmask, f):
                    found.append(nxt)
                    grow(nxt)
        if f.optional[k] and k < f.steps - 1:
            grow(chain + [-1])

    starts = [start] if start is not None else [e for e in range(n) if has(mask[e], 0) and allowed(e)]
    for s in starts:
        found.append([s])
        grow([s])
    return found


def last_present(chain: list[int], upto: int | None = None) -> int:
    upto = len(chain) - 1 if upto is None else upto
    for s in range(upto, -1, -1):
        if chain[s] >= 0:
            return chain[s]
    return -1


def valid_exclusions(chain, ts, exmask, f: Funnel) -> bool:
    """An exclusion strictly after the from-step (or the last step done before it), while the
    attempt has not reached the to-step, stops the attempt: it keeps the steps it had reached and
    can no longer go on — no step strictly later than the exclusion, so not the to-step or later
    either. A chain is therefore invalid when an exclusion falls strictly between its from-step
    and a step it took to go on from there, up to the one that reached the to-step."""
    level = len(chain) - 1
    for x, (lo, hi) in enumerate(f.exclusions):
        if level <= lo:
            continue
        after = ts[last_present(chain, lo)]
        if level >= hi:
            # The step that reached the to-step (or past it, when the to-step is a skipped optional).
            reach = next(ts[chain[s]] for s in range(hi, level + 1) if chain[s] >= 0)
        else:
            reach = ts[chain[-1]]
        for e in range(len(ts)):
            if has(exmask[e], x) and after < ts[e] < reach:
                return False
    return True


def reach_time(chain, ts) -> int:
    return ts[chain[-1]]


@dataclass
class UnitAnswer:
    level: int  # -1: never did step 1
    # The chains the doc allows as the reported attempt (reached the deepest step first; on a tie,
    # the latest start).
    reported: list[list[int]]


def unit(ts, mask, exmask, f: Funnel) -> UnitAnswer:
    """Uniques: the deepest step any attempt reached, and the attempts that may be reported."""
    if f.order == "unordered":
        return unordered_unit(ts, mask, f)
    chains = all_chains(ts, mask, exmask, f)
    if not chains:
        return UnitAnswer(-1, [])
    level = max(len(c) for c in chains) - 1
    deepest = [c for c in chains if len(c) == level + 1]
    first = min(reach_time(c, ts) for c in deepest)
    at_first = [c for c in deepest if reach_time(c, ts) == first]
    latest = max(ts[c[0]] for c in at_first)
    return UnitAnswer(level, [c for c in at_first if ts[c[0]] == latest])


# -- unordered ------------------------------------------------------------------------------------


def unordered_unit(ts, mask, f: Funnel) -> UnitAnswer:
    """The largest number of distinct steps done within one window that starts at a step event.
    An event matching several steps counts as each of them. The reported attempt is the window
    that reached that number first (then the latest start); its chain is the first event of each
    step inside it, in the order done."""
    n = len(ts)
    best = -1
    windows: list[tuple[int, int, list[int]]] = []  # (reach time, start time, chain)
    for a in range(n):
        if mask[a] == 0:
            continue
        inside = sorted((e for e in range(n) if ts[a] <= ts[e] <= ts[a] + f.window), key=lambda e: (ts[e], e))
        seen: set[int] = set()
        chain: list[int] = []
        for e in inside:
            for k in range(f.steps):
                if has(mask[e], k) and k not in seen:
                    seen.add(k)
                    chain.append(e)
        best = max(best, len(seen) - 1)
        windows.append((a, ts[a], chain))
    if best < 0:
        return UnitAnswer(-1, [])
    full = [(ts[c[best]], start, c[: best + 1]) for _, start, c in windows if len(c) > best]
    first = min(r for r, _, _ in full)
    latest = max(s for r, s, _ in full if r == first)
    return UnitAnswer(best, [c for r, s, c in full if r == first and s == latest])


# -- totals ---------------------------------------------------------------------------------------


def attempts(ts, mask, exmask, f: Funnel) -> list[tuple[int, list[list[int]]]]:
    """Counting totals: (level, allowed reported chains) for each attempt, one after another.

    An attempt starts at a step-1 event when none is in progress; within it, steps follow the
    ordered (strict) rules from its fixed start; it is in progress until it reaches the last step,
    its window ends, or no chain of it can go on (stopped by an exclusion; in strict funnels,
    broken by another action). Strict funnels go action by action (in strict order): the action
    that an attempt used does not start the next one, an action that merely broke it may.
    Ordered funnels go instant by instant (an instant's events are taken together, in step
    order): an instant at which the attempt in progress did a step does not start the next
    attempt; an instant past its window, or at which an exclusion stopped it, may.
    """
    n = len(ts)
    if f.order == "strict":
        pos = strict_positions(ts, mask)
        groups = [[e] for e in sorted(range(n), key=lambda i: pos[i])]
    else:
        groups = []
        for e in sorted(range(n), key=lambda i: (ts[i], i)):
            if groups and ts[groups[-1][0]] == ts[e]:
                groups[-1].append(e)
            else:
                groups.append([e])
    rank = {e: g for g, members in enumerate(groups) for e in members}
    out: list[tuple[int, list[list[int]]]] = []
    start = None
    chains: list[list[int]] = []

    def close() -> None:
        level = max(len(c) for c in chains) - 1
        deepest = [c for c in chains if len(c) == level + 1]
        first = min(reach_time(c, ts) for c in deepest)
        out.append((level, [c for c in deepest if reach_time(c, ts) == first]))

    for g, members in enumerate(groups):
        t = ts[members[0]]
        used = False
        if start is not None and t - ts[start] > f.window:
            close()
            start = None
        if start is not None:
            chains = all_chains(ts, mask, exmask, f, start=start, upto=lambda e, g=g: rank[e] <= g)
            used = any(len(c) > 1 and rank[c[-1]] == g for c in chains)
            if max(len(c) for c in chains) == f.steps or not _can_go_on(
                chains, ts, exmask, f, groups, g, rank
            ):
                close()
                start = None
        if start is None and not used:
            starters = [e for e in members if has(mask[e], 0)]
            if starters:
                start = starters[0]  # in step order, then as stored
                chains = all_chains(ts, mask, exmask, f, start=start, upto=lambda e, g=g: rank[e] <= g)
                if max(len(c) for c in chains) == f.steps:
                    close()
                    start = None
    if start is not None:
        close()
    return out


def _can_go_on(chains, ts, exmask, f: Funnel, groups, g, rank) -> bool:
    """Is some chain of the attempt, below the last step, neither stopped by an exclusion seen so
    far nor (strict) broken by an action since its last step? An exclusion stops a chain for the
    steps strictly after its instant: in strict funnels, the actions still to come at that instant
    may yet be steps."""
    seen = [e for h in range(g + 1) for e in groups[h]]
    following = ts[groups[g + 1][0]] if g + 1 < len(groups) else None
    for c in chains:
        level = len(c) - 1
        if level >= f.steps - 1:
            continue
        if f.order == "strict" and rank[c[-1]] != g:
            continue
        stopped = False
        for x, (lo, hi) in enumerate(f.exclusions):
            if lo <= level < hi:
                after = ts[last_present(c, lo)]
                if any(
                    has(exmask[e], x) and ts[e] > after and (following is None or ts[e] < following)
                    for e in seen
                ):
                    stopped = True
        if not stopped:
            return True
    return False


# -- from raw events (the engine-level tests) ----------------------------------------------------


def matches(event: dict[str, Any], step: Any) -> bool:
    """A step as the tests write it: an event name, ``"*"``, or (name, {property: value}) meaning
    equality, or (name, {property: (">", number)})."""
    if isinstance(step, str):
        return step == "*" or event["event"] == step
    name, conditions = step
    if name != "*" and event["event"] != name:
        return False
    for prop, want in conditions.items():
        have = event.get("props", {}).get(prop)
        if isinstance(want, tuple):
            op, value = want
            if have is None or not (have > value if op == ">" else have < value):
                return False
        elif have != want:
            return False
    return True


def masks_of(
    events: list[dict[str, Any]], steps: list[Any], first_time: list[bool] | None = None
) -> list[int]:
    """Bit masks of a person's events (in time order); a first-time step keeps only the first
    event that matches it."""
    out = []
    seen: set[int] = set()
    for event in events:
        m = 0
        for k, step in enumerate(steps):
            if matches(event, step):
                if first_time and first_time[k]:
                    if k in seen:
                        continue
                    seen.add(k)
                m |= 1 << k
        out.append(m)
    return out
