"""Plain definitions of the lifetime-value models, one customer at a time, written straight from
the papers with ``math`` and ``decimal`` (no scipy, no numpy in the formulas), so that the
vectorised, log-space code of masar/engine/ltv.py has something independent to agree with.

BG/NBD: Fader, Hardie & Lee (2005), "Counting your customers the easy way", eqs. 6 and 10, and
P(alive) from their note "Computing P(alive) using the BG/NBD model". Gamma-Gamma: Fader & Hardie
(2013), "The Gamma-Gamma model of monetary value": its density of a customer's mean value and the
conditional mean. Also a plain customer summary of orders, historical value of an
orders list, and a simulator of the BG/NBD purchase process.
"""

from __future__ import annotations

import calendar
import math
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal, localcontext

import numpy as np


def log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def bgnbd_log_likelihood(r: float, alpha: float, a: float, b: float, x: int, t_x: float, T: float) -> float:
    """ln of L(r, α, a, b | x, t_x, T) = B(a, b+x)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+T)^(r+x))
    + δ(x>0) · B(a+1, b+x−1)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+t_x)^(r+x)).

    Each term's logarithm is a float; their sum is taken in 40-digit decimals, whose exponent range
    holds the terms of any customer (in floats they are below 1e-308 for frequent buyers)."""
    common = math.lgamma(r + x) - math.lgamma(r) + r * math.log(alpha) - log_beta(a, b)
    with localcontext() as ctx:
        ctx.prec = 40
        first = Decimal(common + log_beta(a, b + x) - (r + x) * math.log(alpha + T)).exp()
        second = Decimal(0)
        if x > 0:
            second = Decimal(common + log_beta(a + 1, b + x - 1) - (r + x) * math.log(alpha + t_x)).exp()
        return float((first + second).ln())


def p_alive(r: float, alpha: float, a: float, b: float, x: int, t_x: float, T: float) -> float:
    if x == 0:
        return 1.0
    with localcontext() as ctx:
        ctx.prec = 40
        # the sums in decimals: α + T rounded to a float is raised to the power r + x, which on the
        # ridge r, α → ∞ is 10⁷
        alpha_ = Decimal(alpha)
        odds = Decimal(a) / (Decimal(b) + x - 1) * ((alpha_ + Decimal(T)) / (alpha_ + Decimal(t_x))) ** (Decimal(r) + x)
        return float(1 / (1 + odds))


def hyp2f1(A: Decimal, B: Decimal, C: Decimal, z: Decimal) -> Decimal:
    """Gauss's series Σ_k (A)_k (B)_k / (C)_k · z^k / k!, for 0 ≤ z < 1, in the current decimal context."""
    assert 0 <= z < 1
    total, term, k = Decimal(1), Decimal(1), 0
    while True:
        term *= (A + k) * (B + k) / ((C + k) * (k + 1)) * z
        k += 1
        total += term
        if k > 10 and abs(term) < Decimal(10) ** -45 * abs(total):
            return total


def expected_purchases(
    r: float, alpha: float, a: float, b: float, t: float, x: int, t_x: float, T: float
) -> float:
    """E[Y(t) | x, t_x, T]: FHL 2005, eq. 10, as printed, in 60-digit decimals: for frequent buyers
    ((α+T)/(α+T+t))^(r+x) is far below and the ₂F₁ far above what a float holds, and near a = 1
    the difference 1 − … loses as many digits as a − 1 has leading zeros."""
    with localcontext() as ctx:
        ctx.prec = 60
        r_, alpha_, a_, b_, t_, t_x_, T_ = (Decimal(v) for v in (r, alpha, a, b, t, t_x, T))
        z = t_ / (alpha_ + T_ + t_)
        head = ((alpha_ + T_) / (alpha_ + T_ + t_)) ** (r_ + x) * hyp2f1(r_ + x, b_ + x, a_ + b_ + x - 1, z)
        odds = a_ / (b_ + x - 1) * ((alpha_ + T_) / (alpha_ + t_x_)) ** (r_ + x) if x > 0 else Decimal(0)
        return float((a_ + b_ + x - 1) / (a_ - 1) * (1 - head) / (1 + odds))


def discounted_purchases(
    r: float,
    alpha: float,
    a: float,
    b: float,
    horizon: float,
    month: float,
    rate: float,
    x: int,
    t_x: float,
    T: float,
) -> float:
    """Σ over the horizon's months of the purchases expected in the month × (1 + rate)^−(its middle
    in months); the last month is cut at the horizon."""
    total, start, before = 0.0, 0.0, 0.0
    while start < horizon:
        end = min(start + month, horizon)
        after = expected_purchases(r, alpha, a, b, end, x, t_x, T)
        total += (after - before) / (1 + rate) ** ((start + end) / 2 / month)
        start, before = end, after
    return total


