"""Is the curvature basis stable across training seeds and through training? (docs/method.md, section 12)

The members of the study are models of one arm that differ only in their training seed (initialization
and data order), trained in full, and the trained model's run stopped at fractions of its epochs
(checkpoints of the same schedule). Each has its own factors and basis. Three questions, any arm:
- overlap: do two members' bases agree? The top-k eigenspaces of G and of A and the kept pairs at the
  headline rho (`subspaces.basis_overlap`), for every two seeds and for each checkpoint against the full
  run of its seed. Between seeds only up to the network's symmetries: a hidden unit of one seed is no
  particular unit of another, so coordinates on the hidden side need not match even when the features do;
- transfer: does an edit carry over? Each member's weights edited with its own basis, each seed's with
  every other seed's, and the full run with each of its checkpoints' bases;
- spread: each headline metric as mean, standard deviation and range over the seeds.
"""
from __future__ import annotations

import itertools

import pandas as pd

from .subspaces import basis_overlap

OWN, OTHER_SEED, CHECKPOINT = "own", "other seed", "checkpoint"  # how a transfer edit's basis relates to its weights


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
    return plan + [(full_run_of(members, label), label, CHECKPOINT) for label, m in members.items() if m["fraction"] < 1]


def overlap_table(bases: dict[str, dict], members: dict[str, dict], modules: list[str], rho: float) -> pd.DataFrame:
    """The overlap rows of every compared pair (`subspaces.basis_overlap`), labelled by the pair."""
    frames = [pd.DataFrame(basis_overlap(bases[a], bases[b], modules, [rho])).assign(a=a, b=b, relation=relation)
              for a, b, relation in compared_pairs(members)]
    columns = ["relation", "a", "b", "module", "factor", "dim", "cutoff", "size", "other_size", "overlap", "chance"]
    return pd.concat(frames, ignore_index=True).reindex(columns=columns) if frames else pd.DataFrame(columns=columns)


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
