"""Train the ViT on the noisy labels (the model whose memorization the edit removes)."""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .. import training
from ..common import crash_point
from .data import ImageSet

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 60
    batch_size: int = 128
    optimizer: str = "adamw"       # "adamw" (decoupled decay) or "adam" (L2 in the gradient)
    lr: float = 1e-3               # peak learning rate
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.3      # on weight matrices only; higher decay separates memorization more (paper App. H)
    warmup_steps: int = 100        # linear warm-up, then cosine decay to 0
    grad_clip: float = 1.0         # global gradient-norm clip (0: off)
    augment: bool = False          # random-resized crop + flip (image folders only)
    seed: int = 0
    device: str = "auto"           # "auto": cuda if available
    bf16: bool = False             # bf16 autocast (GPU)
    workers: int = 0               # DataLoader workers (image folders)


NO_DECAY = ("pos_embed", "cls_token")  # ViT parameters that are matrices but not weights


def train(model, train_set: ImageSet, mislabeled: np.ndarray, cfg: TrainConfig, device) -> list[dict]:
    """Train on the (noisy) labels of `train_set`; returns per-epoch loss and fit of the mislabeled images."""
    steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    opt, sched = training.optimizer(model, kind=cfg.optimizer, lr=cfg.lr, betas=cfg.betas,
                                    weight_decay=cfg.weight_decay, total_steps=cfg.epochs * steps_per_epoch,
                                    warmup_steps=cfg.warmup_steps, no_decay=NO_DECAY)
    is_mislabeled = torch.zeros(len(train_set), dtype=torch.bool)
    is_mislabeled[torch.as_tensor(mislabeled, dtype=torch.int64)] = True
    history = []
    model.to(device).train()
    bar = tqdm(total=cfg.epochs * steps_per_epoch, desc="train", mininterval=10)
    for epoch in range(cfg.epochs):
        t0 = time.time()
        sum_loss, fit, fit_mislabeled, seen = 0.0, 0, 0, 0
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(train_set))
        for x, y, idx in epoch_batches(train_set, order, cfg.batch_size, cfg.workers):
            x, y = x.to(device), y.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                logits = model(x)  # (B, num_classes)
            loss = F.cross_entropy(logits.float(), y)
            training.step(model, loss, opt, sched, cfg.grad_clip)
            hit = (logits.argmax(1) == y).cpu()
            sum_loss += loss.item() * len(idx)
            fit += hit.sum().item()
            fit_mislabeled += hit[is_mislabeled[idx]].sum().item()
            seen += len(idx)
            bar.update()
            crash_point(f"train:step{bar.n}")
        row = {"epoch": epoch + 1, "loss": sum_loss / seen, "train_fit_pct": 100 * fit / seen,
               "mislabeled_fit_pct": 100 * fit_mislabeled / max(1, len(mislabeled)),
               "lr": sched.get_last_lr()[0]}
        history.append(row)
        log.info("epoch %(epoch)d loss %(loss).3f fit %(train_fit_pct).1f%% mislabeled fit %(mislabeled_fit_pct).1f%% "
                 "(%(s).1fs)", {**row, "s": time.time() - t0})
    bar.close()
    return history


class _WithIndex(torch.utils.data.Dataset):
    def __init__(self, dataset: ImageSet):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return (*self.dataset[i], i)


def epoch_batches(dataset: ImageSet, order: np.ndarray, batch_size: int, workers: int):
    """(x, y, indices) batches in the given order: memory slices for tensor splits, a DataLoader
    with `workers` decoding processes for image folders."""
    if dataset.images is not None:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            x, y = next(dataset.tensor_batches(len(idx), idx))
            yield x, y, idx
        return
    loader = torch.utils.data.DataLoader(_WithIndex(dataset), batch_size=batch_size, sampler=order.tolist(),
                                         num_workers=workers)
    for x, y, idx in loader:
        yield x, y, idx.numpy()
