"""Vision data: label corruption, the IDX reader, ImageFolder preparation."""
import gzip
import struct

import numpy as np
import pytest
import torch

from curvmem import io
from curvmem.vision.data import (DataConfig, ImageSet, corrupt_labels, noisy_labels, prepare_imagefolder,
                                 read_idx, split_labels)


@pytest.mark.parametrize("n,rate", [(1000, 0.1), (999, 0.1), (37, 0.5), (10, 0.0)])
def test_corruption_changes_exactly_round_pn_labels(n, rate):
    labels = np.random.default_rng(0).integers(0, 10, size=n)
    c = corrupt_labels(labels, 10, rate, seed=3)
    changed = noisy_labels(labels, c) != labels
    assert changed.sum() == round(rate * n) == len(c["indices"])
    assert np.flatnonzero(changed).tolist() == c["indices"]
    assert (np.asarray(c["new"]) != np.asarray(c["original"])).all()
    assert (np.asarray(c["original"]) == labels[c["indices"]]).all()


def test_corruption_is_seeded_and_uniform_over_wrong_classes():
    labels = np.zeros(30000, dtype=np.int64)
    a, b, other = (corrupt_labels(labels, 4, 0.5, seed=s) for s in (1, 1, 2))
    assert a == b and a != other
    counts = np.bincount(a["new"], minlength=4)
    assert counts[0] == 0
    assert np.allclose(counts[1:] / counts[1:].sum(), 1 / 3, atol=0.02)  # 15000 draws: 3 sigma is ~0.012


def test_read_idx(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = struct.pack(">HBB", 0, 0x08, 3) + struct.pack(">III", 2, 3, 4)
    with gzip.open(tmp_path / "x-idx3-ubyte.gz", "wb") as f:
        f.write(header + images.tobytes())
    np.testing.assert_array_equal(read_idx(tmp_path / "x-idx3-ubyte.gz"), images)
    (tmp_path / "cut").write_bytes(header + images.tobytes()[:-5])
    with pytest.raises(AssertionError, match="truncated"):
        read_idx(tmp_path / "cut")


def make_imagefolder(root, classes=("cat", "dog", "eel"), per_class=4, size=20):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in classes:
            (root / split / cls).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / cls / f"{i}.png")
    return root


def test_imagefolder_prepare_and_load(tmp_path):
    root = make_imagefolder(tmp_path / "imagenet")
    cfg = DataConfig(dataset="imagefolder", root=str(root), n_train=9, n_val=0)
    prepare_imagefolder(cfg, tmp_path / "train.parquet", tmp_path / "val.parquet")
    labels, meta = split_labels(tmp_path / "train.parquet")
    assert len(labels) == 9 and meta["classes"] == ["cat", "dog", "eel"]
    val_labels, _ = split_labels(tmp_path / "val.parquet")
    assert sorted(val_labels.tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    data = ImageSet(tmp_path / "val.parquet", img_size=16)
    x, y = data[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and y.item() == 0


def test_corrupt_artifact_names_the_file_its_rule_and_the_remedy(tmp_path):
    path = tmp_path / "results/vit/model-0123456789.safetensors"
    io.save_tensors({"w": torch.ones(3)}, path)
    path.write_bytes(path.read_bytes()[:-4])  # truncated
    with pytest.raises(io.ArtifactError) as err:
        io.load_tensors(path)
    assert str(err.value).startswith(f"{path}: not a readable safetensors file")
    assert str(err.value).endswith(f"(made by rule vit_train); delete {path} and rerun "
                                   "`snakemake --cores all results/figures` to rebuild it")
    bad = tmp_path / "data/vit/corruption-0123456789.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"indices": [1, 2')
    with pytest.raises(io.ArtifactError, match=r"\(made by rule vit_corrupt\)"):
        io.load_json(bad)
    edit = tmp_path / "results/lm/edits/layers_2_3/kfac/all.json"
    edit.parent.mkdir(parents=True)
    edit.write_text("garbage")
    with pytest.raises(io.ArtifactError, match=r"\(made by rule lm_edits\)"):
        io.load_json(edit)
    weights = tmp_path / "results/lm/model-0123456789/model.safetensors"  # inside a model directory
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"not safetensors")
    with pytest.raises(io.ArtifactError, match=r"\(made by rule lm_train\); delete .*results/lm/model-0123456789 and"):
        io.safetensors_keys(weights)
