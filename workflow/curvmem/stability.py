"""Is the curvature basis stable across training seeds and through training? (docs/method.md, section 12)

The members of the study are models of one arm that differ only in their training seed, trained in
full, and the trained model's run stopped at fractions of its epochs or steps (checkpoints of the same
schedule). Each has its own factors and basis. Three questions, either arm:
- overlap: do two members' bases agree? The top-k eigenspaces of G and of A and the kept pairs at the
  compared rho (`subspaces.basis_overlap`), for every two seeds and for each checkpoint against the full
  run of its seed. Between seeds only up to the network's symmetries: a hidden unit of one seed is no
  particular unit of another, so coordinates on the hidden side need not match even when the features do;
- transfer: does an edit carry over? Each member's weights edited with its own basis, each seed's with
  every other seed's, and the full run with each of its checkpoints' bases;
- spread: each headline metric as mean, standard deviation and range over the seeds.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
from typing import Callable

import pandas as pd

from . import io
from .subspaces import basis_overlap

log = logging.getLogger(__name__)

OWN, OTHER_SEED, CHECKPOINT = "own", "other seed", "checkpoint"  # how a transfer edit's basis relates to its weights
ROW_KEYS = ["weights", "seed", "fraction", "basis", "relation", "method", "cutoff", "kept_fraction"]  # of transfer rows


def member_dict(members: list[dict]) -> dict[str, dict]:
    """label -> {seed, fraction} of a stage's members: a list in the params, since the JSON of a rule's
    params sorts a dict's keys and the order is that of the models and bases."""
    return {m["label"]: {"seed": m["seed"], "fraction": m["fraction"]} for m in members}


def check_trained(path: str, label: str, member: dict, trained: dict) -> None:
    """The model at `path`, trained with the `trained` config, is the member's: its seed and stop."""
    if (trained["seed"], trained.get("stop_after", 1.0)) != (member["seed"], member["fraction"]):
        raise io.artifact_error(path, f"is not the model of stability member {label} (seed {member['seed']}, "
                                      f"stopped at {member['fraction']})")


def full_runs(members: dict[str, dict]) -> list[str]:
    """The labels of the members trained in full (one per seed), in their order."""
    return [label for label, m in members.items() if m["fraction"] == 1]


def full_run_of(members: dict[str, dict], label: str) -> str:
    """The label of the full run of a member's seed."""
    seed = members[label]["seed"]
    (full,) = [other for other in full_runs(members) if members[other]["seed"] == seed]
    return full


def compared_pairs(members: dict[str, dict]) -> list[tuple[str, str, str]]:
    """(a, b, relation) of the overlap table: every two full runs, and each checkpoint against the full
    run of its seed."""
    pairs = [(a, b, OTHER_SEED) for a, b in itertools.combinations(full_runs(members), 2)]
    return pairs + [(label, full_run_of(members, label), CHECKPOINT) for label, m in members.items()
                    if m["fraction"] < 1]


def transfer_plan(members: dict[str, dict]) -> list[tuple[str, str, str]]:
    """(weights, basis, relation) of the transfer edits: every member with its own basis, every full run
    with every other full run's, and each full run with the bases of its seed's checkpoints."""
    plan = [(label, label, OWN) for label in members]
    plan += [(a, b, OTHER_SEED) for a, b in itertools.permutations(full_runs(members), 2)]
    return plan + [(full_run_of(members, label), label, CHECKPOINT) for label, m in members.items()
                   if m["fraction"] < 1]


def overlap_table(bases: dict[str, dict], members: dict[str, dict], modules: list[str], rho: float) -> pd.DataFrame:
    """The overlap rows of every compared pair (`subspaces.basis_overlap`), labelled by the pair."""
    frames = [pd.DataFrame(basis_overlap(bases[a], bases[b], modules, [rho])).assign(a=a, b=b, relation=relation)
              for a, b, relation in compared_pairs(members)]
    columns = ["relation", "a", "b", "module", "factor", "dim", "cutoff", "size", "other_size", "overlap", "chance"]
    return pd.concat(frames, ignore_index=True).reindex(columns=columns) if frames else pd.DataFrame(columns=columns)


