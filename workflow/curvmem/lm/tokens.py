"""Tokenizer of the miniature world, document starts, and packing of documents into fixed-length chunks."""
from __future__ import annotations

import numpy as np
import torch

EOS = "<|endoftext|>"
PAD = "<|pad|>"


def train_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE trained on the corpus; digits are split one by one (arithmetic is per digit).

    Training packs documents with EOS between them, so the model sees every document start right
    after an EOS; the post-processor makes EOS the tokenizer's start-of-document token too, and
    prompts and recitation prefixes begin the way training documents did (`doc_start_ids`).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    assert tok.token_to_id(PAD) == 0 and tok.token_to_id(EOS) == 1, "special tokens must be ids 0 and 1"
    tok.post_processor = processors.TemplateProcessing(single=f"{EOS} $A", pair=f"{EOS} $A {EOS} $B",
                                                       special_tokens=[(EOS, 1)])
    return tok


def doc_start_ids(tokenizer) -> list[int]:
    """The ids a tokenizer puts before a document (its BOS convention): [EOS] for the world's
    tokenizer, [] for SmolLM2's, whatever a hub tokenizer adds for its own model."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    starts = [i for i in range(len(full) - len(plain) + 1) if full[i:i + len(plain)] == plain]
    assert starts, f"special tokens of {type(tokenizer).__name__} split the text itself: {full} vs {plain}"
    return full[: starts[0]]


def pack(docs_ids: list[list[int]], length: int, eos_id: int) -> np.ndarray:
    """Concatenate documents separated by EOS (in the given order) and cut into (N, length) chunks;
    the incomplete tail is dropped."""
    stream = np.fromiter((t for ids in docs_ids for t in (*ids, eos_id)), dtype=np.int32)
    n = len(stream) // length
    assert n > 0, f"corpus of {len(stream)} tokens is shorter than one chunk of {length}"
    return stream[: n * length].reshape(n, length)


def pack_texts(tokenizer, texts: list[str], length: int) -> torch.Tensor:
    """(N, length) token chunks of texts joined by EOS, in order (factor sequences, perplexity blocks)."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return torch.from_numpy(pack(ids, length, tokenizer.eos_token_id)).long()
