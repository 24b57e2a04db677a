"""The frontier of bases: each method's edit against a hand-worked or brute-force reference, the no-edit
end of every sweep, the stated fractions kept, and the Pareto front against an all-pairs check."""
import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from curvmem.artifacts import BASIS_METHODS, METHODS
from curvmem.edit import CurvatureEditor, MagnitudeEditor, ModelEditor, edit_model, random_orthogonal
from curvmem.frontier import Panel, budget_table, frontier_points, pareto_front

NO_EDIT = {"kfac": 1.0, "kfac_scaled": 1.0, "ekfac": 1.0, "activation": 1.0, "svd": 0.0, "magnitude": 1.0,
           "random": 1.0, "kfac_mc": 1.0, "kfac_empirical": 1.0}


def net_and_basis(seed=0):
    """A two-layer net and a full-rank curvature basis of each layer (random orthonormal eigenvectors)."""
    g = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 5))
    basis = {}
    for name, layer in (("0", net[0]), ("2", net[2])):
        for key, d in (("G", layer.out_features), ("A", layer.in_features)):
            Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
            basis[f"{name}.{key}.eigenvectors"] = Q.float()
            basis[f"{name}.{key}.eigenvalues"] = (torch.rand(d, generator=g) + 0.05).sort(descending=True).values
        basis[f"{name}.S"] = torch.rand(layer.out_features, layer.in_features, generator=g) + 0.01  # EK-FAC sums
        basis[f"{name}.n"] = torch.tensor(3)
    return net, basis


def test_every_method_has_a_no_edit_end_that_reproduces_w():
    assert set(NO_EDIT) == set(METHODS)
    net, basis = net_and_basis()
    original = [p.detach().clone() for p in net.parameters()]
    for method, cutoff in NO_EDIT.items():
        editor = ModelEditor(net, ["0", "2"], method, basis if method in BASIS_METHODS else None, alpha=0.3, seed=4,
                             corrections=basis)
        with editor.applied(cutoff) as kept:
            for p, q in zip(net.parameters(), original):
                torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-5, msg=method)
            assert kept == pytest.approx({"0": 1.0, "2": 1.0}), method


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.9])
def test_magnitude_keeps_exactly_the_largest_entries(fraction):
    g = torch.Generator().manual_seed(3)
    W = torch.randn(7, 9, generator=g)
    edited = MagnitudeEditor(W).edit(fraction)
    k = round(fraction * W.numel())
    assert int((edited != 0).sum()) == k
    threshold = np.sort(np.abs(W.numpy()).ravel())[::-1][k - 1]  # the k-th largest |W_ij|, by numpy
    kept = np.abs(W.numpy()) >= threshold
    np.testing.assert_array_equal(edited.numpy(), np.where(kept, W.numpy(), 0))


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.75])
def test_random_basis_keeps_exactly_the_stated_fraction_of_its_coefficients(fraction):
    g = torch.Generator().manual_seed(5)
    W = torch.randn(6, 10, generator=g)
    Q_out, Q_in = random_orthogonal(6, 0, "m.out"), random_orthogonal(10, 0, "m.in")
    for Q in (Q_out, Q_in):
        torch.testing.assert_close(Q.T @ Q, torch.eye(len(Q)), atol=1e-5, rtol=0)
    edited = MagnitudeEditor(W, Q_out, Q_in).edit(fraction)
    coefficients = Q_out.T @ edited @ Q_in  # back in the random basis
    k = round(fraction * W.numel())
    assert int((coefficients.abs() > 1e-5).sum()) == k
    C = Q_out.T @ W @ Q_in
    largest = C.abs().flatten().topk(k).indices
    torch.testing.assert_close(coefficients.flatten()[largest], C.flatten()[largest], atol=1e-5, rtol=0)


def test_random_bases_depend_on_seed_and_module_only():
    a = random_orthogonal(8, 0, "layers.1.up.in")
    torch.testing.assert_close(a, random_orthogonal(8, 0, "layers.1.up.in"), atol=0, rtol=0)
    assert not torch.allclose(a, random_orthogonal(8, 1, "layers.1.up.in"))
    assert not torch.allclose(a, random_orthogonal(8, 0, "layers.2.up.in"))
    assert (a.abs() < 0.999).all(), "a random basis is not a permutation of the identity"


