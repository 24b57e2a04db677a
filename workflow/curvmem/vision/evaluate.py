"""What an edit does to the ViT: memorization, GT recovery and clean accuracy.

On the mislabeled training images: `memorized` = top-1 is the noised label, `GT recovery` =
top-1 is the true label, `other` = neither. Plus clean validation top-1 and top-1 on an equally
large set of clean training images.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .data import ImageSet, batches, clean_subset


@dataclass
class EvalConfig:
    batch_size: int = 512
    device: str = "auto"


class VitEvaluation:
    """The images every edit is measured on, loaded once and reused for every cutoff."""

    def __init__(self, train_path, val_path, corruption: dict, img_size: int, batch_size: int, device):
        mislabeled = np.asarray(corruption["indices"], dtype=np.int64)
        self.noised, self.original = np.asarray(corruption["new"]), np.asarray(corruption["original"])
        clean_idx = clean_subset(corruption["n_train"], corruption["indices"],
                                 min(len(mislabeled), corruption["n_train"] - len(mislabeled)), seed=1)
        self.sets = {"mislabeled": ImageSet(train_path, img_size=img_size, indices=mislabeled),
                     "clean_train": ImageSet(train_path, img_size=img_size, indices=clean_idx),
                     "val": ImageSet(val_path, img_size=img_size)}
        self.labels = {"clean_train": self.sets["clean_train"].labels[clean_idx].numpy(),
                       "val": self.sets["val"].labels.numpy()}
        self.batch_size, self.device = batch_size, device
        # In-memory splits are small: normalise their batches once. Image folders decode per pass.
        self.cached = {name: list(batches(data, batch_size)) for name, data in self.sets.items()
                       if data.images is not None}

    @torch.no_grad()
    def predict(self, model, name: str) -> np.ndarray:
        stream = self.cached.get(name) or batches(self.sets[name], self.batch_size)
        return torch.cat([model(x.to(self.device)).argmax(1).cpu() for x, _ in stream]).numpy()

    def __call__(self, model) -> dict:
        pred = self.predict(model, "mislabeled")
        clean_pred, val_pred = self.predict(model, "clean_train"), self.predict(model, "val")
        return {
            "memorized_train_pct": 100 * float(np.mean(pred == self.noised)),
            "train_gt_acc_pct": 100 * float(np.mean(pred == self.original)),
            "other_class_pct": 100 * float(np.mean((pred != self.noised) & (pred != self.original))),
            "clean_train_acc_pct": 100 * float(np.mean(clean_pred == self.labels["clean_train"])),
            "val_acc_pct": 100 * float(np.mean(val_pred == self.labels["val"])),
            "n_mislabeled": int(len(pred)),
            "n_val": int(len(val_pred)),
        }
