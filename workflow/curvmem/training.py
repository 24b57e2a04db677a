"""What both arms' training loops share: weight-decay groups, the warm-up + cosine schedule, and
the optimizer step."""
from __future__ import annotations

import math

import torch


def param_groups(model: torch.nn.Module, weight_decay: float, no_decay: tuple[str, ...] = ()) -> list[dict]:
    """Decay weight matrices only: biases and norms (1-d), and parameters whose name contains one
    of `no_decay` (e.g. a ViT's `pos_embed`, `cls_token`), are not decayed."""
    decay, rest = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and not any(k in name for k in no_decay) else rest).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def warmup_cosine(warmup: int, total: int):
    """LR factor per step: linear warm-up over `warmup` steps, then cosine decay to 0 at `total`."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


def optimizer(model: torch.nn.Module, *, kind: str, lr: float, betas, weight_decay: float, total_steps: int,
              warmup_steps: int, no_decay: tuple[str, ...] = ()):
    """(optimizer, scheduler): Adam or AdamW over the decay groups, warm-up + cosine."""
    assert kind in ("adam", "adamw"), f"unknown optimizer {kind!r}"
    cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
    opt = cls(param_groups(model, weight_decay, no_decay), lr=lr, betas=tuple(betas))
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(warmup_steps, total_steps))


def step(model: torch.nn.Module, loss: torch.Tensor, opt, sched, grad_clip: float) -> None:
    """One update: backward, global gradient-norm clip (0: off), optimizer and schedule step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    sched.step()
