"""One loader for causal LMs: a hub id, a local directory, a GGUF file, or a small random-weight
model of the paper's architecture families (transformers Olmo2 / Llama classes).

Module names are transformers' (`model.layers.{i}.mlp.gate_proj`), which configs select layers by.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

ARCHITECTURES = ("olmo2", "llama")


@dataclass
class LMConfig:
    source: str | None = None     # hub id, local directory, or a .gguf file; None: a random-weight model from `arch`
    arch: str = "olmo2"           # olmo2 (paper: OLMo-2) or llama (SmolLM2) when built from dims
    vocab_size: int = 512
    hidden_size: int = 64
    intermediate_size: int = 256  # MLP width of gate_proj / up_proj
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    max_position_embeddings: int = 256
    dtype: str = "float32"        # weights are edited in float32 and cast back
    extra: dict = field(default_factory=dict)  # further config keyword arguments


def build_config(cfg: LMConfig):
    from transformers import LlamaConfig, Olmo2Config

    assert cfg.arch in ARCHITECTURES, f"unknown architecture {cfg.arch!r}; choose one of {ARCHITECTURES}"
    config_cls = Olmo2Config if cfg.arch == "olmo2" else LlamaConfig
    return config_cls(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
                      intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_hidden_layers,
                      num_attention_heads=cfg.num_attention_heads, num_key_value_heads=cfg.num_attention_heads,
                      max_position_embeddings=cfg.max_position_embeddings, pad_token_id=0, bos_token_id=None,
                      eos_token_id=None, tie_word_embeddings=False, **cfg.extra)


def build_lm(cfg: LMConfig, seed: int = 0):
    """A random-weight causal LM of the configured architecture (seeded)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(build_config(cfg), dtype=getattr(torch, cfg.dtype)).eval()


def load_lm(cfg: LMConfig):
    """Load pretrained weights: a .gguf file (dequantised), or a hub id / local directory."""
    from transformers import AutoModelForCausalLM

    dtype = getattr(torch, cfg.dtype)
    source = cfg.source
    assert source, "load_lm needs a source; build_lm makes random-weight models"
    if source.endswith(".gguf"):
        path = Path(source)
        return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype).eval()
    return AutoModelForCausalLM.from_pretrained(source, dtype=dtype).eval()
