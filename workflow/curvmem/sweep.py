"""The sweep of edits, both arms: the result files of the edit jobs, and one table of them.

Every edit job writes `{"edits": [row, ...]}`, one row per cutoff (the baseline job one row with
method "none"); a row holds `method`, `layer_set`, `cutoff`, `modules`, `kept_fraction` and the
arm's metrics.
"""
from __future__ import annotations

import pandas as pd

from . import io

METHOD_ORDER = {"none": 0, "kfac": 1, "svd": 2}
ROW_KEYS = ("method", "layer_set", "cutoff", "modules", "kept_fraction")


def save_edit_rows(rows: list[dict], path) -> None:
    io.save_json({"edits": rows}, path)


def load_edit_rows(paths) -> list[dict]:
    """Every row of the given edit result files, each file checked for the row keys."""
    rows = []
    for path in paths:
        data = io.load_json(path)
        edits = data.get("edits") if isinstance(data, dict) else None
        if not isinstance(edits, list) or not edits or not all(isinstance(r, dict) for r in edits):
            raise io.artifact_error(path, "holds no list of edit results under 'edits'")
        for row in edits:
            missing = [k for k in ROW_KEYS if k not in row]
            if missing:
                raise io.artifact_error(path, f"an edit result lacks {missing}")
        rows += edits
    return rows


def sweep_frame(rows: list[dict]) -> pd.DataFrame:
    """One row per edit, baseline first, then K-FAC and SVD by layer set and cutoff."""
    frame = pd.DataFrame(rows)
    assert (frame.method == "none").sum() == 1, "the sweep needs exactly one unedited baseline"
    frame.loc[frame.method == "none", ["layer_set", "cutoff"]] = ["", float("nan")]
    return frame.sort_values(["method", "layer_set", "cutoff"],
                             key=lambda c: c.map(METHOD_ORDER) if c.name == "method" else c, ignore_index=True)


def method_curve(sweep: pd.DataFrame, method: str, layer_set: str, columns: dict[str, str],
                 x: str) -> pd.DataFrame:
    """One method's metrics against its cutoff for one layer set (the data of a DVC plot):
    columns `x` and the renamed metric columns, sorted by cutoff."""
    rows = sweep[(sweep.method == method) & (sweep.layer_set == layer_set)].sort_values("cutoff")
    return pd.concat([rows.cutoff.rename(x), rows[list(columns)].rename(columns=columns)], axis=1)
