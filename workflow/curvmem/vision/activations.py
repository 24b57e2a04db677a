"""Activation ratio of the ViT's MLP inputs at the CLS token: mislabeled vs clean training images,
the clean ones disjoint from the images the factors were computed on."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..activations import capture_inputs, ratio_table
from .data import ImageSet, batches, clean_subset
from .factors import cls_positions


def vit_activation_ratio(model, names: list[str], basis: dict, train_path, corruption: dict,
                         factor_indices: np.ndarray, img_size: int, batch_size: int, device) -> pd.DataFrame:
    """The ratio table (curvature and SVD bands per module) of mislabeled vs clean images."""
    mislabeled = np.asarray(corruption["indices"], dtype=np.int64)
    n_free = corruption["n_train"] - len(mislabeled) - len(factor_indices)
    clean = clean_subset(corruption["n_train"], corruption["indices"], min(len(mislabeled), n_free), seed=2,
                         exclude=factor_indices)

    def run_cls(model, batch):
        x = batch[0].to(device)
        model(x)
        return cls_positions(model, x.shape[0], device)

    def cls_inputs(indices):
        data = ImageSet(train_path, img_size=img_size, indices=indices)
        return capture_inputs(model, names, batches(data, batch_size), run_cls)

    return ratio_table(model, names, basis, cls_inputs(mislabeled), cls_inputs(clean))
