"""LM tables: the full sweep, the headline choice on the memorized TRAIN split, the paper's Table 1,
retention per task family, fact accuracy by frequency, and Fig. 4's band profiles against retention;
percentages carry 95% intervals (`curvmem.intervals`).

Perplexity is measured the paper's way throughout: the mean over batches of exp(batch loss)
(`perplexity_batch_mean`); `perplexity_increase_pct` is relative to the unedited model on that
measure, and the selection bound applies to it (exp of the mean token loss is kept beside it).

Selection rule (per method: K-FAC, SVD, BalancedSubnet): among the edits whose perplexity increase is at most
max_perplexity_increase, the lowest strict recitation on memorized_train; ties go to the lower
perplexity. If no edit stays within the bound, the one with the smallest perplexity increase is taken
and the selection says so. Validation windows and quotes are never looked at.

`stage` is rule lm_tables (here, not in `stages`, so that the job never imports torch).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import pandas as pd

from .. import io
from ..frontier import Panel, budget_table, frontier_layer_sets, frontier_points
from ..intervals import differences, ratio, wilson, with_intervals
from ..paper import RETENTION_LM, TABLE1_LM, TABLE1_SETTING, TABLE6_LM, TABLE7_LM
from ..sweep import bsn_description, cutoff_steps, fisher_comparison, load_edit_rows, method_curve, sweep_frame
from . import SETS

log = logging.getLogger(__name__)

METHODS = ("kfac", "svd", "bsn")  # the edit methods, each with a headline edit
RECITATION = ("strict_pct", "loose_pct", "levenshtein")
PLOT_COLUMNS = {"memorized_train_strict_pct": "memorized_train_strict_pct",
                "memorized_val_strict_pct": "memorized_val_strict_pct", "quotes_strict_pct": "quotes_strict_pct",
                "perplexity_increase_pct": "perplexity_increase_pct"}


@dataclass
class SelectionConfig:
    max_perplexity_increase: float = 0.25   # bound on the perplexity increase of the headline edits (paper: +20%)


def flat_metrics(r: dict) -> dict:
    """An evaluation's metrics (LMEvaluation, with nDCG@10) as flat columns: `{set}_{metric}`, `task_{family}`."""
    row = {k: r[k] for k in ("perplexity", "perplexity_batch_mean", "ndcg10")}
    for s in SETS:
        row.update({f"{s}_{m}": r[s][m] for m in RECITATION})
        row[f"{s}_n"] = r[s]["n"]
    for family, res in r["tasks"].items():
        if family == "facts_by_bucket":
            row.update({f"facts_bucket_{b}": v for b, v in res.items()})
        else:
            row[f"task_{family}"] = res["accuracy_pct"]
            row[f"task_{family}_n"] = res["n"]
    return row


def sweep_table(rows: list[dict]) -> pd.DataFrame:
    """One row per edit with flat metric columns (`{set}_{metric}`, `task_{family}`)."""
    flat = []
    for r in rows:
        row = {k: r[k] for k in ("method", "layer_set", "cutoff", "setting", "kept_fraction")}
        if "bsn" in r:  # a BalancedSubnet grid point: its hyper-parameters besides the ratio (the cutoff)
            row.update({f"bsn_{k}": r["bsn"][k] for k in ("loss_weight", "epochs", "lr")})
        flat.append({**row, **flat_metrics(r)})
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
            row.update({f"{s}_{m}": r[f"{s}_{m}"] for m in RECITATION}, **{f"{s}_n": r[f"{s}_n"]})
        row.update(perplexity_batch_mean=r.perplexity_batch_mean, perplexity_increase_pct=r.perplexity_increase_pct,
                   perplexity=r.perplexity, ndcg10=r.ndcg10, memorized_train_strict_pct=r.memorized_train_strict_pct,
                   memorized_train_n=r.memorized_train_n)
        row.update({f"paper_{k}": v for k, v in TABLE1_LM[name].items()}, paper_setting=TABLE1_SETTING[name])
        rows.append(row)
    return with_intervals(pd.DataFrame(rows), {f"{s}_{m}": f"{s}_n" for s in ("memorized_val", "quotes")
                                               for m in ("strict_pct", "loose_pct")}
                          | {"memorized_train_strict_pct": "memorized_train_n"})


def task_families(sweep: pd.DataFrame) -> list[str]:
    """The task families of a sweep table (its `task_<family>_n` columns), in column order."""
    return [c.removeprefix("task_").removesuffix("_n") for c in sweep.columns
            if c.startswith("task_") and c.endswith("_n")]


def counted_metrics(sweep: pd.DataFrame, selection_set: bool = False) -> dict[str, str]:
    """Metric -> item-count column of every percentage with an interval: strict recitation of the
    reporting sets (and of the selection set, if asked) and every task family's accuracy."""
    sets = ("memorized_train", "memorized_val", "quotes") if selection_set else ("memorized_val", "quotes")
    return {**{f"{s}_strict_pct": f"{s}_n" for s in sets}, **{f"task_{f}": f"task_{f}_n" for f in task_families(sweep)}}