def own_edits_of_full_runs(frame: pd.DataFrame, settings: dict[str, str]) -> pd.DataFrame:
    """The rows of the seeds' spread: each full run unedited and edited with its own basis and its own
    SVD, with column `setting` named by method (`settings`: method -> name)."""
    full = frame[(frame.fraction == 1) & frame.relation.isin(["unedited", OWN])]
    return full.assign(setting=full.method.map(settings))


def seed_summary(rows: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Each metric of each setting (unedited, the headline edits with each seed's own basis) as mean,
    sample standard deviation, range and count over the full runs: `rows` has one row per seed and
    setting, with columns `setting`, `seed` and the metrics."""
    out = []
    for setting, group in rows.groupby("setting", sort=False):
        for metric in metrics:
            values = group[metric].astype(float)
            out.append({"setting": setting, "metric": metric, "n_seeds": len(values), "mean": values.mean(),
                        "std": values.std(ddof=1) if len(values) > 1 else float("nan"),
                        "min": values.min(), "max": values.max(),
                        "seeds": " ".join(str(s) for s in group.seed)})
    return pd.DataFrame(out)


def compare_bases(bases: dict[str, str], members: dict[str, dict], modules: list[str], rho: float, out: str) -> None:
    """The overlap table of the members' basis files (label -> path), saved as CSV at `out`."""
    table = overlap_table({label: io.load_tensors(path) for label, path in bases.items()}, members, modules, rho)
    io.save_csv(table, out)
    for r in table[table.factor == "pairs"].itertuples():
        log.info("%s vs %s, %s: kept pairs at rho %g overlap %.3f (chance %.3f)", r.a, r.b, r.module, r.cutoff,
                 r.overlap, r.chance)


@contextlib.contextmanager
def mean_kept(editor, cutoff: float):
    """`editor.applied(cutoff)` (edit.ModelEditor) for the duration of the block; yields the kept fraction
    averaged over the edited layers."""
    with editor.applied(cutoff) as kept:
        yield sum(kept.values()) / len(kept)


def transfer_rows(members: dict[str, dict], load: Callable, modules: list[str], bases: dict[str, str], rho: float,
                  svd_drop_fraction: float) -> pd.DataFrame:
    """The rows of the transfer plan, one model load per member's weights: `load(label)` gives (model,
    evaluate), evaluate(model) its metrics (a dict). Each member unedited, with the planned K-FAC edits at
    rho of `modules` (the basis files: label -> path) and, for full runs, the SVD edit."""
    from .basis import load_basis
    from .edit import ModelEditor

    def edited(model, method: str, basis: str):
        if method == "svd":
            return mean_kept(ModelEditor(model, modules, "svd"), svd_drop_fraction)
        layers = {n: m for n, m in model.named_modules() if n in modules}
        return mean_kept(ModelEditor(model, modules, "kfac", load_basis(bases[basis], layers)), rho)

    plan, rows = transfer_plan(members), []
    for i, (weights, member) in enumerate(members.items()):
        log.info("model %d of %d: %s, unedited and %d edits", i + 1, len(members), weights,
                 sum(w == weights for w, _, _ in plan) + (member["fraction"] == 1))
        model, evaluate = load(weights)
        row = {"weights": weights, **member}
        rows.append({**row, "basis": "", "relation": "unedited", "method": "none", "cutoff": 1.0,
                     "kept_fraction": 1.0, **evaluate(model)})
        edits = [("kfac", basis, relation) for w, basis, relation in plan if w == weights]
        edits += [("svd", "", OWN)] if member["fraction"] == 1 else []
        for method, basis, relation in edits:
            with edited(model, method, basis) as kept:
                rows.append({**row, "basis": basis, "relation": relation, "method": method, "kept_fraction": kept,
                             "cutoff": rho if method == "kfac" else svd_drop_fraction, **evaluate(model)})
    return pd.DataFrame(rows)
