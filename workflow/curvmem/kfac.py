"""K-FAC factors of target nn.Linear layers (docs/method.md, section 2).

For a Linear layer s = W a (+ b), with one sample per selected token position,
    A = sum_n a_n a_n^T    (d_in x d_in),   G = sum_n g_n g_n^T   (d_out x d_out),
where g_n = dL/ds_n and L is the summed loss of labels drawn from the model itself
(`fisher="mc"`, the true Fisher) or the dataset labels (`fisher="empirical"`). Dividing by
the number of samples n gives the expectations, and F_W ~= (G/n) (x) (A/n).

One collector serves the ViT (CLS position only) and the language model (every position
that has a next token): the caller's forward function says which positions count. Under
torch.distributed each rank sums over its share of the batches and the sums are all-reduced
(`distributed`); the labels drawn for a batch depend only on the seed and the batch's global
index, so the factors do not depend on the number of ranks. Given the factors' eigenbasis, the
same pass sums EK-FAC's eigenvalue correction instead (`collect_factors(..., basis=...)`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from . import distributed
from .common import crash_point
from .layers import match_modules


def linear_names(model: nn.Module) -> list[str]:
    """Names of every nn.Linear of a model, in model order (the names configs select by)."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


# ---------------------------------------------------------------------------------------------
# Likelihoods: the loss behind G and how a label is drawn from the model's prediction.


class Categorical:
    """Softmax cross-entropy (classification, next-token prediction)."""

    @staticmethod
    def sample(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        probs = torch.softmax(logits.detach().float(), dim=-1)  # (N, C)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (N,)

    @staticmethod
    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, reduction="sum")


