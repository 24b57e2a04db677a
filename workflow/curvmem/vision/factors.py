"""K-FAC factors of the ViT's MLP layers at the CLS token, from clean training images."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..kfac import FactorConfig, ForwardResult


@dataclass
class ViTFactorConfig(FactorConfig):
    n_images: int = 2000           # clean training images (CLS token: one sample each)
    batch_size: int = 250
    device: str = "auto"


def cls_positions(model, batch_size: int, device) -> torch.Tensor:
    """(B, T) mask selecting the CLS token, position 0 of timm's ViT sequence."""
    tokens = model.patch_embed.num_patches + model.num_prefix_tokens
    positions = torch.zeros(batch_size, tokens, dtype=torch.bool, device=device)
    positions[:, 0] = True
    return positions


def cls_forward(model, batch) -> ForwardResult:
    x, y = batch
    logits = model(x)  # (B, num_classes), read from the CLS token
    return ForwardResult(outputs=logits, labels=y, positions=cls_positions(model, x.shape[0], x.device))
