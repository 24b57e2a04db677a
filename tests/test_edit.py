"""The keep-mass edit and the SVD baseline against hand-worked cases and independent references."""
import heapq

import pytest
import torch

from curvmem.edit import CurvatureEditor, edit_model, svd_drop


def random_basis(d_out, d_in, seed, decay=1.0):
    g = torch.Generator().manual_seed(seed)
    lam = torch.rand(d_out, generator=g, dtype=torch.float64).pow(decay * 4).sort(descending=True).values
    mu = torch.rand(d_in, generator=g, dtype=torch.float64).pow(decay * 4).sort(descending=True).values
    U_G, _ = torch.linalg.qr(torch.randn(d_out, d_out, generator=g, dtype=torch.float64))
    U_A, _ = torch.linalg.qr(torch.randn(d_in, d_in, generator=g, dtype=torch.float64))
    W = torch.randn(d_out, d_in, generator=g, dtype=torch.float64)
    return W.float(), lam.float(), U_G.float(), mu.float(), U_A.float()


def heap_walk(lam, mu, rho):
    """Reference: pop pairs in descending mass from a heap until the kept mass reaches rho * total.

    Rows and columns are sorted descending, so the largest unvisited pair is always the next
    column of some row: the heap holds one frontier pair per row.
    """
    lam, mu = lam.double().tolist(), mu.double().tolist()
    total = sum(lam) * sum(mu)
    heap = [(-lam[i] * mu[0], i, 0) for i in range(len(lam))]
    heapq.heapify(heap)
    kept, mass = set(), 0.0
    while mass < rho * total and heap:
        neg, i, j = heapq.heappop(heap)
        kept.add((i, j))
        mass += -neg
        if j + 1 < len(mu):
            heapq.heappush(heap, (-lam[i] * mu[j + 1], i, j + 1))
    return kept


def test_hand_worked_example():
    # identity bases: C = W. Masses lam_i mu_j: (0,0)=6, (0,1)=3, (1,0)=2, (1,1)=1; total 12.
    W = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    lam, mu, eye = torch.tensor([3.0, 1.0]), torch.tensor([2.0, 1.0]), torch.eye(2)
    editor = CurvatureEditor(W, lam, eye, mu, eye)
    assert editor.kept_count(0.5) == 1  # 6 >= 0.5 * 12: the crossing pair alone
    assert editor.kept_count(0.6) == 2  # 6 < 7.2 <= 9
    assert editor.kept_count(0.75) == 2  # 9 >= 9
    assert editor.kept_count(0.76) == 3
    torch.testing.assert_close(editor.edit(0.5), torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    torch.testing.assert_close(editor.edit(0.6), torch.tensor([[1.0, 2.0], [0.0, 0.0]]))
    torch.testing.assert_close(editor.edit(0.8), torch.tensor([[1.0, 2.0], [3.0, 0.0]]))


def test_rho_one_returns_w():
    W, lam, U_G, mu, U_A = random_basis(7, 5, seed=0)
    torch.testing.assert_close(CurvatureEditor(W, lam, U_G, mu, U_A).edit(1.0), W, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(6, 9), (12, 4), (10, 10)])
@pytest.mark.parametrize("rho", [0.05, 0.3, 0.6, 0.75, 0.9, 0.99])
def test_selection_matches_heap_walk_and_mass_bounds(shape, rho):
    W, lam, U_G, mu, U_A = random_basis(*shape, seed=shape[0] * 31 + shape[1])
    editor = CurvatureEditor(W, lam, U_G, mu, U_A)
    mask = editor.mask(rho)
    kept = {tuple(ij) for ij in mask.nonzero().tolist()}
    assert kept == heap_walk(lam, mu, rho)
    mass = torch.outer(lam.double(), mu.double())
    total = mass.sum()
    kept_mass = mass[mask].sum()
    assert kept_mass >= rho * total * (1 - 1e-12)
    crossing = mass[mask].min()  # the last pair taken is the lightest kept one
    assert kept_mass - crossing < rho * total


@pytest.mark.parametrize("rho", [0.3, 0.75, 0.95])
def test_kept_set_is_a_staircase(rho):
    W, lam, U_G, mu, U_A = random_basis(15, 11, seed=4)
    mask = CurvatureEditor(W, lam, U_G, mu, U_A).mask(rho)
    row_lengths = mask.sum(1)
    for i in range(mask.shape[0]):
        assert mask[i, : row_lengths[i]].all(), f"row {i} is not a prefix"
    assert (row_lengths[:-1] >= row_lengths[1:]).all(), "row lengths must not increase down the rows"
    assert (mask.sum(0)[:-1] >= mask.sum(0)[1:]).all()