def headline_differences(sweep: pd.DataFrame, choices: dict) -> pd.DataFrame:
    """K-FAC against SVD and against BalancedSubnet at the headline: strict recitation of the
    reporting sets and accuracy of every task family, each difference with its interval."""
    models = {name: pick(sweep, choices.get(name)) for name in ("baseline", *METHODS)}
    return differences(models, [("kfac", "svd"), ("kfac", "bsn")], counted_metrics(sweep))


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
        n, base_pct = res["n"], res["accuracy_pct"]
        row = {"family": family, "n": n, "chance_pct": res["chance_pct"], "baseline_pct": base_pct,
               **dict(zip(("baseline_ci_low", "baseline_ci_high"), wilson(base_pct, n))), "above_chance": ok}
        for name in METHODS:
            acc = edits[name]["tasks"][family]["accuracy_pct"]
            row[f"{name}_pct"] = acc
            row.update(zip((f"{name}_ci_low", f"{name}_ci_high"), wilson(acc, n)))
            kept = ratio(acc, n, base_pct, n) if ok else (float("nan"),) * 3
            row.update(zip((f"{name}_retention_pct", f"{name}_retention_ci_low", f"{name}_retention_ci_high"), kept))
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


BAND_COLUMNS = {"top 10%": "top10_ratio", "10-25%": "band_10_25_ratio", "25-50%": "band_25_50_ratio",
                "bottom 50%": "bottom50_ratio"}


def band_retention(sweep: pd.DataFrame, profile: pd.DataFrame, tasks: pd.DataFrame, choices: dict) -> pd.DataFrame:
    """Paper Fig. 4's points: for every K-FAC edit and every group (memorized set, task family), the
    group's band profile in the edited layer set (activation relative to clean text, mean over its
    modules) and how much of the group the edit keeps (strict recitation or accuracy, % of the
    unedited model's; empty for a family at chance or a set the unedited model does not recite)."""
    base = sweep[sweep.method == "none"].iloc[0]
    usable = dict(zip("task_" + tasks.family, tasks.above_chance))
    bands = (profile[profile.basis == "kfac"].groupby(["layer_set", "group", "band"]).ratio.mean()
             .unstack("band").rename(columns=BAND_COLUMNS).reset_index())
    headline = choices.get("kfac") or {}
    rows = []
    for _, r in sweep[sweep.method == "kfac"].iterrows():
        for _, b in bands[bands.layer_set == r.layer_set].iterrows():
            column = f"{b.group}_strict_pct" if b.group in ("memorized_val", "quotes") else b.group
            ok = usable.get(b.group, True) and base[column] > 0
            rows.append({"layer_set": r.layer_set, "cutoff": r.cutoff, "group": b.group,
                         **{c: b[c] for c in BAND_COLUMNS.values()},
                         "retained_pct": 100 * r[column] / base[column] if ok else math.nan,
                         "headline": (r.layer_set, r.setting) == (headline.get("layer_set"), headline.get("setting"))})
    return pd.DataFrame(rows, columns=["layer_set", "cutoff", "group", *BAND_COLUMNS.values(), "retained_pct",
                                       "headline"])


def band_correlation(points: pd.DataFrame) -> pd.DataFrame:
    """Does a group's band profile predict what the edit keeps of it? Pearson and Spearman
    correlation of the top-10% and bottom-50% ratios with the retained %, over every K-FAC edit's
    points and over the headline edit's groups alone."""
    from scipy.stats import pearsonr, spearmanr

    rows = []
    for scope, part in (("every K-FAC edit", points), ("headline K-FAC edit", points[points.headline])):
        part = part.dropna(subset=["retained_pct"])
        for band in ("top10_ratio", "bottom50_ratio"):
            x, y = part[band].to_numpy(), part.retained_pct.to_numpy()
            defined = len(part) >= 3 and x.std() > 0 and y.std() > 0
            rho = spearmanr(x, y) if defined else None
            rows.append({"scope": scope, "band": band, "points": len(part),
                         "pearson_r": float(pearsonr(x, y).statistic) if defined else math.nan,
                         "spearman_rho": float(rho.statistic) if defined else math.nan,
                         "spearman_p": float(rho.pvalue) if defined else math.nan})
    return pd.DataFrame(rows)


FAMILY_ORDER = ("logic", "openbook", "facts", "arithmetic")  # Fig. 3's order: least to most damaged in the paper


