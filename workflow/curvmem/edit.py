"""Weight edits: keep a fraction rho of the K-FAC curvature mass (docs/method.md, section 3), the
data-free SVD baseline, and the other ways of ranking a weight's components that the frontier of
bases compares (docs/method.md, section 10).

Keep-mass rule, for W (d_out x d_in) with G = U_G diag(lam) U_G^T and A = U_A diag(mu) U_A^T:
  C = U_G^T W U_A; pair (i, j) has mass lam_i * mu_j; rank all d_out * d_in pairs jointly by mass,
  keep the shortest prefix whose cumulative mass reaches rho * total (the crossing pair is kept),
  W_new = U_G (C * M) U_A^T. A sort + cumsum selects exactly the pairs of the authors' heap walk.
"""
from __future__ import annotations

import contextlib

import torch

from .artifacts import BASIS_METHODS, METHODS


class KeptPairs:
    """The keep-mass rule on one layer's pair masses: their descending order and cumulative mass,
    computed once; at each rho the shortest prefix whose mass reaches rho * total (the crossing pair
    kept). The editor and the Fisher comparison (`curvmem.subspaces`) both select pairs with it."""

    def __init__(self, mass: torch.Tensor, total: torch.Tensor):
        """`mass` (d_out, d_in) >= 0; `total` the mass rho is a fraction of (its sum, up to rounding)."""
        assert mass.ndim == 2 and (mass >= 0).all(), "pair masses: (d_out, d_in), >= 0"
        self.shape = tuple(mass.shape)
        flat = mass.double().flatten()
        self.total = total.double()
        self.order = torch.argsort(flat, descending=True, stable=True)
        self.cum_mass = torch.cumsum(flat[self.order], 0)

    @classmethod
    def of_spectra(cls, lam: torch.Tensor, mu: torch.Tensor) -> "KeptPairs":
        """K-FAC's pairs: mass lam_i * mu_j, total sum(lam) * sum(mu)."""
        return cls(torch.outer(lam.double(), mu.double()), lam.double().sum() * mu.double().sum())

    def count(self, rho: float) -> int:
        """Length of the shortest descending-mass prefix whose mass reaches rho * total."""
        assert 0 < rho <= 1, f"rho must be in (0, 1], got {rho}"
        target = torch.as_tensor(rho, dtype=torch.float64, device=self.total.device) * self.total
        k = int(torch.searchsorted(self.cum_mass, target.reshape(1)).item()) + 1  # index of the crossing pair, +1
        return min(k, self.cum_mass.numel())

    def mask(self, rho: float) -> torch.Tensor:
        """(d_out, d_in) bool mask of the kept pairs."""
        keep = torch.zeros(self.cum_mass.numel(), dtype=torch.bool, device=self.order.device)
        keep[self.order[: self.count(rho)]] = True
        return keep.view(self.shape)


class CurvatureEditor:
    """Edits one weight matrix at any number of cutoffs from one curvature basis.

    The basis change C and the descending order of the pair masses (`KeptPairs`) are computed once;
    each cutoff then costs a searchsorted, a mask and two matrix products. With `low_scale` alpha the
    pairs below the cutoff are scaled by alpha instead of zeroed (alpha 0: the paper's edit); with
    `pair_mass` (d_out, d_in), e.g. EK-FAC's corrected eigenvalues, pairs are ranked by it instead
    of by lam_i * mu_j.
    """

    def __init__(self, W: torch.Tensor, lam: torch.Tensor, U_G: torch.Tensor, mu: torch.Tensor, U_A: torch.Tensor,
                 low_scale: float = 0.0, pair_mass: torch.Tensor | None = None):
        d_out, d_in = W.shape
        assert U_G.shape == (d_out, d_out) and lam.shape == (d_out,), f"G basis does not fit W {tuple(W.shape)}"
        assert U_A.shape == (d_in, d_in) and mu.shape == (d_in,), f"A basis does not fit W {tuple(W.shape)}"
        assert (lam >= 0).all() and (mu >= 0).all(), "eigenvalues must be clamped to >= 0"
        assert 0 <= low_scale <= 1, f"low_scale must be in [0, 1], got {low_scale}"
        self.low_scale = low_scale
        self.dtype = W.dtype
        self.shape = (d_out, d_in)
        self.U_G, self.U_A = U_G.float(), U_A.float()
        self.C = self.U_G.T @ W.float() @ self.U_A  # (d_out, d_in) coefficients in the curvature basis
        if pair_mass is None:
            self.pairs = KeptPairs.of_spectra(lam, mu)
        else:
            assert pair_mass.shape == (d_out, d_in), "pair masses: (d_out, d_in)"
            mass = pair_mass.double().to(self.C.device)
            self.pairs = KeptPairs(mass, mass.sum())

    def kept_count(self, rho: float) -> int:
        return self.pairs.count(rho)

    def mask(self, rho: float) -> torch.Tensor:
        return self.pairs.mask(rho)

    def edit(self, rho: float) -> torch.Tensor:
        M = self.mask(rho).float()
        if self.low_scale:
            M = M + self.low_scale * (1 - M)
        return (self.U_G @ (self.C * M) @ self.U_A.T).to(self.dtype)


