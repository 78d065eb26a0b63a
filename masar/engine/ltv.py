"""Customer lifetime value: what customers have been worth so far, and what they will be worth.

*Historical* value is a sum over the ``orders`` table: revenue net of refunds per customer, and
per cohort (month of the first order), per first channel or per RFM segment.

*Predictive* value follows Fader, Hardie & Lee (2005), "Counting your customers the easy way:
an alternative to the Pareto/NBD model" (BG/NBD: how often a customer buys, and whether they are
still a customer at all) and Fader & Hardie (2013), "The Gamma-Gamma model of monetary value"
(how much a customer spends per purchase). Both are fitted by maximum likelihood to a per-customer
summary of the orders up to a calibration date: x repeat purchase days, the time t_x from the
first to the last purchase, the time T from the first purchase to the calibration date, and the
mean value m of the repeat purchase days. docs/ltv.md has every definition and formula; the plain
per-customer formulas these vectorised ones must agree with are in tests/engine/reference_ltv.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.optimize import minimize
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1

from masar.engine.rfm import SEGMENTS, segment_labels
from masar.errors import InvalidInput

UNITS = {"day": 1, "week": 7}  # days per unit of time
GROUPINGS = ("cohort_month", "first_channel", "rfm_segment")
# Historical value within this many calendar months of the first order (docs/ltv.md).
VALUE_MONTHS = (3, 6, 12)
# A month for discounting, in days: the mean Gregorian month.
_MONTH_DAYS = 365.25 / 12
# Fewest customers, and fewest of them with a repeat purchase, for a fit that means anything: the
# BG/NBD has four parameters and the Gamma-Gamma three, and each needs several customers behind it.
MIN_CUSTOMERS = 10
MIN_REPEAT_BUYERS = 5
# The optimiser works on log-parameters inside these bounds (e^±18 ≈ 1.5e-8 … 6.6e7): a parameter
# running to a bound means the data carry no information against the limit model (for the BG/NBD,
# b → ∞ is "nobody ever drops out"); the limit's predictions are still the right ones.
_LOG_BOUND = 18.0
# Within this distance of a = 1 (or of a + b + x = 1) the conditional expectation's formula is a
# 0/0 limit, found by interpolation instead (docs/ltv.md).
_NEAR = 1e-5


def _error(message: str) -> InvalidInput:
    return InvalidInput(message, code="invalid_query")


# -- the per-customer summary ------------------------------------------------------------------


@dataclass(frozen=True)
class CustomerSummary:
    """One row per customer with a purchase on or before ``calibration_end``, sorted by person.

    ``x``: repeat purchase days (purchase days after the first); ``t_x``: first → last purchase
    day, in units; ``T``: first purchase day → ``calibration_end``, in units; ``m``: mean value of
    the repeat purchase days whose value is known (NaN when there is none); ``m_count``: how many
    days that mean is over (= x unless some days' values are unknown).
    """

    person: np.ndarray  # int64
    first_day: np.ndarray  # datetime64[D]
    x: np.ndarray  # int64
    t_x: np.ndarray  # float64
    T: np.ndarray  # float64
    m: np.ndarray  # float64
    m_count: np.ndarray  # int64
    calibration_end: date
    unit: str

    def __len__(self) -> int:
        return len(self.person)

    def to_dict(self) -> dict[str, Any]:
        repeat = self.x > 0
        return {
            "calibration_end": self.calibration_end.isoformat(),
            "unit": self.unit,
            "customers": len(self),
            "repeat_buyers": int(repeat.sum()),
            "repeat_purchase_days": int(self.x.sum()),
            "mean_frequency": float(self.x.mean()) if len(self) else None,
            "mean_T": float(self.T.mean()) if len(self) else None,
        }

    def table(self) -> pa.Table:
        return pa.table({
            "person": pa.array(self.person, pa.int64()),
            "first_day": pa.array(self.first_day.astype("datetime64[D]"), pa.date32()),
            "frequency": pa.array(self.x, pa.int64()),
            "recency": pa.array(self.t_x, pa.float64()),
            "T": pa.array(self.T, pa.float64()),
            "monetary_value": pa.array(self.m, pa.float64(), from_pandas=True),  # NaN → null
            "monetary_days": pa.array(self.m_count, pa.int64()),
        })  # fmt: skip


def summarize(
    person: np.ndarray, day: np.ndarray, value: np.ndarray, *, calibration_end: date, unit: str = "week"
) -> CustomerSummary:
    """The customer summary of transactions (one per order): ``person`` int64, ``day``
    datetime64[D], ``value`` float (NaN: unknown). Transactions after ``calibration_end`` are
    outside the calibration period and not read; transactions on one day are one purchase whose
    value is their sum (unknown if any of them is)."""
    unit_days = _unit_days(unit)
    person = np.asarray(person)
    day = np.asarray(day)
    value = np.asarray(value, dtype=np.float64)
    if not (len(person) == len(day) == len(value)):
        raise _error(
            f"person, day and value must have the same length, got {len(person)}, {len(day)} and {len(value)}."
        )
    if not np.issubdtype(person.dtype, np.integer):
        raise _error(f"person must hold integer ids, got {person.dtype}.")
    try:
        day = day.astype("datetime64[D]")
    except (TypeError, ValueError):
        raise _error(f"day must hold dates, got {day.dtype}.") from None
    if np.isnat(day).any():
        raise _error("day holds a missing date.")
    if np.isinf(value).any():
        raise _error("value holds an infinite amount.")
    end = np.datetime64(calibration_end, "D")
    keep = day <= end
    person, days, value = person[keep].astype(np.int64), day[keep].astype(np.int64), value[keep]
    order = np.lexsort((days, person))
    person, days, value = person[order], days[order], value[order]
    new_day = np.ones(len(person), dtype=bool)
    new_day[1:] = (person[1:] != person[:-1]) | (days[1:] != days[:-1])
    starts = np.flatnonzero(new_day)
    known = ~np.isnan(value)
    if len(starts):
        day_value = np.add.reduceat(np.where(known, value, 0.0), starts)
        day_known = np.logical_and.reduceat(known, starts)
    else:
        day_value, day_known = np.empty(0), np.empty(0, dtype=bool)
    return _summary_from_days(
        person[starts], days[starts], day_value, day_known, calibration_end, unit, unit_days
    )


def summary_from_orders(
    con: duckdb.DuckDBPyConnection, calibration_end: date, unit: str = "week"
) -> CustomerSummary:
    """The customer summary of the ``orders`` table: non-cancelled orders on or before
    ``calibration_end`` (store days). An order without a value (not convertible to the reporting
    currency) still makes its day a purchase day; that day's value is unknown and left out of m."""
    _unit_days(unit)
    # DuckDB merges the days (the heavy part, over every order); numpy does the per-customer rest.
    days = con.sql(
        """
        SELECT person, day, sum(value)::DOUBLE AS value, bool_and(value IS NOT NULL) AS known
        FROM orders
        WHERE cancelled IS NOT TRUE AND day <= ? AND person IS NOT NULL
        GROUP BY person, day
        ORDER BY person, day
        """,
        params=[calibration_end],
    ).to_arrow_table()
    return summary_from_purchase_days(days, calibration_end, unit)


def summary_from_purchase_days(days: pa.Table, calibration_end: date, unit: str = "week") -> CustomerSummary:
    """The customer summary from purchase days — ``person, day, value`` (the day's orders' value,
    a float, NULL when none is known) and ``known`` (every order of the day has a value) — sorted
    by (person, day): what any backend's orders table is reduced to."""
    unit_days = _unit_days(unit)
    person = days["person"].to_numpy()
    day = days["day"].to_numpy().astype("datetime64[D]").astype(np.int64)
    known = days["known"].to_numpy(zero_copy_only=False).astype(bool)
    value = np.nan_to_num(days["value"].to_numpy(zero_copy_only=False).astype(np.float64), nan=0.0)
    return _summary_from_days(person, day, value, known, calibration_end, unit, unit_days)


def _summary_from_days(
    person: np.ndarray, day: np.ndarray, value: np.ndarray, known: np.ndarray,
    calibration_end: date, unit: str, unit_days: int,
) -> CustomerSummary:  # fmt: skip
    """Purchase days sorted by (person, day), one row each; ``day`` in days since 1970-01-01."""
    if len(person) == 0:
        raise _error(f"There are no purchases on or before {calibration_end.isoformat()} to summarise.")
    new_person = np.ones(len(person), dtype=bool)
    new_person[1:] = person[1:] != person[:-1]
    starts = np.flatnonzero(new_person)
    n_days = np.diff(np.append(starts, len(person)))
    first = day[starts]
    last = day[np.append(starts[1:], len(person)) - 1]
    repeat_known = ~new_person & known
    m_count = np.add.reduceat(repeat_known.astype(np.int64), starts)
    m_sum = np.add.reduceat(np.where(repeat_known, value, 0.0), starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.where(m_count > 0, m_sum / m_count, np.nan)
    end = np.datetime64(calibration_end, "D").astype(np.int64)
    return CustomerSummary(
        person=person[starts].astype(np.int64),
        first_day=first.astype("datetime64[D]"),
        x=(n_days - 1).astype(np.int64),
        t_x=(last - first) / unit_days,
        T=(end - first) / unit_days,
        m=m,
        m_count=m_count,
        calibration_end=calibration_end,
        unit=unit,
    )


def _unit_days(unit: str) -> int:
    if unit not in UNITS:
        raise _error(f"unit must be one of {', '.join(UNITS)}, got {unit!r}.")
    return UNITS[unit]


# -- BG/NBD ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BgNbdFit:
    """Purchase rates λ ~ Gamma(shape r, rate α); drop-out probability after each repeat purchase
    p ~ Beta(a, b). ``log_likelihood`` is the sum over the customers fitted."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float

    def to_dict(self) -> dict[str, float]:
        return {
            "r": self.r,
            "alpha": self.alpha,
            "a": self.a,
            "b": self.b,
            "log_likelihood": self.log_likelihood,
        }


def bgnbd_log_likelihood(fit: BgNbdFit, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Each customer's log-likelihood under the fit's parameters (FHL 2005, eq. 6)."""
    x, t_x, T = _customers(x, t_x, T)
    return _bgnbd_terms(np.array([fit.r, fit.alpha, fit.a, fit.b]), x, t_x, T, gradient=False)[0]


def _bgnbd_terms(
    theta: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, *, gradient: bool,
    levels: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:  # fmt: skip
    """Per-customer log-likelihood and (optionally) its gradient with respect to (r, α, a, b).

    ln L = ln Γ(r+x) − ln Γ(r) + r ln α − (r+x) ln(α+T) + ln B(a, b+x) − ln B(a, b) + ln(1 + e^D)
    with D = ln a − ln(b+x−1) + (r+x)(ln(α+T) − ln(α+t_x)) for x > 0 and no last term for x = 0:
    the paper's sum of two terms with the first one factored out. ln(1 + e^D) is evaluated as
    logaddexp(0, D), which neither overflows for large D nor loses the small ones; and
    1 / (1 + e^D) is P(alive), so the same D serves both.

    ``levels`` = np.unique(x, return_inverse=True): the gamma, beta and digamma functions depend
    on x alone, which takes few distinct values, so they are evaluated once per value.
    """
    r, alpha, a, b = theta
    xu, at = np.unique(x, return_inverse=True) if levels is None else levels
    repeat_u = xu > 0
    # b + x − 1 > 0 for x ≥ 1; for x = 0 there is no second term (D = −∞)
    log_odds_u = np.where(repeat_u, np.log(a) - np.log(np.where(repeat_u, b + (xu - 1), 1.0)), -np.inf)
    log_alpha_T = np.log(alpha + T)
    log_ratio = _log_ratio(alpha, t_x, T)
    d = log_odds_u[at] + (r + x) * log_ratio
    head_u = gammaln(r + xu) - gammaln(r) + betaln(a, b + xu) - betaln(a, b)
    ll = head_u[at] + r * np.log(alpha) - (r + x) * log_alpha_T + np.logaddexp(0.0, d)
    if not gradient:
        return ll, None
    s = expit(d)  # 1 − P(alive): the weight of the "dropped out after the last purchase" term
    psi_ab_u = digamma(a + b) - digamma(a + b + xu)
    inv_bx1_u = np.where(repeat_u, 1 / np.where(repeat_u, b + (xu - 1), 1.0), 0.0)
    g = np.empty((4, len(x)))
    g[0] = (digamma(r + xu) - digamma(r))[at] + np.log(alpha) - log_alpha_T + s * log_ratio
    g[1] = r / alpha - (r + x) / (alpha + T) + s * (r + x) * (1 / (alpha + T) - 1 / (alpha + t_x))
    g[2] = psi_ab_u[at] + s / a
    g[3] = (digamma(b + xu) - digamma(b) + psi_ab_u)[at] - s * inv_bx1_u[at]
    return ll, g


def fit_bgnbd(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> BgNbdFit:
    """Maximum-likelihood BG/NBD parameters for customers (x, t_x, T)."""
    x, t_x, T = _customers(x, t_x, T)
    n = len(x)
    repeat = int((x > 0).sum())
    if n < MIN_CUSTOMERS:
        raise _error(f"The BG/NBD model needs at least {MIN_CUSTOMERS} customers to fit, got {n}.")
    if repeat < MIN_REPEAT_BUYERS:
        raise _error(
            f"The BG/NBD model needs at least {MIN_REPEAT_BUYERS} customers with a repeat purchase to fit, "
            f"got {repeat} of {n} customers."
        )
    if not (T > 0).any():
        raise _error(
            "Every customer's first purchase is on the calibration end: there is no time to observe."
        )
    # Customers with the same (x, t_x, T) have the same likelihood: with day-resolution data most
    # one-time buyers collapse into a few hundred rows, which makes each evaluation much cheaper.
    ux, utx, uT, weight = _distinct_rows(x, t_x, T)
    weight = weight / n  # the mean keeps the objective near 1 whatever n is, for the tolerances

    levels = np.unique(ux, return_inverse=True)

    def objective(log_theta: np.ndarray) -> tuple[float, np.ndarray]:
        theta = np.exp(log_theta)
        ll, g = _bgnbd_terms(theta, ux, utx, uT, gradient=True, levels=levels)
        # plain sums, not a BLAS matrix product: on a busy machine BLAS threads cost more than they save
        return -float((weight * ll).sum()), -(g * weight).sum(axis=1) * theta

    # Start from a moderate heterogeneity (r = 1, a = 1, b = 3) with α matched to the observed
    # repeat rate, so the start has the right time scale whatever the unit.
    rate = max(float(x.sum()), 1.0) / max(float(T.sum()), 1e-9)
    starts = [np.log([1.0, 1.0 / rate, 1.0, 3.0]), np.log([0.1, 0.1 / rate, 0.5, 1.0])]
    log_theta = _maximise(objective, starts, 4, "BG/NBD")
    r, alpha, a, b = np.exp(log_theta)
    ll = (
        float((weight * _bgnbd_terms(np.exp(log_theta), ux, utx, uT, gradient=False, levels=levels)[0]).sum())
        * n
    )
    return BgNbdFit(r=float(r), alpha=float(alpha), a=float(a), b=float(b), log_likelihood=ll)


def _log_ratio(alpha: float, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """ln((α+T)/(α+t_x)) as log1p((T−t_x)/(α+t_x)): the difference of the two logarithms loses
    their absolute rounding error, which r + x multiplies; on the ridge r, α → ∞ (everyone buys at
    the same rate) r + x is 10⁷ and P(alive) would lose 8 digits."""
    return np.log1p((T - t_x) / (alpha + t_x))


def _distinct_rows(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, ...]:
    """The distinct (x, t_x, T) and how many customers have each (a lexsort: np.unique(axis=0)
    sorts a structured view and is several times slower)."""
    order = np.lexsort((T, t_x, x))
    x, t_x, T = x[order], t_x[order], T[order]
    new = np.ones(len(x), dtype=bool)
    new[1:] = (x[1:] != x[:-1]) | (t_x[1:] != t_x[:-1]) | (T[1:] != T[:-1])
    starts = np.flatnonzero(new)
    return x[starts], t_x[starts], T[starts], np.diff(np.append(starts, len(x))).astype(np.float64)


def p_alive(fit: BgNbdFit, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(the customer is still active at T | x, t_x, T) = 1 / (1 + δ(x>0) · a/(b+x−1) ·
    ((α+T)/(α+t_x))^(r+x)) (Fader, Hardie & Lee, "Computing P(alive) using the BG/NBD model").
    1 when x = 0: in the
    BG/NBD a customer can only drop out right after a repeat purchase."""
    x, t_x, T = _customers(x, t_x, T)
    r, alpha, a, b = fit.r, fit.alpha, fit.a, fit.b
    repeat = x > 0
    # b + (x − 1), not b + x − 1: for x = 1 that is b itself, which a fit can take down to 1e-8
    log_odds = (
        np.log(a)
        - np.log(np.where(repeat, b + (x - 1), 1.0))
        + (r + x) * _log_ratio(alpha, t_x, T)
    )
    return np.where(repeat, expit(-log_odds), 1.0)


def expected_purchases(fit: BgNbdFit, t: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Expected purchases in (T, T + t] given (x, t_x, T) (FHL 2005, eq. 10):

    (a+b+x−1)/(a−1) · [1 − ((α+T)/(α+T+t))^(r+x) ₂F₁(r+x, b+x; a+b+x−1; t/(α+T+t))]
    / (1 + δ(x>0) · a/(b+x−1) · ((α+T)/(α+t_x))^(r+x)).
    """
    x, t_x, T = _customers(x, t_x, T)
    if not (isinstance(t, int | float) and np.isfinite(t) and t >= 0):
        raise _error(f"The horizon must be a number of units ≥ 0, got {t!r}.")
    alive = p_alive(fit, x, t_x, T)
    r, alpha, a, b = fit.r, fit.alpha, fit.a, fit.b
    if abs(a - 1) < _NEAR:
        # a = 1 makes the formula 0/0 for every customer; the expectation is smooth in a, so it is
        # interpolated between a = 1 ∓ 2h (h = 1e-5): the interpolation's error is O(h²), the
        # formula's cancellation at 2h from the pole about 1e-11.
        lo = _purchases_if_alive(r, alpha, 1 - 2 * _NEAR, b, t, x, T)
        hi = _purchases_if_alive(r, alpha, 1 + 2 * _NEAR, b, t, x, T)
        return (lo + (a - 1 + 2 * _NEAR) / (4 * _NEAR) * (hi - lo)) * alive
    return _purchases_if_alive(r, alpha, a, b, t, x, T) * alive


def _purchases_if_alive(
    r: float, alpha: float, a: float, b: float, t: float, x: np.ndarray, T: np.ndarray
) -> np.ndarray:  # fmt: skip
    """Eq. 10 without P(alive): the expected purchases of a customer known to be alive at T,
    (a+b+x−1)/(a−1) · (1 − h) with h = (1−z)^(r+x) ₂F₁(r+x, b+x; a+b+x−1; z), z = t/(α+T+t).

    As printed, h is a product of two numbers out of floating-point range for frequent buyers:
    with x = 1000 and z = 1/2, (1−z)^(r+x) ≈ 1e-301 and the ₂F₁ ≈ 1e301. Euler's transformation
    ₂F₁(A, B; C; z) = (1−z)^(C−A−B) ₂F₁(C−A, C−B; C; z) gives the same h as
    (1−z)^(a−1) ₂F₁(a+b−r−1, a−1; a+b+x−1; z): small upper parameters, a large lower one, a
    series that converges fast for any x. scipy's ₂F₁ is accurate there for 0 ≤ z < 1, which z
    always is (the tests compare with the printed formula in 60-digit decimals).

    The lower parameter c = a+b+x−1 is 0 for customers with x = 0 when a + b = 1: the ₂F₁ has a
    pole and its factor c a zero. Their expectation is smooth in b there, so near it it is
    interpolated between the b that make c = ∓2h.

    With a large (a few hundred and more, as on the ridge a, b → ∞ the fit can end on), both
    factors of the transformed h leave floating-point range too, (1−z)^(a−1) → 0 and the ₂F₁ →
    ∞; those customers' expectation is the integral of ``_purchases_by_quadrature``."""
    z = t / (alpha + T + t)

    def formula(b: float, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        head = np.exp((a - 1) * np.log1p(-z)) * _hyp2f1(a + b - r - 1, a - 1, a + b + x - 1, z)
        return (a + b + x - 1) / (a - 1) * (1 - head)

    c = a + b + x - 1
    near = np.abs(c) < _NEAR  # customers with x = 0 only: c ≥ a + b > 0 for x ≥ 1
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        out = formula(b, np.where(near, 1.0, x), z)  # any x away from the pole; replaced below
    if near.any():
        c0 = a + b - 1
        lo = formula(b - c0 - 2 * _NEAR, x[near], z[near])
        hi = formula(b - c0 + 2 * _NEAR, x[near], z[near])
        out[near] = lo + (c0 + 2 * _NEAR) / (4 * _NEAR) * (hi - lo)
    lost = ~np.isfinite(out)
    if lost.any():
        out[lost] = _purchases_by_quadrature(r, alpha, a, b, t, x[lost], T[lost])
    return out


def _purchases_by_quadrature(
    r: float, alpha: float, a: float, b: float, t: float, x: np.ndarray, T: np.ndarray
) -> np.ndarray:  # fmt: skip
    """Eq. 10 without P(alive) as the expectation it is: a customer alive after x repeat
    purchases has a drop-out probability p ~ Beta(a, b+x), and given p (and the purchase rate's
    Gamma(r+x, α+T) posterior) expects (1 − (1 + p t/(α+T))^−(r+x)) / p purchases in the next t.

    For a and b + x large, where the closed form overflows, that Beta is a narrow, smooth peak: a
    128-point Gauss–Legendre rule over its mean ± 40 standard deviations (clipped to [0, 1]), its
    density in logs, normalised by the same rule so the Beta function is never evaluated. The
    tests compare it with the printed formula in 60-digit decimals (about 1e-12; 1e-7 when
    b + x < 3, where the density's kink at 1 shows) and with the limit a, b → ∞. A Beta with
    b + x < 1 or a < 1 has a pole at an end that the rule cannot integrate: an error rather than
    a wrong number."""
    bx = b + x
    if a < 1 or (bx < 1).any():
        raise _error(
            f"The BG/NBD fit (a = {a:.4g}, b = {b:.4g}) is outside the range where expected purchases "
            "can be computed."
        )
    nodes, weights = np.polynomial.legendre.leggauss(128)
    mean = a / (a + bx)
    sd = np.sqrt(mean * (1 - mean) / (a + bx + 1))
    lo = np.maximum(mean - 40 * sd, 0.0)
    hi = np.minimum(mean + 40 * sd, 1.0)
    p = lo[:, None] + (hi - lo)[:, None] * (nodes + 1) / 2  # inside (0, 1): the nodes miss the ends
    log_density = (a - 1) * np.log(p) + (bx[:, None] - 1) * np.log1p(-p)
    density = weights * np.exp(log_density - log_density.max(axis=1, keepdims=True))
    s = (t / (alpha + T))[:, None]
    given_p = -np.expm1(-(r + x[:, None]) * np.log1p(s * p)) / p
    return (density * given_p).sum(axis=1) / density.sum(axis=1)


def _hyp2f1(A: float, B: float, C: np.ndarray, z: np.ndarray) -> np.ndarray:
    """scipy's ₂F₁, except where it gives NaN: when C − A − B is a whole number and C is large
    (above ~150), the logarithmic case of the 1 − z transformation it uses for z near 1 overflows.
    The function is continuous in B there and not near any pole, so the mean of its values at
    B ± 1e-6 (which scipy computes) is its value to about 1e-12."""
    out = hyp2f1(A, B, C, z)
    bad = ~np.isfinite(out)
    if bad.any():
        C, z = np.broadcast_to(C, out.shape)[bad], np.broadcast_to(z, out.shape)[bad]
        out[bad] = (hyp2f1(A, B - 1e-6, C, z) + hyp2f1(A, B + 1e-6, C, z)) / 2
    return out


# -- Gamma-Gamma ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GammaGammaFit:
    """A customer's purchase values are Gamma(shape p, rate ν) with ν ~ Gamma(shape q, rate γ);
    ``log_likelihood`` is the sum over the customers fitted."""

    p: float
    q: float
    gamma: float
    log_likelihood: float

    def to_dict(self) -> dict[str, float]:
        return {"p": self.p, "q": self.q, "gamma": self.gamma, "log_likelihood": self.log_likelihood}


def gamma_gamma_log_likelihood(fit: GammaGammaFit, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Each customer's log-density of their mean value m over x purchases (x > 0, m > 0)."""
    x, m = _spenders(x, m)
    return _gg_terms(np.array([fit.p, fit.q, fit.gamma]), x, m, gradient=False)[0]


def _gg_terms(
    theta: np.ndarray, x: np.ndarray, m: np.ndarray, *, gradient: bool,
    levels: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:  # fmt: skip
    """ln f(m | x) = ln Γ(px+q) − ln Γ(px) − ln Γ(q) + q ln γ + (px−1) ln m + px ln x
    − (px+q) ln(γ + m x), and its gradient with respect to (p, q, γ). As for the BG/NBD, the
    gamma and digamma functions depend on x alone and are evaluated once per distinct x."""
    p, q, gamma = theta
    xu, at = np.unique(x, return_inverse=True) if levels is None else levels
    px = p * x
    log_m, log_x, log_gmx = np.log(m), np.log(x), np.log(gamma + m * x)
    head_u = gammaln(p * xu + q) - gammaln(p * xu) - gammaln(q)
    ll = head_u[at] + q * np.log(gamma) + (px - 1) * log_m + px * log_x - (px + q) * log_gmx
    if not gradient:
        return ll, None
    psi_u = digamma(p * xu + q)
    g = np.empty((3, len(x)))
    g[0] = x * ((psi_u - digamma(p * xu))[at] + log_m + log_x - log_gmx)
    g[1] = (psi_u - digamma(q))[at] + np.log(gamma) - log_gmx
    g[2] = q / gamma - (px + q) / (gamma + m * x)
    return ll, g


def fit_gamma_gamma(x: np.ndarray, m: np.ndarray) -> GammaGammaFit:
    """Maximum-likelihood Gamma-Gamma parameters from the customers with x > 0 purchases of mean
    value m (customers with x = 0 are not read: they have no mean)."""
    x = np.asarray(x, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    if len(x) != len(m):
        raise _error(f"x and m must have the same length, got {len(x)} and {len(m)}.")
    if not np.isfinite(x).all() or (x < 0).any() or (x != np.round(x)).any():
        raise _error("x (purchases averaged) must be whole numbers ≥ 0.")
    x, m = _spenders(x[x > 0], m[x > 0])
    if len(x) < MIN_REPEAT_BUYERS:
        raise _error(
            f"The Gamma-Gamma model needs at least {MIN_REPEAT_BUYERS} customers with a repeat purchase "
            f"to fit, got {len(x)}."
        )
    if np.ptp(m) == 0:
        raise _error(
            "Every customer's mean purchase value is the same: the Gamma-Gamma spread cannot be fitted."
        )

    levels = np.unique(x, return_inverse=True)

    def objective(log_theta: np.ndarray) -> tuple[float, np.ndarray]:
        theta = np.exp(log_theta)
        ll, g = _gg_terms(theta, x, m, gradient=True, levels=levels)
        return -float(ll.mean()), -g.mean(axis=1) * theta

    # p = 1, q = 2 (a finite mean), γ such that the model's mean value pγ/(q−1) is the observed one.
    scale = float(np.mean(m))
    starts = [np.log([1.0, 2.0, scale]), np.log([5.0, 5.0, 4.0 * scale])]
    log_theta = _maximise(objective, starts, 3, "Gamma-Gamma")
    p, q, gamma = np.exp(log_theta)
    ll = float(_gg_terms(np.exp(log_theta), x, m, gradient=False, levels=levels)[0].sum())
    return GammaGammaFit(p=float(p), q=float(q), gamma=float(gamma), log_likelihood=ll)


def expected_value(fit: GammaGammaFit, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """E[a purchase's value | x purchases of mean m] = (γ + m x) p / (p x + q − 1) (Fader &
    Hardie 2013). With x = 0 (or no known value) it is the population mean p γ / (q − 1);
    a mean m ≤ 0 (free or negative orders, which the model does not cover) counts as 0."""
    x = np.asarray(x, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    p, q, gamma = fit.p, fit.q, fit.gamma
    observed = (x > 0) & np.isfinite(m)
    if q <= 1 and not observed.all():
        raise _error(
            f"The Gamma-Gamma fit has q = {q:.4g} ≤ 1, so the mean purchase value of a customer "
            "without a known repeat purchase is infinite and cannot be predicted."
        )
    mx = np.where(observed, np.clip(np.nan_to_num(m, nan=0.0), 0.0, None) * x, 0.0)
    return (gamma + mx) * p / (p * np.where(observed, x, 0.0) + q - 1)


# -- shared checks and the optimiser ---------------------------------------------------------------


def _customers(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(x)
    t_x = np.asarray(t_x, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    if not (len(x) == len(t_x) == len(T)):
        raise _error(f"x, t_x and T must have the same length, got {len(x)}, {len(t_x)} and {len(T)}.")
    if len(x) == 0:
        raise _error("There are no customers.")
    xf = x.astype(np.float64)
    if not (np.isfinite(xf).all() and np.isfinite(t_x).all() and np.isfinite(T).all()):
        raise _error("x, t_x and T must be finite numbers.")
    if (xf < 0).any() or (xf != np.round(xf)).any():
        raise _error("x (repeat purchases) must be whole numbers ≥ 0.")
    if (t_x < 0).any() or (t_x > T).any():
        raise _error("Every customer needs 0 ≤ t_x ≤ T (the last purchase between the first and the end).")
    if ((xf == 0) & (t_x != 0)).any():
        raise _error("A customer without repeat purchases (x = 0) has t_x = 0.")
    if ((xf > 0) & (t_x == 0)).any():
        raise _error(
            "A customer with repeat purchases (x > 0) has t_x > 0: repeat purchases come after the first."
        )
    return xf, t_x, T


def _spenders(x: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xf = np.asarray(x, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    if not (np.isfinite(xf).all() and np.isfinite(m).all()):
        raise _error("x and m must be finite numbers for customers with repeat purchases.")
    if (xf <= 0).any() or (xf != np.round(xf)).any():
        raise _error("x (purchases averaged) must be whole numbers > 0.")
    if (m <= 0).any():
        raise _error(
            "The Gamma-Gamma model needs mean purchase values m > 0; leave out customers with m ≤ 0."
        )
    return xf, m


def _maximise(objective, starts: list[np.ndarray], k: int, name: str) -> np.ndarray:
    """L-BFGS-B on the log-parameters from each start in turn, until one ends at a stationary point
    (the mean log-likelihood's gradient below 1e-6 for every parameter not held at a bound).

    A run counts as converged when L-BFGS-B says so or its gradient is below 1e-4: along a ridge to
    infinity (a, b → ∞ with a/(a+b) fixed: one drop-out probability for everybody) the gradient
    cannot get smaller in floating point, and a 1% change in any parameter moves the mean
    log-likelihood by less than 1e-6 there. The best converged run wins; none converging (the
    iteration limit) is an error rather than a silently poor fit."""
    best = None
    for start in starts:
        res = minimize(
            objective, start, jac=True, method="L-BFGS-B", bounds=[(-_LOG_BOUND, _LOG_BOUND)] * k,
            options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 3000},
        )  # fmt: skip
        if not np.isfinite(res.fun):
            continue
        gradient = float(np.max(np.abs(res.jac[np.abs(res.x) < _LOG_BOUND - 1e-6]), initial=0.0))
        if (res.success or gradient < 1e-4) and (best is None or res.fun < best.fun):
            best = res
        if gradient < 1e-6:
            break
    if best is None:
        raise _error(f"The {name} fit did not converge: the data do not determine the model's parameters.")
    return best.x


# -- predictions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LtvPrediction:
    """Per-customer predictions over ``horizon`` units after the calibration end, in the summary's
    order; ``groups`` (optional) labels each customer for the aggregates."""

    summary: CustomerSummary
    horizon: float
    discount_rate: float
    p_alive: np.ndarray
    expected_purchases: np.ndarray
    expected_value: np.ndarray  # per purchase
    predicted_value: np.ndarray  # over the horizon, discounted when discount_rate > 0
    group_by: str | None = None
    groups: np.ndarray | None = None  # object array of labels (None: no label)
    fit: LtvFit | None = None

    def customers_table(self) -> pa.Table:
        s = self.summary
        columns = {
            "person": pa.array(s.person, pa.int64()),
            "frequency": pa.array(s.x, pa.int64()),
            "recency": pa.array(s.t_x, pa.float64()),
            "T": pa.array(s.T, pa.float64()),
            "monetary_value": pa.array(s.m, pa.float64(), from_pandas=True),
            "p_alive": pa.array(self.p_alive, pa.float64()),
            "expected_purchases": pa.array(self.expected_purchases, pa.float64()),
            "expected_value": pa.array(self.expected_value, pa.float64()),
            "predicted_value": pa.array(self.predicted_value, pa.float64()),
        }
        if self.groups is not None:
            columns = {self.group_by or "group": pa.array(self.groups, pa.string()), **columns}
        return pa.table(columns)

    def groups_table(self) -> pa.Table:
        """Sums and means per group, in the order of docs/ltv.md (the unlabelled last)."""
        if self.groups is None:
            raise _error("These predictions have no groups.")
        name = self.group_by or "group"
        sums = (
            self.customers_table()
            .group_by(name)
            .aggregate(
                [
                    ("person", "count"),
                    ("p_alive", "sum"),
                    ("expected_purchases", "sum"),
                    ("predicted_value", "sum"),
                ]
            )
        )
        rows = [
            {name: label, "customers": n, "expected_active": alive, "mean_p_alive": alive / n,
             "expected_purchases": purchases, "predicted_value": value, "mean_predicted_value": value / n}
            for label, n, alive, purchases, value in zip(
                sums[name].to_pylist(), sums["person_count"].to_pylist(), sums["p_alive_sum"].to_pylist(),
                sums["expected_purchases_sum"].to_pylist(), sums["predicted_value_sum"].to_pylist(), strict=True,
            )
        ]  # fmt: skip
        rows.sort(key=lambda row: _group_order(self.group_by, row[name], row["customers"]))
        return pa.Table.from_pylist(rows, schema=_prediction_group_schema(name))

    def table(self) -> pa.Table:
        return self.groups_table() if self.groups is not None else self.customers_table()

    def to_dict(self) -> dict[str, Any]:
        n = len(self.summary)
        out: dict[str, Any] = {
            "calibration_end": self.summary.calibration_end.isoformat(),
            "unit": self.summary.unit,
            "horizon": self.horizon,
            "discount_rate": self.discount_rate,
            "customers": n,
            "expected_active": float(self.p_alive.sum()),
            "mean_p_alive": float(self.p_alive.sum() / n),
            "expected_purchases": float(self.expected_purchases.sum()),
            "predicted_value": float(self.predicted_value.sum()),
            "mean_predicted_value": float(self.predicted_value.sum() / n),
        }
        if self.fit is not None:
            out["fit"] = self.fit.to_dict()
        if self.groups is not None:
            out["group_by"] = self.group_by
            out["groups"] = self.groups_table().to_pylist()
        return out


def predict(
    summary: CustomerSummary,
    bgnbd: BgNbdFit,
    gg: GammaGammaFit,
    horizon: float,
    *,
    discount_rate: float = 0.0,
    groups: np.ndarray | None = None,
    group_by: str | None = None,
) -> LtvPrediction:
    """Each customer's P(alive) at the calibration end, expected purchases in the next ``horizon``
    units, expected value per purchase, and predicted value = expected purchases × expected value.

    With ``discount_rate`` d > 0 (per month), the purchases expected in each month of the horizon
    are discounted by (1 + d)^−(months from the calibration end to the middle of that month).
    """
    if not (isinstance(horizon, int | float) and np.isfinite(horizon) and horizon > 0):
        raise _error(f"The horizon must be a number of {summary.unit}s > 0, got {horizon!r}.")
    if not (isinstance(discount_rate, int | float) and np.isfinite(discount_rate) and discount_rate >= 0):
        raise _error(f"The discount rate must be a number ≥ 0 (per month), got {discount_rate!r}.")
    if groups is not None and len(groups) != len(summary):
        raise _error(
            f"groups must label every customer: got {len(groups)} labels for {len(summary)} customers."
        )
    s = summary
    alive = p_alive(bgnbd, s.x, s.t_x, s.T)
    purchases = expected_purchases(bgnbd, horizon, s.x, s.t_x, s.T)
    value = expected_value(gg, s.m_count, s.m)
    if discount_rate > 0:
        month = _MONTH_DAYS / UNITS[s.unit]
        edges = np.append(np.arange(0.0, horizon, month), horizon)
        discounted = np.zeros(len(s))
        before = np.zeros(len(s))
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            after = expected_purchases(bgnbd, float(hi), s.x, s.t_x, s.T)
            discounted += (after - before) * (1 + discount_rate) ** (-(lo + hi) / 2 / month)
            before = after
    else:
        discounted = purchases
    return LtvPrediction(
        summary=s, horizon=float(horizon), discount_rate=float(discount_rate), p_alive=alive,
        expected_purchases=purchases, expected_value=value, predicted_value=discounted * value,
        group_by=group_by, groups=None if groups is None else np.asarray(groups, dtype=object),
    )  # fmt: skip


# -- from the orders table -------------------------------------------------------------------------


@dataclass(frozen=True)
class LtvFit:
    """Both models fitted to one summary. ``value_customers``: repeat buyers in the Gamma-Gamma
    fit; ``value_left_out``: repeat buyers not in it (no repeat day with a known value, or a mean
    value ≤ 0, which the model does not cover); ``value_frequency_correlation``: Pearson's r
    between the number of purchases averaged and their mean over the fitted customers — the
    Gamma-Gamma assumes the two independent, so it should be near 0 (docs/ltv.md)."""

    bgnbd: BgNbdFit
    gamma_gamma: GammaGammaFit
    summary: CustomerSummary
    value_customers: int
    value_left_out: int
    value_frequency_correlation: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "bgnbd": self.bgnbd.to_dict(),
            "gamma_gamma": self.gamma_gamma.to_dict(),
            "customers": len(self.summary),
        }

    def table(self) -> pa.Table:
        """One row per figure: the parameters, then the counts behind them."""
        rows = [("bgnbd", k, v) for k, v in self.bgnbd.to_dict().items()]
        rows += [("gamma_gamma", k, v) for k, v in self.gamma_gamma.to_dict().items()]
        rows += [
            ("summary", "customers", len(self.summary)), ("summary", "repeat_buyers", int((self.summary.x > 0).sum())),
            ("summary", "value_customers", self.value_customers), ("summary", "value_left_out", self.value_left_out),
            ("summary", "value_frequency_correlation", self.value_frequency_correlation),
        ]  # fmt: skip
        return pa.table({
            "model": [row[0] for row in rows], "parameter": [row[1] for row in rows],
            "value": pa.array([float(row[2]) for row in rows], pa.float64()),
        })  # fmt: skip


def fit_summary(summary: CustomerSummary) -> LtvFit:
    """The BG/NBD on every customer; the Gamma-Gamma on the repeat buyers with a mean value > 0."""
    s = summary
    bgnbd = fit_bgnbd(s.x, s.t_x, s.T)
    valued = (s.m_count > 0) & (s.m > 0)
    gg = fit_gamma_gamma(s.m_count[valued], s.m[valued])
    count, mean = s.m_count[valued].astype(np.float64), s.m[valued]
    both_vary = np.ptp(count) > 0 and np.ptp(mean) > 0
    return LtvFit(
        bgnbd, gg, s, value_customers=int(valued.sum()), value_left_out=int(((s.x > 0) & ~valued).sum()),
        value_frequency_correlation=float(np.corrcoef(count, mean)[0, 1]) if both_vary else 0.0,
    )  # fmt: skip


def fit_from_orders(con: duckdb.DuckDBPyConnection, calibration_end: date, unit: str = "week") -> LtvFit:
    """``masar ltv fit``: both models fitted to the orders up to ``calibration_end``."""
    return fit_summary(summary_from_orders(con, calibration_end, unit))


def predict_from_orders(
    con: duckdb.DuckDBPyConnection,
    calibration_end: date,
    horizon: float,
    unit: str = "week",
    *,
    group_by: str | None = None,
    discount_rate: float = 0.0,
) -> LtvPrediction:
    """Fit on the orders up to ``calibration_end`` and predict the next ``horizon`` units, per
    customer and by ``group_by`` (``cohort_month``: month of the first purchase; ``first_channel``:
    the person's first channel in ``people``; ``rfm_segment``: the RFM segment as of
    ``calibration_end``)."""
    _check_grouping(group_by)
    fit = fit_from_orders(con, calibration_end, unit)
    s = fit.summary
    groups = _group_labels(con, s, group_by) if group_by else None
    out = predict(
        s, fit.bgnbd, fit.gamma_gamma, horizon, discount_rate=discount_rate, groups=groups, group_by=group_by
    )
    return replace(out, fit=fit)


def _check_grouping(group_by: str | None) -> None:
    if group_by is not None and group_by not in GROUPINGS:
        raise _error(f"group_by must be one of {', '.join(GROUPINGS)} or none, got {group_by!r}.")


def _group_order(group_by: str | None, label: str | None, customers: int) -> tuple:
    """Cohorts in time order; RFM segments best first; channels (and other labels) with the most
    customers first; the unlabelled last."""
    if group_by == "cohort_month":
        return (label is None, label or "")
    if group_by == "rfm_segment":
        return (label is None, SEGMENTS.index(label) if label in SEGMENTS else len(SEGMENTS), label or "")
    return (label is None, -customers, label or "")


def _prediction_group_schema(name: str) -> pa.Schema:
    return pa.schema([
        (name, pa.string()), ("customers", pa.int64()), ("expected_active", pa.float64()), ("mean_p_alive", pa.float64()),
        ("expected_purchases", pa.float64()), ("predicted_value", pa.float64()), ("mean_predicted_value", pa.float64()),
    ])  # fmt: skip


def _group_labels(con: duckdb.DuckDBPyConnection, s: CustomerSummary, group_by: str) -> np.ndarray:
    if group_by == "cohort_month":
        return np.datetime_as_string(s.first_day.astype("datetime64[M]")).astype(object)
    if group_by == "rfm_segment":
        known = segment_labels(con, s.calibration_end)
        return _labels_of(s.person, known["person"].to_numpy(), known["segment"].to_pylist())
    people = con.sql(
        "SELECT person, any_value(first_channel) AS c FROM people WHERE person IS NOT NULL GROUP BY person ORDER BY person"
    ).to_arrow_table()
    return _labels_of(s.person, people["person"].to_numpy(), people["c"].to_pylist())


def _labels_of(person: np.ndarray, known: np.ndarray, label: list[str | None]) -> np.ndarray:
    """The label of each of ``person`` in (``known`` sorted, ``label``); None when not there."""
    labels = np.full(len(person), None, dtype=object)
    if len(known):
        values = np.asarray(label, dtype=object)
        at = np.minimum(np.searchsorted(known, person), len(known) - 1)
        found = known[at] == person
        labels[found] = values[at[found]]
    return labels


# -- historical value ------------------------------------------------------------------------------


def customer_value_sql(*, first_months: bool = False) -> str:
    """What each customer has been worth up to ``$as_of`` (docs/ltv.md, "Historical value"): the
    one definition of historical value, which the acquisition report's LTV:CAC reads too. Refunds
    count against the orders they refund, and only against orders with a value (the revenue of an
    order without one is unknown, so is what its refund takes back).

    ``first_months``: also ``value_Nm`` for N in VALUE_MONTHS, the same net revenue of the orders
    within N calendar months of the first ([first_day, first_day + N months)), NULL until those
    months have passed by ``$as_of``. It costs a join of the orders with their customers (about
    3× the query), so only historical value asks for it."""
    ends, windows, join = "", "", ""
    if first_months:
        # each customer's window ends, once per customer: date arithmetic per order costs more still
        ends = ", " + ", ".join(f"(min(day) + INTERVAL {n} MONTH)::DATE AS end_{n}m" for n in VALUE_MONTHS)
        windows = ", " + ", ".join(
            f"(CASE WHEN any_value(f.end_{n}m) <= $as_of::DATE + 1 THEN coalesce(sum(o.value - o.refunded) "
            f"FILTER (WHERE o.day < f.end_{n}m), 0) END)::DECIMAL(38, 3) AS value_{n}m"
            for n in VALUE_MONTHS
        )
        join = "JOIN (SELECT person, min(day) AS first_day" + ends + " FROM o GROUP BY person) f USING (person)"
    return f"""
        WITH o AS (
            SELECT person, day, value, coalesce(refunded, 0) AS refunded
            FROM orders
            WHERE cancelled IS NOT TRUE AND day <= $as_of AND person IS NOT NULL
        )
        SELECT o.person, min(o.day) AS first_day, count(*) AS orders,
               count(*) - count(o.value) AS orders_without_value,
               coalesce(sum(o.value), 0)::DECIMAL(38, 3) AS revenue,
               coalesce(sum(o.refunded) FILTER (WHERE o.value IS NOT NULL), 0)::DECIMAL(38, 3) AS refunded,
               coalesce(sum(o.value - o.refunded), 0)::DECIMAL(38, 3) AS net_revenue{windows}
        FROM o {join}
        GROUP BY o.person
    """


_WINDOWS = [f"value_{n}m" for n in VALUE_MONTHS]


@dataclass(frozen=True)
class HistoricalLtv:
    """Revenue per customer to ``as_of`` (``customers``, one row each) and per group."""

    as_of: date
    group_by: str | None
    customers: pa.Table
    groups: pa.Table | None

    def customers_table(self) -> pa.Table:
        return self.customers

    def groups_table(self) -> pa.Table:
        if self.groups is None:
            raise _error("This historical value has no groups.")
        return self.groups

    def table(self) -> pa.Table:
        return self.groups if self.groups is not None else self.customers

    def to_dict(self) -> dict[str, Any]:
        c = self.customers
        n = c.num_rows
        net = _decimal_sum(c["net_revenue"])
        out: dict[str, Any] = {
            "as_of": self.as_of.isoformat(),
            "customers": n,
            "orders": int(_int_sum(c["orders"])),
            "orders_without_value": int(_int_sum(c["orders_without_value"])),
            "revenue": str(_decimal_sum(c["revenue"])),
            "refunded": str(_decimal_sum(c["refunded"])),
            "net_revenue": str(net),
            "net_revenue_per_customer": float(net) / n if n else None,
        }
        for name in _WINDOWS:
            grown = pc.count(c[name]).as_py()  # customers whose first N months have passed
            out[f"{name}_customers"] = grown
            out[f"{name}_per_customer"] = float(_decimal_sum(c[name])) / grown if grown else None
        out["group_by"] = self.group_by
        if self.groups is not None:
            out["groups"] = [
                {k: (str(v) if isinstance(v, Decimal) else v) for k, v in row.items()}
                for row in self.groups.to_pylist()
            ]
        return out


def historical_ltv(con: duckdb.DuckDBPyConnection, as_of: date, group_by: str | None = None) -> HistoricalLtv:
    """Every customer's orders and revenue up to ``as_of`` (store days), as ``customer_value_sql``
    defines them: non-cancelled orders; revenue = Σ value, refunded = Σ refunded (of the orders
    with a value), net = revenue − refunded; the net revenue of the first 3, 6 and 12 months.
    Orders without a value are counted but add no money. ``group_by``: ``cohort_month`` (month of
    the first order), ``first_channel`` (the person's first channel in ``people``) or
    ``rfm_segment`` (the RFM segment as of ``as_of``)."""
    _check_grouping(group_by)
    if not isinstance(as_of, date) or isinstance(as_of, datetime):
        raise _error(f"as_of must be a date, got {as_of!r}.")
    customers = con.sql(
        f"""
        WITH c AS ({customer_value_sql(first_months=True)}),
        p AS (SELECT person, any_value(first_channel) AS first_channel FROM people GROUP BY person)
        SELECT c.person, c.first_day, strftime(c.first_day, '%Y-%m') AS cohort_month, p.first_channel,
               ($as_of::DATE - c.first_day)::BIGINT AS tenure_days, c.orders, c.orders_without_value,
               c.revenue, c.refunded, c.net_revenue, {", ".join(f"c.{name}" for name in _WINDOWS)}
        FROM c LEFT JOIN p ON p.person = c.person
        ORDER BY c.person
        """,
        params={"as_of": as_of},
    ).to_arrow_table()
    if group_by == "rfm_segment":
        known = segment_labels(con, as_of)
        labels = _labels_of(
            customers["person"].to_numpy(), known["person"].to_numpy(), known["segment"].to_pylist()
        )
        at = customers.schema.get_field_index("first_channel") + 1
        customers = customers.add_column(at, "rfm_segment", pa.array(labels, pa.string()))
    groups = _historical_groups(customers, group_by) if group_by else None
    return HistoricalLtv(as_of=as_of, group_by=group_by, customers=customers, groups=groups)


def _historical_groups(customers: pa.Table, group_by: str) -> pa.Table:
    # A private in-memory DuckDB over the fetched rows: exact decimal sums without touching the
    # caller's connection (no temporary views left behind on it).
    local = duckdb.connect()
    try:
        local.register("c", customers)
        # group_by is one of GROUPINGS (checked), never user text
        order = {"cohort_month": "g", "rfm_segment": "list_position($segments, g)"}
        windows = ", ".join(
            f"count({w}) AS {w}_customers, sum({w})::DOUBLE / nullif(count({w}), 0) AS {w}_per_customer"
            for w in _WINDOWS
        )
        return local.sql(
            f"""
            SELECT {group_by} AS g, count(*) AS customers, sum(orders)::BIGINT AS orders,
                   sum(orders_without_value)::BIGINT AS orders_without_value,
                   sum(revenue) AS revenue, sum(refunded) AS refunded, sum(net_revenue) AS net_revenue,
                   sum(net_revenue)::DOUBLE / count(*) AS net_revenue_per_customer,
                   avg(tenure_days)::DOUBLE AS mean_tenure_days, {windows}
            FROM c GROUP BY g ORDER BY g IS NULL, {order.get(group_by, "customers DESC, g")}
            """,
            params={"segments": list(SEGMENTS)} if group_by == "rfm_segment" else None,
        ).to_arrow_table().rename_columns({"g": group_by})
    finally:
        local.close()


def _decimal_sum(column: pa.ChunkedArray) -> Decimal:
    total = pc.sum(column).as_py()
    return Decimal(0).quantize(Decimal("0.001")) if total is None else total


def _int_sum(column: pa.ChunkedArray) -> int:
    return int(pc.sum(column).as_py() or 0)
