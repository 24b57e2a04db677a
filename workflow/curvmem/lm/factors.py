"""K-FAC factors of the LM's MLP projections from clean text: every position with a next token."""
from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict

import torch

from .. import io
from ..common import pick_device, setup_logging, setup_torch
from ..kfac import FactorConfig, collect_factors, factor_tensors
from .model import load_model_dir
from .positions import lm_forward
from .tokens import pack

log = logging.getLogger(__name__)


def clean_sequences(tokenizer, texts: list[str], seq_len: int, n_sequences: int) -> torch.Tensor:
    """(n, seq_len) token sequences of clean text (documents joined by EOS, in order)."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    chunks = torch.from_numpy(pack(ids, seq_len, tokenizer.eos_token_id)).long()
    assert len(chunks) >= n_sequences, f"clean text gives {len(chunks)} sequences of {seq_len}, {n_sequences} asked"
    return chunks[:n_sequences]


def main(argv=None):
    p = argparse.ArgumentParser(description="Collect K-FAC factors of the LM's MLP projections.")
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--clean", required=True, help="clean.parquet (split 'factors' is used)")
    p.add_argument("--factor-config", required=True,
                   help="JSON: FactorConfig fields + n_sequences, seq_len, batch_size, device")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    setup_logging()
    params = json.loads(args.factor_config)
    n_sequences, seq_len = params.pop("n_sequences"), params.pop("seq_len")
    batch_size, device = params.pop("batch_size"), params.pop("device", "auto")
    cfg = FactorConfig(**params)
    setup_torch(args.threads, cfg.seed)
    device = pick_device(device)
    model, tokenizer = load_model_dir(args.model, device)
    clean = io.load_parquet(args.clean)
    sequences = clean_sequences(tokenizer, clean.loc[clean["split"] == "factors", "text"].tolist(), seq_len,
                                n_sequences)

    def batches():
        for start in range(0, len(sequences), batch_size):
            x = sequences[start:start + batch_size].to(device)
            yield {"input_ids": x, "attention_mask": torch.ones_like(x)}

    t0 = time.time()
    factors = collect_factors(model, cfg, batches, lm_forward, device=device)
    seconds = time.time() - t0
    n_groups = -(-len(factors) // (cfg.max_modules_per_pass or len(factors)))
    tokens = sequences.numel() * n_groups  # tokens run through the model, over all module groups
    meta = {"model": args.model, "fisher": cfg.fisher, "positions": "next-token (last dropped)",
            "n_sequences": n_sequences, "seq_len": seq_len, "modules": list(factors), "config": asdict(cfg),
            "seconds": seconds, "tokens_per_second": tokens / seconds}
    io.save_tensors(factor_tensors(factors), args.out, meta)
    log.info("factors of %d modules from %d tokens in %.1fs (%.0f tokens/s over %d pass(es))", len(factors),
             sequences.numel(), seconds, tokens / seconds, n_groups)


if __name__ == "__main__":
    main()
