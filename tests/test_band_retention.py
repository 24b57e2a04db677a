"""Fig. 4's table by hand: band ratios averaged over a layer set's modules, retention against the
unedited model, families at chance left empty, and the correlations against numpy."""
import math

import numpy as np
import pandas as pd
import pytest

from curvmem.lm.tables import band_correlation, band_retention


def profile_rows(layer_set, module, group, ratios):
    return [{"group": group, "n": 5, "module": module, "basis": "kfac", "band": band, "group_strength": 1.0,
             "clean_strength": 1.0, "ratio": r, "layer_set": layer_set}
            for band, r in zip(("top 10%", "10-25%", "25-50%", "bottom 50%"), ratios)]


SWEEP = pd.DataFrame([
    {"method": "none", "layer_set": "", "cutoff": 1.0, "setting": "", "memorized_val_strict_pct": 80.0,
     "quotes_strict_pct": 0.0, "task_logic": 60.0, "task_math": 30.0},
    {"method": "kfac", "layer_set": "a", "cutoff": 0.5, "setting": "0.5", "memorized_val_strict_pct": 20.0,
     "quotes_strict_pct": 0.0, "task_logic": 45.0, "task_math": 3.0},
    {"method": "svd", "layer_set": "a", "cutoff": 0.5, "setting": "0.5", "memorized_val_strict_pct": 0.0,
     "quotes_strict_pct": 0.0, "task_logic": 0.0, "task_math": 0.0},
])
PROFILE = pd.DataFrame(
    profile_rows("a", "m1", "memorized_val", (0.8, 1.0, 1.1, 1.4)) + profile_rows("a", "m2", "memorized_val", (0.6, 1.0, 1.1, 1.2))
    + profile_rows("a", "m1", "task_logic", (1.0, 1.0, 1.0, 1.0)) + profile_rows("a", "m2", "task_logic", (1.0, 1.0, 1.0, 1.0))
    + profile_rows("a", "m1", "task_math", (0.9, 1.0, 1.2, 1.5)) + profile_rows("a", "m2", "task_math", (0.9, 1.0, 1.2, 1.5))
    + profile_rows("a", "m1", "quotes", (1.0, 1.0, 1.0, 1.0)) + profile_rows("a", "m2", "quotes", (1.0, 1.0, 1.0, 1.0))
    + profile_rows("b", "m3", "task_logic", (5.0, 5.0, 5.0, 5.0)))  # another layer set: never mixed in
TASKS = pd.DataFrame({"family": ["logic", "math"], "above_chance": [True, False]})


def test_band_retention_by_hand():
    points = band_retention(SWEEP, PROFILE, TASKS, {"kfac": {"layer_set": "a", "setting": "0.5"}}).set_index("group")
    assert len(points) == 4 and points.headline.all()  # the K-FAC edit only, one row per group of its layer set
    assert points.loc["memorized_val", "top10_ratio"] == pytest.approx(0.7)      # mean of m1 and m2
    assert points.loc["memorized_val", "bottom50_ratio"] == pytest.approx(1.3)
    assert points.loc["memorized_val", "retained_pct"] == pytest.approx(25.0)    # 20 of 80
    assert points.loc["task_logic", "retained_pct"] == pytest.approx(75.0)       # 45 of 60
    assert math.isnan(points.loc["task_math", "retained_pct"])                   # unedited at chance
    assert math.isnan(points.loc["quotes", "retained_pct"])                      # nothing recited before


def test_band_correlation_against_numpy():
    rng = np.random.default_rng(0)
    points = pd.DataFrame({"top10_ratio": rng.normal(1, 0.1, 12), "bottom50_ratio": rng.normal(1.2, 0.2, 12),
                           "retained_pct": rng.uniform(0, 100, 12), "headline": [True] * 4 + [False] * 8})
    points.loc[3, "retained_pct"] = np.nan  # a family at chance: left out
    table = band_correlation(points).set_index(["scope", "band"])
    ranks = lambda v: np.argsort(np.argsort(v))  # noqa: E731  (no ties in continuous draws)
    for scope, part in (("every K-FAC edit", points), ("headline K-FAC edit", points[points.headline])):
        part = part.dropna()
        for band in ("top10_ratio", "bottom50_ratio"):
            row = table.loc[(scope, band)]
            assert row.points == len(part)
            assert row.pearson_r == pytest.approx(np.corrcoef(part[band], part.retained_pct)[0, 1])
            assert row.spearman_rho == pytest.approx(np.corrcoef(ranks(part[band]), ranks(part.retained_pct))[0, 1])
