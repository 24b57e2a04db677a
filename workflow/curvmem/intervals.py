"""95% intervals for the percentages the tables report, over the items each one counts.

Every percentage here is k of n items (memorized windows, quotes, mislabeled or validation images,
task prompts), so its interval is binomial: the Wilson score interval (scipy). Two models are always
measured on the same items, and only their counts are kept, so comparisons use the intervals for
independent samples built from the two Wilson intervals (method of variance estimates recovery):
Newcombe's hybrid score interval for a difference, Donner and Zou's for a ratio (the retention of a
task family). Outcomes of two edits of one model on the same items are positively correlated, which
makes these intervals wider than paired ones: "beyond the noise" here is a conservative verdict.
"""
from __future__ import annotations

import math

import pandas as pd

LEVEL = 0.95


def count(pct: float, n: int) -> int:
    """The item count behind a percentage of n items."""
    k = round(pct * n / 100)
    assert abs(100 * k / n - pct) < 1e-6, f"{pct}% is not a whole number of {n} items"
    return k


def wilson(pct: float, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a percentage of n items, in percent (nan without items)."""
    from scipy.stats import binomtest  # here, not at the top: scipy.stats costs every job ~1 s of start-up

    if not n or math.isnan(pct):
        return math.nan, math.nan
    ci = binomtest(count(pct, n), n).proportion_ci(LEVEL, method="wilson")
    return 100 * float(ci.low), 100 * float(ci.high)


def difference(pct_a: float, n_a: int, pct_b: float, n_b: int) -> tuple[float, float, float]:
    """a - b in points and Newcombe's 95% hybrid score interval (his method 10)."""
    (la, ua), (lb, ub) = wilson(pct_a, n_a), wilson(pct_b, n_b)
    d = pct_a - pct_b
    return d, d - math.hypot(pct_a - la, ub - pct_b), d + math.hypot(ua - pct_a, pct_b - lb)


def ratio(pct_a: float, n_a: int, pct_b: float, n_b: int) -> tuple[float, float, float]:
    """100 * a / b and its 95% interval by Donner and Zou's MOVER-R; nan where b is 0."""
    (la, ua), (lb, ub) = wilson(pct_a, n_a), wilson(pct_b, n_b)
    a, b = pct_a, pct_b
    if not b or math.isnan(a) or math.isnan(b):
        return math.nan, math.nan, math.nan
    low = (a * b - math.sqrt(max((a * b) ** 2 - la * ub * (2 * a - la) * (2 * b - ub), 0.0))) / (ub * (2 * b - ub))
    high_den = lb * (2 * b - lb)
    high = ((a * b + math.sqrt(max((a * b) ** 2 - ua * lb * (2 * a - ua) * (2 * b - lb), 0.0))) / high_den
            if high_den > 0 else math.inf)
    return 100 * a / b, 100 * low, 100 * high


def with_intervals(table: pd.DataFrame, counts: dict[str, str]) -> pd.DataFrame:
    """`table` with `<metric>_ci_low` / `<metric>_ci_high` after each metric of `counts` (metric ->
    the column holding its number of items)."""
    out = table.copy()
    for metric, n_column in counts.items():
        bounds = [wilson(p, int(n)) for p, n in zip(out[metric], out[n_column])]
        at = out.columns.get_loc(metric) + 1
        out.insert(at, f"{metric}_ci_low", [lo for lo, _ in bounds])
        out.insert(at + 1, f"{metric}_ci_high", [hi for _, hi in bounds])
    return out


def differences(models: dict[str, pd.Series], pairs: list[tuple[str, str]], counts: dict[str, str]) -> pd.DataFrame:
    """Each pair of headline models on each metric: the difference in points, its 95% interval, and
    whether the interval excludes 0 (the difference is larger than the noise)."""
    rows = []
    for a, b in pairs:
        for metric, n_column in counts.items():
            ra, rb = models[a], models[b]
            d, low, high = difference(ra[metric], int(ra[n_column]), rb[metric], int(rb[n_column]))
            rows.append({"metric": metric, "model_a": a, "model_b": b, "a_pct": ra[metric], "b_pct": rb[metric],
                         "difference_pts": d, "ci_low": low, "ci_high": high,
                         "beyond_noise": bool(low > 0 or high < 0)})
    return pd.DataFrame(rows)
