"""The tables' 95% intervals against independent references: Wilson's closed form, Newcombe's
published example, and the coverage a 95% interval must have (simulation)."""
import math

import numpy as np
import pandas as pd
import pytest

from curvmem.intervals import difference, differences, ratio, wilson, with_intervals

Z = 1.959963984540054  # the 97.5% normal quantile


def wilson_closed_form(k: int, n: int) -> tuple[float, float]:
    p = k / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z / (1 + Z * Z / n) * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return 100 * (centre - half), 100 * (centre + half)


@pytest.mark.parametrize("k, n", [(0, 10), (3, 10), (10, 10), (37, 95), (1, 400), (1999, 2000)])
def test_wilson_equals_the_closed_form(k, n):
    assert wilson(100 * k / n, n) == pytest.approx(wilson_closed_form(k, n), abs=1e-9)


def test_no_items_no_interval():
    assert all(math.isnan(v) for v in wilson(float("nan"), 10) + wilson(0.0, 0))


def test_difference_reproduces_newcombes_example():
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 - 48/80, method 10.
    d, low, high = difference(100 * 56 / 70, 70, 100 * 48 / 80, 80)
    assert (d, round(low / 100, 4), round(high / 100, 4)) == (pytest.approx(20.0), 0.0524, 0.3339)


@pytest.mark.parametrize("p_a, p_b, n", [(0.6, 0.8, 100), (0.1, 0.9, 50), (0.97, 0.99, 200), (0.3, 0.35, 40)])
def test_intervals_cover_the_truth_95_percent_of_the_time(p_a, p_b, n):
    rng = np.random.default_rng(0)
    k_a, k_b = rng.binomial(n, p_a, 1000), rng.binomial(n, p_b, 1000)
    diffs = [difference(100 * a / n, n, 100 * b / n, n) for a, b in zip(k_a, k_b)]
    ratios = [ratio(100 * a / n, n, 100 * b / n, n) for a, b in zip(k_a, k_b) if b]
    covered_d = np.mean([lo <= 100 * (p_a - p_b) <= hi for _, lo, hi in diffs])
    covered_r = np.mean([lo <= 100 * p_a / p_b <= hi for _, lo, hi in ratios])
    assert 0.93 <= covered_d <= 0.985 and 0.93 <= covered_r <= 0.985, (covered_d, covered_r)


def test_ratio_edges():
    value, low, high = ratio(0.0, 50, 80.0, 50)  # everything lost: the interval starts at 0
    assert value == 0 and low == 0 and 0 < high < 10
    value, low, high = ratio(80.0, 50, 80.0, 50)
    assert value == 100 and low < 100 < high
    assert all(math.isnan(v) for v in ratio(10.0, 50, 0.0, 50))


def test_table_helpers_place_bounds_and_judge_the_noise():
    table = pd.DataFrame({"model": ["kfac", "svd", "bsn"], "memorized_pct": [10.0, 60.0, 12.0], "n": [50, 50, 50]})
    out = with_intervals(table, {"memorized_pct": "n"})
    assert list(out.columns) == ["model", "memorized_pct", "memorized_pct_ci_low", "memorized_pct_ci_high", "n"]
    assert (out.memorized_pct_ci_low < out.memorized_pct).all() and (out.memorized_pct < out.memorized_pct_ci_high).all()
    models = {r.model: r for _, r in table.iterrows()}
    verdict = differences(models, [("kfac", "svd"), ("kfac", "bsn")], {"memorized_pct": "n"}).set_index("model_b")
    assert verdict.beyond_noise.to_dict() == {"svd": True, "bsn": False}
    assert verdict.difference_pts["svd"] == pytest.approx(-50.0)


def test_weight_decay_table_by_hand():
    """Two members, one module of the headline layers and one outside it, worked by hand: the band
    means are over the headline modules only, separation is bottom / top, rows sorted by decay."""
    from curvmem.vision.tables import Headline, weight_decay_table

    def member(wd, memorized_after, top, bottom):
        rows = [{"method": "none", "modules": [], "memorized_train_pct": 50.0, "train_gt_acc_pct": 25.0,
                 "val_acc_pct": 80.0, "n_mislabeled": 4, "n_val": 10},
                {"method": "kfac", "modules": ["a"], "memorized_train_pct": memorized_after, "train_gt_acc_pct": 50.0,
                 "val_acc_pct": 70.0, "n_mislabeled": 4, "n_val": 10}]
        ratio = [{"module": m, "basis": b, "band": band, "ratio": value}
                 for m, scale in (("a", 1.0), ("b", 100.0)) for b in ("kfac", "svd")
                 for band, value in (("top 10%", top * scale), ("bottom 50%", bottom * scale))]
        return {"weight_decay": wd, "edits": rows, "activation": ratio}

    table = weight_decay_table([member(1.0, 0.0, 0.5, 2.0), member(0.1, 25.0, 0.8, 1.2)], Headline(layer_set="x", rho=0.8))
    assert table.weight_decay.tolist() == [0.1, 0.1, 1.0, 1.0]
    assert table.model.tolist() == ["baseline", "kfac"] * 2
    assert table.setting.tolist() == ["unedited", "x, rho 0.8"] * 2
    assert table.top10_ratio.tolist() == [0.8, 0.8, 0.5, 0.5]
    assert table.band_separation.tolist() == pytest.approx([1.5, 1.5, 4.0, 4.0])
    assert table.memorized_train_pct.tolist() == [50.0, 25.0, 50.0, 0.0]
    low, high = wilson_closed_form(2, 4)  # 50% of 4 images
    assert table.memorized_train_pct_ci_low[0] == pytest.approx(low)
    assert table.memorized_train_pct_ci_high[0] == pytest.approx(high)


def test_cutoff_steps_flag_the_steps_beyond_the_noise():
    """Hand-worked: 0 -> 20 of 20 is beyond any noise, 10 -> 11 of 20 is not; the step carries the kept
    fractions of both ends; and a percentage rounded by a CSV is read back as its whole count."""
    from curvmem.sweep import cutoff_steps, whole, with_bands

    sweep = pd.DataFrame({"method": ["kfac"] * 3, "layer_set": ["a"] * 3, "cutoff": [0.9, 0.5, 0.6],
                          "kept_fraction": [0.2, 0.01, 0.02], "m_pct": [100.0, 0.0, 50.0], "m_n": [20, 20, 20],
                          "t_pct": [55.0, 50.0, 50.0], "t_n": [20, 20, 20]})
    steps = cutoff_steps(sweep, "kfac", {"m_pct": "m_n", "t_pct": "t_n"}).set_index(["metric", "cutoff_from"])
    assert steps.loc[("m_pct", 0.5)].cutoff_to == 0.6 and steps.loc[("m_pct", 0.6)].cutoff_to == 0.9
    assert steps.loc[("m_pct", 0.5)].beyond_noise and steps.loc[("m_pct", 0.5)].change_pts == 50
    assert not steps.loc[("t_pct", 0.6)].beyond_noise and steps.loc[("t_pct", 0.6)].change_pts == 5
    assert (steps.loc[("m_pct", 0.6)].kept_from, steps.loc[("m_pct", 0.6)].kept_to) == (0.02, 0.2)
    assert whole(8.333, 60) == 100 * 5 / 60
    banded = with_bands(pd.DataFrame({"m_pct": [8.333], "m_n": [60]}), {"m_pct": "m_n"})
    assert (banded.m_pct_ci_low[0], banded.m_pct_ci_high[0]) == pytest.approx(wilson_closed_form(5, 60))
