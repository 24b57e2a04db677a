"""Activation-ratio analysis (paper Fig. 2): how strongly memorized vs clean inputs of a layer
project on the high- and low-curvature directions.

Directions are A's eigenvectors ordered by eigenvalue (curvature order) or W's right singular
vectors ordered by singular value (SVD order), grouped into bands: top 10%, 10-25%, 25-50%,
bottom 50%. For each example the band's strength is the L2 norm of the input's projection on
the band; the ratio is mean strength on memorized inputs / mean strength on clean inputs.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterable

import pandas as pd
import torch

from .basis import module_basis
from .kfac import LayerHooks, rows_at

log = logging.getLogger(__name__)

BANDS = [("top 10%", 0.0, 0.10), ("10-25%", 0.10, 0.25), ("25-50%", 0.25, 0.50), ("bottom 50%", 0.50, 1.0)]


def band_slices(d: int) -> list[tuple[str, slice]]:
    """Index ranges of the bands over d directions sorted from highest to lowest."""
    edges = [round(lo * d) for _, lo, _ in BANDS] + [d]
    return [(name, slice(edges[i], edges[i + 1])) for i, (name, _, _) in enumerate(BANDS)]


def band_strength(inputs: torch.Tensor, directions: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-example L2 norm of the projection of inputs (N, d) on each band of the columns of directions (d, d)."""
    coeffs = inputs.float() @ directions.float()  # (N, d): coordinates in the ordered basis
    return {name: coeffs[:, sl].norm(dim=1) for name, sl in band_slices(directions.shape[1])}


def right_singular_vectors(W: torch.Tensor) -> torch.Tensor:
    """(d_in, d_in) right singular vectors of W as columns, by descending singular value.

    When d_in > d_out the null-space directions (singular value 0) come last, in an arbitrary
    but fixed basis: they are the bottom band.
    """
    _, _, Vh = torch.linalg.svd(W.double(), full_matrices=True)
    return Vh.T.float()


@torch.no_grad()
def capture_inputs(model: torch.nn.Module, names: list[str], batches: Iterable,
                   run: Callable[[torch.nn.Module, object], torch.Tensor | None]) -> dict[str, torch.Tensor]:
    """Inputs of the named layers at the selected positions, concatenated over batches.

    `run(model, batch)` runs the forward pass and returns the (B, T) bool position mask, or None
    when the layer inputs are (N, d) already.
    """
    store: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    with LayerHooks(model, names) as hooks:
        for batch in batches:
            hooks.clear()
            positions = run(model, batch)
            for n in names:
                store[n].append(rows_at(hooks.inputs[n], positions).cpu())
    return {n: torch.cat(v) for n, v in store.items()}


def ratio_rows(memorized: dict[str, torch.Tensor], clean: dict[str, torch.Tensor],
               bases: dict[str, dict[str, torch.Tensor]]) -> list[dict]:
    """One row per module, basis kind and band: mean strengths and their ratio."""
    rows = []
    for name in memorized:
        for kind, directions in bases[name].items():
            mem, cln = band_strength(memorized[name], directions), band_strength(clean[name], directions)
            for band, _, _ in BANDS:
                m, c = mem[band].mean().item(), cln[band].mean().item()
                rows.append({"module": name, "basis": kind, "band": band, "memorized": m, "clean": c,
                             "ratio": m / c if c > 0 else float("nan")})
    return rows


def ratio_table(model: torch.nn.Module, names: list[str], basis: dict[str, torch.Tensor],
                memorized: dict[str, torch.Tensor], clean: dict[str, torch.Tensor]):
    """The ratio table of both arms: curvature order (A's eigenvectors) and SVD order (W's right
    singular vectors) per module, logged as a module x band summary."""
    modules = dict(model.named_modules())
    bases = {n: {"kfac": module_basis(basis, n)[3],
                 "svd": right_singular_vectors(modules[n].weight.detach().float().cpu())} for n in names}
    frame = pd.DataFrame(ratio_rows(memorized, clean, bases))
    summary = frame.pivot_table(index=["module", "basis"], columns="band", values="ratio", sort=False)
    log.info("memorized / clean activation ratio:\n%s", summary.round(3).to_string())
    return frame
