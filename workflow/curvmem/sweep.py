"""The sweep of edits, both arms: evaluating one layer set and method at every cutoff, the result
files of the edit jobs, and one table of them.

Every edit job writes `{"edits": [row, ...]}`, one row per cutoff (the baseline job one row with
method "none"); a row holds `method`, `layer_set`, `cutoff`, `modules`, `kept_fraction` and the
arm's metrics.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import io
from .artifacts import is_fingerprinted

log = logging.getLogger(__name__)

METHOD_ORDER = {"none": 0, "kfac": 1, "svd": 2}
ROW_KEYS = ("method", "layer_set", "cutoff", "modules", "kept_fraction")


@dataclass
class EditSpec:
    """What one edit job edits: a layer set, with one method, at each of its cutoffs."""

    method: str = "kfac"                                  # "kfac" (cutoff = rho) or "svd" (dropped fraction)
    layer_set: str = ""
    patterns: list = field(default_factory=list)          # the layer set's module patterns
    factor_modules: list = field(default_factory=list)    # the factor patterns: a set resolves within them
    cutoffs: list = field(default_factory=list)


def sweep_cutoffs(spec: EditSpec, evaluation: dict, inputs: dict[str, str | None], memo_dir,
                  prepare: Callable[[], tuple]) -> list[dict]:
    """One row per cutoff of `spec`, in its order: taken from the memo of an earlier run with the same
    evaluation parameters, inputs and code, or computed. Only if a cutoff is missing, `prepare()`
    loads what evaluating needs, once: it returns (model, evaluate, basis path or None), with
    `evaluate(model)` the arm's metrics of the model as it is. Each layer is decomposed once
    (`edit.ModelEditor`) for all the cutoffs computed."""
    from .basis import load_basis
    from .edit import ModelEditor
    from .kfac import linear_names
    from .layers import resolve_layer_set

    identity = {"evaluation": evaluation, "spec": {k: v for k, v in asdict(spec).items() if k != "cutoffs"}}
    memo = CutoffMemo(memo_dir, identity, inputs)
    rows = {c: memo.get(c) for c in spec.cutoffs}
    todo = [c for c, row in rows.items() if row is None]
    log.info("%s %s: %d cutoff(s) to evaluate, %d from earlier runs", spec.method, spec.layer_set, len(todo),
             len(rows) - len(todo))
    if todo:
        model, evaluate, basis = prepare()
        names = resolve_layer_set(linear_names(model), spec.factor_modules, spec.patterns)
        layers = {n: m for n, m in model.named_modules() if n in names}
        editor = ModelEditor(model, names, spec.method, load_basis(basis, layers) if spec.method == "kfac" else None)
        for cutoff in todo:
            t0 = time.time()
            with editor.applied(cutoff) as kept:
                metrics = evaluate(model)
            rows[cutoff] = {"method": spec.method, "layer_set": spec.layer_set, "cutoff": cutoff, "modules": names,
                            "kept_fraction": float(np.mean(list(kept.values()))), **metrics}
            memo.put(cutoff, rows[cutoff])
            log.info("%s %s %r evaluated in %.1fs", spec.method, spec.layer_set, cutoff, time.time() - t0)
    return [rows[c] for c in spec.cutoffs]


class CutoffMemo:
    """Results of single cutoffs, kept across runs of an edit job, so that changing one cutoff of a
    sweep recomputes only that cutoff while the job still loads the model once.

    An entry's key covers everything its result depends on: the job's parameters (without its list
    of cutoffs, so another list finds the cutoffs it shares), the cutoff, every input (a fingerprinted artifact by its path, which names its
    content; any other file by its bytes) and the library's source code, so a changed library
    recomputes everything. Entries are written atomically once a cutoff is evaluated: a killed job
    leaves nothing half-made. They live beside the results (`edits/.memo/`); deleting the folder
    only costs time.
    """

    def __init__(self, directory, params: dict, inputs: dict[str, str | None]):
        """`params`: what the results depend on besides the inputs (never the list of cutoffs)."""
        self.directory = Path(directory)
        identity = {name: path if path is None or is_fingerprinted(path) else _file_digest(path)
                    for name, path in inputs.items()}
        self.base = {"params": params, "inputs": identity, "code": _code_digest()}

    def _path(self, cutoff: float) -> Path:
        blob = json.dumps({**self.base, "cutoff": cutoff}, sort_keys=True, default=str)
        return self.directory / f"{hashlib.sha256(blob.encode()).hexdigest()[:24]}.json"

    def get(self, cutoff: float) -> dict | None:
        path = self._path(cutoff)
        if not path.exists():
            return None
        try:
            return io.load_json(path)
        except io.ArtifactError:  # unreadable: recompute and overwrite
            return None

    def put(self, cutoff: float, row: dict) -> None:
        io.save_json(row, self._path(cutoff))


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
    frame.loc[frame.method == "none", ["layer_set", "cutoff"]] = ["", float("nan")]
    return frame.sort_values(["method", "layer_set", "cutoff"],
                             key=lambda c: c.map(METHOD_ORDER) if c.name == "method" else c, ignore_index=True)


def method_curve(sweep: pd.DataFrame, method: str, layer_set: str, columns: dict[str, str],
                 x: str) -> pd.DataFrame:
    """One method's metrics against its cutoff for one layer set (the data of a DVC plot):
    columns `x` and the renamed metric columns, sorted by cutoff."""
    rows = sweep[(sweep.method == method) & (sweep.layer_set == layer_set)].sort_values("cutoff")
    return pd.concat([rows.cutoff.rename(x), rows[list(columns)].rename(columns=columns)], axis=1)
