"""K-FAC factors against the exact Fisher, computed independently, on cases where K-FAC is exact.

The scale split between A and G is arbitrary, so the Kronecker product G (x) A is compared.
Row-major vec: vec(g a^T) = kron(g, a), so the Fisher of W is kron(G, A).
"""
import pytest
import torch
import torch.nn as nn
from torch.func import functional_call, jacrev

from curvmem.kfac import FactorConfig, ForwardResult, collect_factors, expectations, factor_tensors, linear_names
from curvmem.layers import match_modules


def mlp(d_in=4, hidden=5, d_out=3, bias=True, act=True, seed=0):
    torch.manual_seed(seed)
    layers = [nn.Linear(d_in, hidden, bias=bias), nn.Tanh() if act else nn.Identity(), nn.Linear(hidden, d_out, bias=bias)]
    return nn.Sequential(*layers).double()


def plain_forward(model, batch):
    x, y = batch
    return ForwardResult(outputs=model(x), labels=y, positions=None)


def kron_factor(model, batches, fisher, likelihood="categorical", seed=0, group=0):
    cfg = FactorConfig(modules=["*"], fisher=fisher, likelihood=likelihood, seed=seed, max_modules_per_pass=group)
    sums = collect_factors(model, cfg, lambda: batches, plain_forward, progress=False)
    return {name: torch.kron(G.double(), A.double()) for name, (G, A) in expectations(factor_tensors(sums)).items()}


def weight_names(model):
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


@pytest.mark.parametrize("label", [0, 2])
def test_empirical_one_example_equals_gradient_outer_product(label):
    model = mlp()
    x, y = torch.randn(1, 4, dtype=torch.float64), torch.tensor([label])
    kfac = kron_factor(model, [(x, y)], "empirical")
    loss = nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, [model[i].weight for i in (0, 2)])
    for name, grad in zip(weight_names(model), grads):
        exact = torch.outer(grad.flatten(), grad.flatten())
        torch.testing.assert_close(kfac[name], exact, rtol=1e-5, atol=1e-7)


def test_mc_one_example_converges_to_expectation_over_every_label():
    """Exact Fisher of one input: sum over all C labels of p(y) grad log p(y) grad log p(y)^T."""
    model = mlp(d_out=4)
    x = torch.randn(1, 4, dtype=torch.float64)
    probs = torch.softmax(model(x), -1)[0].detach()
    exact = {n: 0 for n in weight_names(model)}
    for y in range(4):
        loss = nn.functional.cross_entropy(model(x), torch.tensor([y]))
        grads = torch.autograd.grad(loss, [model[i].weight for i in (0, 2)])
        for name, g in zip(weight_names(model), grads):
            exact[name] = exact[name] + probs[y] * torch.outer(g.flatten(), g.flatten())
    reps = 40000  # the same input, one sampled label each: the error shrinks like 1/sqrt(reps)
    batches = [(x.expand(4000, -1), torch.zeros(4000, dtype=torch.long))] * (reps // 4000)
    kfac = kron_factor(model, batches, "mc", seed=1)
    for name in exact:
        err = (kfac[name] - exact[name]).norm() / exact[name].norm()
        assert err < 0.03, f"{name}: relative error {err:.4f} against the label enumeration"


def test_mc_deep_linear_network_equals_exact_ggn():
    """Deep linear net with a Gaussian likelihood: G does not depend on the input, so K-FAC is
    exact over many inputs; compared with the GGN built from per-input Jacobians (torch.func)."""
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Linear(4, 5, bias=False), nn.Linear(5, 2, bias=False)).double()
    torch.manual_seed(0)
    xs = torch.randn(6, 3, dtype=torch.float64)
    params = dict(model.named_parameters())
    exact = {}
    for i, name in enumerate(weight_names(model)):
        key = f"{name}.weight"

        def out(w, x):
            return functional_call(model, {**params, key: w}, (x[None],))[0]

        J = torch.stack([jacrev(out)(params[key], x).reshape(2, -1) for x in xs])  # (N, 2, d_out*d_in)
        exact[name] = torch.einsum("nci,ncj->ij", J, J) / len(xs)  # unit output Hessian
    reps = 20000
    batches = [(xs.repeat(1000, 1), torch.zeros(6000, 2, dtype=torch.float64))] * (reps // 1000)
    kfac = kron_factor(model, batches, "mc", likelihood="gaussian", seed=3)
    for name in exact:
        err = (kfac[name] - exact[name]).norm() / exact[name].norm()
        assert err < 0.03, f"{name}: relative error {err:.4f} against the exact GGN"


def test_deep_linear_network_exact_ggn_with_enumerated_noise():
    """Same deep linear net, no sampling: the empirical Fisher with targets f(x) - e_c for every
    unit vector e_c sums the Gaussian Fisher exactly (residuals are the e_c), so K-FAC must match
    the Jacobian GGN to float precision."""
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Linear(4, 2, bias=False)).double()
    torch.manual_seed(1)
    xs = torch.randn(5, 3, dtype=torch.float64)
    with torch.no_grad():
        f = model(xs)
    eye = torch.eye(2, dtype=torch.float64)
    x_rep = xs.repeat_interleave(2, 0)
    targets = (f[:, None, :] - eye[None]).reshape(-1, 2)  # residual pred - target = e_c
    kfac = kron_factor(model, [(x_rep, targets)], "empirical", likelihood="gaussian")
    params = dict(model.named_parameters())
    for name in weight_names(model):
        key = f"{name}.weight"

        def out(w, x):
            return functional_call(model, {**params, key: w}, (x[None],))[0]

        J = torch.stack([jacrev(out)(params[key], x).reshape(2, -1) for x in xs])
        ggn = torch.einsum("nci,ncj->ij", J, J) / len(xs)
        # G averages over 10 samples (5 inputs x 2 residual directions): G = J^T J / 2
        torch.testing.assert_close(kfac[name] * 2, ggn, rtol=1e-5, atol=1e-8)


def test_groups_and_seed():
    model = mlp()
    torch.manual_seed(5)
    batches = [(torch.randn(16, 4, dtype=torch.float64), torch.randint(0, 3, (16,))) for _ in range(3)]
    together = kron_factor(model, batches, "mc", seed=7)
    grouped = kron_factor(model, batches, "mc", seed=7, group=1)
    other_seed = kron_factor(model, batches, "mc", seed=8)
    for name in together:
        torch.testing.assert_close(together[name], grouped[name])  # every group sees the same labels
        assert not torch.allclose(together[name], other_seed[name])


def test_positions_select_rows():
    """A from the selected token positions only, on a (B, T, d) input."""
    layer = nn.Sequential(nn.Linear(3, 2)).double()
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    keep = torch.tensor([[True, False, False, True], [False, True, False, False]])

    def forward(model, batch):
        out = model(batch)  # (B, T, 2)
        return ForwardResult(outputs=out[keep], labels=torch.zeros(int(keep.sum()), dtype=torch.long), positions=keep)

    sums = collect_factors(layer, FactorConfig(modules=["0"], fisher="empirical"), lambda: [x], forward, progress=False)
    rows = x[keep]
    torch.testing.assert_close(sums["0"]["A"].double(), rows.T @ rows)
    assert sums["0"]["n"].item() == 3


def test_match_modules():
    names = linear_names(mlp())
    assert names == ["0", "2"]
    assert match_modules(names, ["0"]) == ["0"]
    assert match_modules(names, ["*"]) == ["0", "2"]
    with pytest.raises(ValueError, match="matches no nn.Linear"):
        match_modules(names, ["1"])  # the Tanh, not a Linear
