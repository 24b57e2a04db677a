"""Edit the trained ViT (or not) and measure memorization, GT recovery and clean accuracy.

On the mislabeled training images: `memorized` = top-1 is the noised label, `GT recovery` =
top-1 is the true label, `other` = neither. Plus clean validation top-1 and top-1 on an equally
large set of clean training images.
"""
from __future__ import annotations

import argparse
import json
import logging
import time

import numpy as np
import torch

from .. import io
from ..common import pick_device, setup_logging, setup_torch
from ..edit import edit_model
from .data import ImageSet, batches
from .factors import clean_subset
from .model import ViTConfig, load_vit

log = logging.getLogger(__name__)


@torch.no_grad()
def predict(model, dataset: ImageSet, batch_size: int, device) -> np.ndarray:
    preds = [model(x.to(device)).argmax(1).cpu() for x, _ in batches(dataset, batch_size)]
    return torch.cat(preds).numpy()


def vit_metrics(model, train_path, val_path, corruption: dict, img_size: int, batch_size: int, device) -> dict:
    mislabeled = np.asarray(corruption["indices"], dtype=np.int64)
    noised, original = np.asarray(corruption["new"]), np.asarray(corruption["original"])
    pred = predict(model, ImageSet(train_path, img_size=img_size, indices=mislabeled), batch_size, device)
    clean_idx = clean_subset(corruption["n_train"], corruption["indices"],
                             min(len(mislabeled), corruption["n_train"] - len(mislabeled)), seed=1)
    clean_set = ImageSet(train_path, img_size=img_size, indices=clean_idx)
    clean_pred = predict(model, clean_set, batch_size, device)
    val_set = ImageSet(val_path, img_size=img_size)
    val_pred = predict(model, val_set, batch_size, device)
    return {
        "memorized_train_pct": 100 * float(np.mean(pred == noised)),
        "train_gt_acc_pct": 100 * float(np.mean(pred == original)),
        "other_class_pct": 100 * float(np.mean((pred != noised) & (pred != original))),
        "clean_train_acc_pct": 100 * float(np.mean(clean_pred == clean_set.labels[clean_idx].numpy())),
        "val_acc_pct": 100 * float(np.mean(val_pred == val_set.labels.numpy())),
        "n_mislabeled": int(len(mislabeled)),
        "n_val": int(len(val_set)),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description="Edit the ViT and evaluate memorization / GT recovery / accuracy.")
    p.add_argument("--model-config", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--val", required=True)
    p.add_argument("--corruption", required=True)
    p.add_argument("--method", choices=["none", "kfac", "svd"], required=True)
    p.add_argument("--cutoff", type=float, default=1.0, help="rho (kfac) or dropped fraction (svd)")
    p.add_argument("--modules", default="[]", help="JSON list of module names to edit")
    p.add_argument("--basis")
    p.add_argument("--layer-set", default="")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    setup_logging()
    setup_torch(args.threads)
    device = pick_device(args.device)
    model_cfg = ViTConfig(**json.loads(args.model_config))
    model = load_vit(model_cfg, args.model).to(device)
    names = json.loads(args.modules)
    t0 = time.time()
    kept = {}
    if args.method != "none":
        basis = io.load_tensors(args.basis) if args.method == "kfac" else None
        kept = edit_model(model, names, args.method, args.cutoff, basis)
    edit_seconds = time.time() - t0
    metrics = vit_metrics(model, args.train, args.val, io.load_json(args.corruption), model_cfg.img_size,
                          args.batch_size, device)
    row = {"method": args.method, "layer_set": args.layer_set, "cutoff": args.cutoff, "modules": names,
           "kept_fraction": float(np.mean(list(kept.values()))) if kept else 1.0, **metrics}
    io.save_json(row, args.out)
    log.info("edit %.2fs, evaluation %.2fs", edit_seconds, time.time() - t0 - edit_seconds)
    log.info("%s %s %.3g: memorized %.1f%%, GT %.1f%%, val %.1f%%", args.method, args.layer_set, args.cutoff,
             row["memorized_train_pct"], row["train_gt_acc_pct"], row["val_acc_pct"])


if __name__ == "__main__":
    main()
