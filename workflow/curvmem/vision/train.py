"""Train the ViT on the noisy labels (the model whose memorization the edit removes)."""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from .. import distributed, training
from ..common import crash_point, run_length
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
    seed: int = 0                  # initialization and data order
    stop_after: float = 1.0        # fraction of the epochs trained: < 1, a checkpoint of the full run
    device: str = "auto"           # "auto": cuda if available
    bf16: bool = False             # bf16 autocast (GPU)
    workers: int = 0               # DataLoader workers (image folders)


NO_DECAY = ("pos_embed", "cls_token")  # ViT parameters that are matrices but not weights


def train(model, train_set: ImageSet, mislabeled: np.ndarray, cfg: TrainConfig, device) -> list[dict]:
    """Train on the (noisy) labels of `train_set`; returns per-epoch loss and fit of the mislabeled images.

    Under torchrun the model is wrapped in DistributedDataParallel and each rank takes its part of
    every global batch of `cfg.batch_size` (`distributed.rank_slice`); the loss is scaled so that the
    averaged gradient is the global batch's mean, the step of a single process. Dropout and
    augmentation draw per rank, so only without them do N ranks train exactly the model of one.
    """
    ranks = distributed.ranks()
    epochs_run = run_length(cfg.epochs, cfg.stop_after)
    steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    last = len(train_set) % cfg.batch_size
    assert cfg.batch_size % ranks.size == 0 and (last == 0 or last >= ranks.size), (
        f"vit.train.batch_size {cfg.batch_size} must split evenly over {ranks.size} ranks, and so must "
        f"leave every rank a part of the last batch ({last} images)")
    opt, sched = training.optimizer(model, kind=cfg.optimizer, lr=cfg.lr, betas=cfg.betas,
                                    weight_decay=cfg.weight_decay, total_steps=cfg.epochs * steps_per_epoch,
                                    warmup_steps=cfg.warmup_steps, no_decay=NO_DECAY)
    is_mislabeled = torch.zeros(len(train_set), dtype=torch.bool)
    is_mislabeled[torch.as_tensor(mislabeled, dtype=torch.int64)] = True
    history = []
    model.to(device).train()
    net = model
    if ranks.size > 1:
        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    bar = tqdm(total=epochs_run * steps_per_epoch, desc="train", mininterval=10, disable=not ranks.is_main)
    for epoch in range(epochs_run):  # the schedule above spans all cfg.epochs: a checkpoint stops on its way
        t0 = time.time()
        counts = torch.zeros(4, dtype=torch.float64)  # summed loss, fit, mislabeled fit, seen: this rank's
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(train_set))
        global_sizes = [min(cfg.batch_size, len(order) - s) for s in range(0, len(order), cfg.batch_size)]
        own = rank_order(order, cfg.batch_size, ranks)
        for step, (x, y, idx) in enumerate(epoch_batches(train_set, own, cfg.batch_size // ranks.size, cfg.workers)):
            x, y = x.to(device), y.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                logits = net(x)  # (B / ranks, num_classes)
            loss, summed = global_mean_loss(logits, y, global_sizes[step], ranks)
            training.step(net, loss, opt, sched, cfg.grad_clip)
            hit = (logits.argmax(1) == y).cpu()
            counts += torch.tensor([summed.item(), hit.sum().item(), hit[is_mislabeled[idx]].sum().item(), len(idx)],
                                   dtype=torch.float64)
            bar.update()
            crash_point(f"train:step{bar.n}")
        distributed.all_reduce_sum([counts])
        sum_loss, fit, fit_mislabeled, seen = counts.tolist()
        row = {"epoch": epoch + 1, "loss": sum_loss / seen, "train_fit_pct": 100 * fit / seen,
               "mislabeled_fit_pct": 100 * fit_mislabeled / max(1, len(mislabeled)),
               "lr": sched.get_last_lr()[0]}
        history.append(row)
        log.info("epoch %(epoch)d loss %(loss).3f fit %(train_fit_pct).1f%% mislabeled fit %(mislabeled_fit_pct).1f%% "
                 "(%(s).1fs)", {**row, "s": time.time() - t0})
    bar.close()
    return history


def global_mean_loss(logits: torch.Tensor, labels: torch.Tensor, global_batch: int, ranks: distributed.Ranks):
    """(loss, summed cross-entropy) of this rank's part of a global batch: DDP averages the ranks'
    gradients, so each rank's summed loss is divided by global_batch / ranks, and the average is the
    gradient of the global batch's mean loss even when the parts differ in size. One rank: the mean."""
    summed = F.cross_entropy(logits.float(), labels, reduction="sum")
    return summed / (global_batch / ranks.size), summed.detach()


def rank_order(order: np.ndarray, batch_size: int, ranks: distributed.Ranks) -> np.ndarray:
    """This rank's part of each global batch of `order`, concatenated: cut into batches of
    batch_size / ranks it gives the rank's batch of every step."""
    parts = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    return np.concatenate([p[distributed.rank_slice(len(p), ranks)] for p in parts]) if parts else order


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