def test_kept_count_monotone_and_small_rho_shrinks_w():
    W, lam, U_G, mu, U_A = random_basis(8, 8, seed=2, decay=2.0)
    editor = CurvatureEditor(W, lam, U_G, mu, U_A)
    counts = [editor.kept_count(r) for r in (0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)]
    assert counts == sorted(counts) and counts[-1] == 64
    assert editor.edit(1e-9).norm() < W.norm() / 4  # one pair left
    assert torch.linalg.matrix_rank(editor.edit(1e-9)) == 1


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 0.9])
def test_svd_drop_removes_exactly_the_smallest_singular_values(fraction):
    torch.manual_seed(0)
    W = torch.randn(12, 8, dtype=torch.float64)
    S = torch.linalg.svdvals(W)
    n_drop = round(fraction * 8)
    expected = S.clone()
    expected[8 - n_drop:] = 0
    torch.testing.assert_close(torch.linalg.svdvals(svd_drop(W, fraction)), expected, atol=1e-10, rtol=1e-10)
    # the kept part is untouched: the edit changes W only along the dropped directions
    U, S_, Vh = torch.linalg.svd(W, full_matrices=False)
    torch.testing.assert_close(W - svd_drop(W, fraction), (U[:, 8 - n_drop:] * S_[8 - n_drop:]) @ Vh[8 - n_drop:])


def test_edit_model_is_order_independent():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    basis = {}
    for name, layer in (("0", net[0]), ("2", net[2])):
        _, lam, U_G, mu, U_A = random_basis(layer.out_features, layer.in_features, seed=int(name))
        basis.update({f"{name}.G.eigenvalues": lam, f"{name}.G.eigenvectors": U_G,
                      f"{name}.A.eigenvalues": mu, f"{name}.A.eigenvectors": U_A})
    a, b = [torch.nn.Sequential(*[torch.nn.Linear(5, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3)]) for _ in range(2)]
    a.load_state_dict(net.state_dict())
    b.load_state_dict(net.state_dict())
    edit_model(a, ["0", "2"], "kfac", 0.7, basis)
    edit_model(b, ["2", "0"], "kfac", 0.7, basis)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb)
    assert not torch.allclose(a[0].weight, net[0].weight)
    torch.testing.assert_close(a[0].bias, net[0].bias)  # biases are never edited


def test_model_editor_reuses_one_decomposition_for_every_cutoff():
    """Many cutoffs from one ModelEditor equal fresh single edits, and the weights are restored
    after each: the grouped edit jobs compute what one job per cutoff computes."""
    from curvmem.edit import ModelEditor

    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    original = {k: v.clone() for k, v in net.state_dict().items()}
    basis = {}
    for name, layer in (("0", net[0]), ("2", net[2])):
        _, lam, U_G, mu, U_A = random_basis(layer.out_features, layer.in_features, seed=7 + int(name))
        basis.update({f"{name}.G.eigenvalues": lam, f"{name}.G.eigenvectors": U_G,
                      f"{name}.A.eigenvalues": mu, f"{name}.A.eigenvectors": U_A})
    for method, cutoffs in (("kfac", [0.9, 0.5, 0.99]), ("svd", [0.5, 0.0, 0.34])):
        editor = ModelEditor(net, ["0", "2"], method, basis if method == "kfac" else None)
        for cutoff in cutoffs:
            fresh = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
            fresh.load_state_dict(original)
            kept_alone = edit_model(fresh, ["0", "2"], method, cutoff, basis)
            with editor.applied(cutoff) as kept:
                for a, b in zip(net.parameters(), fresh.parameters()):
                    assert torch.equal(a, b), (method, cutoff)
                assert kept == pytest.approx(kept_alone)
            for key, value in net.state_dict().items():
                assert torch.equal(value, original[key]), f"{key} not restored after {method} {cutoff}"


def test_cutoff_memo_is_keyed_by_everything_a_result_depends_on(tmp_path, monkeypatch):
    from curvmem import sweep

    small = tmp_path / "reference.safetensors"
    small.write_bytes(b"reference v1")
    inputs = {"model": "results/lm/model-0123456789", "reference": str(small)}
    params = {"method": "kfac", "layer_set": "a"}
    memo = sweep.CutoffMemo(tmp_path / ".memo", params, inputs)
    assert memo.get(0.5) is None
    memo.put(0.5, {"cutoff": 0.5, "x": 1})
    assert memo.get(0.5) == {"cutoff": 0.5, "x": 1} and memo.get(0.9) is None
    assert sweep.CutoffMemo(tmp_path / ".memo", dict(params), inputs).get(0.5) is not None  # a later job, same key
    # other parameters, another artifact, other bytes in a small input, other code: no entry
    assert sweep.CutoffMemo(tmp_path / ".memo", {**params, "layer_set": "b"}, inputs).get(0.5) is None
    assert sweep.CutoffMemo(tmp_path / ".memo", params, {**inputs, "model": "results/lm/model-9876543210"}).get(0.5) is None
    small.write_bytes(b"reference v2")
    assert sweep.CutoffMemo(tmp_path / ".memo", params, inputs).get(0.5) is None
    small.write_bytes(b"reference v1")
    monkeypatch.setattr(sweep, "_code_digest", lambda: "another library")
    assert sweep.CutoffMemo(tmp_path / ".memo", params, inputs).get(0.5) is None
