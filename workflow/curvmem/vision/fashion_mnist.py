"""Fashion-MNIST as IDX files: where they are (Debian's package, a configured folder, or
torchvision's download) and how to read them. numpy only, so config validation can read sizes."""
from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np

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


def idx_length(path: Path) -> int:
    """Number of items in an IDX file, from its header alone."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        header = f.read(8)
    if len(header) < 8 or header[:2] != b"\x00\x00":
        raise ValueError(f"{path}: not an IDX file")
    return int.from_bytes(header[4:8], "big")


def find_fashion_mnist(root: str | None, download: bool = True) -> dict[str, Path]:
    """Locate the four IDX files: the configured root, Debian's package, or (download=True)
    torchvision's download into the root."""
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
    if root and download:  # last resort: torchvision downloads into the configured root (needs network)
        from torchvision.datasets import FashionMNIST

        log.info("Fashion-MNIST not found locally; downloading with torchvision into %s", root)
        for train in (True, False):
            FashionMNIST(root, train=train, download=True)
        return find_fashion_mnist(root)
    raise FileNotFoundError(
        "Fashion-MNIST not found: install Debian's dataset-fashion-mnist, or set vit.data.root "
        "to a folder with the IDX files (torchvision downloads them there if it can)"
    )
