"""Means and 95% confidence intervals over seeds: the one statistic the report
and the sweep report give for every ratio and difference.

The interval is Student's t on the per-seed values (the seeds are independent
runs); with one seed it is unknown (None), never zero.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

__all__ = ["T975", "mean_ci", "t975"]

#: Student's t, two-sided 95% (0.975 quantile), by degrees of freedom.
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
        20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with df degrees of freedom (the
    nearest tabulated df at or below; 1.96 beyond 120)."""
    if df < 1:
        raise ValueError(f"degrees of freedom {df} < 1")
    if df > 120:
        return 1.96
    return T975[max(k for k in T975 if k <= df)]


def mean_ci(values: Iterable[float]) -> dict[str, Any]:
    """``{"mean", "lo", "hi", "half", "n"}`` of finite values: the mean and its
    95% interval; ``lo``/``hi``/``half`` are None with fewer than 2 values."""
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(xs)
    if n == 0:
        return {"mean": None, "lo": None, "hi": None, "half": None, "n": 0}
    m = math.fsum(xs) / n
    if n < 2:
        return {"mean": m, "lo": None, "hi": None, "half": None, "n": 1}
    sd = math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (n - 1))
    half = t975(n - 1) * sd / math.sqrt(n)
    return {"mean": m, "lo": m - half, "hi": m + half, "half": half, "n": n}
