"""Vision tables: every edit of the sweep, and the paper's Table 2 at the headline setting; `stage` is
rule vit_tables (here, not in `stages`, so that the job never imports torch: seconds of every rebuild)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd

from .. import io
from ..artifacts import bsn_setting_token
from ..frontier import Panel, budget_table, frontier_layer_sets, frontier_points
from ..intervals import differences, with_intervals
from ..paper import TABLE2_SETTING, TABLE2_VIT
from ..sweep import bsn_description, cutoff_steps, fisher_comparison, load_edit_rows, method_curve, sweep_frame

log = logging.getLogger(__name__)

METRICS = ["memorized_train_pct", "train_gt_acc_pct", "val_acc_pct"]
SWEEP_COLUMNS = ["method", "layer_set", "cutoff", "setting", "kept_fraction", *METRICS, "other_class_pct",
                 "clean_train_acc_pct", "n_mislabeled", "n_val", "bsn_loss_weight", "bsn_epochs", "bsn_lr"]
COUNTS = {"memorized_train_pct": "n_mislabeled", "train_gt_acc_pct": "n_mislabeled", "val_acc_pct": "n_val"}
PLOT_COLUMNS = {"memorized_train_pct": "memorized_pct", "train_gt_acc_pct": "gt_recovery_pct",
                "val_acc_pct": "val_acc_pct"}


@dataclass
class Headline:
    """The setting reported in Table 2."""

    layer_set: str = "first_last"
    rho: float = 0.75
    svd_drop_fraction: float = 0.5
    bsn: dict = field(default_factory=dict)   # a point of vit.bsn: layer_set, ratio, loss_weight, epochs, lr


def sweep_table(rows: list[dict]) -> pd.DataFrame:
    """One row per edit with the vision metrics (BalancedSubnet rows with their hyper-parameters)."""
    flat = [{**r, **({f"bsn_{k}": r["bsn"][k] for k in ("loss_weight", "epochs", "lr")} if "bsn" in r else {})}
            for r in rows]
    return sweep_frame(flat).reindex(columns=SWEEP_COLUMNS)


def table2(sweep: pd.DataFrame, headline: Headline) -> pd.DataFrame:
    """Rows baseline, svd, kfac at the headline setting, with the paper's numbers beside ours, and
    our BalancedSubnet row (the paper has none for the ViT)."""
    b = headline.bsn
    pick = {
        "baseline": sweep.method == "none",
        "svd": (sweep.method == "svd") & (sweep.layer_set == headline.layer_set)
        & (sweep.cutoff == headline.svd_drop_fraction),
        "kfac": (sweep.method == "kfac") & (sweep.layer_set == headline.layer_set) & (sweep.cutoff == headline.rho),
        "bsn (ours)": (sweep.method == "bsn") & (sweep.layer_set == b.get("layer_set"))
        & (sweep.setting == (bsn_setting_token(b) if b else "")),
    }
    settings = {"baseline": "unedited",
                "svd": f"{headline.layer_set}, drop {headline.svd_drop_fraction:g} of singular values",
                "kfac": f"{headline.layer_set}, rho {headline.rho:g}",
                "bsn (ours)": bsn_description(b["layer_set"], b["ratio"], b["loss_weight"], b["epochs"], b["lr"])
                if b else ""}
    rows = []
    for name in ("baseline", "svd", "kfac", "bsn (ours)"):
        match = sweep[pick[name]]
        assert len(match) == 1, f"Table 2 row {name}: expected one sweep row, found {len(match)}"
        row = {"model": name, "setting": settings[name], **match.iloc[0][[*METRICS, "n_mislabeled", "n_val"]]}
        paper = TABLE2_VIT.get(name, {})
        row.update({f"paper_{k}": paper.get(k, float("nan")) for k in METRICS},
                   paper_setting=TABLE2_SETTING.get(name, "the paper has no ViT BalancedSubnet"))
        rows.append(row)
    return with_intervals(pd.DataFrame(rows), COUNTS)


def table2_differences(table2: pd.DataFrame) -> pd.DataFrame:
    """K-FAC against SVD and against BalancedSubnet at the headline, on each Table 2 metric."""
    models = {r.model: r for _, r in table2.iterrows()}
    return differences(models, [("kfac", "svd"), ("kfac", "bsn (ours)")], COUNTS)


def weight_decay_table(members: list[dict], headline: Headline) -> pd.DataFrame:
    """The weight-decay family (paper App. H): per member and model (unedited, the headline K-FAC edit)
    the Table 2 metrics with their intervals, and the member's band separation in the headline layers:
    the mean memorized/clean activation ratio of the top 10% and bottom 50% curvature bands, and
    bottom / top (above 1: mislabeled images lean on low-curvature directions more than clean ones)."""
    rows = []
    for member in sorted(members, key=lambda m: m["weight_decay"]):
        edited = next(r for r in member["edits"] if r["method"] == "kfac")
        ratio = pd.DataFrame(member["activation"])
        ratio = ratio[(ratio.basis == "kfac") & ratio.module.isin(edited["modules"])]
        bands = ratio.groupby("band").ratio.mean()
        for row in member["edits"]:
            unedited = row["method"] == "none"
            rows.append({"weight_decay": member["weight_decay"], "model": "baseline" if unedited else "kfac",
                         "setting": "unedited" if unedited else f"{headline.layer_set}, rho {headline.rho:g}",
                         **{k: row[k] for k in (*METRICS, "n_mislabeled", "n_val")},
                         "top10_ratio": bands["top 10%"], "bottom50_ratio": bands["bottom 50%"],
                         "band_separation": bands["bottom 50%"] / bands["top 10%"]})
    return with_intervals(pd.DataFrame(rows), COUNTS)


# The frontier of bases: mislabeled images still memorized against validation accuracy lost (points).
FRONTIER_PANELS = [Panel("memorized_train_pct", "val_acc_drop_pts", budgets=(1.0, 2.0, 5.0))]


def frontier_tables(sweep: pd.DataFrame, headline: Headline) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(points, budgets) of the frontier of bases (`curvmem.frontier`) on the frontier's layer sets."""
    base = sweep[sweep.method == "none"].iloc[0]
    frame = sweep.assign(val_acc_drop_pts=base.val_acc_pct - sweep.val_acc_pct)
    points = frontier_points(frame, frontier_layer_sets(frame, headline.layer_set), FRONTIER_PANELS)
    return points, budget_table(points, FRONTIER_PANELS)


