"""BalancedSubnet against independent references: the mask zeroes exactly floor(ratio * numel)
weights of each matrix (hand-worked), the straight-through gradient equals autograd's gradient of
the masked weight's mask, training raises the forget loss and keeps the retain loss bounded, and
baking writes W * M and nothing else."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from curvmem.bsn import BSNConfig, bake, baked, scored_masks, train_subnet, zeroed_count


def test_hand_worked_mask():
    """A 2 x 5 weight, ratio 0.25: floor(2.5) = 2 weights zeroed, those of the two smallest |score|."""
    layer = nn.Linear(5, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.arange(1.0, 11.0).view(2, 5))
    model = nn.Sequential(layer)
    with scored_masks(model, ["0"], ratio=0.25) as masks:
        with torch.no_grad():
            masks["0"].scores.copy_(torch.tensor([[0.5, -0.1, 0.9, 0.3, -0.7], [0.05, 0.8, -0.6, 0.4, 1.0]]))
        expected = torch.tensor([[1.0, 0, 3, 4, 5], [0, 7, 8, 9, 10]])  # |-0.1| and |0.05| are the smallest
        assert torch.equal(layer.weight, expected)
    assert torch.equal(layer.weight, torch.arange(1.0, 11.0).view(2, 5)), "leaving the block restores W"


@pytest.mark.parametrize("shape,ratio", [((7, 13), 0.0015), ((64, 32), 0.0015), ((64, 32), 0.05), ((3, 3), 0.3),
                                         ((10, 10), 0.0)])
def test_exactly_floor_ratio_numel_zeroed(shape, ratio):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(shape[1], shape[0]))
    W = model[0].weight.detach().clone()
    with scored_masks(model, ["0"], ratio, seed=3):
        zeros = int((model[0].weight == 0).sum())
    assert zeros == math.floor(ratio * W.numel()) == zeroed_count(W.numel(), ratio)


def test_straight_through_gradient_equals_the_masked_weights_gradient():
    """Reference: the same loss with the hard mask M as a leaf tensor, autograd's dL/dM; the score's
    gradient is dL/dM passed straight through the top-k and through |S| (sign(S))."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    with scored_masks(model, ["0", "2"], ratio=0.2, seed=1) as masks:
        F.cross_entropy(model(x), y).backward()
        ours = {n: m.scores.grad.clone() for n, m in masks.items()}
        hard = {n: m.mask().detach() for n, m in masks.items()}
        signs = {n: m.scores.detach().sign() for n, m in masks.items()}
        W = {n: m_orig.detach().clone() for n, m_orig in
             (("0", model[0].parametrizations.weight.original), ("2", model[2].parametrizations.weight.original))}
    leaves = {n: hard[n].clone().requires_grad_(True) for n in hard}
    h = torch.tanh(F.linear(x, W["0"] * leaves["0"], model[0].bias))
    F.cross_entropy(F.linear(h, W["2"] * leaves["2"], model[2].bias), y).backward()
    for n in ours:
        torch.testing.assert_close(ours[n], signs[n] * leaves[n].grad)


def tiny_classifier():
    """An MLP fitted to clean data plus 16 examples with random labels (the 'memorized' ones)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g)
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    noisy = torch.arange(16)
    y_noisy = y.clone()
    y_noisy[noisy] = (y[noisy] + 1 + torch.randint(0, 3, (16,), generator=g)) % 4
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(400):
        opt.zero_grad()
        F.cross_entropy(model(x), y_noisy).backward()
        opt.step()
    assert (model(x[noisy]).argmax(1) == y_noisy[noisy]).float().mean() > 0.9, "the fixture must memorize"
    return model, x, y_noisy, noisy


def classifier_losses(x, y, forget, retain):
    def losses(model, which, idx):
        rows = (forget if which == "forget" else retain)[idx]
        return F.cross_entropy(model(x[rows]), y[rows], reduction="none")
    return losses


def test_training_raises_the_forget_loss_and_keeps_the_retain_loss_bounded():
    model, x, y, noisy = tiny_classifier()
    retain = torch.arange(16, 256)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = BSNConfig(ratio=0.2, loss_weight=0.5, epochs=100, lr=0.3, batch_size=8, seed=0)
    zeroed, history = train_subnet(model, ["2"], cfg, len(noisy), len(retain), classifier_losses(x, y, noisy, retain))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "training must not touch weights"
    assert all(p.requires_grad for p in model.parameters()), "requires_grad is restored"

    def mean(key, steps):
        return sum(h[key] for h in steps) / len(steps)

    forget_start, forget_end = mean("forget_loss", history[:4]), mean("forget_loss", history[-4:])
    assert forget_start < 0.1 and forget_end > 3.0, (forget_start, forget_end)
    assert mean("retain_loss", history[-20:]) < 1.5, "the retain loss ran away"
    assert zeroed["2"].numel() == math.floor(0.2 * 64 * 64)
    with baked(model, zeroed):  # the baked model forgets the noisy labels, keeps most of the rest
        memorized = (model(x[noisy]).argmax(1) == y[noisy]).float().mean()
        clean = (model(x[retain]).argmax(1) == y[retain]).float().mean()
    assert memorized < 0.5 and clean > 0.8, (memorized, clean)


def test_baked_model_is_w_times_m_and_nothing_else_changed():
    model, x, y, noisy = tiny_classifier()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = BSNConfig(ratio=0.1, loss_weight=0.5, epochs=2, lr=0.3, batch_size=8, seed=0)
    zeroed, _ = train_subnet(model, ["0", "4"], cfg, 16, 240,
                             classifier_losses(x, y, noisy, torch.arange(16, 256)))
    bake(model, zeroed)
    after = model.state_dict()
    for name in after:
        module = name.rsplit(".", 1)[0]
        if name.endswith("weight") and module in zeroed:
            M = torch.ones(before[name].numel())
            M[zeroed[module]] = 0
            assert torch.equal(after[name], before[name] * M.view_as(before[name])), name
            assert zeroed[module].numel() == math.floor(0.1 * before[name].numel())
        else:
            assert torch.equal(after[name], before[name]), f"{name} changed"


def test_no_nan_when_a_set_is_smaller_than_a_batch():
    model, x, y, noisy = tiny_classifier()
    cfg = BSNConfig(ratio=0.01, loss_weight=0.7, epochs=3, batch_size=64)
    _, history = train_subnet(model, ["2"], cfg, 3, 5, classifier_losses(x, y, noisy[:3], torch.arange(16, 21)))
    assert len(history) == 3  # one batch of the 3 forget examples per epoch
    assert all(math.isfinite(h["forget_loss"]) and math.isfinite(h["retain_loss"]) for h in history)
