"""The paper-scale vision path (ImageFolder data, timm's vit_base_patch16_224, blocks 0 and 11
edits) on a tiny random-weight instance: config/paper.yaml with only the sizes shrunk, through
the same Snakemake rules."""
import pytest
import yaml

from conftest import copy_project, snakemake
from test_vision_data import make_imagefolder

pytestmark = pytest.mark.pipeline


def test_paper_config_runs_on_a_tiny_vit_b(tmp_path):
    import pandas as pd

    copy_project(tmp_path)
    root = make_imagefolder(tmp_path / "imagenet", per_class=6, size=48)
    config = yaml.safe_load((tmp_path / "config/paper.yaml").read_text())
    vit = config["vit"]
    config["scale"] = "test"  # allows model.overrides
    config["threads"] = {"train": 1, "factors": 1, "edit": 1}
    vit["data"].update(root=str(root))
    vit["model"].update(num_classes=3, overrides={"depth": 2})  # ViT-B/16 dims, two blocks
    vit["train"].update(epochs=1, batch_size=6, warmup_steps=1, device="cpu", bf16=False, workers=0)
    vit["factors"].update(n_images=8, batch_size=4, device="cpu")
    vit["edit"] = {"layer_sets": {"first_last": ["blocks.0.mlp.fc*", "blocks.1.mlp.fc*"]},
                   "rhos": [0.75], "svd_drop_fractions": [0.5]}
    vit["eval"].update(batch_size=8, device="cpu")
    (tmp_path / "config/tiny_paper.yaml").write_text(yaml.safe_dump(config))
    snakemake(tmp_path, "--configfile", "config/tiny_paper.yaml")
    table2 = pd.read_csv(tmp_path / "results/tables/table2_vit.csv")
    assert table2.model.tolist() == ["baseline", "svd", "kfac"]
    assert (tmp_path / "data/vit/train.parquet").exists()
    assert (tmp_path / "results/figures/vit_table2.png").exists()
