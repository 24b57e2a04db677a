"""BalancedSubnet (BSN; Sakarvadia et al., "Mitigating Memorization in Language Models"): the
supervised unlearning baseline the paper compares K-FAC with (docs/method.md, section 7).

Every targeted nn.Linear weight W (frozen, like every other parameter) gets a learnable score
tensor S of its shape. The forward pass uses W * M, where M zeroes, within each matrix, the
floor(ratio * numel) entries of smallest |S|; the backward pass is straight-through: the mask's
gradient dL/dM = dL/d(W * M) * W reaches |S| unchanged (then S through the absolute value, as in
the original code). The scores minimise

    -(1 - w) * mean forget loss + w * mean retain loss

by SGD with momentum; forget and retain batches are drawn separately, so no step lacks either.
At the end M is baked into the weights (W <- W * M) and the scores are dropped. One engine for
both arms: the arm supplies the per-example losses of its forget and retain sets.
"""
from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
from torch.nn.utils import parametrize
from tqdm import tqdm

log = logging.getLogger(__name__)


@dataclass
class BSNConfig:
    ratio: float = 0.0015          # fraction of each targeted matrix's weights zeroed (paper's best 0.0015)
    loss_weight: float = 0.7       # w: weight of the retain loss (paper's best 0.7; original code 0.05)
    epochs: int = 5                # passes over the forget set (paper's best 5)
    lr: float = 0.3                # SGD on the scores (paper's best 0.3; original code 0.1)
    momentum: float = 0.9
    weight_decay: float = 5e-4     # on the scores, as the original code
    batch_size: int = 32           # forget and retain examples per step, each
    seed: int = 0                  # score initialisation and batch order


@dataclass
class SubnetSpec:
    """What one BalancedSubnet job trains: one point of the grid, on one layer set."""

    layer_set: str = ""
    patterns: list = field(default_factory=list)          # the layer set's module patterns (as the edits')
    factor_modules: list = field(default_factory=list)    # a set resolves within the factor modules
    token: str = ""                                       # the grid point's name (`artifacts.bsn_setting_token`)
    config: BSNConfig = field(default_factory=BSNConfig)


class _SmallestZeroed(torch.autograd.Function):
    """Mask of ones with the n_zero smallest entries of `magnitude` set to 0; straight-through backward."""

    @staticmethod
    def forward(ctx, magnitude: torch.Tensor, n_zero: int) -> torch.Tensor:
        mask = torch.ones_like(magnitude)
        if n_zero:
            order = torch.argsort(magnitude.flatten(), stable=True)  # ties: the lower flat index goes first
            mask.view(-1)[order[:n_zero]] = 0
        return mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


def zeroed_count(numel: int, ratio: float) -> int:
    """How many weights of a matrix the mask zeroes: floor(ratio * numel)."""
    assert 0 <= ratio < 1, f"ratio must be in [0, 1), got {ratio}"
    return math.floor(ratio * numel)


class ScoredMask(nn.Module):
    """The parametrization W -> W * M(S) of one weight (registered with torch.nn.utils.parametrize)."""

    def __init__(self, weight: torch.Tensor, ratio: float, generator: torch.Generator):
        super().__init__()
        scores = torch.empty(weight.shape, dtype=torch.float32)
        bound = 1 / math.sqrt(weight.shape[1])  # kaiming-uniform(a=sqrt(5)), as nn.Linear initialises weights
        scores.uniform_(-bound, bound, generator=generator)
        self.scores = nn.Parameter(scores.to(weight.device))
        self.n_zero = zeroed_count(weight.numel(), ratio)

    def mask(self) -> torch.Tensor:
        return _SmallestZeroed.apply(self.scores.abs(), self.n_zero)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask().to(weight.dtype)


