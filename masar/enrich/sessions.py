"""Sessions: a new session after ``gap`` of inactivity or when the campaign changes.

Sessions are per device: keyed by anonymousId when the message has one, else by userId, as web
analytics does. The session id is derived from (key, session start), so the same events always
get the same ids, whichever process sessionizes them.

The kernel is a single pass over rows sorted by (key, ts), compiled with numba; state carried
from earlier batches (the last session of each key) lets a live stream continue its sessions.
An event that arrives late (older than its key's last event) joins the carried session when it
falls inside it (or within ``gap`` before its start); otherwise it starts a session of its own.
tests/enrich/test_sessions.py holds the plain reference this must agree with.
"""

from __future__ import annotations

import numba
import numpy as np

NO_CAMPAIGN = -1


@numba.njit(cache=True, nogil=True)
def sessionize_kernel(
    keys: np.ndarray,  # int64 key codes, rows sorted by (key, ts)
    ts: np.ndarray,  # int64 microseconds
    campaigns: np.ndarray,  # int64 campaign codes, NO_CAMPAIGN when the row carries none
    has_state: np.ndarray,  # bool per key code: a session carried from earlier data
    state_start: np.ndarray,  # int64 per key code
    state_last: np.ndarray,  # int64 per key code
    state_campaign: np.ndarray,  # int64 per key code
    gap: np.int64,
) -> tuple[np.ndarray, np.ndarray]:
    n = keys.shape[0]
    starts = np.empty(n, dtype=np.int64)
    from_state = np.zeros(n, dtype=np.bool_)
    current_key = -1
    active = False
    cur_start = 0
    cur_last = 0
    cur_campaign = NO_CAMPAIGN
    cur_state = False
    # A second cursor sessionizes late events that fall outside the carried session.
    late_active = False
    late_start = 0
    late_last = 0
    late_campaign = NO_CAMPAIGN
    for i in range(n):
        key = keys[i]
        t = ts[i]
        campaign = campaigns[i]
        if key != current_key:
            current_key = key
            active = has_state[key]
            cur_start = state_start[key]
            cur_last = state_last[key]
            cur_campaign = state_campaign[key]
            cur_state = active
            late_active = False
        if cur_state and t < cur_last:
            if t >= cur_start - gap and (campaign == NO_CAMPAIGN or campaign == cur_campaign):
                starts[i] = cur_start
                from_state[i] = True
                continue
            late_new = (
                (not late_active)
                or (t - late_last > gap)
                or (campaign != NO_CAMPAIGN and campaign != late_campaign)
            )
            if late_new:
                late_active = True
                late_start = t
                late_campaign = campaign
            late_last = t
            starts[i] = late_start
            continue
        new = (not active) or (t - cur_last > gap) or (campaign != NO_CAMPAIGN and campaign != cur_campaign)
        if new:
            active = True
            cur_start = t
            cur_campaign = campaign
            cur_state = False
        cur_last = t
        starts[i] = cur_start
        from_state[i] = cur_state
    return starts, from_state


def warm() -> None:
    """Load the kernel from numba's cache ahead of the first batch (see ``importers.ids.warm``),
    with the array types enrichment passes: times come read-only from Arrow."""
    one = np.zeros(1, dtype=np.int64)
    ts = np.zeros(1, dtype=np.int64)
    ts.setflags(write=False)
    sessionize_kernel(one, ts, one.copy(), np.zeros(1, dtype=np.bool_), one.copy(), one.copy(), one.copy(), np.int64(1))


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, on uint64 arrays (array arithmetic wraps modulo 2**64)."""
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def session_ids(source_id: int, persons: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Stable 63-bit ids of the sessions of ``persons`` starting at ``starts`` (µs), per source."""
    persons = np.asarray(persons).astype(np.uint64)
    starts = np.asarray(starts).astype(np.uint64)
    h = _mix(np.full(persons.shape, source_id, dtype=np.uint64))
    h = _mix(h ^ persons)
    h = _mix(h ^ starts)
    return (h >> np.uint64(1)).astype(np.int64)
