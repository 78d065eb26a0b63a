"""Change detection on daily conversion: where did a step's conversion drop, from when to when.

The input is one step transition's daily counts: ``trials[d]`` units reached the step on day d,
``successes[d]`` of them went on to the next step. The model (docs/leaks.md) is an *epidemic*
change: conversion is one binomial rate inside a run of consecutive days [start, end) and another
rate on every other day. For each candidate run the log-likelihood ratio of that two-rate model
against one rate for all days is

    G = 2 · (ll(x_in, n_in) + ll(x_out, n_out) − ll(x_in + x_out, n_in + n_out)),
    ll(x, n) = x·log(x/n) + (n − x)·log(1 − x/n)      (0·log 0 = 0)

The run with the largest G among those where conversion is *lower* inside (a drop), at least
``min_days`` long, and with at least ``min_trials`` units inside and outside, is the drop. G is
asymptotically χ²(1) for one fixed run; a one-sided tail is halved. Because the run was chosen
as the best of ``candidates`` runs, its p-value is multiplied by that number (Bonferroni over the
search): conservative, and valid whatever the correlation between overlapping runs.

Further drops: days of a found drop are set aside and the search repeats inside each remaining
stretch of consecutive days, against all remaining days (so a second drop is measured against
the days that are neither). At most ``max_drops`` are returned.

All (start, end) pairs are scored at once from prefix sums: O(days²) numbers, about 66,000 for
a year, so no cleverer search is needed. tests/engine/test_leaks.py compares this with a plain
double loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Drop:
    start: int  # first day (index into the series)
    end: int  # one past the last day
    statistic: float  # G
    p_value: float  # one-sided, multiplied by the number of candidate runs searched
    candidates: int
    trials_in: int
    successes_in: int
    trials_out: int
    successes_out: int


def loglik(x: np.ndarray | float, n: np.ndarray | float) -> np.ndarray:
    """Binomial log-likelihood at the maximum (rate x/n), 0 where n is 0; elementwise."""
    x = np.asarray(x, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(n > 0, x / np.where(n > 0, n, 1), 0.0)
        a = np.where(x > 0, x * np.log(np.where(p > 0, p, 1)), 0.0)
        b = np.where(n - x > 0, (n - x) * np.log(np.where(p < 1, 1 - p, 1)), 0.0)
    return a + b


def chi2_one_sided(statistic: float) -> float:
    """P(a one-sided signed-root χ²(1) statistic ≥ observed): half the χ²(1) upper tail."""
    return 0.5 * math.erfc(math.sqrt(max(statistic, 0.0) / 2.0))


def best_drop(
    trials: np.ndarray,
    successes: np.ndarray,
    *,
    lo: int = 0,
    hi: int | None = None,
    total_trials: int | None = None,
    total_successes: int | None = None,
    min_days: int = 3,
    min_trials: int = 50,
    min_outside: float = 0.0,
) -> Drop | None:
    """The run [start, end) within [lo, hi) whose lower conversion is best explained as a drop.

    ``total_*`` are the counts of all days the run is compared with plus the run itself (default:
    the whole series). The days outside the run must hold at least ``min_trials`` units and a
    ``min_outside`` share of them. Ties go to the earliest start, then the earliest end.
    """
    n = np.asarray(trials, dtype=np.int64)
    x = np.asarray(successes, dtype=np.int64)
    hi = len(n) if hi is None else hi
    tot_n = int(n.sum()) if total_trials is None else total_trials
    tot_x = int(x.sum()) if total_successes is None else total_successes
    days = hi - lo
    if days < min_days or tot_n == 0:
        return None
    cn = np.concatenate(([0], np.cumsum(n[lo:hi])))
    cx = np.concatenate(([0], np.cumsum(x[lo:hi])))
    # in_n[s, e] = trials of days [lo + s, lo + e); only e ≥ s + min_days are candidates.
    in_n = cn[None, :] - cn[:, None]
    in_x = cx[None, :] - cx[:, None]
    out_n = tot_n - in_n
    out_x = tot_x - in_x
    s_idx = np.arange(days + 1)[:, None]
    e_idx = np.arange(days + 1)[None, :]
    valid = (e_idx - s_idx >= min_days) & (in_n >= min_trials) & (out_n >= max(min_trials, min_outside * tot_n))
    # A drop: in_x / in_n < out_x / out_n, compared without division.
    valid &= in_x * out_n < out_x * in_n
    candidates = int(valid.sum())
    if candidates == 0:
        return None
    g = 2.0 * (loglik(in_x, in_n) + loglik(out_x, out_n) - loglik(tot_x, tot_n))
    g = np.where(valid, g, -np.inf)
    flat = int(np.argmax(g))
    s, e = divmod(flat, days + 1)
    stat = float(g[s, e])
    p = min(1.0, chi2_one_sided(stat) * candidates)
    return Drop(lo + s, lo + e, stat, p, candidates, int(in_n[s, e]), int(in_x[s, e]), int(out_n[s, e]),
                int(out_x[s, e]))  # fmt: skip


def find_drops(
    trials: np.ndarray,
    successes: np.ndarray,
    *,
    min_days: int = 3,
    min_trials: int = 50,
    min_outside: float = 0.0,
    alpha: float = 0.05,
    max_drops: int = 3,
) -> list[Drop]:
    """Every search run, in time order: the best drop, then — while the last one found has a
    p-value below ``alpha`` (before any correction across tests) — the best in what is left.
    The caller counts each as a test; the last may be one that did not pass."""
    n = np.asarray(trials, dtype=np.int64)
    x = np.asarray(successes, dtype=np.int64)
    found: list[Drop] = []
    taken = np.zeros(len(n), dtype=bool)
    while len(found) < max_drops:
        rest_n = int(n[~taken].sum())
        rest_x = int(x[~taken].sum())
        best: Drop | None = None
        for lo, hi in _stretches(~taken):
            drop = best_drop(n, x, lo=lo, hi=hi, total_trials=rest_n, total_successes=rest_x,
                             min_days=min_days, min_trials=min_trials, min_outside=min_outside)  # fmt: skip
            if drop is not None and (best is None or drop.statistic > best.statistic):
                best = drop
        if best is None:
            break
        found.append(best)
        if best.p_value > alpha:
            break
        taken[best.start : best.end] = True
    return sorted(found, key=lambda d: d.start)


def _stretches(free: np.ndarray) -> list[tuple[int, int]]:
    """[lo, hi) runs of consecutive True."""
    out = []
    i = 0
    n = len(free)
    while i < n:
        if free[i]:
            j = i
            while j < n and free[j]:
                j += 1
            out.append((i, j))
            i = j
        else:
            i += 1
    return out
