"""Token positions in causal-LM batches: which positions count as K-FAC samples, and the position
ids of padded batches."""
from __future__ import annotations

import torch

from ..kfac import ForwardResult


def next_token_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: position t is real and so is t + 1."""
    mask = attention_mask.bool()
    keep = torch.zeros_like(mask)
    keep[:, :-1] = mask[:, :-1] & mask[:, 1:]
    return keep


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) positions counted over real tokens only, so a left-padded sequence starts at 0 as it
    did in training (models with absolute position embeddings depend on it; rotary ones do not)."""
    return (attention_mask.long().cumsum(1) - 1).clamp(min=0)


def lm_forward(model, batch: dict) -> ForwardResult:
    """Forward for the collector: predictions at every position with a next token."""
    input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask),
                   use_cache=False).logits  # (B, T, V); no cache: a recomputed layer must not append to it
    keep = next_token_positions(attention_mask)
    targets = input_ids.roll(-1, dims=1)  # target of position t is token t + 1
    return ForwardResult(outputs=logits[keep], labels=targets[keep], positions=keep)


def sequence_losses(model, sequences: list[list[int]], pad_id: int, device="cpu") -> torch.Tensor:
    """(B,) mean next-token cross-entropy of each sequence over its own tokens (right-padded batch;
    BalancedSubnet's per-example loss)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    ids, mask = ids.to(device), mask.to(device)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)).logits  # (B, T, V)
    keep = next_token_positions(mask).float()  # (B, T)
    token_loss = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), ids[:, 1:],
                                                   reduction="none")  # (B, T-1)
    return (token_loss * keep[:, :-1]).sum(1) / keep[:, :-1].sum(1).clamp(min=1)