class MagnitudeEditor:
    """Keeps the largest-magnitude fraction of one weight matrix's coefficients in a fixed orthonormal
    basis, W = U_out C U_in^T: with identity bases, magnitude pruning of W's entries; with random
    orthogonal bases, the same rule in directions that know nothing of the data (a control). The
    cutoff is the kept fraction of the d_out * d_in coefficients, counted: round(fraction * count)."""

    def __init__(self, W: torch.Tensor, U_out: torch.Tensor | None = None, U_in: torch.Tensor | None = None):
        d_out, d_in = W.shape
        assert U_out is None or U_out.shape == (d_out, d_out), f"output basis does not fit W {tuple(W.shape)}"
        assert U_in is None or U_in.shape == (d_in, d_in), f"input basis does not fit W {tuple(W.shape)}"
        self.dtype, self.shape = W.dtype, (d_out, d_in)
        self.U_out, self.U_in = U_out, U_in
        self.C = W.float() if U_out is None else U_out.float().T @ W.float() @ U_in.float()  # (d_out, d_in)
        self.order = torch.argsort(self.C.abs().flatten(), descending=True, stable=True)

    def kept_count(self, fraction: float) -> int:
        assert 0 < fraction <= 1, f"the kept fraction must be in (0, 1], got {fraction}"
        return round(fraction * self.order.numel())

    def edit(self, fraction: float) -> torch.Tensor:
        keep = torch.zeros(self.order.numel(), dtype=torch.bool, device=self.C.device)
        keep[self.order[: self.kept_count(fraction)]] = True
        kept = self.C * keep.view(self.shape)
        if self.U_out is not None:
            kept = self.U_out.float() @ kept @ self.U_in.float().T
        return kept.to(self.dtype)


def random_orthogonal(d: int, seed: int, name: str) -> torch.Tensor:
    """A Haar-random (d, d) orthogonal matrix (torch's QR-based init), seeded by `seed` and the module's
    name, so a module's basis does not depend on which other modules are edited."""
    import hashlib

    digest = int(hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()[:15], 16)
    return torch.nn.init.orthogonal_(torch.empty(d, d), generator=torch.Generator().manual_seed(digest))


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

    Each layer's decomposition for the method (`METHODS`: the basis change and coefficient order, or
    the SVD) is computed once; `applied(cutoff)` writes the edited weights and restores the originals
    afterwards, so every cutoff edits the original weights and the order of layers and cutoffs does
    not matter. `alpha` is kfac_scaled's scale of the dropped pairs, `seed` seeds the random bases,
    `corrections` are ekfac's corrected eigenvalues (`{module}.S`, `{module}.n` of `kfac.collect_factors`).
    """

    def __init__(self, model: torch.nn.Module, names: list[str], method: str,
                 basis: dict[str, torch.Tensor] | None = None, alpha: float = 0.0, seed: int = 0,
                 corrections: dict[str, torch.Tensor] | None = None):
        from .basis import module_basis

        if method not in METHODS:
            raise ValueError(f"unknown edit method {method!r} (known: {', '.join(METHODS)})")
        assert method not in BASIS_METHODS or basis is not None, f"the {method} edit needs a curvature basis"
        assert method != "ekfac" or corrections is not None, "the ekfac edit needs the eigenvalue corrections"
        modules = dict(model.named_modules())
        self.layers: dict[str, torch.nn.Linear] = {}
        self.editors: dict[str, CurvatureEditor | SVDEditor | MagnitudeEditor] = {}
        for name in names:
            layer = modules[name]
            assert isinstance(layer, torch.nn.Linear), f"{name} is not an nn.Linear"
            W = layer.weight.detach()
            if method in BASIS_METHODS:
                lam, U_G, mu, U_A = (t.to(W.device) for t in module_basis(basis, name))
                if method == "activation":
                    lam, U_G = torch.ones_like(lam), torch.eye(len(lam), device=W.device)
                scale = alpha if method == "kfac_scaled" else 0.0
                mass = corrections[f"{name}.S"] / corrections[f"{name}.n"] if method == "ekfac" else None
                self.editors[name] = CurvatureEditor(W, lam, U_G, mu, U_A, low_scale=scale, pair_mass=mass)
            elif method == "svd":
                self.editors[name] = SVDEditor(W)
            elif method == "magnitude":
                self.editors[name] = MagnitudeEditor(W)
            else:
                d_out, d_in = W.shape
                self.editors[name] = MagnitudeEditor(W, random_orthogonal(d_out, seed, f"{name}.out").to(W.device),
                                                     random_orthogonal(d_in, seed, f"{name}.in").to(W.device))
            self.layers[name] = layer
        self.method = method
        self.original = {name: layer.weight.detach().clone() for name, layer in self.layers.items()}

    def kept_fraction(self, name: str, cutoff: float) -> float:
        """Fraction of the coefficients kept (of the curvature pairs, of W's entries in its basis) or,
        for svd, of the singular values."""
        editor, W = self.editors[name], self.original[name]
        if isinstance(editor, SVDEditor):
            return 1 - editor.dropped_count(cutoff) / min(W.shape)
        return editor.kept_count(cutoff) / W.numel()

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
               basis: dict[str, torch.Tensor] | None = None, alpha: float = 0.0, seed: int = 0,
               corrections: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
    """Edit the named nn.Linear weights in place at one cutoff; returns the kept fraction per layer
    (`ModelEditor.kept_fraction`)."""
    editor = ModelEditor(model, names, method, basis, alpha, seed, corrections)
    kept = {}
    for name, layer in editor.layers.items():
        layer.weight.copy_(editor.editors[name].edit(cutoff))
        kept[name] = editor.kept_fraction(name, cutoff)
    return kept
