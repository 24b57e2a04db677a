"""The study's jobs that span both arms: the headline metrics file DVC reads, the cost of each
method, and the figures.

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
                                   for m in ("kfac", "svd", "bsn")}
    io.save_json(out, metrics)


@dataclass
class CostParams:
    benchmarks: dict = field(default_factory=dict)   # rule -> its benchmark file (whole jobs a method needs)
    vit_headline: dict = field(default_factory=dict)  # vit.headline: the ViT's headline settings


def _benchmark(path: str | None) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of a job from Snakemake's benchmark file; NaN if the job did not
    run here (its artifact was pulled with DVC, or the file is gone)."""
    import pandas as pd

    if not path or not Path(path).exists():
        return math.nan, math.nan
    frame = pd.read_csv(path, sep="\t")
    return float(frame["s"].iloc[-1]), float(frame["max_rss"].iloc[-1])


def _nanmax(values) -> float:
    known = [v for v in values if not math.isnan(v)]
    return max(known) if known else math.nan


def _headline_settings(arm: str, params: CostParams, lm_selection: dict | None) -> dict[str, tuple[str, str]]:
    """method -> (layer set, setting) of the arm's headline edits."""
    from .artifacts import bsn_setting_token, cutoff_token

    if arm == "lm":
        return {m: (c["layer_set"], c["setting"]) for m, c in (lm_selection or {}).items()}
    h = params.vit_headline
    return {"kfac": (h["layer_set"], cutoff_token(h["rho"])),
            "svd": (h["layer_set"], cutoff_token(h["svd_drop_fraction"])),
            "bsn": (h["bsn"]["layer_set"], bsn_setting_token(h["bsn"]))}


def cost_table(params: CostParams, records: list[dict], lm_selection: dict | None):
    """What each method needs beyond the trained model, for its headline edit and for its whole sweep
    (evaluation never counted):
    - K-FAC: the factor collection and eigendecomposition jobs (shared by every K-FAC edit), then per
      layer set the basis change and pair order, and per cutoff the edit;
    - SVD: per layer set the SVDs, per cutoff the edit;
    - BalancedSubnet: the mask training of each grid point.
    Peak memory is that of the jobs involved up to the end of the method's own work."""
    import pandas as pd

    rows = []
    for arm in sorted({r["arm"] for r in records}, key=("vit", "lm").index):
        head = _headline_settings(arm, params, lm_selection)
        (factor_s, factor_mb), (basis_s, basis_mb) = (_benchmark(params.benchmarks.get(f"{arm}_{rule}"))
                                                      for rule in ("factors", "basis"))
        for method in ("kfac", "svd", "bsn"):
            mine = [r for r in records if r["arm"] == arm and r["method"] == method]
            if not mine:
                continue
            shared_s, shared_mb = (0.0, math.nan)  # K-FAC alone needs the factor and eigendecomposition jobs
            if method == "kfac":
                shared_s, shared_mb = factor_s + basis_s, _nanmax([factor_mb, basis_mb])
            one = {}  # (layer set, setting) -> seconds of making that one edited model
            for r in mine:
                if method == "bsn":
                    one[(r["layer_set"], r["setting"])] = r["train_seconds"]
                else:
                    for token, apply_s in r["apply_seconds"].items():
                        one[(r["layer_set"], token)] = r.get("decompose_seconds", math.nan) + apply_s
            if method == "bsn":
                sweep_s = sum(one.values())
            else:  # each layer set is decomposed once for all its cutoffs
                sweep_s = sum(r.get("decompose_seconds", math.nan) + sum(r["apply_seconds"].values()) for r in mine)
            peak_mb = _nanmax([shared_mb, *(r.get("peak_rss_mb", math.nan) for r in mine)])
            what = {"kfac": f"factors {factor_s:.1f} s + eigendecompositions {basis_s:.1f} s + basis change, "
                            f"pair order and edit", "svd": "SVDs and edit", "bsn": "mask training"}[method]
            key = head.get(method)
            headline_mb = _nanmax([shared_mb, *(r.get("peak_rss_mb", math.nan) for r in mine
                                                if key and r["layer_set"] == key[0])])
            rows.append({"arm": arm, "method": method, "scope": "headline edit", "settings": 1,
                         "seconds": shared_s + one.get(key, math.nan), "peak_rss_mb": headline_mb, "what": what,
                         "headline": "/".join(key) if key else ""})
            rows.append({"arm": arm, "method": method, "scope": "whole sweep", "settings": len(one),
                         "seconds": shared_s + sweep_s, "peak_rss_mb": peak_mb, "what": what, "headline": ""})
    return pd.DataFrame(rows, columns=["arm", "method", "scope", "settings", "seconds", "peak_rss_mb", "what",
                                       "headline"])


def cost(params: CostParams, *, table: str, records: list[str], after: list[str],
         lm_selection: str | None = None) -> None:
    """Rule cost: wall time and peak memory of what each method needs beyond the trained model (the
    jobs' benchmark files and the timings the edit and BSN jobs record; `after`: results it waits for)."""
    loaded = [io.load_json(path) for path in records]  # each names its arm, method and layer set
    frame = cost_table(params, loaded, io.load_json(lm_selection) if lm_selection else None)
    io.save_csv(frame, table)
    log.info("cost:\n%s", frame.round(2).to_string(index=False))


@dataclass
class FigureParams:
    vit_headline: dict = field(default_factory=dict)  # vit.headline (the Table 2 setting)


