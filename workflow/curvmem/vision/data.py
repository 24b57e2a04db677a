"""Vision data: Fashion-MNIST (default scale) or an ImageNet-style ImageFolder (paper scale),
and the label corruption that creates the memorized set.

Prepared splits are artifacts:
- `tensors` format (small datasets): one safetensors file with `images` (N, C, H, W) uint8 and
  `labels` (N,) int64;
- `imagefolder` format (ImageNet): a Parquet index with the relative `path` and `label` of each
  image under the configured root; images are decoded on the fly.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import io
from ..common import setup_logging

log = logging.getLogger(__name__)

# Where Debian's `dataset-fashion-mnist` package puts the IDX files.
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "val_images": "t10k-images-idx3-ubyte",
    "val_labels": "t10k-labels-idx1-ubyte",
}
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


@dataclass
class DataConfig:
    dataset: str = "fashion_mnist"   # "fashion_mnist" or "imagefolder"
    root: str | None = None          # IDX files / torchvision root (fashion_mnist) or ImageFolder root with train/ and val/
    n_train: int = 0                 # training subset size (0: all), drawn with `seed`
    n_val: int = 0                   # validation subset size (0: all)
    noise_rate: float = 0.1          # fraction of training labels replaced by a random wrong label
    seed: int = 0                    # subset and corruption seed


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = data[0] * 256 + data[1], data[2], data[3]
    assert zero == 0 and dtype_code == 0x08, f"{path}: not an unsigned-byte IDX file"
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    assert array.size == int(np.prod(shape)), f"{path}: truncated ({array.size} of {np.prod(shape)} values)"
    return array.reshape(shape)


def find_fashion_mnist(root: str | None) -> dict[str, Path]:
    """Locate the four IDX files: the configured root, Debian's package, or torchvision's download."""
    candidates = []
    if root:
        candidates += [Path(root), Path(root) / "FashionMNIST" / "raw"]
    candidates.append(Path(DEBIAN_FASHION_MNIST))
    for folder in candidates:
        found = {}
        for key, stem in FASHION_MNIST_FILES.items():
            for name in (stem, stem + ".gz"):
                if (folder / name).exists():
                    found[key] = folder / name
                    break
        if len(found) == len(FASHION_MNIST_FILES):
            return found
    if root:  # last resort: torchvision downloads into the configured root (needs network)
        from torchvision.datasets import FashionMNIST

        log.info("Fashion-MNIST not found locally; downloading with torchvision into %s", root)
        for train in (True, False):
            FashionMNIST(root, train=train, download=True)
        return find_fashion_mnist(root)
    raise FileNotFoundError(
        "Fashion-MNIST not found: install Debian's dataset-fashion-mnist, or set vit.data.root "
        "to a folder with the IDX files (torchvision downloads them there if it can)"
    )


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


def prepare_imagefolder(cfg: DataConfig, out_train: Path, out_val: Path) -> None:
    import pandas as pd
    from torchvision.datasets.folder import IMG_EXTENSIONS

    root = Path(cfg.root)
    classes = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    assert classes, f"{root / 'train'} has no class folders"
    for split, out, n, seed in (("train", out_train, cfg.n_train, cfg.seed), ("val", out_val, cfg.n_val, cfg.seed + 1)):
        rows = []
        for label, cls in enumerate(classes):
            folder = root / split / cls
            if not folder.is_dir():
                continue
            for dirpath, _, files in sorted(os.walk(folder)):
                for f in sorted(files):
                    if f.lower().endswith(IMG_EXTENSIONS):
                        rows.append((str(Path(dirpath, f).relative_to(root)), label))
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


def main(argv=None):
    p = argparse.ArgumentParser(description="Prepare the vision splits, or corrupt training labels.")
    sub = p.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare")
    prep.add_argument("--params", required=True, help="JSON of the DataConfig")
    prep.add_argument("--train", required=True)
    prep.add_argument("--val", required=True)
    cor = sub.add_parser("corrupt")
    cor.add_argument("--params", required=True)
    cor.add_argument("--train", required=True)
    cor.add_argument("--out", required=True)
    args = p.parse_args(argv)
    setup_logging()
    cfg = DataConfig(**json.loads(args.params))
    if args.command == "prepare":
        prepare = prepare_fashion_mnist if cfg.dataset == "fashion_mnist" else prepare_imagefolder
        prepare(cfg, Path(args.train), Path(args.val))
    else:
        labels, meta = split_labels(args.train)
        num_classes = len(meta["classes"])
        corruption = corrupt_labels(labels, num_classes, cfg.noise_rate, cfg.seed)
        corruption.update(seed=cfg.seed, rate=cfg.noise_rate, num_classes=num_classes,
                          n_train=int(len(labels)), dataset_checksum=meta["checksum"])
        io.save_json(corruption, args.out)
        log.info("corrupted %d of %d training labels (seed %d)", len(corruption["indices"]), len(labels), cfg.seed)


if __name__ == "__main__":
    main()
