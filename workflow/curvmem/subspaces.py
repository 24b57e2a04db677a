"""How far two curvature bases of the same layers agree (docs/method.md, section 11): the true Fisher's
(labels sampled from the model) against the empirical Fisher's (the dataset labels), both arms.

Two overlaps, each 1 for the same subspaces, each with its chance level (random subspaces of the
same sizes), each independent of the weights:
- eigenspaces: the top-k eigenvectors U (d, k) and V (d, k) of one factor, G or A, from each basis;
  overlap ||U^T V||_F^2 / k, the mean squared cosine of their k principal angles; chance k / d;
- kept pairs: the subspace of weight space the K-FAC edit keeps at rho, spanned by u_i v_j^T over
  its kept pairs K; overlap tr(P_1 P_2) / min(|K_1|, |K_2|) for the orthogonal projectors P onto the
  two kept subspaces, 1 when one contains the other; chance max(|K_1|, |K_2|) / (d_out d_in).
  With O_G = (U_G^T U'_G)^2 and O_A = (U_A^T U'_A)^2 elementwise, tr(P_1 P_2) = sum(M_1 * (O_G M_2 O_A^T))
  for the kept masks M: never a d_out d_in x d_out d_in matrix.
A is E[a a^T] of the layer inputs, which no label enters: its overlap is 1 up to rounding, a check.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd
import torch

from . import io
from .basis import module_basis
from .edit import KeptPairs
from .layers import resolve_layer_set

log = logging.getLogger(__name__)

TOP_FRACTIONS = (0.01, 0.05, 0.1, 0.25, 0.5)  # k / d of the compared eigenspaces


def span_overlap(U: torch.Tensor, V: torch.Tensor) -> float:
    """Mean squared cosine of the principal angles between span(U) and span(V), orthonormal (d, k) columns."""
    assert U.shape == V.shape and U.ndim == 2, f"two (d, k) bases of one size, got {tuple(U.shape)}, {tuple(V.shape)}"
    return float((U.double().T @ V.double()).square().sum() / U.shape[1])


def kept_overlap(mask1: torch.Tensor, mask2: torch.Tensor, O_G: torch.Tensor, O_A: torch.Tensor) -> float:
    """tr(P_1 P_2) / min(|K_1|, |K_2|) of two kept-pair subspaces: M (d_out, d_in) masks, O_G (d_out, d_out)
    and O_A (d_in, d_in) the squared cosines between the two bases' eigenvectors."""
    shared = (mask1.double() * (O_G @ mask2.double() @ O_A.T)).sum()
    return float(shared / min(int(mask1.sum()), int(mask2.sum())))


def basis_overlap(basis: dict, other: dict, modules: list[str], rhos: list[float]) -> list[dict]:
    """Per module: the overlap of G's and A's top eigenspaces at each of TOP_FRACTIONS, and of the kept
    pairs at each rho, with chance levels."""
    rows = []
    for name in modules:
        lam, U_G, mu, U_A = (t.double() for t in module_basis(basis, name))
        lam2, U_G2, mu2, U_A2 = (t.double() for t in module_basis(other, name))
        for factor, U, V in (("G", U_G, U_G2), ("A", U_A, U_A2)):
            d = U.shape[0]
            for k in sorted({max(1, round(f * d)) for f in TOP_FRACTIONS}):
                rows.append({"module": name, "factor": factor, "dim": d, "cutoff": k / d, "size": k,
                             "overlap": span_overlap(U[:, :k], V[:, :k]), "chance": k / d})
        O_G, O_A = (U_G.T @ U_G2).square(), (U_A.T @ U_A2).square()
        kept, other_kept = KeptPairs.of_spectra(lam, mu), KeptPairs.of_spectra(lam2, mu2)  # sorted once per module
        for rho in rhos:
            m1, m2 = kept.mask(rho), other_kept.mask(rho)
            n1, n2, n_pairs = int(m1.sum()), int(m2.sum()), m1.numel()
            rows.append({"module": name, "factor": "pairs", "dim": n_pairs, "cutoff": rho, "size": n1,
                         "other_size": n2, "overlap": kept_overlap(m1, m2, O_G, O_A), "chance": max(n1, n2) / n_pairs})
    return rows


@dataclass
class OverlapSpec:
    """What rule <arm>_fisher_overlap compares."""

    fisher: str = "mc"                                 # the Fisher type of the arm's own factors
    others: list = field(default_factory=list)         # the compared types, in the order of the `other` bases
    factor_modules: list = field(default_factory=list)
    patterns: list = field(default_factory=list)       # the frontier's layer sets' patterns: the compared modules
    rhos: list = field(default_factory=list)           # the kfac_<fisher> cutoffs: kept pairs compared at each


def fisher_overlap(params: OverlapSpec, *, basis: str, other: list[str], overlap: str) -> None:
    """Rules vit_fisher_overlap / lm_fisher_overlap: the overlap table of the arm's basis against the
    basis of each other Fisher type, on the frontier's modules."""
    assert len(other) == len(params.others), "one basis per compared Fisher type"
    own = io.load_tensors(basis)
    modules = resolve_layer_set(io.load_metadata(basis)["modules"], params.factor_modules, params.patterns)
    frames = []
    for fisher, path in zip(params.others, other):
        rows = basis_overlap(own, io.load_tensors(path), modules, params.rhos)
        frames.append(pd.DataFrame(rows).assign(fisher=params.fisher, other_fisher=fisher))
        pairs = frames[-1][frames[-1].factor == "pairs"]
        log.info("%s vs %s Fisher: kept-pair overlap %s", params.fisher, fisher,
                 ", ".join(f"{r.module} rho {r.cutoff:g}: {r.overlap:.3f}" for r in pairs.itertuples()))
    columns = ["fisher", "other_fisher", "module", "factor", "dim", "cutoff", "size", "other_size", "overlap", "chance"]
    io.save_csv(pd.concat(frames, ignore_index=True).reindex(columns=columns), overlap)