def test_activation_only_keeps_the_top_input_directions_by_hand():
    """A's eigenvalues 4, 2, 1, 1: rho 0.75 is exactly the mass of the first two directions, so the
    edit projects W's rows on them: W U_A[:, :2] U_A[:, :2]^T (G plays no part)."""
    net = torch.nn.Linear(4, 3, bias=False)
    g = torch.Generator().manual_seed(0)
    U_A, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
    U_G, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    basis = {"0.A.eigenvectors": U_A.float(), "0.A.eigenvalues": torch.tensor([4.0, 2.0, 1.0, 1.0]),
             "0.G.eigenvectors": U_G.float(), "0.G.eigenvalues": torch.tensor([9.0, 0.5, 0.01])}
    model = torch.nn.Sequential(net)
    W = net.weight.detach().clone()
    kept = edit_model(model, ["0"], "activation", 0.75, basis)
    top = U_A[:, :2].float()
    torch.testing.assert_close(net.weight.detach(), W @ top @ top.T, atol=1e-5, rtol=0)
    assert kept["0"] == pytest.approx(0.5)


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.9])
def test_scaled_edit_interpolates_between_the_paper_edit_and_w(rho):
    """W_top + alpha W_low = alpha W + (1 - alpha) W_top: linear in alpha, the paper's edit at 0."""
    g = torch.Generator().manual_seed(2)
    d_out, d_in = 5, 7
    W = torch.randn(d_out, d_in, generator=g)
    U_G, _ = torch.linalg.qr(torch.randn(d_out, d_out, generator=g))
    U_A, _ = torch.linalg.qr(torch.randn(d_in, d_in, generator=g))
    lam, mu = torch.rand(d_out, generator=g).sort(descending=True).values, torch.rand(d_in, generator=g).sort(descending=True).values
    paper = CurvatureEditor(W, lam, U_G, mu, U_A).edit(rho)
    for alpha in (0.25, 0.5):
        scaled = CurvatureEditor(W, lam, U_G, mu, U_A, low_scale=alpha).edit(rho)
        torch.testing.assert_close(scaled, alpha * W + (1 - alpha) * paper, atol=1e-5, rtol=0)


def test_ekfac_correction_equals_each_samples_weight_gradient_in_the_eigenbasis():
    """S_ij = sum_n (U_G^T dW_n U_A)_ij^2 with dW_n the weight gradient of sample n's own loss, by
    autograd one sample at a time (the collector never forms a weight gradient)."""
    from curvmem.basis import curvature_basis
    from curvmem.kfac import FactorConfig, ForwardResult, collect_factors, factor_tensors

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    X, y = torch.randn(12, 4), torch.randint(0, 3, (12,))
    cfg = FactorConfig(modules=["0", "2"], fisher="empirical")
    forward = lambda model, batch: ForwardResult(model(batch[0]), batch[1], None)  # noqa: E731
    batches = lambda: [(X[:5], y[:5]), (X[5:], y[5:])]  # noqa: E731
    basis = curvature_basis(factor_tensors(collect_factors(net, cfg, batches, forward, progress=False)))
    corrections = collect_factors(net, cfg, batches, forward, progress=False, basis=basis)
    for name in ("0", "2"):
        layer = dict(net.named_modules())[name]
        U_G, U_A = basis[f"{name}.G.eigenvectors"].double(), basis[f"{name}.A.eigenvectors"].double()
        expected = torch.zeros(layer.out_features, layer.in_features, dtype=torch.float64)
        for n in range(len(X)):
            net.zero_grad()
            torch.nn.functional.cross_entropy(net(X[n:n + 1]), y[n:n + 1], reduction="sum").backward()
            expected += (U_G.T @ layer.weight.grad.double() @ U_A) ** 2
        assert corrections[name]["n"].item() == len(X)
        torch.testing.assert_close(corrections[name]["S"].double(), expected, rtol=1e-4, atol=1e-7)
        assert set(corrections[name]) == {"S", "n"}


def test_ekfac_correction_of_a_module_does_not_depend_on_the_modules_collected_with_it():
    """The rules collect S only for the frontier's modules: with labels drawn from the model (seeded
    per batch), one module collected alone gets exactly what it gets after another module's pass."""
    from curvmem.basis import curvature_basis
    from curvmem.kfac import FactorConfig, ForwardResult, collect_factors, factor_tensors

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    X = torch.randn(12, 4)
    forward = lambda model, batch: ForwardResult(model(batch), None, None)  # noqa: E731
    batches = lambda: [X[:5], X[5:]]  # noqa: E731
    every = FactorConfig(modules=["0", "2"], fisher="mc", max_modules_per_pass=1)  # "2" in the second pass
    basis = curvature_basis(factor_tensors(collect_factors(net, every, batches, forward, progress=False)))
    together = collect_factors(net, every, batches, forward, progress=False, basis=basis)
    alone = collect_factors(net, FactorConfig(modules=["2"], fisher="mc"), batches, forward, progress=False, basis=basis)
    assert list(alone) == ["2"]
    torch.testing.assert_close(alone["2"]["S"], together["2"]["S"], rtol=0, atol=0)


