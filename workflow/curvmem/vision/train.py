"""Train the ViT on the noisy labels (the model whose memorization the edit removes)."""
from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .. import io
from ..common import crash_point, pick_device, setup_logging, setup_torch
from .data import ImageSet, noisy_labels
from .model import ViTConfig, build_vit

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


def param_groups(model: torch.nn.Module, weight_decay: float):
    """Decay weight matrices; leave biases, norms, position embedding and CLS token alone."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and "pos_embed" not in name and "cls_token" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


def train(model, train_set: ImageSet, mislabeled: np.ndarray, cfg: TrainConfig, device) -> list[dict]:
    steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    opt = opt_cls(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=tuple(cfg.betas))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(cfg.warmup_steps, total))
    is_mislabeled = torch.zeros(len(train_set), dtype=torch.bool)
    is_mislabeled[torch.as_tensor(mislabeled, dtype=torch.int64)] = True
    history = []
    model.to(device).train()
    bar = tqdm(total=total, desc="train", mininterval=10)
    for epoch in range(cfg.epochs):
        t0 = time.time()
        sum_loss, fit, fit_mislabeled, seen = 0.0, 0, 0, 0
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(train_set))
        for x, y, idx in epoch_batches(train_set, order, cfg.batch_size, cfg.workers):
            x, y = x.to(device), y.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                logits = model(x)  # (B, num_classes)
            loss = F.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
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


def main(argv=None):
    p = argparse.ArgumentParser(description="Train the ViT on noisy labels.")
    p.add_argument("--model", required=True, help="JSON of the ViTConfig")
    p.add_argument("--train-config", required=True, help="JSON of the TrainConfig")
    p.add_argument("--data", required=True, help="prepared training split")
    p.add_argument("--corruption", required=True)
    p.add_argument("--out", required=True, help="model .safetensors")
    p.add_argument("--metrics", required=True, help="training history .json")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    setup_logging()
    model_cfg = ViTConfig(**json.loads(args.model))
    cfg = TrainConfig(**json.loads(args.train_config))
    setup_torch(args.threads, cfg.seed)
    device = pick_device(cfg.device)
    corruption = io.load_json(args.corruption)
    train_set = ImageSet(args.data, img_size=model_cfg.img_size, train=True, augment=cfg.augment)
    if train_set.meta["checksum"] != corruption["dataset_checksum"]:
        raise io.ArtifactError(f"{args.corruption} was made for another training split; rerun rule corrupt_labels")
    train_set.labels = torch.as_tensor(noisy_labels(train_set.labels.numpy(), corruption))
    model = build_vit(model_cfg)
    log.info("ViT with %.2fM parameters; %d training images, %d mislabeled; device %s",
             sum(p.numel() for p in model.parameters()) / 1e6, len(train_set), len(corruption["indices"]), device)
    t0 = time.time()
    history = train(model, train_set, np.asarray(corruption["indices"]), cfg, device)
    seconds = time.time() - t0
    io.save_tensors(model.state_dict(), args.out, {"model": asdict(model_cfg), "train": asdict(cfg),
                                                  "final": history[-1] if history else {}})
    io.save_json({"history": history}, args.metrics)
    log.info("trained in %.1fs", seconds)


if __name__ == "__main__":
    main()
