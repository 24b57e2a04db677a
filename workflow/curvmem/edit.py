"""Weight edits: keep a fraction rho of the K-FAC curvature mass (docs/method.md, section 3), and
the data-free SVD baseline.

Keep-mass rule, for W (d_out x d_in) with G = U_G diag(lam) U_G^T and A = U_A diag(mu) U_A^T:
  C = U_G^T W U_A; pair (i, j) has mass lam_i * mu_j; rank all d_out * d_in pairs jointly by mass,
  keep the shortest prefix whose cumulative mass reaches rho * total (the crossing pair is kept),
  W_new = U_G (C * M) U_A^T. A sort + cumsum selects exactly the pairs of the authors' heap walk.
"""
from __future__ import annotations

import contextlib

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


class SVDEditor:
    """Drops the smallest singular values of one weight matrix at any number of cutoffs from one SVD."""

    def __init__(self, W: torch.Tensor):
        self.dtype = W.dtype
        self.U, self.S, self.Vh = torch.linalg.svd(W.double(), full_matrices=False)

    def dropped_count(self, drop_fraction: float) -> int:
        """round(drop_fraction * rank) singular values are dropped (counted, not by mass)."""
        assert 0 <= drop_fraction < 1, f"drop_fraction must be in [0, 1), got {drop_fraction}"
        return round(drop_fraction * self.S.numel())

    def edit(self, drop_fraction: float) -> torch.Tensor:
        n_drop = self.dropped_count(drop_fraction)
        S = self.S.clone()
        if n_drop:
            S[-n_drop:] = 0
        return ((self.U * S) @ self.Vh).to(self.dtype)


def svd_drop(W: torch.Tensor, drop_fraction: float) -> torch.Tensor:
    """Zero the smallest round(drop_fraction * rank) singular values of W (counted, not by mass)."""
    return SVDEditor(W).edit(drop_fraction)


class ModelEditor:
    """Edits named nn.Linear weights of a model at one cutoff after another.

    Each layer's basis change and pair order (method "kfac": keep a fraction rho of the curvature
    mass) or its SVD (method "svd": drop the bottom fraction of singular values) is computed once;
    `applied(cutoff)` writes the edited weights and restores the originals afterwards, so every
    cutoff edits the original weights and the order of layers and cutoffs does not matter.
    """

    def __init__(self, model: torch.nn.Module, names: list[str], method: str,
                 basis: dict[str, torch.Tensor] | None = None):
        from .basis import module_basis

        modules = dict(model.named_modules())
        self.layers: dict[str, torch.nn.Linear] = {}
        self.editors: dict[str, CurvatureEditor | SVDEditor] = {}
        for name in names:
            layer = modules[name]
            assert isinstance(layer, torch.nn.Linear), f"{name} is not an nn.Linear"
            W = layer.weight.detach()
            if method == "kfac":
                assert basis is not None, "the kfac edit needs a curvature basis"
                lam, U_G, mu, U_A = (t.to(W.device) for t in module_basis(basis, name))
                self.editors[name] = CurvatureEditor(W, lam, U_G, mu, U_A)
            elif method == "svd":
                self.editors[name] = SVDEditor(W)
            else:
                raise ValueError(f"unknown edit method {method!r}")
            self.layers[name] = layer
        self.method = method
        self.original = {name: layer.weight.detach().clone() for name, layer in self.layers.items()}

    def kept_fraction(self, name: str, cutoff: float) -> float:
        """Fraction of the (i, j) curvature pairs (kfac) or of the singular values (svd) kept."""
        editor, W = self.editors[name], self.original[name]
        if isinstance(editor, CurvatureEditor):
            return editor.kept_count(cutoff) / W.numel()
        return 1 - editor.dropped_count(cutoff) / min(W.shape)

    @contextlib.contextmanager
    def applied(self, cutoff: float):
        """Edit every layer at `cutoff` for the duration of the block; yields the kept fractions."""
        try:
            with torch.no_grad():
                for name, layer in self.layers.items():
                    layer.weight.copy_(self.editors[name].edit(cutoff))
            yield {name: self.kept_fraction(name, cutoff) for name in self.layers}
        finally:
            with torch.no_grad():
                for name, layer in self.layers.items():
                    layer.weight.copy_(self.original[name])


@torch.no_grad()
def edit_model(model: torch.nn.Module, names: list[str], method: str, cutoff: float,
               basis: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
    """Edit the named nn.Linear weights in place at one cutoff; returns the kept fraction per layer
    (of the curvature pairs for "kfac", of the singular values for "svd")."""
    editor = ModelEditor(model, names, method, basis)
    kept = {}
    for name, layer in editor.layers.items():
        layer.weight.copy_(editor.editors[name].edit(cutoff))
        kept[name] = editor.kept_fraction(name, cutoff)
    return kept
