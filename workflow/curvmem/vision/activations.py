"""Activation ratio of the ViT's MLP inputs (CLS token): mislabeled vs clean training images."""
from __future__ import annotations

import argparse
import json
import logging

import numpy as np

from .. import io
from ..activations import capture_inputs, ratio_table
from ..common import pick_device, setup_logging, setup_torch
from .data import ImageSet, batches
from .factors import clean_subset, cls_positions
from .model import ViTConfig, load_vit

log = logging.getLogger(__name__)


def main(argv=None):
    p = argparse.ArgumentParser(description="Activation ratio per curvature / SVD band (paper Fig. 2).")
    p.add_argument("--model-config", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--corruption", required=True)
    p.add_argument("--basis", required=True)
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
    basis = io.load_tensors(args.basis)
    names = io.load_metadata(args.basis)["modules"]
    corruption = io.load_json(args.corruption)
    mislabeled = np.asarray(corruption["indices"], dtype=np.int64)
    clean = clean_subset(corruption["n_train"], corruption["indices"],
                         min(len(mislabeled), corruption["n_train"] - len(mislabeled)), seed=2)

    def run_cls(model, batch):
        x = batch[0].to(device)
        model(x)
        return cls_positions(model, x.shape[0], device)

    def cls_inputs(indices):
        data = ImageSet(args.train, img_size=model_cfg.img_size, indices=indices)
        return capture_inputs(model, names, batches(data, args.batch_size), run_cls)

    memorized, clean_inputs = cls_inputs(mislabeled), cls_inputs(clean)
    io.save_parquet(ratio_table(model, names, basis, memorized, clean_inputs), args.out)


if __name__ == "__main__":
    main()
