"""The study's jobs that span both arms: the headline metrics file DVC reads, and the figures.

`results/figures` stands for the whole study: its rule reads every artifact and result of the
configured arms (`study`, plus the stamp that marks a run which found some of them missing), so
whatever is missing is rebuilt by `snakemake --cores all results/figures`.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from . import io

log = logging.getLogger(__name__)


def _clean(value):
    """JSON-safe numbers (NaN, e.g. a set the model recites none of, becomes null)."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _rows(frame, key: str, columns: list[str]) -> dict:
    return {r[key]: {c: _clean(r[c]) for c in columns} for _, r in frame.iterrows()}


def metrics(params: dict, *, metrics: str, vit_table2: str | None = None, lm_table1: str | None = None,
            lm_tasks: str | None = None) -> None:
    """Rule metrics: the headline numbers of each arm in one JSON file (`dvc metrics show / diff`)."""
    import pandas as pd

    out = {}
    if vit_table2:
        t2 = pd.read_csv(vit_table2)
        out["vit"] = _rows(t2, "model", ["memorized_train_pct", "train_gt_acc_pct", "val_acc_pct"])
    if lm_table1:
        t1 = pd.read_csv(lm_table1)
        out["lm"] = _rows(t1, "model", ["memorized_val_strict_pct", "quotes_strict_pct", "perplexity_batch_mean",
                                        "perplexity_increase_pct", "ndcg10"])
        tasks = pd.read_csv(lm_tasks)
        out["lm_retention_pct"] = {m: {r.family: _clean(r[f"{m}_retention_pct"]) for _, r in tasks.iterrows()}
                                   for m in ("kfac", "svd")}
    io.save_json(out, metrics)


@dataclass
class FigureParams:
    vit_headline: dict = field(default_factory=dict)  # vit.headline (the Table 2 setting)


def figures(params: FigureParams, *, study: list[str], stamp: str, figures: str, vit_table2: str | None = None,
            vit_sweep: str | None = None, vit_activation: str | None = None, vit_spectra: str | None = None,
            vit_train_metrics: str | None = None, lm_table1: str | None = None, lm_sweep: str | None = None,
            lm_tasks: str | None = None, lm_facts: str | None = None, lm_activation: str | None = None,
            lm_selection: str | None = None, lm_train_metrics: str | None = None) -> None:
    """Rule figures: every figure of the configured arms into one folder (each arm draws its own)."""
    import pandas as pd

    from .plotting import theme

    theme()
    out = Path(figures)
    out.mkdir(parents=True, exist_ok=True)
    log.info("the study: %d artifacts", len(study))
    if vit_table2:
        from .common import from_dict
        from .vision import figures as vit_figures
        from .vision.tables import Headline

        vit_figures.draw(out, table2=pd.read_csv(vit_table2), sweep=pd.read_csv(vit_sweep),
                         activation=pd.read_csv(vit_activation), spectra=io.load_parquet(vit_spectra),
                         history=io.load_json(vit_train_metrics)["history"],
                         headline=from_dict(Headline, params.vit_headline, "vit.headline"))
    if lm_table1:
        from .lm import figures as lm_figures

        sweep = pd.read_csv(lm_sweep, keep_default_na=False, na_values=[""])
        lm_figures.draw(out, table1=pd.read_csv(lm_table1), sweep=sweep, tasks=pd.read_csv(lm_tasks),
                        facts=pd.read_csv(lm_facts), activation=pd.read_csv(lm_activation),
                        selection=io.load_json(lm_selection),
                        history=io.load_json(lm_train_metrics)["history"] if lm_train_metrics else None)
