"""K-FAC factors of the ViT's MLP layers at the CLS token, from clean training images."""
from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict

import numpy as np
import torch

from .. import io
from ..common import pick_device, setup_logging, setup_torch
from ..kfac import FactorConfig, ForwardResult, collect_factors, factor_tensors
from .data import ImageSet, batches
from .model import ViTConfig, load_vit

log = logging.getLogger(__name__)


def cls_positions(model, batch_size: int, device) -> torch.Tensor:
    """(B, T) mask selecting the CLS token, position 0 of timm's ViT sequence."""
    tokens = model.patch_embed.num_patches + model.num_prefix_tokens
    positions = torch.zeros(batch_size, tokens, dtype=torch.bool, device=device)
    positions[:, 0] = True
    return positions


def cls_forward(model, batch) -> ForwardResult:
    x, y = batch
    logits = model(x)  # (B, num_classes), read from the CLS token
    return ForwardResult(outputs=logits, labels=y, positions=cls_positions(model, x.shape[0], x.device))


def clean_subset(n_train: int, mislabeled: list[int], n: int, seed: int) -> np.ndarray:
    """A seeded random set of n training indices whose labels were not corrupted."""
    clean = np.setdiff1d(np.arange(n_train), np.asarray(mislabeled, dtype=np.int64))
    assert n <= len(clean), f"asked for {n} clean images, only {len(clean)} exist"
    return np.sort(np.random.default_rng(seed).choice(clean, size=n, replace=False))


def main(argv=None):
    p = argparse.ArgumentParser(description="Collect K-FAC factors of the ViT.")
    p.add_argument("--model-config", required=True)
    p.add_argument("--factor-config", required=True, help="JSON: FactorConfig fields + n_images, batch_size, device")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--corruption", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    setup_logging()
    params = json.loads(args.factor_config)
    n_images, batch_size, device = params.pop("n_images"), params.pop("batch_size"), params.pop("device", "auto")
    cfg = FactorConfig(**params)
    setup_torch(args.threads, cfg.seed)
    device = pick_device(device)
    model_cfg = ViTConfig(**json.loads(args.model_config))
    model = load_vit(model_cfg, args.model).to(device)
    corruption = io.load_json(args.corruption)
    indices = clean_subset(corruption["n_train"], corruption["indices"], n_images, cfg.seed)
    data = ImageSet(args.data, img_size=model_cfg.img_size, indices=indices)

    def data_batches():
        for x, y in batches(data, batch_size):
            yield x.to(device), y.to(device)

    t0 = time.time()
    factors = collect_factors(model, cfg, data_batches, cls_forward, device=device)
    seconds = time.time() - t0
    meta = {"model": args.model, "data": args.data, "fisher": cfg.fisher, "positions": "cls", "seed": cfg.seed,
            "n": n_images, "modules": list(factors), "config": asdict(cfg)}
    io.save_tensors(factor_tensors(factors), args.out, meta)
    log.info("factors of %d modules from %d images in %.1fs", len(factors), n_images, seconds)


if __name__ == "__main__":
    main()
