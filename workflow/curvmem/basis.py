"""The curvature basis: eigendecompositions of the K-FAC factors, computed once per layer.

Every cutoff of a sweep reuses the same basis, so this is an artifact of its own.
"""
from __future__ import annotations

import logging
import time

import torch

from . import io
from .kfac import expectations

log = logging.getLogger(__name__)


def eigh_descending(M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (descending, tiny negatives clamped to 0) and eigenvectors (columns) of a PSD matrix."""
    assert M.ndim == 2 and M.shape[0] == M.shape[1], f"expected a square matrix, got {tuple(M.shape)}"
    M = M.double()
    M = 0.5 * (M + M.T)  # summed outer products are symmetric up to rounding
    evals, evecs = torch.linalg.eigh(M)
    evals, evecs = evals.flip(0), evecs.flip(1)
    top = evals[0].clamp(min=0).item()
    if evals[-1] < -1e-6 * max(top, 1e-30):
        log.warning("factor has a negative eigenvalue %.3g (largest %.3g); clamped to 0", evals[-1].item(), top)
    return evals.clamp(min=0).float(), evecs.float()


def curvature_basis(factor_sums: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """From saved factor sums to `{module}.{G,A}.{eigenvalues,eigenvectors}`."""
    basis = {}
    for name, (G, A) in expectations(factor_sums).items():
        for key, M in (("G", G), ("A", A)):
            evals, evecs = eigh_descending(M)
            basis[f"{name}.{key}.eigenvalues"] = evals
            basis[f"{name}.{key}.eigenvectors"] = evecs
    return basis


def module_basis(basis: dict[str, torch.Tensor], name: str):
    """(lam, U_G, mu, U_A) of one module."""
    try:
        return (
            basis[f"{name}.G.eigenvalues"],
            basis[f"{name}.G.eigenvectors"],
            basis[f"{name}.A.eigenvalues"],
            basis[f"{name}.A.eigenvectors"],
        )
    except KeyError:
        raise KeyError(f"the curvature basis has no module {name!r}; is it in the factor modules?") from None


def load_basis(path, layers: dict[str, torch.nn.Linear]) -> dict[str, torch.Tensor]:
    """The saved basis, checked against the layers it will edit: every module present, every
    factor of the layer's shape. A mismatch is an ArtifactError naming the file and the module."""
    basis = io.load_tensors(path)
    for name, layer in layers.items():
        expected = {"G": layer.out_features, "A": layer.in_features}
        for key, d in expected.items():
            vecs, vals = basis.get(f"{name}.{key}.eigenvectors"), basis.get(f"{name}.{key}.eigenvalues")
            if vecs is None or vals is None:
                raise io.artifact_error(path, f"has no {key} factor for module {name!r} (it holds "
                                              f"{sorted({k.rsplit('.', 2)[0] for k in basis})})")
            if tuple(vecs.shape) != (d, d) or tuple(vals.shape) != (d,):
                raise io.artifact_error(path, f"{key} factor of module {name!r} is {tuple(vecs.shape)}, the layer "
                                              f"needs ({d}, {d}): made for another model?")
    return basis


def spectra_frame(basis: dict[str, torch.Tensor]):
    """Long table of every eigenvalue: module, factor (A or G), rank, eigenvalue, cumulative mass fraction."""
    import pandas as pd

    frames = []
    for key, evals in basis.items():
        if not key.endswith(".eigenvalues"):
            continue
        module, factor = key[: -len(".X.eigenvalues")], key[-len("X.eigenvalues")]
        ev = evals.double()
        frames.append(pd.DataFrame({
            "module": module, "factor": factor, "rank": range(1, len(ev) + 1),
            "eigenvalue": ev.numpy(), "cumulative_mass": (ev.cumsum(0) / ev.sum().clamp(min=1e-300)).numpy(),
        }))
    return pd.concat(frames, ignore_index=True)


def basis_stage(params: dict, *, factors: str, basis: str, spectra: str) -> None:
    """Rules vit_basis / lm_basis: eigendecompose every factor once; the spectra table beside it."""
    t0 = time.time()
    result = curvature_basis(io.load_tensors(factors))
    io.save_tensors(result, basis, {"modules": io.load_metadata(factors)["modules"]})
    io.save_parquet(spectra_frame(result), spectra)
    log.info("basis of %d factors in %.1fs", len(result) // 2, time.time() - t0)
