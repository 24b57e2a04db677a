"""Weight edits: keep a fraction rho of the K-FAC curvature mass (METHOD.md section 3), and the
data-free SVD baseline.

Keep-mass rule, for W (d_out x d_in) with G = U_G diag(lam) U_G^T and A = U_A diag(mu) U_A^T:
  C = U_G^T W U_A; pair (i, j) has mass lam_i * mu_j; rank all d_out * d_in pairs jointly by mass,
  keep the shortest prefix whose cumulative mass reaches rho * total (the crossing pair is kept),
  W_new = U_G (C * M) U_A^T. A sort + cumsum selects exactly the pairs of the authors' heap walk.
"""
from __future__ import annotations

import torch


class CurvatureEditor:
    """Edits one weight matrix at any number of cutoffs from one curvature basis.

    The basis change C and the descending order of the pair masses are computed once; each
    cutoff then costs a searchsorted, a mask and two matrix products.
    """

    def __init__(self, W: torch.Tensor, lam: torch.Tensor, U_G: torch.Tensor, mu: torch.Tensor, U_A: torch.Tensor):
        d_out, d_in = W.shape
        assert U_G.shape == (d_out, d_out) and lam.shape == (d_out,), f"G basis does not fit W {tuple(W.shape)}"
        assert U_A.shape == (d_in, d_in) and mu.shape == (d_in,), f"A basis does not fit W {tuple(W.shape)}"
        assert (lam >= 0).all() and (mu >= 0).all(), "eigenvalues must be clamped to >= 0"
        self.dtype = W.dtype
        self.shape = (d_out, d_in)
        self.U_G, self.U_A = U_G.float(), U_A.float()
        self.C = self.U_G.T @ W.float() @ self.U_A  # (d_out, d_in) coefficients in the curvature basis
        mass = torch.outer(lam.double(), mu.double()).flatten()  # (d_out * d_in,)
        self.order = torch.argsort(mass, descending=True, stable=True)
        self.cum_mass = torch.cumsum(mass[self.order], 0)
        self.total = lam.double().sum() * mu.double().sum()

    def kept_count(self, rho: float) -> int:
        """Length of the shortest descending-mass prefix whose mass reaches rho * total."""
        assert 0 < rho <= 1, f"rho must be in (0, 1], got {rho}"
        target = torch.as_tensor(rho, dtype=torch.float64) * self.total
        k = int(torch.searchsorted(self.cum_mass, target.reshape(1)).item()) + 1  # index of the crossing pair, +1
        return min(k, self.cum_mass.numel())

    def mask(self, rho: float) -> torch.Tensor:
        """(d_out, d_in) bool mask of the kept pairs."""
        keep = torch.zeros(self.cum_mass.numel(), dtype=torch.bool, device=self.C.device)
        keep[self.order[: self.kept_count(rho)]] = True
        return keep.view(self.shape)

    def edit(self, rho: float) -> torch.Tensor:
        M = self.mask(rho)
        return (self.U_G @ (self.C * M) @ self.U_A.T).to(self.dtype)


def svd_drop(W: torch.Tensor, drop_fraction: float) -> torch.Tensor:
    """Zero the smallest round(drop_fraction * rank) singular values of W (counted, not by mass)."""
    assert 0 <= drop_fraction < 1, f"drop_fraction must be in [0, 1), got {drop_fraction}"
    U, S, Vh = torch.linalg.svd(W.double(), full_matrices=False)
    n_drop = round(drop_fraction * S.numel())
    S = S.clone()
    if n_drop:
        S[-n_drop:] = 0
    return ((U * S) @ Vh).to(W.dtype)


@torch.no_grad()
def edit_model(model: torch.nn.Module, names: list[str], method: str, cutoff: float,
               basis: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
    """Edit the named nn.Linear weights in place; returns the fraction of pairs / singular values kept.

    method "kfac": keep a fraction `cutoff` (rho) of the curvature mass; "svd": drop the bottom
    `cutoff` fraction of singular values. Every weight is edited from its current (original) value,
    so the order of the names does not matter.
    """
    from .basis import module_basis

    modules = dict(model.named_modules())
    kept = {}
    for name in names:
        layer = modules[name]
        assert isinstance(layer, torch.nn.Linear), f"{name} is not an nn.Linear"
        W = layer.weight
        if method == "kfac":
            assert basis is not None, "the kfac edit needs a curvature basis"
            lam, U_G, mu, U_A = (t.to(W.device) for t in module_basis(basis, name))
            editor = CurvatureEditor(W, lam, U_G, mu, U_A)
            W_new = editor.edit(cutoff)
            kept[name] = editor.kept_count(cutoff) / W.numel()
        elif method == "svd":
            W_new = svd_drop(W, cutoff)
            kept[name] = 1 - round(cutoff * min(W.shape)) / min(W.shape)
        else:
            raise ValueError(f"unknown edit method {method!r}")
        W.copy_(W_new)
    return kept