def test_ekfac_edit_ranks_pairs_by_the_corrected_mass():
    """With corrections that reverse K-FAC's order, the ekfac edit keeps what K-FAC drops."""
    net = torch.nn.Sequential(torch.nn.Linear(3, 2, bias=False))
    eye2, eye3 = torch.eye(2), torch.eye(3)
    basis = {"0.G.eigenvectors": eye2, "0.G.eigenvalues": torch.tensor([2.0, 1.0]),
             "0.A.eigenvectors": eye3, "0.A.eigenvalues": torch.tensor([3.0, 2.0, 1.0])}
    S = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 85.0]])  # (1, 2) holds 85% of the corrected mass
    W = net[0].weight.detach().clone()
    kept = edit_model(net, ["0"], "ekfac", 0.8, basis, corrections={"0.S": S, "0.n": torch.tensor(1)})
    expected = torch.zeros_like(W)
    expected[1, 2] = W[1, 2]
    torch.testing.assert_close(net[0].weight.detach(), expected)
    assert kept["0"] == pytest.approx(1 / 6)


def test_unknown_method_is_refused_by_name():
    net, _ = net_and_basis()
    with pytest.raises(ValueError, match="unknown edit method 'svd2'"):
        ModelEditor(net, ["0"], "svd2")


def brute_force_front(m, d):
    """All pairs: a point is on the front unless another has <= both and < one."""
    return np.array([not any(m[j] <= m[i] and d[j] <= d[i] and (m[j] < m[i] or d[j] < d[i])
                             for j in range(len(m))) for i in range(len(m))])


def test_pareto_front_by_hand_and_against_all_pairs():
    m = np.array([100, 80, 80, 50, 60, 50, 0])
    d = np.array([0, 5, 5, 10, 8, 12, 40])
    # (0,100), the twin (5,80)s, (8,60), (10,50), (40,0) are on it; (12,50) is dominated by (10,50)
    np.testing.assert_array_equal(pareto_front(m, d), [True, True, True, True, True, False, True])
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 30))
        m, d = rng.integers(0, 6, n).astype(float), rng.integers(0, 6, n).astype(float)  # many ties
        np.testing.assert_array_equal(pareto_front(m, d), brute_force_front(m, d))


def test_points_and_budgets_by_hand():
    sweep = pd.DataFrame([
        {"method": "none", "layer_set": "", "cutoff": np.nan, "setting": "", "kept_fraction": 1.0, "mem": 100.0, "dmg": 0.0},
        {"method": "kfac", "layer_set": "a", "cutoff": 0.9, "setting": "0.9", "kept_fraction": 0.2, "mem": 40.0, "dmg": 3.0},
        {"method": "kfac", "layer_set": "a", "cutoff": 0.5, "setting": "0.5", "kept_fraction": 0.1, "mem": 10.0, "dmg": 9.0},
        {"method": "svd", "layer_set": "a", "cutoff": 0.5, "setting": "0.5", "kept_fraction": 0.5, "mem": 60.0, "dmg": 2.0},
        {"method": "random", "layer_set": "a", "cutoff": 0.5, "setting": "0.5", "kept_fraction": 0.5, "mem": 70.0, "dmg": 4.0},
        {"method": "kfac", "layer_set": "b", "cutoff": 0.5, "setting": "0.5", "kept_fraction": 0.1, "mem": 0.0, "dmg": 1.0},
    ])
    panel = Panel("mem", "dmg", budgets=(2.5, 5.0))
    points = frontier_points(sweep, ["a"], [panel])
    assert "b" not in set(points.layer_set)  # another layer set is not compared
    front = points.set_index(["method", "setting"]).on_front
    assert front.to_dict() == {("none", ""): True, ("kfac", "0.9"): True, ("kfac", "0.5"): True,
                               ("svd", "0.5"): True, ("random", "0.5"): False}
    budgets = budget_table(points, [panel]).set_index(["damage_bound", "method"])
    assert budgets.loc[(2.5, "svd"), "min_memorization_pct"] == 60
    assert np.isnan(budgets.loc[(2.5, "kfac"), "min_memorization_pct"])  # no K-FAC edit within 2.5
    assert budgets.loc[(5.0, "kfac"), "min_memorization_pct"] == 40 and budgets.loc[(5.0, "kfac"), "setting"] == "0.9"
    assert budgets.loc[(5.0, "random"), "edits_on_front"] == 0


@pytest.mark.parametrize("frontier, message", [
    ({"layer_sets": ["nope"]}, "config key vit.edit.frontier.layer_sets[0]: 'nope' is not in vit.edit.layer_sets"),
    ({"cutoffs": {"magnitude": [0.5, 0.50]}}, "config key vit.edit.frontier.cutoffs.magnitude: has duplicate entries"),
    ({"cutoffs": {"lowrank": [0.5]}}, "config key vit.edit.frontier.cutoffs.lowrank: unknown key"),
    ({"alpha": 1.0}, "config key vit.edit.frontier.alpha"),
    ({"cutoffs": {"kfac_mc": [0.5]}}, "config key vit.edit.frontier.cutoffs.kfac_mc: the factors are already the mc "
                                      "Fisher"),
])
def test_frontier_config_errors_name_the_key(frontier, message):
    import yaml

    from curvmem.config import ConfigError, Memo, validate

    config = yaml.safe_load(open("config/test.yaml"))
    config["vit"]["edit"]["frontier"].update(frontier)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        validate(config, Memo(None))
