"""Checks of the `vit:` config section that need the architecture or the data; the JSON schema has
run before. Each problem is a ConfigError naming the key, raised before any job starts."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..common import ConfigError
from ..layers import check_patterns


FASHION_MNIST_SIZES = {"train": 60000, "val": 10000}  # what torchvision downloads when the files are absent


def check(vit: dict, scale: str, memo: Callable) -> None:
    """`memo(key, fn)` caches fn() by key across runs (building a model to list its layers costs seconds)."""
    model = vit["model"]
    if "overrides" in model and scale != "test":
        raise ConfigError(f"config key vit.model.overrides: only allowed with scale: test (this config is {scale})")
    if model.get("name"):
        if not memo({"timm_is_model": model["name"]}, lambda: _timm_is_model(model["name"])):
            raise ConfigError(f"config key vit.model.name: {model['name']!r} is not a timm model")
    else:
        for key in ("patch_size", "embed_dim", "depth", "num_heads"):
            if key not in model:
                raise ConfigError(f"config key vit.model.{key}: required when vit.model.name is not set")
        if model["img_size"] % model["patch_size"]:
            raise ConfigError("config key vit.model.patch_size: must divide vit.model.img_size")
        if model["embed_dim"] % model["num_heads"]:
            raise ConfigError("config key vit.model.num_heads: must divide vit.model.embed_dim")
    names = memo({"vit_linear_names": model}, lambda: _linear_names(model))
    if isinstance(names, str):
        raise ConfigError(f"config key vit.model: cannot build this ViT ({names})")
    check_patterns("vit", names, vit["factors"]["modules"], vit["edit"]["layer_sets"])

    head, edit = vit["headline"], vit["edit"]
    if head["layer_set"] not in edit["layer_sets"]:
        raise ConfigError(f"config key vit.headline.layer_set: {head['layer_set']!r} is not in vit.edit.layer_sets")
    if head["rho"] not in edit["rhos"]:
        raise ConfigError(f"config key vit.headline.rho: {head['rho']} is not in vit.edit.rhos")
    if head["svd_drop_fraction"] not in edit["svd_drop_fractions"]:
        raise ConfigError(f"config key vit.headline.svd_drop_fraction: {head['svd_drop_fraction']} is not in "
                          f"vit.edit.svd_drop_fractions")
    check_data(vit, memo)


def check_data(vit: dict, memo: Callable) -> None:
    """The data exist and are large enough for every subset the config asks for."""
    from .fashion_mnist import find_fashion_mnist, idx_length

    data = vit["data"]
    if data["dataset"] == "imagefolder":
        root = Path(data.get("root") or "")
        if not data.get("root") or not (root / "train").is_dir():
            raise ConfigError(f"config key vit.data.root: {data.get('root')!r} is not an ImageFolder root with a "
                              f"train/ folder")
        sizes = memo({"imagefolder_sizes": str(root.resolve()), "stamp": _tree_stamp(root)},
                     lambda: _imagefolder_sizes(root))
    else:
        if data.get("root") and not Path(data["root"]).is_dir():
            raise ConfigError(f"config key vit.data.root: {data['root']!r} does not exist")
        try:
            files = find_fashion_mnist(data.get("root"), download=False)
            sizes = memo({"idx_sizes": [str(f) for f in files.values()],
                          "stamp": [f.stat().st_mtime_ns for f in files.values()]},
                         lambda: {"train": idx_length(files["train_labels"]), "val": idx_length(files["val_labels"])})
        except FileNotFoundError as err:
            if not data.get("root"):
                raise ConfigError(f"config key vit.data.root: not set and {err}") from None
            sizes = FASHION_MNIST_SIZES  # torchvision downloads them into the root
        except ValueError as err:
            raise ConfigError(f"config key vit.data.root: {err}") from None
    for split, key in (("train", "n_train"), ("val", "n_val")):
        if data[key] > sizes[split]:
            raise ConfigError(f"config key vit.data.{key}: {data[key]} is more than the {sizes[split]} images of "
                              f"the {split} split")
        if sizes[split] == 0:
            raise ConfigError(f"config key vit.data.root: the {split} split has no images")
    n_train = data["n_train"] or sizes["train"]
    n_mislabeled = round(data["noise_rate"] * n_train)
    if n_mislabeled == 0:
        raise ConfigError(f"config key vit.data.noise_rate: {data['noise_rate']} of {n_train} training images "
                          f"leaves no mislabeled image to memorize")
    n_clean = n_train - n_mislabeled
    if vit["factors"]["n_images"] >= n_clean:
        raise ConfigError(f"config key vit.factors.n_images: {vit['factors']['n_images']} leaves none of the "
                          f"{n_clean} clean training images for the activation ratio (it needs images disjoint "
                          f"from the factors)")


def _timm_is_model(name: str) -> bool:
    import timm

    return timm.is_model(name)


def _linear_names(model: dict) -> list[str] | str:
    """nn.Linear names of the configured ViT, or the reason it cannot be built."""
    from ..common import from_dict
    from .model import ViTConfig, vit_module_names

    try:
        return vit_module_names(from_dict(ViTConfig, model, "vit.model"))
    except (TypeError, ValueError, AssertionError) as err:
        return str(err)


def _tree_stamp(root: Path) -> list:
    """Modification times of the class folders: a cheap stand-in for 'the image set changed'."""
    return sorted((str(d.relative_to(root)), d.stat().st_mtime_ns) for split in ("train", "val")
                  if (root / split).is_dir() for d in (root / split).iterdir() if d.is_dir())


def _imagefolder_sizes(root: Path) -> dict:
    from .data import imagefolder_files

    return {split: len(imagefolder_files(root, split)[1]) if (root / split).is_dir() else 0
            for split in ("train", "val")}