def figures(params: FigureParams, *, study: list[str], stamp: str, figures: str, vit_table2: str | None = None,
            vit_sweep: str | None = None, vit_activation: str | None = None, vit_spectra: str | None = None,
            vit_train_metrics: str | None = None, vit_weight_decay: str | None = None, vit_frontier: str | None = None,
            vit_stability_overlap: str | None = None, vit_stability_edits: str | None = None,
            lm_table1: str | None = None, lm_frontier: str | None = None, lm_stability_overlap: str | None = None,
            lm_stability_edits: str | None = None,
            lm_sweep: str | None = None, lm_tasks: str | None = None, lm_facts: str | None = None, lm_activation: str | None = None,
            lm_selection: str | None = None, lm_train_metrics: str | None = None, lm_table6: str | None = None,
            lm_bands: str | None = None, lm_band_correlation: str | None = None, cost: str | None = None,
            lm_benchmarks: str | None = None, threads: int = 1) -> None:
    """Rule figures: every figure of the configured arms into one folder (each arm draws its own,
    in a process of its own when the job has the threads)."""
    out = Path(figures)
    out.mkdir(parents=True, exist_ok=True)
    log.info("the study: %d artifacts", len(study))
    drawings = []  # (function, keyword arguments): each draws some figures into `out`
    if vit_table2:
        drawings.append((_vit_figures, dict(out=out, headline=params.vit_headline, table2=vit_table2, sweep=vit_sweep,
                                            activation=vit_activation, spectra=vit_spectra,
                                            train_metrics=vit_train_metrics, weight_decay=vit_weight_decay,
                                            frontier=vit_frontier, stability_overlap=vit_stability_overlap,
                                            stability_edits=vit_stability_edits)))
    if lm_table1:
        drawings.append((_lm_figures, dict(out=out, table1=lm_table1, sweep=lm_sweep, tasks=lm_tasks, facts=lm_facts,
                                           activation=lm_activation, selection=lm_selection, table6=lm_table6,
                                           bands=lm_bands, band_correlation=lm_band_correlation,
                                           frontier=lm_frontier, train_metrics=lm_train_metrics,
                                           benchmarks=lm_benchmarks, stability_overlap=lm_stability_overlap,
                                           stability_edits=lm_stability_edits)))
    if cost:
        drawings.append((_cost_figure, dict(out=out, cost=cost)))
    _in_processes(drawings, threads)


def _in_processes(calls: list[tuple], processes: int) -> None:
    """Each call in a forked process of its own, at most `processes` at a time (matplotlib is not
    thread-safe, and every call writes files of its own); in this process where there is one."""
    if processes < 2 or len(calls) < 2:
        for fn, kwargs in calls:
            fn(**kwargs)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(min(processes, len(calls)), mp_context=multiprocessing.get_context("fork")) as pool:
        for future in [pool.submit(fn, **kwargs) for fn, kwargs in calls]:
            future.result()  # a failed drawing fails the job with its own exception


def _csv(path: str):
    import pandas as pd

    return pd.read_csv(path, keep_default_na=False, na_values=[""])  # "none" is a method, not a missing value


def _vit_figures(out: Path, headline: dict, table2: str, sweep: str, activation: str, spectra: str,
                 train_metrics: str, weight_decay: str, frontier: str, stability_overlap: str | None = None,
                 stability_edits: str | None = None) -> None:
    import pandas as pd

    from .common import from_dict
    from .plotting import theme
    from .vision import figures as vit_figures
    from .vision.tables import Headline

    theme()
    vit_figures.draw(out, table2=pd.read_csv(table2), sweep=pd.read_csv(sweep), activation=pd.read_csv(activation),
                     spectra=io.load_parquet(spectra), history=io.load_json(train_metrics)["history"],
                     headline=from_dict(Headline, headline, "vit.headline"), weight_decay=pd.read_csv(weight_decay),
                     frontier=_csv(frontier),
                     stability_overlap=pd.read_csv(stability_overlap) if stability_overlap else None,
                     stability_edits=_csv(stability_edits) if stability_edits else None)


def _lm_figures(out: Path, table1: str, sweep: str, tasks: str, facts: str, activation: str, selection: str,
                table6: str, bands: str, band_correlation: str, frontier: str, train_metrics: str | None,
                benchmarks: str | None, stability_overlap: str | None = None, stability_edits: str | None = None) -> None:
    import pandas as pd

    from .lm import figures as lm_figures
    from .plotting import theme

    theme()
    lm_figures.draw(out, table1=pd.read_csv(table1), sweep=_csv(sweep), tasks=pd.read_csv(tasks),
                    facts=pd.read_csv(facts), activation=pd.read_csv(activation), selection=io.load_json(selection),
                    table6=pd.read_csv(table6), bands=pd.read_csv(bands), band_correlation=pd.read_csv(band_correlation),
                    frontier=_csv(frontier), history=io.load_json(train_metrics)["history"] if train_metrics else None,
                    benchmarks=pd.read_csv(benchmarks) if benchmarks else None,
                    stability_overlap=pd.read_csv(stability_overlap) if stability_overlap else None,
                    stability_edits=_csv(stability_edits) if stability_edits else None)


def _cost_figure(out: Path, cost: str) -> None:
    import pandas as pd

    from .plotting import cost_figure, theme

    theme()
    cost_figure(pd.read_csv(cost), out)
