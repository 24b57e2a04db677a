"""K-FAC factors of the LM's MLP projections from clean text: every position with a next token."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

from ..common import InputError
from ..kfac import FactorConfig
from .tokens import pack_texts


@dataclass
class LMFactorConfig(FactorConfig):
    n_sequences: int = 1024        # packed sequences of clean text of the training distribution
    seq_len: int = 128             # tokens per sequence (paper: 512)
    batch_size: int = 32
    device: str = "auto"
    dtype: str = "float32"         # the weights during collection (paper scale: bfloat16); sums are float32
    gradient_checkpointing: bool = False  # recompute each layer's activations in backward (a 7B's big batches)


def factor_chunks(tokenizer, texts: list[str], cfg: LMFactorConfig) -> torch.Tensor:
    """Every (seq_len) chunk of the factor text; the factors read the first n_sequences, and what
    follows is clean text disjoint from them (the activation ratio reads it)."""
    chunks = pack_texts(tokenizer, texts, cfg.seq_len)
    if len(chunks) < cfg.n_sequences:
        raise InputError(f"config key lm.factors.n_sequences: {cfg.n_sequences} sequences of {cfg.seq_len} tokens "
                         f"asked, the factor text gives {len(chunks)}")
    return chunks


def checkpoint_layers(model) -> None:
    """Recompute each decoder layer's activations in the backward pass instead of keeping them
    (torch.utils.checkpoint, non-reentrant, so the hooked outputs stay in the graph the collector
    differentiates). Done here because transformers' own switch acts only in training mode, and the
    collector runs the model in eval mode."""
    for layer in model.model.layers:
        layer.forward = functools.partial(checkpoint, layer.forward, use_reentrant=False)
