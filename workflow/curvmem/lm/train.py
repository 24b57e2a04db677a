"""Train the LM: from scratch on the miniature world, or continued training of a pretrained model
(memorization injected into SmolLM2). One loop: packed fixed-length chunks, AdamW, warm-up + cosine.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from .. import io
from ..common import crash_point, pick_device, setup_logging, setup_torch
from ..vision.train import warmup_cosine
from .model import LMConfig, build_lm, load_model_dir, save_model_dir
from .tokens import EOS, PAD, pack, train_tokenizer

log = logging.getLogger(__name__)


@dataclass
class LMTrainConfig:
    steps: int = 1200                 # optimizer steps (sampled chunks, with replacement)
    batch_size: int = 32              # chunks per step
    seq_len: int = 128                # tokens per chunk; documents are packed, separated by EOS
    lr: float = 2e-3                  # peak learning rate
    betas: list = field(default_factory=lambda: [0.9, 0.95])
    weight_decay: float = 0.1         # on weight matrices only
    warmup_steps: int = 100
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    vocab_size: int = 2048            # tokenizer trained on the corpus (from scratch only)


def world_tokenizer(texts: list[str], vocab_size: int):
    """The world's BPE tokenizer as a transformers tokenizer (saved beside the model)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=train_tokenizer(texts, vocab_size), pad_token=PAD,
                                   eos_token=EOS, bos_token=EOS)


def decay_groups(model: torch.nn.Module, weight_decay: float):
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_lm(model, chunks: torch.Tensor, cfg: LMTrainConfig, device) -> list[dict]:
    """Next-token training on random chunks (N, seq_len); returns the loss history."""
    assert chunks.ndim == 2 and chunks.shape[1] == cfg.seq_len, f"chunks {tuple(chunks.shape)} vs seq_len {cfg.seq_len}"
    model.train()
    opt = torch.optim.AdamW(decay_groups(model, cfg.weight_decay), lr=cfg.lr, betas=tuple(cfg.betas))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(cfg.warmup_steps, cfg.steps))
    generator = torch.Generator().manual_seed(cfg.seed)
    history, running = [], []
    bar = tqdm(range(cfg.steps), desc="train LM", mininterval=10)
    for step in bar:
        x = chunks[torch.randint(0, len(chunks), (cfg.batch_size,), generator=generator)].to(device)
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        running.append(loss.item())
        if (step + 1) % 50 == 0 or step + 1 == cfg.steps:
            history.append({"step": step + 1, "loss": float(np.mean(running)), "lr": sched.get_last_lr()[0]})
            bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
            log.info("step %d loss %.3f", step + 1, history[-1]["loss"])
            running = []
        crash_point(f"train:step{step + 1}")
    model.eval()
    return history


def main(argv=None):
    p = argparse.ArgumentParser(description="Train the LM from scratch (world) or continue a pretrained one.")
    p.add_argument("--docs", required=True, help="train_docs.parquet")
    p.add_argument("--train-config", required=True, help="JSON: LMTrainConfig fields")
    p.add_argument("--model-config", help="JSON: LMConfig fields (from scratch)")
    p.add_argument("--init", help="pretrained model directory to continue from")
    p.add_argument("--out", required=True, help="model directory")
    p.add_argument("--metrics", required=True)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    assert bool(args.model_config) != bool(args.init), "give exactly one of --model-config and --init"
    setup_logging()
    cfg = LMTrainConfig(**json.loads(args.train_config))
    setup_torch(args.threads, cfg.seed)
    device = pick_device(cfg.device)
    texts = io.load_parquet(args.docs)["text"].tolist()
    t0 = time.time()
    if args.init:
        model, tokenizer = load_model_dir(args.init)
    else:
        tokenizer = world_tokenizer(texts, cfg.vocab_size)
        model_cfg = LMConfig(**{**json.loads(args.model_config), "vocab_size": len(tokenizer),
                                "max_position_embeddings": cfg.seq_len})
        model = build_lm(model_cfg, seed=cfg.seed)
    model.to(device)
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    chunks = torch.from_numpy(pack(ids, cfg.seq_len, tokenizer.eos_token_id)).long()
    n_params = sum(p.numel() for p in model.parameters())
    log.info("%d documents, %d tokens, %d chunks; %.2fM parameters; prep %.1fs", len(texts),
             sum(map(len, ids)), len(chunks), n_params / 1e6, time.time() - t0)
    t1 = time.time()
    history = train_lm(model, chunks, cfg, device)
    seconds = time.time() - t1
    tokens = cfg.steps * cfg.batch_size * cfg.seq_len
    save_model_dir(model.cpu(), tokenizer, args.out, {"train_config": asdict(cfg), "init": args.init,
                                                      "docs": args.docs, "n_params": n_params})
    io.save_json({"history": history, "train_seconds": seconds, "tokens_seen": tokens,
                  "tokens_per_second": tokens / seconds, "corpus_tokens": int(chunks.numel()),
                  "epochs": tokens / chunks.numel(), "n_params": n_params}, args.metrics)
    log.info("trained %d steps in %.1fs (%.0f tokens/s), final loss %.3f", cfg.steps, seconds, tokens / seconds,
             history[-1]["loss"])


if __name__ == "__main__":
    main()
