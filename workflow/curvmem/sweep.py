"""The sweep of edits, both arms: evaluating one layer set and method at every cutoff, the result
files of the edit jobs, and one table of them.

Every edit job writes `{"edits": [row, ...]}`, one row per cutoff (the baseline job one row with
method "none", a BalancedSubnet job one row with method "bsn"); a row holds `method`, `layer_set`,
`cutoff` (rho, the dropped fraction of singular values, or BSN's zeroed ratio), `setting` (what
names the row within its method and layer set: the exact cutoff, or the BSN grid point),
`modules`, `kept_fraction` and the arm's metrics.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import io
from .artifacts import FISHER_METHODS, is_fingerprinted
from .intervals import difference, wilson

log = logging.getLogger(__name__)

METHOD_ORDER = {"none": 0, "kfac": 1, "svd": 2, "bsn": 3, "kfac_scaled": 4, "ekfac": 5, "activation": 6, "magnitude": 7,
                "random": 8, "kfac_mc": 9, "kfac_empirical": 10}
ROW_KEYS = ("method", "layer_set", "cutoff", "setting", "modules", "kept_fraction")


@dataclass
class EditSpec:
    """What one edit job edits: a layer set, with one method, at each of its cutoffs."""

    method: str = "kfac"                                  # an `edit.METHODS` key: "kfac" (cutoff = rho), "svd", ...
    layer_set: str = ""
    patterns: list = field(default_factory=list)          # the layer set's module patterns
    factor_modules: list = field(default_factory=list)    # the factor patterns: a set resolves within them
    cutoffs: list = field(default_factory=list)
    alpha: float = 0.0                                    # kfac_scaled: scale of the pairs below the cutoff
    seed: int = 0                                         # random: seeds each module's orthogonal bases


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (what the method's part of a job needed)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sweep_cutoffs(spec: EditSpec, evaluation: dict, inputs: dict[str, str | None], memo_dir, timing_dir,
                  prepare: Callable[[], tuple]) -> tuple[list[dict], dict]:
    """One row per cutoff of `spec`, in its order, and the cost of the edit itself (timings, which
    never enter a row). Rows are taken from the memo of an earlier run with the same evaluation
    parameters, inputs and code, or computed. Only if a cutoff is missing, `prepare()` loads what
    evaluating needs, once: it returns (model, evaluate, basis path or None), with `evaluate(model)`
    the arm's metrics of the model as it is. Each layer is decomposed once (`edit.ModelEditor`) for
    all the cutoffs computed.

    The cost holds `decompose_seconds` (the basis change and pair order, or the SVDs, of every
    layer), `apply_seconds` and `evaluate_seconds` per cutoff, and `peak_rss_mb` after decomposing;
    reused cutoffs bring the timings of the run that computed them, kept under the same keys in
    `timing_dir` (results stay free of timings, so a rebuild gives the same bytes)."""
    from .artifacts import cutoff_token
    from .basis import load_basis
    from .edit import BASIS_METHODS, ModelEditor
    from .kfac import linear_names
    from .layers import resolve_layer_set

    identity = {"evaluation": evaluation, "spec": {k: v for k, v in asdict(spec).items() if k != "cutoffs"}}
    memo, timings = CutoffMemo(memo_dir, identity, inputs), CutoffMemo(timing_dir, identity, inputs)
    rows = {c: memo.get(c) for c in spec.cutoffs}
    seconds = {c: timings.get(c) or {"apply_seconds": math.nan, "evaluate_seconds": math.nan} for c in spec.cutoffs}
    todo = [c for c, row in rows.items() if row is None]
    log.info("%s %s: %d cutoff(s) to evaluate, %d from earlier runs", spec.method, spec.layer_set, len(todo),
             len(rows) - len(todo))
    cost = {"method": spec.method, "layer_set": spec.layer_set, **(timings.get(None) or {})}
    if todo:
        model, evaluate, basis = prepare()
        names = resolve_layer_set(linear_names(model), spec.factor_modules, spec.patterns)
        layers = {n: m for n, m in model.named_modules() if n in names}
        t0 = time.perf_counter()
        corrections = io.load_tensors(inputs["corrections"]) if spec.method == "ekfac" else None
        editor = ModelEditor(model, names, spec.method, load_basis(basis, layers) if spec.method in BASIS_METHODS else None,
                             alpha=spec.alpha, seed=spec.seed, corrections=corrections)
        cost.update(decompose_seconds=time.perf_counter() - t0, peak_rss_mb=peak_rss_mb(), n_layers=len(names))
        timings.put(None, {k: cost[k] for k in ("decompose_seconds", "peak_rss_mb", "n_layers")})
        for cutoff in todo:
            t0 = time.perf_counter()
            with editor.applied(cutoff) as kept:
                t1 = time.perf_counter()
                metrics = evaluate(model)
            rows[cutoff] = {"method": spec.method, "layer_set": spec.layer_set, "cutoff": cutoff,
                            "setting": cutoff_token(cutoff), "modules": names,
                            "kept_fraction": float(np.mean(list(kept.values()))), **metrics}
            seconds[cutoff] = {"apply_seconds": t1 - t0, "evaluate_seconds": time.perf_counter() - t1}
            memo.put(cutoff, rows[cutoff])
            timings.put(cutoff, seconds[cutoff])
            log.info("%s %s %r evaluated in %.1fs", spec.method, spec.layer_set, cutoff, time.perf_counter() - t0)
    for key in ("apply_seconds", "evaluate_seconds"):
        cost[key] = {cutoff_token(c): seconds[c][key] for c in spec.cutoffs}
    cost["reused"] = [cutoff_token(c) for c in spec.cutoffs if c not in todo]
    return [rows[c] for c in spec.cutoffs], cost


class CutoffMemo:
    """Results of single cutoffs, kept across runs of an edit job, so that changing one cutoff of a
    sweep recomputes only that cutoff while the job still loads the model once. (The key may be any
    JSON value: the headline-model job keys its results by the chosen edit.)

    An entry's key covers everything its result depends on: the job's parameters (without its list
    of cutoffs, so another list finds the cutoffs it shares), the cutoff, every input (a
    fingerprinted artifact by its path, which names its content; any other file by its bytes) and
    the library's source code, so a changed library recomputes everything. (The timings memo, keyed
    alike, holds under cutoff None what the job measured once for all cutoffs.) Entries are written
    atomically once a cutoff is evaluated: a killed job leaves nothing half-made. They live beside
    the results (`edits/.memo/`); deleting the folder only costs time.
    """

    def __init__(self, directory, params: dict, inputs: dict[str, str | None]):
        """`params`: what the results depend on besides the inputs (never the list of cutoffs)."""
        self.directory = Path(directory)
        identity = {name: path if path is None or is_fingerprinted(path) else _file_digest(path)
                    for name, path in inputs.items()}
        self.base = {"params": params, "inputs": identity, "code": _code_digest()}

    def _path(self, cutoff) -> Path:
        blob = json.dumps({**self.base, "cutoff": cutoff}, sort_keys=True, default=str)
        return self.directory / f"{hashlib.sha256(blob.encode()).hexdigest()[:24]}.json"

    def get(self, cutoff) -> dict | None:
        path = self._path(cutoff)
        if not path.exists():
            return None
        try:
            return io.load_json(path)
        except io.ArtifactError:  # unreadable: recompute and overwrite
            return None

    def put(self, cutoff, entry: dict) -> None:
        io.save_json(entry, self._path(cutoff))


def _file_digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _code_digest() -> str:
    """The library's source: any change to it invalidates every memo entry."""
    h = hashlib.sha256()
    for source in sorted(Path(__file__).resolve().parent.rglob("*.py")):
        h.update(source.read_bytes())
    return h.hexdigest()


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
    frame.loc[frame.method == "none", ["layer_set", "cutoff", "setting"]] = ["", float("nan"), ""]
    return frame.sort_values(["method", "layer_set", "cutoff", "setting"],
                             key=lambda c: c.map(METHOD_ORDER) if c.name == "method" else c, ignore_index=True)


