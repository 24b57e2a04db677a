"""The frontier of bases (docs/method.md, section 10): memorization left against damage done, for
every way of ranking a weight's components, each swept over its own cutoff on the same layers.

A point is an edit (a method, a layer set, a cutoff); a panel pairs one memorization metric with
one damage metric, both "lower is better" (a retention is turned into its loss, 100 - retention).
A point is on the Pareto front of its panel when no other point of the panel has at most its
memorization and at most its damage, one of them strictly less. The unedited model is a point of
every panel (no damage, all memorization): on the front unless an edit memorizes less at no damage.
Budgets answer "at matched damage": the least memorization each method reaches with damage within
a bound.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# The methods the comparison draws, in legend order ("none" is the unedited model).
FRONTIER_METHODS = ("none", "kfac", "kfac_mc", "kfac_empirical", "kfac_scaled", "ekfac", "svd", "bsn", "activation",
                    "magnitude", "random")
POINT_COLUMNS = ["panel", "memorization", "damage", "method", "layer_set", "cutoff", "setting", "kept_fraction",
                 "memorization_pct", "damage_value", "on_front"]


@dataclass(frozen=True)
class Panel:
    """One memorization metric against one damage metric (both columns of the sweep table)."""

    memorization: str     # sweep column, % of items still memorized
    damage: str           # sweep column (already a damage: lower is better)
    budgets: tuple = ()   # damage bounds of the budget table, in the damage column's units


def pareto_front(memorization: np.ndarray, damage: np.ndarray) -> np.ndarray:
    """(n,) bool: the points no other point dominates (at most as much of both, less of one). One pass
    over the damage levels, least first: a level's least-memorization points are on the front iff
    they memorize less than every point of less damage."""
    m, d = np.asarray(memorization, float), np.asarray(damage, float)
    assert m.shape == d.shape and m.ndim == 1, "one memorization and one damage value per point"
    assert not (np.isnan(m).any() or np.isnan(d).any()), "points without a value have no place on the front"
    front = np.zeros(len(m), dtype=bool)
    best = np.inf  # least memorization of the levels seen so far
    for level in np.unique(d):
        at = np.flatnonzero(d == level)
        least = m[at].min()
        if least < best:
            front[at[m[at] == least]] = True
            best = least
    return front


def frontier_layer_sets(sweep: pd.DataFrame, fallback: str) -> list[str]:
    """The layer sets the frontier's own methods were swept on (edit.frontier.layer_sets); without
    them, `fallback` (the headline's), where K-FAC, SVD and BalancedSubnet still make a comparison."""
    own = sweep[sweep.method.isin([m for m in FRONTIER_METHODS if m not in ("none", "kfac", "svd", "bsn")])].layer_set
    return list(dict.fromkeys(own)) or [fallback]


def frontier_points(sweep: pd.DataFrame, layer_sets: list[str], panels: list[Panel]) -> pd.DataFrame:
    """Long table: every edit of the frontier's methods on its layer sets, and the unedited model,
    once per panel, with its memorization, damage and whether it is on the panel's front."""
    keep = sweep.method.isin(FRONTIER_METHODS) & ((sweep.method == "none") | sweep.layer_set.isin(layer_sets))
    points = sweep[keep]
    frames = []
    for panel in panels:
        frame = points.assign(panel=f"{panel.memorization} vs {panel.damage}", memorization=panel.memorization,
                              damage=panel.damage, memorization_pct=points[panel.memorization],
                              damage_value=points[panel.damage])
        frame = frame.dropna(subset=["memorization_pct", "damage_value"])
        frame["on_front"] = pareto_front(frame.memorization_pct.to_numpy(), frame.damage_value.to_numpy())
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)[POINT_COLUMNS]
    return out.sort_values(["panel", "method", "layer_set", "cutoff"], key=_method_key, ignore_index=True)


def _method_key(column: pd.Series) -> pd.Series:
    return column.map(FRONTIER_METHODS.index) if column.name == "method" else column


def budget_table(points: pd.DataFrame, panels: list[Panel]) -> pd.DataFrame:
    """Per panel, damage bound and method: the least memorization among the method's edits whose
    damage is within the bound (NaN if none is), the edit that reaches it, and how many of the
    method's edits are on the panel's front."""
    rows = []
    for panel in panels:
        name = f"{panel.memorization} vs {panel.damage}"
        frame = points[points.panel == name]
        for bound in panel.budgets:
            for method, edits in frame[frame.method != "none"].groupby("method", sort=False):
                within = edits[edits.damage_value <= bound].sort_values(["memorization_pct", "damage_value"])
                best = within.iloc[0] if len(within) else None
                rows.append({"panel": name, "damage_bound": bound, "method": method,
                             "min_memorization_pct": best.memorization_pct if best is not None else np.nan,
                             "layer_set": best.layer_set if best is not None else "",
                             "setting": best.setting if best is not None else "",
                             "damage_value": best.damage_value if best is not None else np.nan,
                             "edits": len(edits), "edits_within": len(within), "edits_on_front": int(edits.on_front.sum())})
    return pd.DataFrame(rows, columns=["panel", "damage_bound", "method", "min_memorization_pct", "layer_set", "setting",
                                       "damage_value", "edits", "edits_within", "edits_on_front"])
