"""Small statistics the analyses share: is one conversion rate lower than another, and the
corrections for running many such tests. Plain formulas, no statistics package (docs/leaks.md)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# Below this expected count in any cell of the 2×2 table the normal approximation is poor and
# Fisher's exact test is used instead (the usual rule of thumb).
_MIN_EXPECTED = 5.0


def lower_p_value(x1: int, n1: int, x0: int, n0: int) -> float:
    """One-sided p-value for "rate 1 (x1 of n1) is lower than rate 0 (x0 of n0)".

    A pooled two-proportion z-test; Fisher's exact test when an expected cell count is below 5.
    1.0 when either group is empty or nobody (or everybody) converted in both.
    """
    if n1 <= 0 or n0 <= 0:
        return 1.0
    n = n1 + n0
    x = x1 + x0
    if x == 0 or x == n:
        return 1.0
    expected = min(n1 * x / n, n1 * (n - x) / n, n0 * x / n, n0 * (n - x) / n)
    if expected < _MIN_EXPECTED:
        return fisher_lower(x1, n1, x0, n0)
    pooled = x / n
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    z = (x1 / n1 - x0 / n0) / se
    return 0.5 * math.erfc(-z / math.sqrt(2))


def fisher_lower(x1: int, n1: int, x0: int, n0: int) -> float:
    """Fisher's exact test, one-sided: P(X ≤ x1) for X hypergeometric with the table's margins
    (X = successes of group 1 when x1 + x0 successes are spread over n1 + n0 units at random)."""
    total = x1 + x0
    lo = max(0, total - n0)
    ks = np.arange(lo, x1 + 1)
    if len(ks) == 0:
        return 0.0
    log_pmf = _log_comb(n1, ks) + _log_comb(n0, total - ks) - _log_comb(n1 + n0, total)
    return float(min(1.0, np.exp(log_pmf).sum()))


def _log_comb(n: int, k: np.ndarray) -> np.ndarray:
    lg = np.vectorize(math.lgamma, otypes=[np.float64])
    return math.lgamma(n + 1) - lg(k + 1) - lg(n - k + 1)


def adjust(p_values: Sequence[float], method: str) -> list[float]:
    """Adjusted p-values over all tests run: a test passes at level α when its adjusted p ≤ α.

    ``bh``: Benjamini–Hochberg (controls the false discovery rate; adjusted p_(i) =
    min over j ≥ i of p_(j)·m/j). ``holm``: Holm–Bonferroni (controls the family-wise error;
    adjusted p_(i) = max over j ≤ i of (m − j + 1)·p_(j)).
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method == "bh":
        scaled = ranked * m / np.arange(1, m + 1)
        adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    elif method == "holm":
        scaled = ranked * (m - np.arange(m))
        adjusted = np.maximum.accumulate(scaled)
    else:
        raise ValueError(f"unknown correction {method!r}")
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out.tolist()