class Gaussian:
    """Unit-variance Gaussian, i.e. 0.5 * squared error (regression heads)."""

    @staticmethod
    def sample(pred: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(pred.shape, generator=generator, device=pred.device)
        return pred.detach().float() + noise

    @staticmethod
    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((pred.float() - target) ** 2).sum()


LIKELIHOODS = {"categorical": Categorical, "gaussian": Gaussian}


@dataclass
class FactorConfig:
    modules: list[str]                 # glob patterns of the target nn.Linear names
    fisher: str = "mc"                 # "mc": labels sampled from the model; "empirical": dataset labels
    seed: int = 0                      # seeds the label sampling of the mc Fisher (with each batch's index)
    likelihood: str = "categorical"    # "categorical" (cross-entropy) or "gaussian" (squared error)
    max_modules_per_pass: int = 0      # 0: every target in one pass; else passes over the data in groups


@dataclass
class ForwardResult:
    """What the caller's forward function returns for one batch."""

    outputs: torch.Tensor        # (N, C) predictions at the N selected positions
    labels: torch.Tensor         # (N,) dataset labels there (used by fisher="empirical")
    positions: torch.Tensor | None  # (B, T) bool: which token positions of the hooked layers count;
                                    # None when the hooked tensors are already (N, d)


class LayerHooks:
    """Forward hooks that keep each named layer's latest input (and, if asked, output): the one
    capture mechanism of the collector and the activation analysis. Use as a context manager."""

    def __init__(self, model: nn.Module, names: list[str], keep_outputs: bool = False):
        modules = dict(model.named_modules())
        self.inputs: dict[str, torch.Tensor] = {}
        self.outputs: dict[str, torch.Tensor] = {}
        self.keep_outputs = keep_outputs
        self.handles = [modules[name].register_forward_hook(self._hook(name)) for name in names]

    def _hook(self, name):
        def hook(module, args, output):
            self.inputs[name] = args[0].detach()
            if self.keep_outputs:
                self.outputs[name] = output
        return hook

    def clear(self):
        self.inputs.clear()
        self.outputs.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def rows_at(t: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    """(B, T, d) or (N, d) -> (N, d) float32 rows at the selected positions."""
    if positions is None:
        return t.reshape(-1, t.shape[-1]).float()
    assert t.shape[:2] == positions.shape, f"hooked tensor {tuple(t.shape)} vs positions {tuple(positions.shape)}"
    return t[positions].float()


def collect_factors(
    model: nn.Module,
    cfg: FactorConfig,
    batches: Callable[[], Iterable],
    forward: Callable[[nn.Module, object], ForwardResult],
    device: str | torch.device = "cpu",
    progress: bool = True,
    basis: dict[str, torch.Tensor] | None = None,
) -> dict[str, dict[str, torch.Tensor]]:
    """Sums A, G and the sample count n for every target module; given the curvature `basis` of
    these factors, instead the eigenvalue correction of EK-FAC (George et al. 2018), per module
    S = sum_n (U_G^T g_n)^2 (U_A^T a_n)^2^T (d_out x d_in): the second moment of each sample's
    gradient in the K-FAC eigenbasis, which K-FAC approximates by lam_i mu_j. Same samples, same
    drawn labels, so S / n is the diagonal of the Fisher the factors approximate, in their basis.

    `batches()` returns a fresh iterable over the data (called once per module group): under
    torch.distributed, over this rank's global batches rank, rank + size, ... in order
    (`distributed.own_batches`); `forward(model, batch)` runs the model and says which positions
    count. Only the targets' output gradients are requested from autograd: no weight gradient is
    ever formed, and the backward pass stops at the lowest target layer.
    """
    assert cfg.fisher in ("mc", "empirical"), f"unknown fisher type {cfg.fisher!r}"
    likelihood = LIKELIHOODS[cfg.likelihood]
    names = match_modules(linear_names(model), cfg.modules)
    group = cfg.max_modules_per_pass or len(names)
    all_modules = dict(model.named_modules())
    factors: dict[str, dict[str, torch.Tensor]] = {}
    ranks = distributed.ranks()
    was_training = model.training
    model.eval()  # no dropout: the Fisher of the deployed model
    try:
        for start in range(0, len(names), group):
            targets = {n: all_modules[n] for n in names[start:start + group]}
            sums = {n: _zero_sums(n, m, basis, device) for n, m in targets.items()}
            with LayerHooks(model, list(targets), keep_outputs=True) as capture:
                desc = f"{'EK-FAC correction' if basis else 'K-FAC'} modules {start + 1}-{start + len(targets)} of {len(names)}"
                shown = progress and ranks.is_main
                for i, batch in enumerate(tqdm(batches(), desc=desc, disable=not shown, mininterval=5)):
                    # Labels drawn per global batch: the same in every module group and on any number of ranks.
                    seed = distributed.batch_seed(cfg.seed, ranks.rank + i * ranks.size)
                    generator = torch.Generator(device=device).manual_seed(seed)
                    _accumulate(model, batch, forward, likelihood, cfg.fisher, generator, capture, sums)
                    crash_point(f"factors:batch{i + 1}")
            sums = {n: {k: t for k, t in f.items() if not k.startswith("_")} for n, f in sums.items()}
            distributed.all_reduce_sum([t for f in sums.values() for t in f.values()])
            factors.update(sums)
    finally:
        model.train(was_training)
    return factors


def _zero_sums(name: str, module: nn.Linear, basis: dict[str, torch.Tensor] | None, device) -> dict:
    """Running sums of one module: A and G, or with a basis its eigenvectors and the correction S."""
    count = torch.zeros((), dtype=torch.int64, device=device)
    if basis is None:
        return {"A": torch.zeros(module.in_features, module.in_features, device=device),
                "G": torch.zeros(module.out_features, module.out_features, device=device), "n": count}
    U_G, U_A = basis[f"{name}.G.eigenvectors"].float().to(device), basis[f"{name}.A.eigenvectors"].float().to(device)
    assert U_G.shape[0] == module.out_features and U_A.shape[0] == module.in_features, f"{name}: basis of another shape"
    return {"S": torch.zeros(module.out_features, module.in_features, device=device), "n": count,
            "_U_G": U_G, "_U_A": U_A}


def _accumulate(model, batch, forward, likelihood, fisher, generator, capture: LayerHooks, sums):
    capture.clear()
    with torch.enable_grad():
        result = forward(model, batch)
        if fisher == "mc":
            labels = likelihood.sample(result.outputs, generator)
        else:
            labels = result.labels
        loss = likelihood.loss(result.outputs, labels)  # summed: g_n is each sample's own gradient
        names = list(sums)
        grads = torch.autograd.grad(loss, [capture.outputs[n] for n in names])
    for name, grad in zip(names, grads):
        a = rows_at(capture.inputs[name], result.positions)  # (N, d_in)
        g = rows_at(grad, result.positions)  # (N, d_out)
        assert a.shape[0] == g.shape[0], "inputs and gradients select different rows"
        f = sums[name]
        if "S" in f:  # (N, d_out)^T @ (N, d_in): every sample's squared gradient coefficients, summed
            f["S"].addmm_((g @ f["_U_G"]).square().T, (a @ f["_U_A"]).square())
        else:
            f["A"].addmm_(a.T, a)
            f["G"].addmm_(g.T, g)
        f["n"] += a.shape[0]


def factor_tensors(factors: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Flatten to the safetensors layout `{module}.A`, `{module}.G`, `{module}.n` (sums; EK-FAC's
    `{module}.S`, `{module}.n`)."""
    return {f"{name}.{key}": t for name, f in factors.items() for key, t in f.items()}


def expectations(tensors: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """From the saved sums to (G, A) expectations per module."""
    out = {}
    for key in tensors:
        if key.endswith(".A"):
            name = key[:-2]
            n = tensors[f"{name}.n"].item()
            assert n > 0, f"{name}: no samples were collected"
            out[name] = (tensors[f"{name}.G"] / n, tensors[f"{name}.A"] / n)
    return out
