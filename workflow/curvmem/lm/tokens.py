"""Tokenizer of the miniature world and packing of documents into fixed-length chunks."""
from __future__ import annotations

import numpy as np

EOS = "<|endoftext|>"
PAD = "<|pad|>"


def train_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE trained on the corpus; digits are split one by one (arithmetic is per digit)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    assert tok.token_to_id(PAD) == 0 and tok.token_to_id(EOS) == 1, "special tokens must be ids 0 and 1"
    return tok


def pack(docs_ids: list[list[int]], length: int, eos_id: int) -> np.ndarray:
    """Concatenate documents separated by EOS (in the given order) and cut into (N, length) chunks;
    the incomplete tail is dropped."""
    stream = np.fromiter((t for ids in docs_ids for t in (*ids, eos_id)), dtype=np.int32)
    n = len(stream) // length
    assert n > 0, f"corpus of {len(stream)} tokens is shorter than one chunk of {length}"
    return stream[: n * length].reshape(n, length)
