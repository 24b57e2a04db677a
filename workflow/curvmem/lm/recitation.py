"""Verbatim recitation: greedy decoding of exactly |S| tokens after a prefix, and its metrics.

strict = the decoded tokens equal the suffix; loose = 1 - Levenshtein / |S| >= 0.75; plus the
mean normalised token Levenshtein distance (paper section 5), all on token ids.
"""
from __future__ import annotations

import torch
from rapidfuzz.distance import Levenshtein

from .positions import position_ids


@torch.no_grad()
def greedy_continuations(model, prefixes: list[list[int]], n_new: int, pad_id: int, batch_size: int = 32,
                         device="cpu") -> list[list[int]]:
    """Greedy continuation of exactly n_new tokens per prefix; batched with left padding and a KV cache.

    End-of-sequence is not special: recitation compares exactly |S| tokens.
    """
    out: list[list[int]] = []
    for start in range(0, len(prefixes), batch_size):
        chunk = prefixes[start:start + batch_size]
        width = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, p in enumerate(chunk):
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = position_ids(mask)
        result = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        new = []
        for step in range(n_new):
            token = result.logits[:, -1].argmax(-1)  # (B,)
            new.append(token)
            if step == n_new - 1:
                break
            mask = torch.cat([mask, mask.new_ones(len(chunk), 1)], 1)
            positions = positions[:, -1:] + 1
            result = model(input_ids=token[:, None], attention_mask=mask, position_ids=positions,
                           past_key_values=result.past_key_values, use_cache=True)
        out += torch.stack(new, 1).tolist()
    return out


def recitation_metrics(generated: list[list[int]], suffixes: list[list[int]]) -> dict[str, float]:
    assert len(generated) == len(suffixes) and suffixes, "one generation per suffix"
    strict, loose, dist = 0, 0, 0.0
    for g, s in zip(generated, suffixes):
        d = Levenshtein.distance(g, s) / len(s)
        strict += g == s
        loose += (1 - d) >= 0.75
        dist += d
    n = len(suffixes)
    return {"strict_pct": 100 * strict / n, "loose_pct": 100 * loose / n, "levenshtein": dist / n, "n": n}


@torch.no_grad()
def teacher_forced_match(model, sequences: list[list[int]], prefix_len: int, batch_size: int = 32,
                         device="cpu") -> list[bool]:
    """True where every suffix token is the argmax given the true context: equivalent to greedy
    decoding reproducing the suffix exactly, at the cost of one forward pass."""
    matched = []
    for start in range(0, len(sequences), batch_size):
        chunk = torch.tensor(sequences[start:start + batch_size], device=device)  # equal lengths
        logits = model(input_ids=chunk).logits  # (B, T, V)
        pred = logits[:, prefix_len - 1:-1].argmax(-1)  # predictions of tokens prefix_len..T-1
        matched += (pred == chunk[:, prefix_len:]).all(1).tolist()
    return matched
