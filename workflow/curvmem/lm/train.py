"""Train the LM: from scratch on the miniature world, or continued training of a pretrained model
(memorization injected into SmolLM2). One loop: packed fixed-length chunks, AdamW, warm-up + cosine.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from .. import training
from ..common import crash_point, run_length
from .tokens import EOS, PAD, train_tokenizer

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
    seed: int = 0                     # initialization and the chunks sampled
    stop_after: float = 1.0           # fraction of the steps trained: < 1, a checkpoint of the full run
    device: str = "auto"
    vocab_size: int = 2048            # tokenizer trained on the corpus (from scratch only)


def world_tokenizer(texts: list[str], vocab_size: int):
    """The world's BPE tokenizer as a transformers tokenizer (saved beside the model)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=train_tokenizer(texts, vocab_size), pad_token=PAD,
                                   eos_token=EOS, bos_token=EOS)


def train_lm(model, chunks: torch.Tensor, cfg: LMTrainConfig, device) -> list[dict]:
    """Next-token training on random chunks (N, seq_len); returns the loss history."""
    assert chunks.ndim == 2 and chunks.shape[1] == cfg.seq_len, f"chunks {tuple(chunks.shape)} vs seq_len {cfg.seq_len}"
    model.train()
    opt, sched = training.optimizer(model, kind="adamw", lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay,
                                    total_steps=cfg.steps, warmup_steps=cfg.warmup_steps)
    generator = torch.Generator().manual_seed(cfg.seed)
    history, running = [], []
    steps_run = run_length(cfg.steps, cfg.stop_after)  # the schedule above spans all cfg.steps
    bar = tqdm(range(steps_run), desc="train LM", mininterval=10)
    for step in bar:
        x = chunks[torch.randint(0, len(chunks), (cfg.batch_size,), generator=generator)].to(device)
        loss = model(input_ids=x, labels=x).loss
        training.step(model, loss, opt, sched, cfg.grad_clip)
        running.append(loss.item())
        if (step + 1) % 50 == 0 or step + 1 == steps_run:
            history.append({"step": step + 1, "loss": float(np.mean(running)), "lr": sched.get_last_lr()[0]})
            bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
            log.info("step %d loss %.3f", step + 1, history[-1]["loss"])
            running = []
        crash_point(f"train:step{step + 1}")
    model.eval()
    return history
