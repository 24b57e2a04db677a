"""Layer sets resolve to module names the same way in validation and in every job."""
import pytest
import torch

from curvmem.common import ConfigError
from curvmem.kfac import linear_names
from curvmem.layers import check_patterns, resolve_layer_set
from curvmem.vision.model import ViTConfig, build_vit


@pytest.fixture(scope="module")
def vit_names():
    with torch.device("meta"):
        return linear_names(build_vit(ViTConfig(embed_dim=16, depth=2, num_heads=2)))


def test_a_layer_set_resolves_within_the_factor_modules_only(vit_names):
    """`blocks.0.*` names attention layers too, but a layer set only ever edits factor modules: the
    K-FAC edit and the SVD baseline both edit exactly fc1 and fc2 of block 0."""
    assert "blocks.0.attn.qkv" in vit_names
    factors = ["blocks.*.mlp.fc1", "blocks.*.mlp.fc2"]
    assert resolve_layer_set(vit_names, factors, ["blocks.0.*"]) == ["blocks.0.mlp.fc1", "blocks.0.mlp.fc2"]
    check_patterns("vit", vit_names, factors, {"first": ["blocks.0.*"]})  # valid: it resolves to fc1, fc2
    with pytest.raises(ConfigError, match=r"vit.edit.layer_sets.attn\[0\]: 'blocks.0.attn.\*' matches no module of"):
        check_patterns("vit", vit_names, factors, {"attn": ["blocks.0.attn.*"]})
    with pytest.raises(ValueError, match="matches no module of the factor modules"):
        resolve_layer_set(vit_names, factors, ["blocks.0.attn.*"])


def test_order_follows_the_model(vit_names):
    factors = ["blocks.*.mlp.fc2", "blocks.*.mlp.fc1"]
    assert resolve_layer_set(vit_names, factors, ["blocks.1.mlp.fc2", "blocks.0.mlp.*"]) == [
        "blocks.0.mlp.fc1", "blocks.0.mlp.fc2", "blocks.1.mlp.fc2"]