make_table2 = table2  # the rule's output file is named table2


def stage(params: Headline, *, baseline: str, edits: list[str], bsn: list[str], ratio: str, family: list[str],
           table2: str, differences: str, sweep: str, activation: str, kfac_plot: str, svd_plot: str,
           weight_decay: str, rho_steps: str, frontier: str, budgets: str, fisher: str) -> None:
    """Rule vit_tables: the sweep, Table 2 at the headline setting with its intervals and the
    headline comparisons, the weight-decay family (App. H), the K-FAC sweep's steps between
    consecutive rhos, the frontier of bases, the edits of the two Fisher types side by side, and
    the DVC plot data."""
    frame = sweep_table(load_edit_rows([baseline, *edits, *bsn]))
    io.save_csv(weight_decay_table([io.load_json(path) for path in family], params), weight_decay)
    t2 = make_table2(frame, params)
    io.save_csv(frame, sweep)
    io.save_csv(t2, table2)
    io.save_csv(table2_differences(t2), differences)
    io.save_csv(cutoff_steps(frame, "kfac", COUNTS), rho_steps)
    points, budget = frontier_tables(frame, params)
    io.save_csv(points, frontier)
    io.save_csv(budget, budgets)
    io.save_csv(fisher_comparison(frame, COUNTS), fisher)
    io.save_csv(io.load_parquet(ratio), activation)
    io.save_csv(method_curve(frame, "kfac", params.layer_set, PLOT_COLUMNS, "rho"), kfac_plot)
    io.save_csv(method_curve(frame, "svd", params.layer_set, PLOT_COLUMNS, "drop_fraction"), svd_plot)
    log.info("Table 2 (ours beside the paper's):\n%s", t2.round(1).to_string(index=False))