def benchmark_table(scores: dict[str, dict], choices: dict[str, dict | None], families: dict[str, str]) -> pd.DataFrame:
    """One row per harness task: the unedited model's score, each headline edit's, retention
    (edited / unedited, %), the paper's K-FAC range for the task's family, and the task's exact
    harness spec. `scores[model][task]` as lm/harness.evaluate returns it."""
    rows = []
    for task in sorted(families, key=lambda t: (FAMILY_ORDER.index(families[t]) if families[t] in FAMILY_ORDER
                                                else len(FAMILY_ORDER), t)):
        base = scores["baseline"][task]
        row = {"task": task, "family": families[task], "metric": base["metric"], "n": base["n"],
               "baseline": base["value"], "baseline_stderr": base["stderr"]}
        for m in METHODS:
            value = scores[m][task]["value"]
            row.update({m: value, f"{m}_stderr": scores[m][task]["stderr"],
                        f"{m}_retention_pct": 100 * value / base["value"] if base["value"] > 0 else float("nan"),
                        f"{m}_setting": (choices.get(m) or {}).get("setting", "")})
        lo, hi = RETENTION_LM.get(families[task], (float("nan"), float("nan")))
        row.update(paper_kfac_retention_low=lo, paper_kfac_retention_high=hi, spec=base["spec"])
        rows.append(row)
    return pd.DataFrame(rows)


# The frontier of bases: windows still recited strictly (validation, quotes) against the perplexity
# increase (%) and the loss of mean task retention (100 - mean retention, %).
FRONTIER_PANELS = [Panel(memorized, damage, budgets=(10.0, 25.0, 50.0))
                   for damage in ("perplexity_increase_pct", "task_retention_loss_pct")
                   for memorized in ("memorized_val_strict_pct", "quotes_strict_pct")]


def mean_retention_pct(sweep: pd.DataFrame) -> pd.Series:
    """Each edit's mean over task families of accuracy relative to the unedited model's, in %
    (families the unedited model gets nothing right on have no retention and are left out)."""
    base = sweep[sweep.method == "none"].iloc[0]
    families = [f for f in task_families(sweep) if base[f"task_{f}"] > 0]
    if not families:
        return pd.Series(math.nan, index=sweep.index)
    return pd.concat([100 * sweep[f"task_{f}"] / base[f"task_{f}"] for f in families], axis=1).mean(axis=1)


def frontier_tables(sweep: pd.DataFrame, choices: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(points, budgets) of the frontier of bases (`curvmem.frontier`) on the frontier's layer sets
    (without any, the headline K-FAC edit's)."""
    frame = sweep.assign(task_retention_loss_pct=100 - mean_retention_pct(sweep))
    points = frontier_points(frame, frontier_layer_sets(frame, choices["kfac"]["layer_set"]), FRONTIER_PANELS)
    return points, budget_table(points, FRONTIER_PANELS)


# the rule's files are named like these functions
make_table1, make_table7, correlate_bands = table1, table7, band_correlation


def stage(params: SelectionConfig, *, baseline: str, edits: list[str], bsn: list[str], ratio: str, table1: str,
           sweep: str, tasks: str, facts: str, activation: str, selection: str, kfac_plot: str, svd_plot: str,
           table7: str, differences: str, profile: str, bands: str, band_correlation: str, rho_steps: str,
           frontier: str, budgets: str, fisher: str) -> None:
    """Rule lm_tables: the sweep, the headline choice of each method on memorized_train, Tables 1
    and 7, tasks, facts, the headline comparisons with their intervals, the K-FAC sweep's steps
    between consecutive rhos, the frontier of bases, and the edits of the two Fisher types side by side."""
    rows = load_edit_rows([baseline, *edits, *bsn])
    frame = sweep_table(rows)
    choices = {m: select(frame, m, params.max_perplexity_increase) for m in METHODS}
    by_key = {(r["method"], r["layer_set"], r["setting"]): r for r in rows}
    chosen = {"baseline": rows[0], **{m: by_key[(m, c["layer_set"], c["setting"])] for m, c in choices.items()}}
    t1 = make_table1(frame, choices)
    io.save_csv(frame, sweep)
    io.save_json(choices, selection)
    io.save_csv(t1, table1)
    io.save_csv(make_table7(frame, choices), table7)
    io.save_csv(headline_differences(frame, choices), differences)
    io.save_csv(cutoff_steps(frame, "kfac", counted_metrics(frame, selection_set=True)), rho_steps)
    points, budget = frontier_tables(frame, choices)
    io.save_csv(points, frontier)
    io.save_csv(budget, budgets)
    io.save_csv(fisher_comparison(frame.assign(task_retention_pct=mean_retention_pct(frame)),
                                  counted_metrics(frame, selection_set=True),
                                  ("perplexity_increase_pct", "task_retention_pct")), fisher)
    task_frame = task_table(chosen)
    io.save_csv(task_frame, tasks)
    points = band_retention(frame, io.load_parquet(profile), task_frame, choices)
    io.save_csv(points, bands)
    io.save_csv(correlate_bands(points), band_correlation)
    io.save_csv(fact_table(chosen), facts)
    io.save_csv(io.load_parquet(ratio), activation)
    for method, path, x in (("kfac", kfac_plot, "rho"), ("svd", svd_plot, "drop_fraction")):
        io.save_csv(method_curve(frame, method, choices[method]["layer_set"], PLOT_COLUMNS, x), path)
    log.info("selection: %s", choices)
    log.info("Table 1 (ours beside the paper's):\n%s", t1.round(2).to_string(index=False))
