"""Vision tables: every edit of the sweep, and the paper's Table 2 at the headline setting."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..paper import TABLE2_SETTING, TABLE2_VIT

METRICS = ["memorized_train_pct", "train_gt_acc_pct", "val_acc_pct"]
SWEEP_COLUMNS = ["method", "layer_set", "cutoff", "kept_fraction", *METRICS, "other_class_pct", "clean_train_acc_pct"]
PLOT_COLUMNS = {"memorized_train_pct": "memorized_pct", "train_gt_acc_pct": "gt_recovery_pct",
                "val_acc_pct": "val_acc_pct"}


@dataclass
class Headline:
    """The setting reported in Table 2."""

    layer_set: str = "first_last"
    rho: float = 0.75
    svd_drop_fraction: float = 0.5


def table2(sweep: pd.DataFrame, headline: Headline) -> pd.DataFrame:
    """Rows baseline, svd, kfac at the headline setting, with the paper's numbers beside ours."""
    pick = {
        "baseline": sweep.method == "none",
        "svd": (sweep.method == "svd") & (sweep.layer_set == headline.layer_set)
        & (sweep.cutoff == headline.svd_drop_fraction),
        "kfac": (sweep.method == "kfac") & (sweep.layer_set == headline.layer_set) & (sweep.cutoff == headline.rho),
    }
    settings = {"baseline": "unedited",
                "svd": f"{headline.layer_set}, drop {headline.svd_drop_fraction:g} of singular values",
                "kfac": f"{headline.layer_set}, rho {headline.rho:g}"}
    rows = []
    for name in ("baseline", "svd", "kfac"):
        match = sweep[pick[name]]
        assert len(match) == 1, f"Table 2 row {name}: expected one sweep row, found {len(match)}"
        row = {"model": name, "setting": settings[name], **match.iloc[0][METRICS].to_dict()}
        row.update({f"paper_{k}": v for k, v in TABLE2_VIT[name].items()}, paper_setting=TABLE2_SETTING[name])
        rows.append(row)
    return pd.DataFrame(rows)
