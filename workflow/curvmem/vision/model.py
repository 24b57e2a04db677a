"""The Vision Transformer: a named timm model or one built from explicit dimensions.

Module names are timm's (`blocks.{i}.mlp.fc1`), which are what configs select layers by.
"""
from __future__ import annotations

from dataclasses import dataclass

import timm
import torch
from timm.models.vision_transformer import VisionTransformer

from .. import io
from ..kfac import linear_names


@dataclass
class ViTConfig:
    name: str | None = None    # a timm model name (e.g. vit_base_patch16_224); None: build from the dims below
    img_size: int = 28         # input resolution (pixels)
    patch_size: int = 7        # 28 / 7 -> 16 patches + 1 CLS token
    in_chans: int = 1
    num_classes: int = 10
    embed_dim: int = 96
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 4.0
    drop_rate: float = 0.0     # dropout after the MLP / projection layers (paper: 0.1)
    overrides: dict | None = None  # extra keyword arguments for timm.create_model (e.g. depth for tiny tests)


def build_vit(cfg: ViTConfig) -> VisionTransformer:
    """A randomly initialised ViT that classifies from the CLS token (global_pool='token')."""
    kwargs = dict(img_size=cfg.img_size, in_chans=cfg.in_chans, num_classes=cfg.num_classes,
                  drop_rate=cfg.drop_rate, proj_drop_rate=cfg.drop_rate, global_pool="token",
                  class_token=True)
    if cfg.name:
        return timm.create_model(cfg.name, pretrained=False, **kwargs, **(cfg.overrides or {}))
    return VisionTransformer(patch_size=cfg.patch_size, embed_dim=cfg.embed_dim, depth=cfg.depth,
                             num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio, **kwargs, **(cfg.overrides or {}))


def vit_module_names(cfg: ViTConfig) -> list[str]:
    """Names of every nn.Linear of the configured model, without allocating its weights."""
    with torch.device("meta"):
        return linear_names(build_vit(cfg))


def load_vit(cfg: ViTConfig, path) -> VisionTransformer:
    model = build_vit(cfg)
    state = io.load_tensors(path)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # a tensor of another shape
        raise io.artifact_error(path, f"does not fit the configured vit.model ({str(err).splitlines()[-1].strip()})")
    if missing or unexpected:
        raise io.artifact_error(path, f"does not fit the configured vit.model (missing {missing[:3]}, "
                                      f"unexpected {unexpected[:3]})")
    return model.eval()