@contextlib.contextmanager
def scored_masks(model: nn.Module, names: list[str], ratio: float, seed: int = 0):
    """Attach a ScoredMask to each named nn.Linear for the duration of the block; yields name -> mask
    module. Every parameter of the model is frozen inside; on exit the weights are exactly as
    before (the parametrizations are removed without baking) and requires_grad is restored."""
    modules = dict(model.named_modules())
    generator = torch.Generator().manual_seed(seed)
    frozen = {p: p.requires_grad for p in model.parameters()}
    masks = {}
    try:
        for p in frozen:
            p.requires_grad_(False)
        for name in names:
            layer = modules[name]
            assert isinstance(layer, nn.Linear), f"{name} is not an nn.Linear"
            masks[name] = ScoredMask(layer.weight, ratio, generator)
            parametrize.register_parametrization(layer, "weight", masks[name])
        yield masks
    finally:
        for name in masks:
            parametrize.remove_parametrizations(modules[name], "weight", leave_parametrized=False)
        for p, flag in frozen.items():
            p.requires_grad_(flag)


Losses = Callable[[nn.Module, str, torch.Tensor], torch.Tensor]  # (model, "forget"|"retain", indices (B,)) -> (B,)


def train_subnet(model: nn.Module, names: list[str], cfg: BSNConfig, n_forget: int, n_retain: int,
                 losses: Losses) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Learn the masks of the named layers; returns (name -> flat indices of the zeroed weights,
    sorted, int64) and the loss history (one row per step). The model's weights are unchanged."""
    assert n_forget > 0 and n_retain > 0, f"BSN needs forget and retain examples (got {n_forget}, {n_retain})"
    generator = torch.Generator().manual_seed(cfg.seed)
    b_forget, b_retain = min(cfg.batch_size, n_forget), min(cfg.batch_size, n_retain)  # a small set: one batch
    retain_order, retain_pos = torch.randperm(n_retain, generator=generator), 0
    history = []
    was_training = model.training
    model.eval()  # no dropout: the scores are trained on the model as it is evaluated
    with scored_masks(model, names, cfg.ratio, cfg.seed) as masks:
        opt = torch.optim.SGD([m.scores for m in masks.values()], lr=cfg.lr, momentum=cfg.momentum,
                              weight_decay=cfg.weight_decay)
        steps_per_epoch = math.ceil(n_forget / b_forget)
        bar = tqdm(total=cfg.epochs * steps_per_epoch, desc="BSN", mininterval=10)
        for epoch in range(cfg.epochs):
            forget_order = torch.randperm(n_forget, generator=generator)
            for start in range(0, n_forget, b_forget):
                forget_idx = forget_order[start:start + b_forget]
                if retain_pos + b_retain > n_retain:  # next pass over the retain set
                    retain_order, retain_pos = torch.randperm(n_retain, generator=generator), 0
                retain_idx = retain_order[retain_pos:retain_pos + b_retain]
                retain_pos += b_retain
                forget_loss = losses(model, "forget", forget_idx).mean()
                retain_loss = losses(model, "retain", retain_idx).mean()
                loss = -(1 - cfg.loss_weight) * forget_loss + cfg.loss_weight * retain_loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                history.append({"step": len(history) + 1, "epoch": epoch + 1, "forget_loss": forget_loss.item(),
                                "retain_loss": retain_loss.item()})
                bar.update()
            log.info("BSN epoch %d: forget loss %.3f, retain loss %.3f", epoch + 1, history[-1]["forget_loss"],
                     history[-1]["retain_loss"])
        bar.close()
        with torch.no_grad():
            zeroed = {name: torch.nonzero(m.mask().flatten() == 0).flatten().long().cpu()
                      for name, m in masks.items()}
    model.train(was_training)
    return zeroed, history


@torch.no_grad()
def bake(model: nn.Module, zeroed: dict[str, torch.Tensor]) -> None:
    """W <- W * M in place: set the listed flat entries of each named weight to zero."""
    modules = dict(model.named_modules())
    for name, idx in zeroed.items():
        weight = modules[name].weight
        assert idx.numel() == 0 or int(idx.max()) < weight.numel(), f"{name}: zeroed index outside the weight"
        weight.view(-1)[idx.to(weight.device)] = 0


@contextlib.contextmanager
def baked(model: nn.Module, zeroed: dict[str, torch.Tensor]):
    """The model with the masks baked in for the duration of the block, restored afterwards."""
    modules = dict(model.named_modules())
    original = {name: modules[name].weight.detach().clone() for name in zeroed}
    try:
        bake(model, zeroed)
        yield model
    finally:
        with torch.no_grad():
            for name, weight in original.items():
                modules[name].weight.copy_(weight)