def method_curve(sweep: pd.DataFrame, method: str, layer_set: str, columns: dict[str, str],
                 x: str) -> pd.DataFrame:
    """One method's metrics against its cutoff for one layer set (the data of a DVC plot):
    columns `x` and the renamed metric columns, sorted by cutoff."""
    rows = sweep[(sweep.method == method) & (sweep.layer_set == layer_set)].sort_values("cutoff")
    return pd.concat([rows.cutoff.rename(x), rows[list(columns)].rename(columns=columns)], axis=1)


def whole(pct: float, n) -> float:
    """A percentage of n items as the nearest whole count of them (undoes a CSV's rounding)."""
    return 100 * round(pct * int(n) / 100) / int(n)


def cutoff_steps(sweep: pd.DataFrame, method: str, counts: dict[str, str]) -> pd.DataFrame:
    """Every step between consecutive cutoffs of `method`, per layer set and counted metric (metric ->
    its item-count column): the metric's change in points with its 95% interval (Newcombe's, as for
    the headline comparisons; `intervals.difference`), whether it is beyond the noise, and the change
    of the kept fraction (of coefficient pairs for K-FAC) over the same step. A metric that jumps
    where the kept fraction jumps changes with the pairs kept, not with the mass."""
    rows = []
    for layer_set, curve in sweep[sweep.method == method].groupby("layer_set", sort=False):
        curve = curve.sort_values("cutoff")
        for (_, a), (_, b) in zip(curve.iterrows(), curve.iloc[1:].iterrows()):
            for metric, n in counts.items():
                if pd.isna(a[metric]) or pd.isna(b[metric]):
                    continue
                change, low, high = difference(whole(b[metric], b[n]), int(b[n]), whole(a[metric], a[n]), int(a[n]))
                rows.append({"layer_set": layer_set, "metric": metric, "cutoff_from": a.cutoff, "cutoff_to": b.cutoff,
                             "kept_from": a.kept_fraction, "kept_to": b.kept_fraction, "pct_from": a[metric],
                             "pct_to": b[metric], "change_pts": change, "ci_low": low, "ci_high": high,
                             "beyond_noise": bool(low > 0 or high < 0)})
    return pd.DataFrame(rows, columns=["layer_set", "metric", "cutoff_from", "cutoff_to", "kept_from", "kept_to",
                                       "pct_from", "pct_to", "change_pts", "ci_low", "ci_high", "beyond_noise"])


