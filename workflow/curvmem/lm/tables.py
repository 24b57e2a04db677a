"""LM tables: the full sweep, the headline choice on the memorized TRAIN split, the paper's Table 1,
retention per task family, and fact accuracy by frequency.

Perplexity is measured the paper's way throughout: the mean over batches of exp(batch loss)
(`perplexity_batch_mean`); `perplexity_increase_pct` is relative to the unedited model on that
measure, and the selection bound applies to it (exp of the mean token loss is kept beside it).

Selection rule (per method: K-FAC, SVD, BalancedSubnet): among the edits whose perplexity increase is at most
max_perplexity_increase, the lowest strict recitation on memorized_train; ties go to the lower
perplexity. If no edit stays within the bound, the one with the smallest perplexity increase is taken
and the selection says so. Validation windows and quotes are never looked at.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from ..paper import RETENTION_LM, TABLE1_LM, TABLE1_SETTING, TABLE6_LM, TABLE7_LM
from ..sweep import bsn_description, sweep_frame
from . import SETS

METHODS = ("kfac", "svd", "bsn")  # the edit methods, each with a headline edit
RECITATION = ("strict_pct", "loose_pct", "levenshtein")
PLOT_COLUMNS = {"memorized_train_strict_pct": "memorized_train_strict_pct",
                "memorized_val_strict_pct": "memorized_val_strict_pct", "quotes_strict_pct": "quotes_strict_pct",
                "perplexity_increase_pct": "perplexity_increase_pct"}


@dataclass
class SelectionConfig:
    max_perplexity_increase: float = 0.25   # bound on the perplexity increase of the headline edits (paper: +20%)


def sweep_table(rows: list[dict]) -> pd.DataFrame:
    """One row per edit with flat metric columns (`{set}_{metric}`, `task_{family}`)."""
    flat = []
    for r in rows:
        row = {k: r[k] for k in ("method", "layer_set", "cutoff", "setting", "kept_fraction", "perplexity",
                                 "perplexity_batch_mean", "ndcg10")}
        if "bsn" in r:  # a BalancedSubnet grid point: its hyper-parameters besides the ratio (the cutoff)
            row.update({f"bsn_{k}": r["bsn"][k] for k in ("loss_weight", "epochs", "lr")})
        for s in SETS:
            row.update({f"{s}_{m}": r[s][m] for m in RECITATION})
            row[f"{s}_n"] = r[s]["n"]
        for family, res in r["tasks"].items():
            if family == "facts_by_bucket":
                row.update({f"facts_bucket_{b}": v for b, v in res.items()})
            else:
                row[f"task_{family}"] = res["accuracy_pct"]
        flat.append(row)
    frame = sweep_frame(flat)
    base = frame.iloc[0]  # the unedited model comes first
    frame["perplexity_increase_pct"] = 100 * (frame["perplexity_batch_mean"] / base.perplexity_batch_mean - 1)
    frame["perplexity_token_increase_pct"] = 100 * (frame["perplexity"] / base.perplexity - 1)
    return frame


def select(sweep: pd.DataFrame, method: str, max_increase: float) -> dict:
    """The headline edit of one method by the selection rule (module docstring)."""
    edits = sweep[sweep.method == method]
    assert len(edits), f"no {method} edits in the sweep"
    within = edits[edits.perplexity_increase_pct <= 100 * max_increase]
    if len(within):
        best = within.sort_values(["memorized_train_strict_pct", "perplexity_increase_pct"]).iloc[0]
        note = f"lowest memorized_train strict recitation with perplexity increase <= {100 * max_increase:g}%"
    else:
        best = edits.sort_values("perplexity_increase_pct").iloc[0]
        note = f"no edit within +{100 * max_increase:g}% perplexity; smallest perplexity increase taken"
    return {"method": method, "layer_set": best.layer_set, "cutoff": float(best.cutoff), "setting": best.setting,
            "rule": note, "candidates": int(len(edits)), "within_bound": int(len(within))}


def pick(sweep: pd.DataFrame, choice: dict | None) -> pd.Series:
    if choice is None:
        return sweep[sweep.method == "none"].iloc[0]
    match = sweep[(sweep.method == choice["method"]) & (sweep.layer_set == choice["layer_set"])
                  & (sweep.setting == choice["setting"])]
    assert len(match) == 1, f"expected one sweep row for {choice}, found {len(match)}"
    return match.iloc[0]


def describe(r: pd.Series) -> str:
    """A sweep row's setting in words."""
    if r.method == "none":
        return "unedited"
    if r.method == "kfac":
        return f"{r.layer_set}, rho {r.cutoff:g}"
    if r.method == "svd":
        return f"{r.layer_set}, drop {r.cutoff:g} of singular values"
    return bsn_description(r.layer_set, r.cutoff, r.bsn_loss_weight, int(r.bsn_epochs), r.bsn_lr)


