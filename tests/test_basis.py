"""The curvature basis: eigendecomposition conventions."""
import torch

from curvmem.basis import curvature_basis, eigh_descending, spectra_frame


def test_eigh_descending_reconstructs_and_sorts():
    torch.manual_seed(0)
    X = torch.randn(50, 6)
    M = X.T @ X
    evals, evecs = eigh_descending(M)
    assert (evals[:-1] >= evals[1:]).all()
    torch.testing.assert_close(evecs @ torch.diag(evals) @ evecs.T, M, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(evecs.T @ evecs, torch.eye(6), rtol=1e-5, atol=1e-5)


def test_tiny_negative_eigenvalues_are_clamped():
    v = torch.tensor([[1.0], [2.0], [0.5]])
    M = v @ v.T - 1e-9 * torch.eye(3)  # rank one, two eigenvalues slightly below zero
    evals, _ = eigh_descending(M)
    assert (evals >= 0).all()
    torch.testing.assert_close(evals, torch.tensor([5.25, 0.0, 0.0]), atol=1e-6, rtol=1e-6)


def test_basis_uses_expectations_and_spectra_table():
    A = torch.diag(torch.tensor([4.0, 2.0]))
    G = torch.diag(torch.tensor([6.0, 3.0, 0.0]))
    basis = curvature_basis({"fc.A": A, "fc.G": G, "fc.n": torch.tensor(2)})
    torch.testing.assert_close(basis["fc.A.eigenvalues"], torch.tensor([2.0, 1.0]))
    torch.testing.assert_close(basis["fc.G.eigenvalues"], torch.tensor([3.0, 1.5, 0.0]))
    spectra = spectra_frame(basis)
    g = spectra[spectra.factor == "G"]
    assert g.cumulative_mass.tolist() == [2 / 3, 1.0, 1.0]
    assert set(spectra.module) == {"fc"}


def test_load_basis_names_the_file_and_the_module(tmp_path):
    """A basis made for another model: one error naming the file and the module, not a KeyError."""
    import pytest

    from curvmem import io
    from curvmem.basis import load_basis

    layer = torch.nn.Linear(3, 2)
    basis = curvature_basis({"fc.A": torch.eye(3), "fc.G": torch.eye(2), "fc.n": torch.tensor(1)})
    path = tmp_path / "results/vit/basis-0123456789.safetensors"
    io.save_tensors(basis, path)
    assert set(load_basis(path, {"fc": layer})) == set(basis)
    with pytest.raises(io.ArtifactError, match=r"basis-0123456789.safetensors: has no G factor for module 'other'.*"
                                               r"made by rule vit_basis"):
        load_basis(path, {"other": layer})
    with pytest.raises(io.ArtifactError, match=r"A factor of module 'fc' is \(3, 3\), the layer needs \(4, 4\)"):
        load_basis(path, {"fc": torch.nn.Linear(4, 2)})