FISHER_COLUMNS = ["layer_set", "rho", "method", "other_method", "metric", "pct", "other_pct", "change_pts", "ci_low",
                  "ci_high", "beyond_noise", "kept_fraction", "other_kept_fraction"]


def fisher_comparison(sweep: pd.DataFrame, counts: dict[str, str], uncounted: tuple[str, ...] = ()) -> pd.DataFrame:
    """The K-FAC edit of the arm's own factors beside the same edit on another Fisher type's factors
    (`kfac_<fisher>`, docs/method.md, section 11), at every layer set and rho both were swept at: each
    counted metric's change (other - own) in points with its 95% interval (Newcombe's, as for the
    headline comparisons) and whether it is beyond the noise; `uncounted` metrics (e.g. perplexity)
    side by side without one."""
    own = sweep[sweep.method == "kfac"].set_index(["layer_set", "cutoff"])
    rows = []
    for method in FISHER_METHODS:
        for _, b in sweep[sweep.method == method].iterrows():
            if (b.layer_set, b.cutoff) not in own.index:
                continue
            a = own.loc[(b.layer_set, b.cutoff)]
            pair = {"layer_set": b.layer_set, "rho": b.cutoff, "method": "kfac", "other_method": method,
                    "kept_fraction": a.kept_fraction, "other_kept_fraction": b.kept_fraction}
            for metric, n in counts.items():
                if pd.isna(a[metric]) or pd.isna(b[metric]):
                    continue
                change, low, high = difference(whole(b[metric], b[n]), int(b[n]), whole(a[metric], a[n]), int(a[n]))
                rows.append({**pair, "metric": metric, "pct": a[metric], "other_pct": b[metric], "change_pts": change,
                             "ci_low": low, "ci_high": high, "beyond_noise": bool(low > 0 or high < 0)})
            rows += [{**pair, "metric": metric, "pct": a[metric], "other_pct": b[metric],
                      "change_pts": b[metric] - a[metric]} for metric in uncounted]
    return pd.DataFrame(rows, columns=FISHER_COLUMNS)