def gamma_gamma_log_likelihood(p: float, q: float, gamma: float, x: int, m: float) -> float:
    """ln f(m | p, q, γ, x) = ln[Γ(px+q) / (Γ(px) Γ(q)) · γ^q m^(px−1) x^(px) / (γ + m x)^(px+q)]."""
    return (
        math.lgamma(p * x + q) - math.lgamma(p * x) - math.lgamma(q)
        + q * math.log(gamma) + (p * x - 1) * math.log(m) + p * x * math.log(x) - (p * x + q) * math.log(gamma + m * x)
    )  # fmt: skip


def gamma_gamma_mean(p: float, q: float, gamma: float, x: int, m: float | None) -> float:
    """E[M | x, m]: the weighted average of the population mean pγ/(q−1) and the customer's own m
    (Fader & Hardie 2013); the population mean when nothing is known."""
    population = p * gamma / (q - 1)
    if x == 0 or m is None:
        return population
    weight = p * x / (p * x + q - 1)
    return (1 - weight) * population + weight * max(m, 0.0)


def summary(
    orders: list[tuple[int, date, float | None]], calibration_end: date, unit_days: int
) -> dict[int, tuple[int, float, float, float | None, int, date]]:
    """person → (x, t_x, T, m, m_count, first day) from (person, day, value or None) rows."""
    days: dict[int, dict[date, list[float | None]]] = defaultdict(lambda: defaultdict(list))
    for person, day, value in orders:
        if day <= calibration_end:
            days[person][day].append(value)
    out = {}
    for person, by_day in days.items():
        ordered = sorted(by_day)
        first, last = ordered[0], ordered[-1]
        repeat_values = [sum(v) for d in ordered[1:] if None not in (v := by_day[d])]
        m = sum(repeat_values) / len(repeat_values) if repeat_values else None
        out[person] = (
            len(ordered) - 1, (last - first).days / unit_days, (calibration_end - first).days / unit_days,
            m, len(repeat_values), first,
        )  # fmt: skip
    return out


def add_months(day: date, months: int) -> date:
    """The same day ``months`` calendar months later, or that month's last day (Jan 31 + 1 = Feb 28)."""
    year, month = divmod(day.month - 1 + months, 12)
    year, month = day.year + year, month + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def historical(
    orders: list[dict], people: dict[int, str | None], as_of: date, months: tuple[int, ...] = (3, 6, 12)
) -> dict[int, dict]:
    """person → orders, orders_without_value, revenue, refunded, net_revenue (Decimal), first_day,
    cohort_month, first_channel, tenure_days, and value_Nm for N in ``months``: the net revenue of
    the orders before first_day + N months, None while that day is after as_of + 1 day. From order
    dicts with person, day, value, refunded, cancelled."""
    out: dict[int, dict] = {}
    kept = [o for o in orders if not o["cancelled"] and o["day"] <= as_of]
    for o in kept:
        c = out.setdefault(o["person"], {
            "orders": 0, "orders_without_value": 0, "revenue": Decimal(0), "refunded": Decimal(0), "first_day": o["day"],
        })  # fmt: skip
        c["orders"] += 1
        c["first_day"] = min(c["first_day"], o["day"])
        if o["value"] is None:
            c["orders_without_value"] += 1
        else:
            c["revenue"] += o["value"]
            c["refunded"] += o["refunded"]
    for person, c in out.items():
        c["net_revenue"] = c["revenue"] - c["refunded"]
        c["cohort_month"] = c["first_day"].strftime("%Y-%m")
        c["first_channel"] = people.get(person)
        c["tenure_days"] = (as_of - c["first_day"]).days
        for n in months:
            end = add_months(c["first_day"], n)
            c[f"value_{n}m"] = None
            if end <= as_of + timedelta(days=1):
                c[f"value_{n}m"] = sum(
                    (o["value"] - o["refunded"] for o in kept
                     if o["person"] == person and o["value"] is not None and o["day"] < end),
                    Decimal(0),
                )  # fmt: skip
    return out


def simulate(
    n: int, r: float, alpha: float, a: float, b: float, T_max: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, t_x, T) of n customers drawn from the BG/NBD process: λ ~ Gamma(r, rate α), p ~ Beta(a,
    b), T ~ Uniform(0.5, T_max); purchases arrive as a Poisson process of rate λ after the first
    (at time 0) and the customer leaves right after the J-th repeat purchase, J ~ Geometric(p).
    Given N Poisson arrivals in (0, T], they are N uniform points; the last one seen is the x-th
    smallest, x = min(N, J), which is T · Beta(x, N − x + 1)."""
    lam = rng.gamma(r, 1 / alpha, n)
    p = rng.beta(a, b, n)
    T = rng.uniform(0.5, T_max, n)
    arrivals = rng.poisson(lam * T)
    x = np.minimum(arrivals, rng.geometric(p))
    t_x = np.zeros(n)
    seen = x > 0
    t_x[seen] = T[seen] * rng.beta(x[seen], arrivals[seen] - x[seen] + 1)
    return x, t_x, T
