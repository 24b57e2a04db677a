"""The Fisher comparison's overlaps against independent references: scipy's principal angles, an
explicit projector onto the span of the kept Kronecker pairs, a plain-Python keep rule, and the
chance level against random bases; the paired table against a hand-worked sweep."""
import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import torch

from curvmem.intervals import difference
from curvmem.edit import KeptPairs
from curvmem.subspaces import basis_overlap, kept_overlap, span_overlap
from curvmem.sweep import fisher_comparison


def orthogonal(d, seed):
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return Q


def spectrum(d, seed):
    return (torch.rand(d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + 0.01).sort(
        descending=True).values


@pytest.mark.parametrize("d, k", [(6, 1), (9, 3), (12, 6)])
def test_span_overlap_is_the_mean_squared_cosine_of_scipys_principal_angles(d, k):
    U, V = orthogonal(d, 0)[:, :k], orthogonal(d, 1)[:, :k]
    angles = scipy.linalg.subspace_angles(U.numpy(), V.numpy())
    assert span_overlap(U, V) == pytest.approx(np.mean(np.cos(angles) ** 2), abs=1e-12)
    # the same span in another orthonormal basis, and an orthogonal complement
    assert span_overlap(U, U @ orthogonal(k, 2)) == pytest.approx(1.0, abs=1e-12)
    Q = orthogonal(d, 3)
    if 2 * k <= d:
        assert span_overlap(Q[:, :k], Q[:, k:2 * k]) == pytest.approx(0.0, abs=1e-12)


def test_kept_pairs_are_the_shortest_prefix_of_pairs_by_mass_reaching_rho():
    """Against a brute force in plain Python: enumerate the pairs, sort by mass, add them up until rho of the
    total is reached (the crossing pair kept)."""
    d_out, d_in = 7, 5
    lam, mu = spectrum(d_out, 1), spectrum(d_in, 2)
    pairs = sorted(((float(lam[i]) * float(mu[j]), i, j) for i in range(d_out) for j in range(d_in)), reverse=True)
    total = sum(m for m, _, _ in pairs)
    for rho in (0.1, 0.5, 0.75, 0.9, 0.999, 1.0):
        expected, mass = torch.zeros(d_out, d_in, dtype=torch.bool), 0.0
        for m, i, j in pairs:
            expected[i, j], mass = True, mass + m
            if mass >= rho * total * (1 - 1e-12):
                break
        assert torch.equal(KeptPairs.of_spectra(lam, mu).mask(rho), expected), rho


def kron_projector(U_G, U_A, mask):
    """The orthogonal projector onto span{vec(u_i v_j^T) : (i, j) kept}, built explicitly."""
    columns = [torch.outer(U_G[:, i], U_A[:, j]).flatten() for i, j in mask.nonzero().tolist()]
    B = torch.stack(columns, dim=1)  # (d_out d_in, |K|), orthonormal columns
    return B @ B.T


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.9])
def test_kept_overlap_equals_the_trace_of_explicit_kronecker_projectors(rho):
    d_out, d_in = 4, 3
    U_G1, U_A1, U_G2, U_A2 = orthogonal(d_out, 0), orthogonal(d_in, 1), orthogonal(d_out, 2), orthogonal(d_in, 3)
    m1 = KeptPairs.of_spectra(spectrum(d_out, 4), spectrum(d_in, 5)).mask(rho)
    m2 = KeptPairs.of_spectra(spectrum(d_out, 6), spectrum(d_in, 7)).mask(rho)
    P1, P2 = kron_projector(U_G1, U_A1, m1), kron_projector(U_G2, U_A2, m2)
    expected = float(torch.trace(P1 @ P2)) / min(int(m1.sum()), int(m2.sum()))
    O_G, O_A = (U_G1.T @ U_G2).square(), (U_A1.T @ U_A2).square()
    assert kept_overlap(m1, m2, O_G, O_A) == pytest.approx(expected, abs=1e-12)
    assert kept_overlap(m1, m1, torch.eye(d_out, dtype=torch.float64), torch.eye(d_in, dtype=torch.float64)) == 1.0


