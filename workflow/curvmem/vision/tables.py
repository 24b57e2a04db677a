"""Collect every edit's metrics into the sweep table and the paper's Table 2."""
from __future__ import annotations

import argparse
import json
import logging

import pandas as pd

from .. import io
from ..common import setup_logging
from ..paper import TABLE2_SETTING, TABLE2_VIT

log = logging.getLogger(__name__)

METRICS = ["memorized_train_pct", "train_gt_acc_pct", "val_acc_pct"]
SWEEP_COLUMNS = ["method", "layer_set", "cutoff", "kept_fraction", *METRICS, "other_class_pct", "clean_train_acc_pct"]


def sweep_table(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)[SWEEP_COLUMNS]
    frame.loc[frame.method == "none", ["layer_set", "cutoff"]] = ["", float("nan")]
    order = {"none": 0, "kfac": 1, "svd": 2}
    return frame.sort_values(["method", "layer_set", "cutoff"], key=lambda c: c.map(order) if c.name == "method" else c,
                             ignore_index=True)


def table2(sweep: pd.DataFrame, headline: dict) -> pd.DataFrame:
    """Rows baseline, svd, kfac at the headline setting, with the paper's numbers beside ours."""
    pick = {
        "baseline": sweep.method == "none",
        "svd": (sweep.method == "svd") & (sweep.layer_set == headline["layer_set"])
        & (sweep.cutoff == headline["svd_drop_fraction"]),
        "kfac": (sweep.method == "kfac") & (sweep.layer_set == headline["layer_set"]) & (sweep.cutoff == headline["rho"]),
    }
    settings = {"baseline": "unedited",
                "svd": f"{headline['layer_set']}, drop {headline['svd_drop_fraction']:g} of singular values",
                "kfac": f"{headline['layer_set']}, rho {headline['rho']:g}"}
    rows = []
    for name in ("baseline", "svd", "kfac"):
        match = sweep[pick[name]]
        assert len(match) == 1, f"Table 2 row {name}: expected one sweep row, found {len(match)}"
        row = {"model": name, "setting": settings[name], **match.iloc[0][METRICS].to_dict()}
        row.update({f"paper_{k}": v for k, v in TABLE2_VIT[name].items()}, paper_setting=TABLE2_SETTING[name])
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description="Vision tables: the full sweep and Table 2.")
    p.add_argument("--edits", nargs="+", required=True)
    p.add_argument("--activation", required=True)
    p.add_argument("--headline", required=True)
    p.add_argument("--table2", required=True)
    p.add_argument("--sweep", required=True)
    p.add_argument("--activation-out", required=True)
    args = p.parse_args(argv)
    setup_logging()
    sweep = sweep_table([io.load_json(path) for path in args.edits])
    t2 = table2(sweep, json.loads(args.headline))
    io.save_csv(sweep, args.sweep)
    io.save_csv(t2, args.table2)
    io.save_csv(io.load_parquet(args.activation), args.activation_out)
    log.info("Table 2 (ours beside the paper's):\n%s", t2.round(1).to_string(index=False))


if __name__ == "__main__":
    main()
