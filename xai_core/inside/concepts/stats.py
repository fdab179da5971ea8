"""Student's two-sample t-test in numpy (float64), as ``scipy.stats.ttest_ind`` computes it by
default (``equal_var=True``, two-sided), so that the core needs no scipy.

Example:
    >>> t, p = ttest_ind([0.5, 0.6, 0.7], [0.4, 0.5])
    >>> round(t, 6), round(p, 6)
    (1.8, 0.16968)
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["betainc", "ttest_ind"]

_TINY = 1e-300


def _continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz's method)."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 1000):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + num / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < 1e-16:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function ``I_x(a, b)`` (float64)."""
    if not x > 0.0:
        return 0.0 if x == 0.0 else math.nan
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _continued_fraction(a, b, x) / a
    return 1.0 - front * _continued_fraction(b, a, 1.0 - x) / b


def ttest_ind(a: npt.ArrayLike, b: npt.ArrayLike) -> tuple[float, float]:
    """``(t, p)``: Student's t statistic of ``mean(a) - mean(b)`` with the pooled variance and
    ``len(a) + len(b) - 2`` degrees of freedom, and its two-sided p-value
    ``I_{df / (df + t^2)}(df / 2, 1 / 2)``. As ``scipy.stats.ttest_ind(a, b)``: ``t = +-inf``,
    ``p = 0`` when both samples are constant and differ, ``nan`` when they are constant and equal."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    n1, n2 = a.size, b.size
    df = n1 + n2 - 2
    if n1 < 1 or n2 < 1 or df < 1:
        raise ValueError(f"ttest_ind: needs at least one value in each sample and three in all, got {n1} and {n2}.")
    pooled = (np.sum((a - a.mean()) ** 2) + np.sum((b - b.mean()) ** 2)) / df
    with np.errstate(divide="ignore", invalid="ignore"):
        t = float((a.mean() - b.mean()) / np.sqrt(pooled * (1.0 / n1 + 1.0 / n2)))
    if math.isnan(t):
        return t, math.nan
    return t, 0.0 if math.isinf(t) else betainc(df / 2.0, 0.5, df / (df + t * t))