def test_kept_overlap_of_random_bases_averages_to_its_chance_level():
    """E tr(P1 P2) = |K1| |K2| / (d_out d_in) for independent Haar bases; the table's chance column."""
    d_out, d_in, draws = 5, 4, 400
    basis = {"m.G.eigenvalues": spectrum(d_out, 0), "m.G.eigenvectors": orthogonal(d_out, 1),
             "m.A.eigenvalues": spectrum(d_in, 2), "m.A.eigenvectors": orthogonal(d_in, 3)}
    overlaps, chances = [], []
    for seed in range(draws):
        other = {**basis, "m.G.eigenvectors": orthogonal(d_out, 10 + 2 * seed),
                 "m.A.eigenvectors": orthogonal(d_in, 11 + 2 * seed)}
        row = next(r for r in basis_overlap(basis, other, ["m"], [0.6]) if r["factor"] == "pairs")
        overlaps.append(row["overlap"])
        chances.append(row["chance"])
    assert len(set(chances)) == 1  # same spectra: the same kept counts every draw
    standard_error = np.std(overlaps) / np.sqrt(draws)
    assert abs(np.mean(overlaps) - chances[0]) < 4 * standard_error, (np.mean(overlaps), chances[0])


def test_identical_bases_overlap_completely_at_every_size():
    d_out, d_in = 6, 5
    basis = {"m.G.eigenvalues": spectrum(d_out, 0), "m.G.eigenvectors": orthogonal(d_out, 1),
             "m.A.eigenvalues": spectrum(d_in, 2), "m.A.eigenvectors": orthogonal(d_in, 3)}
    rows = basis_overlap(basis, basis, ["m"], [0.5, 0.9])
    assert {r["factor"] for r in rows} == {"G", "A", "pairs"}
    assert all(r["overlap"] == pytest.approx(1.0, abs=1e-12) for r in rows)
    assert [r["size"] for r in rows if r["factor"] == "G"] == [1, 2, 3]  # k = round(f * 6) for 1..50%, at least 1


def test_fisher_comparison_pairs_each_edit_with_the_other_fishers_at_the_same_rho():
    sweep = pd.DataFrame([
        {"method": "none", "layer_set": "", "cutoff": np.nan, "kept_fraction": 1.0, "mem": 100.0, "n": 20, "ppl": 0.0},
        {"method": "kfac", "layer_set": "a", "cutoff": 0.5, "kept_fraction": 0.1, "mem": 40.0, "n": 20, "ppl": 30.0},
        {"method": "kfac", "layer_set": "a", "cutoff": 0.9, "kept_fraction": 0.4, "mem": 80.0, "n": 20, "ppl": 5.0},
        {"method": "kfac", "layer_set": "b", "cutoff": 0.9, "kept_fraction": 0.5, "mem": 90.0, "n": 20, "ppl": 2.0},
        {"method": "kfac_empirical", "layer_set": "a", "cutoff": 0.9, "kept_fraction": 0.3, "mem": 55.0, "n": 20,
         "ppl": 9.0},
        {"method": "kfac_empirical", "layer_set": "a", "cutoff": 0.7, "kept_fraction": 0.2, "mem": 50.0, "n": 20,
         "ppl": 12.0},  # no K-FAC edit at 0.7: unpaired
    ])
    table = fisher_comparison(sweep, {"mem": "n"}, ("ppl",))
    assert table[["layer_set", "rho", "other_method", "metric"]].values.tolist() == [
        ["a", 0.9, "kfac_empirical", "mem"], ["a", 0.9, "kfac_empirical", "ppl"]]
    mem, ppl = table.iloc[0], table.iloc[1]
    assert (mem.pct, mem.other_pct, mem.change_pts) == (80.0, 55.0, -25.0)
    assert (mem.kept_fraction, mem.other_kept_fraction) == (0.4, 0.3)
    _, low, high = difference(55.0, 20, 80.0, 20)
    assert (mem.ci_low, mem.ci_high) == pytest.approx((low, high)) and mem.beyond_noise == (high < 0)
    assert (ppl.change_pts, np.isnan(ppl.ci_low)) == (4.0, True)