def with_bands(curve: pd.DataFrame, counts: dict[str, str]) -> pd.DataFrame:
    """`curve` with each counted metric's 95% Wilson interval as `<metric>_ci_low` / `_ci_high` (the
    percentages may come rounded from a CSV: `whole`)."""
    out = curve.copy()
    for metric, n in counts.items():
        bounds = [wilson(whole(p, k), int(k)) if not pd.isna(p) and k else (math.nan, math.nan)
                  for p, k in zip(out[metric], out[n])]
        out[f"{metric}_ci_low"], out[f"{metric}_ci_high"] = [lo for lo, _ in bounds], [hi for _, hi in bounds]
    return out


def bsn_description(layer_set: str, ratio: float, loss_weight: float, epochs: int, lr: float) -> str:
    """A BalancedSubnet grid point in words (the tables' setting column)."""
    return (f"{layer_set}, ratio {ratio:g}, loss weight {loss_weight:g}, {epochs} epoch{'s' * (epochs != 1)}, "
            f"lr {lr:g}")


def subnet_result(spec, model, n_forget: int, n_retain: int, losses,
                  evaluate: Callable) -> tuple[dict, dict, dict]:
    """Train the BalancedSubnet masks of `spec` (a `bsn.SubnetSpec`) on `model`, evaluate the baked
    model (restored afterwards); returns (row, zeroed flat indices per module, cost). With an empty forget set
    nothing is masked and the row says so."""
    import torch

    from .bsn import baked, train_subnet
    from .kfac import linear_names
    from .layers import resolve_layer_set

    names = resolve_layer_set(linear_names(model), spec.factor_modules, spec.patterns)
    cfg = spec.config
    t0 = time.perf_counter()
    if n_forget:
        zeroed, history = train_subnet(model, names, cfg, n_forget, n_retain, losses)
    else:
        log.warning("no verified memorized training examples: BSN has nothing to forget, nothing is masked")
        zeroed, history = {name: torch.zeros(0, dtype=torch.long) for name in names}, []
    cost = {"method": "bsn", "layer_set": spec.layer_set, "setting": spec.token, "n_layers": len(names),
            "train_seconds": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb(), "steps": len(history)}
    t1 = time.perf_counter()
    with baked(model, zeroed):
        metrics = evaluate(model)
    cost["evaluate_seconds"] = time.perf_counter() - t1
    numel = {n: m.weight.numel() for n, m in model.named_modules() if n in names}
    kept = 1 - sum(len(zeroed.get(n, [])) for n in names) / sum(numel.values())
    last = history[-1] if history else {}
    row = {"method": "bsn", "layer_set": spec.layer_set, "cutoff": cfg.ratio, "setting": spec.token, "modules": names,
           "kept_fraction": kept, "bsn": {"ratio": cfg.ratio, "loss_weight": cfg.loss_weight, "epochs": cfg.epochs,
                                          "lr": cfg.lr, "trained": bool(n_forget),
                                          "final_forget_loss": last.get("forget_loss"),
                                          "final_retain_loss": last.get("retain_loss")}, **metrics}
    return row, zeroed, cost
