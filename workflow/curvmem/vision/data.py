"""Vision data: Fashion-MNIST (default scale) or an ImageNet-style ImageFolder (paper scale),
and the label corruption that creates the memorized set.

Prepared splits are artifacts:
- `tensors` format (small datasets): one safetensors file with `images` (N, C, H, W) uint8 and
  `labels` (N,) int64;
- `imagefolder` format (ImageNet): a Parquet index with the relative `path` and `label` of each
  image under the configured root; images are decoded on the fly.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import io
from .fashion_mnist import FASHION_MNIST_CLASSES, find_fashion_mnist, read_idx

log = logging.getLogger(__name__)


@dataclass
class DataConfig:
    dataset: str = "fashion_mnist"   # "fashion_mnist" or "imagefolder"
    root: str | None = None          # IDX files / torchvision root (fashion_mnist) or ImageFolder root with train/ and val/
    n_train: int = 0                 # training subset size (0: all), drawn with `seed`
    n_val: int = 0                   # validation subset size (0: all)
    seed: int = 0                    # subset seed (the corruption's seed too)


@dataclass
class CorruptionConfig:
    noise_rate: float = 0.1          # fraction of training labels replaced by a random wrong label
    seed: int = 0


def checksum(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def subset(n_total: int, n: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random subset of size n (all when n is 0)."""
    if n == 0 or n >= n_total:
        return np.arange(n_total)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_total, size=n, replace=False))


def prepare_fashion_mnist(cfg: DataConfig, out_train: Path, out_val: Path) -> None:
    files = find_fashion_mnist(cfg.root)
    for split, out, n, seed in (("train", out_train, cfg.n_train, cfg.seed), ("val", out_val, cfg.n_val, cfg.seed + 1)):
        images = read_idx(files[f"{split}_images"])  # (N, 28, 28) uint8
        labels = read_idx(files[f"{split}_labels"]).astype(np.int64)  # (N,)
        idx = subset(len(labels), n, seed)
        images, labels = images[idx][:, None], labels[idx]  # (n, 1, 28, 28)
        meta = {"dataset": "fashion_mnist", "split": split, "source": str(files[f"{split}_images"].parent),
                "classes": FASHION_MNIST_CLASSES, "source_indices_seed": seed,
                "checksum": checksum(images, labels), "n": int(len(labels))}
        io.save_tensors({"images": torch.from_numpy(images.copy()), "labels": torch.from_numpy(labels)}, out, meta)
        log.info("%s: %d images, checksum %s", out, len(labels), meta["checksum"][:12])


