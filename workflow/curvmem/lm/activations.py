"""Activation ratio of the LM's MLP inputs (paper Fig. 2, LM half): memorized windows vs clean text,
at the positions that predict the suffix tokens."""
from __future__ import annotations

import argparse
import logging

import pandas as pd
import torch

from .. import io
from ..activations import capture_inputs, ratio_table
from ..common import pick_device, setup_logging, setup_torch
from .factors import clean_sequences
from .model import load_model_dir

log = logging.getLogger(__name__)


def suffix_positions(batch: torch.Tensor, prefix_len: int) -> torch.Tensor:
    """(B, T) mask of the positions whose next token is a suffix token: prefix_len - 1 .. T - 2."""
    positions = torch.zeros(batch.shape, dtype=torch.bool, device=batch.device)
    positions[:, prefix_len - 1:-1] = True
    return positions


def main(argv=None):
    p = argparse.ArgumentParser(description="Activation ratio per curvature / SVD band (LM).")
    p.add_argument("--model", required=True)
    p.add_argument("--sets", required=True)
    p.add_argument("--clean", required=True)
    p.add_argument("--basis", required=True)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    setup_logging()
    setup_torch(args.threads)
    device = pick_device(args.device)
    model, tokenizer = load_model_dir(args.model, device)
    basis = io.load_tensors(args.basis)
    names = io.load_metadata(args.basis)["modules"]
    sets = io.load_parquet(args.sets)
    memorized = sets[sets["set"] == "memorized_train"]
    if not len(memorized):  # a model that recites nothing: nothing to compare, reported as an empty table
        log.warning("no verified memorized training windows: the activation-ratio table is empty")
        columns = ["module", "basis", "band", "memorized", "clean", "ratio"]
        io.save_parquet(pd.DataFrame({c: pd.Series(dtype="str" if c in columns[:3] else "float") for c in columns}),
                        args.out)
        return
    prefix_len = len(memorized["prefix_ids"].iloc[0])
    mem_seqs = torch.tensor([list(p) + list(s) for p, s in zip(memorized["prefix_ids"], memorized["suffix_ids"])])
    clean = io.load_parquet(args.clean)
    clean_seqs = clean_sequences(tokenizer, clean.loc[clean["split"] == "factors", "text"].tolist(),
                                 mem_seqs.shape[1], len(mem_seqs))

    def run(model, x):
        x = x.to(device)
        model(input_ids=x)
        return suffix_positions(x, prefix_len)

    def inputs(seqs):
        return capture_inputs(model, names, (seqs[i:i + args.batch_size] for i in range(0, len(seqs), args.batch_size)),
                              run)

    mem_inputs, clean_inputs = inputs(mem_seqs), inputs(clean_seqs)
    io.save_parquet(ratio_table(model, names, basis, mem_inputs, clean_inputs), args.out)


if __name__ == "__main__":
    main()