def table1(sweep: pd.DataFrame, choices: dict) -> pd.DataFrame:
    rows = []
    for name in ("baseline", *METHODS):
        r = pick(sweep, choices.get(name))
        row = {"model": name, "setting": describe(r)}
        for s in ("memorized_val", "quotes"):
            row.update({f"{s}_{m}": r[f"{s}_{m}"] for m in RECITATION})
        row.update(perplexity_batch_mean=r.perplexity_batch_mean, perplexity_increase_pct=r.perplexity_increase_pct,
                   perplexity=r.perplexity, ndcg10=r.ndcg10, memorized_train_strict_pct=r.memorized_train_strict_pct)
        row.update({f"paper_{k}": v for k, v in TABLE1_LM[name].items()}, paper_setting=TABLE1_SETTING[name])
        rows.append(row)
    return pd.DataFrame(rows)


def table7(sweep: pd.DataFrame, choices: dict) -> pd.DataFrame:
    """Coherence of every headline model (paper Table 7): nDCG@10 and perplexity, beside the paper's."""
    rows = []
    for name in ("baseline", *METHODS):
        r = pick(sweep, choices.get(name))
        rows.append({"model": name, "setting": describe(r), "ndcg10": r.ndcg10,
                     "perplexity_batch_mean": r.perplexity_batch_mean,
                     "perplexity_increase_pct": r.perplexity_increase_pct, "perplexity_token": r.perplexity,
                     **{f"paper_{k}": v for k, v in TABLE7_LM[name].items()}})
    return pd.DataFrame(rows)


def stress_table(results: dict[str, dict], choices: dict[str, dict | None]) -> pd.DataFrame:
    """Table 6: exact-match tokens of the original and the best perturbed prompt, beside the paper's."""
    from .stress import SUMMARY

    rows = []
    for name, result in results.items():
        paper = TABLE6_LM.get(name, {})
        rows.append({"model": name, "layer_set": (choices[name] or {}).get("layer_set", ""),
                     "setting": (choices[name] or {}).get("setting", ""), "n": result["n"],
                     "max_shift": result["max_shift"], **{k: result[k] for k in SUMMARY},
                     **{f"paper_{k}": paper.get(k, float("nan")) for k in
                        ("original_mean", "original_sd", "perturbed_mean", "perturbed_sd")}})
    return pd.DataFrame(rows)


def above_chance(accuracy_pct: float, chance_pct: float, n: int) -> bool:
    """At least 5 points and 3 binomial standard errors above chance."""
    p = chance_pct / 100
    se = 100 * math.sqrt(max(p * (1 - p), 1e-12) / n)
    return accuracy_pct >= chance_pct + max(5.0, 3 * se)


def task_table(edits: dict[str, dict]) -> pd.DataFrame:
    """Accuracy per family for the unedited model and each headline edit, and retention (edited /
    unedited) where the unedited model is above chance."""
    base = edits["baseline"]["tasks"]
    rows = []
    for family, res in base.items():
        if family == "facts_by_bucket":
            continue
        ok = above_chance(res["accuracy_pct"], res["chance_pct"], res["n"])
        row = {"family": family, "n": res["n"], "chance_pct": res["chance_pct"], "baseline_pct": res["accuracy_pct"],
               "above_chance": ok}
        for name in METHODS:
            acc = edits[name]["tasks"][family]["accuracy_pct"]
            row[f"{name}_pct"] = acc
            row[f"{name}_retention_pct"] = 100 * acc / res["accuracy_pct"] if ok else float("nan")
        lo, hi = RETENTION_LM.get(family, (float("nan"), float("nan")))
        row.update(paper_kfac_retention_low=lo, paper_kfac_retention_high=hi)
        rows.append(row)
    return pd.DataFrame(rows)


def fact_table(edits: dict[str, dict]) -> pd.DataFrame:
    buckets = edits["baseline"]["tasks"].get("facts_by_bucket", {})
    return pd.DataFrame([{"repeats": int(b), "baseline_pct": v,
                          **{f"{n}_pct": edits[n]["tasks"]["facts_by_bucket"][b] for n in METHODS},
                          **{f"{n}_change_pts": edits[n]["tasks"]["facts_by_bucket"][b] - v for n in METHODS}}
                         for b, v in sorted(buckets.items(), key=lambda item: int(item[0]))],  # by frequency
                        columns=["repeats", "baseline_pct", *(f"{n}_pct" for n in METHODS),
                                 *(f"{n}_change_pts" for n in METHODS)])