def imagefolder_files(root: Path, split: str) -> tuple[list[str], list[tuple[str, int]]]:
    """(classes, [(path relative to root, label)]) of an ImageFolder split, in a fixed order;
    classes are the class folders of train/."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    classes = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    rows = []
    for label, cls in enumerate(classes):
        folder = root / split / cls
        if not folder.is_dir():
            continue
        for dirpath, _, files in sorted(os.walk(folder)):
            for f in sorted(files):
                if f.lower().endswith(IMG_EXTENSIONS):
                    rows.append((str(Path(dirpath, f).relative_to(root)), label))
    return classes, rows


def prepare_imagefolder(cfg: DataConfig, out_train: Path, out_val: Path) -> None:
    import pandas as pd

    root = Path(cfg.root)
    for split, out, n, seed in (("train", out_train, cfg.n_train, cfg.seed), ("val", out_val, cfg.n_val, cfg.seed + 1)):
        classes, rows = imagefolder_files(root, split)
        assert rows, f"{root / split} has no images"
        idx = subset(len(rows), n, seed)
        frame = pd.DataFrame([rows[i] for i in idx], columns=["path", "label"])
        digest = hashlib.sha256("\n".join(f"{p}\t{l}" for p, l in zip(frame.path, frame.label)).encode()).hexdigest()
        io.save_parquet(frame, out, metadata={"dataset": "imagefolder", "split": split, "root": str(root),
                                              "classes": classes, "checksum": digest, "n": len(frame)})
        log.info("%s: %d images in %d classes", out, len(frame), len(classes))


# ---------------------------------------------------------------------------------------------
# Label corruption


def corrupt_labels(labels: np.ndarray, num_classes: int, rate: float, seed: int) -> dict:
    """Give exactly round(rate * N) examples a uniformly random label different from their own."""
    assert 0 <= rate < 1, f"noise rate must be in [0, 1), got {rate}"
    n = len(labels)
    rng = np.random.default_rng(seed)
    indices = np.sort(rng.choice(n, size=round(rate * n), replace=False))
    original = labels[indices]
    shift = rng.integers(1, num_classes, size=len(indices))  # 1..C-1: never the original class
    new = (original + shift) % num_classes
    return {"indices": indices.tolist(), "original": original.tolist(), "new": new.tolist()}


def clean_subset(n_train: int, mislabeled: list[int], n: int, seed: int,
                 exclude: np.ndarray | None = None) -> np.ndarray:
    """A seeded random set of n training indices whose labels were not corrupted (and not in `exclude`)."""
    taken = np.asarray(mislabeled, dtype=np.int64)
    if exclude is not None:
        taken = np.union1d(taken, exclude)
    clean = np.setdiff1d(np.arange(n_train), taken)
    assert n <= len(clean), f"asked for {n} clean images, only {len(clean)} exist"
    return np.sort(np.random.default_rng(seed).choice(clean, size=n, replace=False))


def split_labels(path) -> tuple[np.ndarray, dict]:
    """Labels and metadata of a prepared split, either format."""
    path = Path(path)
    if path.suffix == ".parquet":
        return io.load_parquet(path)["label"].to_numpy(), io.load_parquet_metadata(path)
    meta = io.load_metadata(path)
    return io.load_tensors(path)["labels"].numpy(), meta


def noisy_labels(train_labels: np.ndarray, corruption: dict) -> np.ndarray:
    labels = train_labels.copy()
    labels[np.asarray(corruption["indices"], dtype=np.int64)] = corruption["new"]
    return labels


# ---------------------------------------------------------------------------------------------
# Datasets the model reads


class ImageSet(torch.utils.data.Dataset):
    """Images of a prepared split with given labels, normalised for the model.

    `tensors` splits live in memory; `imagefolder` splits are decoded from disk with the
    configured transform (random-resized crop + flip when `train` and `augment`).
    """

    def __init__(self, path, labels: np.ndarray | None = None, img_size: int = 224,
                 train: bool = False, augment: bool = False, indices: np.ndarray | None = None):
        path = Path(path)
        self.path = path
        base_labels, self.meta = split_labels(path)
        self.labels = torch.tensor(base_labels if labels is None else labels, dtype=torch.int64)
        self.indices = np.arange(len(self.labels)) if indices is None else np.asarray(indices)
        if path.suffix == ".parquet":
            from torchvision import transforms as T

            self.root = Path(self.meta["root"])
            self.files = io.load_parquet(path)["path"].tolist()
            norm = T.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
            if train and augment:
                self.transform = T.Compose([T.RandomResizedCrop(img_size), T.RandomHorizontalFlip(), T.ToTensor(), norm])
            else:
                self.transform = T.Compose([T.Resize(int(img_size * 256 / 224)), T.CenterCrop(img_size), T.ToTensor(), norm])
            self.images = None
        else:
            images = io.load_tensors(path)["images"]  # (N, C, H, W) uint8
            self.images = images
            self.mean, self.std = 0.5, 0.5  # maps [0, 255] to [-1, 1]

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        j = int(self.indices[i])
        if self.images is not None:
            x = (self.images[j].float() / 255 - self.mean) / self.std
        else:
            from PIL import Image

            with Image.open(self.root / self.files[j]) as img:
                x = self.transform(img.convert("RGB"))
        return x, self.labels[j]

    def stack(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) of the given positions of this set, as one batch."""
        if self.images is not None:
            return next(self.tensor_batches(len(rows), np.asarray(rows)))
        items = [self[int(i)] for i in rows]
        return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])

    def tensor_batches(self, batch_size: int, order: np.ndarray | None = None):
        """Fast path for in-memory splits: yields (x, y) batches without a DataLoader."""
        assert self.images is not None, "tensor_batches needs an in-memory split"
        order = np.arange(len(self.indices)) if order is None else order
        for start in range(0, len(order), batch_size):
            j = torch.as_tensor(self.indices[order[start:start + batch_size]])
            x = (self.images[j].float() / 255 - self.mean) / self.std
            yield x, self.labels[j]


def batches(dataset: ImageSet, batch_size: int, workers: int = 0):
    """Batches of (x, y) in dataset order: memory slices for tensor splits, a DataLoader for image folders."""
    if dataset.images is not None:
        return dataset.tensor_batches(batch_size)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers)
