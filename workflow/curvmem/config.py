"""Config validation: the JSON schema, then checks the schema cannot express (module patterns
against the real architecture, names that must refer to each other, data that must exist).

Every problem is reported as one line naming the key, before any job runs.
"""
from __future__ import annotations

import fnmatch
from pathlib import Path

import jsonschema
import yaml

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config problem, as one line that names the key."""


def _key(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def check_schema(config: dict) -> None:
    schema = yaml.safe_load(SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if not errors:
        return
    err = errors[0]
    if err.validator == "additionalProperties":
        known = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(known))
        where = _key(err.absolute_path)
        key = f"{where}.{extra[0]}" if err.absolute_path else extra[0]
        raise ConfigError(f"config key {key}: unknown key" + (f" (known: {', '.join(known)})" if known else ""))
    if err.validator == "required":
        missing = err.message.split("'")[1]
        where = _key(err.absolute_path)
        raise ConfigError(f"config key {where + '.' if err.absolute_path else ''}{missing}: required but missing")
    if err.validator == "uniqueItems":
        raise ConfigError(f"config key {_key(err.absolute_path)}: has duplicate entries {err.instance}")
    raise ConfigError(f"config key {_key(err.absolute_path)}: {err.message}")


def _match(patterns: list[str], names: list[str]) -> list[str]:
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def check_vit(config: dict) -> None:
    from .vision.data import find_fashion_mnist
    from .vision.model import ViTConfig, vit_module_names

    vit, scale = config["vit"], config["scale"]
    model = vit["model"]
    if "overrides" in model and scale != "test":
        raise ConfigError(f"config key vit.model.overrides: only allowed with scale: test (this config is {scale})")
    if model.get("name"):
        import timm

        if not timm.is_model(model["name"]):
            raise ConfigError(f"config key vit.model.name: {model['name']!r} is not a timm model")
    else:
        for key in ("patch_size", "embed_dim", "depth", "num_heads"):
            if key not in model:
                raise ConfigError(f"config key vit.model.{key}: required when vit.model.name is not set")
        if model["img_size"] % model["patch_size"]:
            raise ConfigError("config key vit.model.patch_size: must divide vit.model.img_size")
        if model["embed_dim"] % model["num_heads"]:
            raise ConfigError("config key vit.model.num_heads: must divide vit.model.embed_dim")
    try:
        names = vit_module_names(ViTConfig(**model))
    except (TypeError, ValueError, AssertionError) as err:
        raise ConfigError(f"config key vit.model: cannot build this ViT ({err})") from None

    factor_modules = _match(vit["factors"]["modules"], names)
    for i, pattern in enumerate(vit["factors"]["modules"]):
        if not _match([pattern], names):
            raise ConfigError(f"config key vit.factors.modules[{i}]: {pattern!r} matches no nn.Linear of the model")
    for set_name, patterns in vit["edit"]["layer_sets"].items():
        for i, pattern in enumerate(patterns):
            if not _match([pattern], factor_modules):
                raise ConfigError(f"config key vit.edit.layer_sets.{set_name}[{i}]: {pattern!r} matches no module "
                                  f"of vit.factors.modules")

    head = vit["headline"]
    if head["layer_set"] not in vit["edit"]["layer_sets"]:
        raise ConfigError(f"config key vit.headline.layer_set: {head['layer_set']!r} is not in vit.edit.layer_sets")
    if head["rho"] not in vit["edit"]["rhos"]:
        raise ConfigError(f"config key vit.headline.rho: {head['rho']} is not in vit.edit.rhos")
    if head["svd_drop_fraction"] not in vit["edit"]["svd_drop_fractions"]:
        raise ConfigError(f"config key vit.headline.svd_drop_fraction: {head['svd_drop_fraction']} is not in "
                          f"vit.edit.svd_drop_fractions")

    data = vit["data"]
    if data["dataset"] == "imagefolder":
        if not data.get("root") or not (Path(data["root"]) / "train").is_dir():
            raise ConfigError(f"config key vit.data.root: {data.get('root')!r} is not an ImageFolder root with a "
                              f"train/ folder")
    elif data.get("root") and not Path(data["root"]).is_dir():
        raise ConfigError(f"config key vit.data.root: {data['root']!r} does not exist")
    elif not data.get("root"):
        try:
            find_fashion_mnist(None)
        except FileNotFoundError as err:
            raise ConfigError(f"config key vit.data.root: not set and {err}") from None
    n_train = data["n_train"]
    if n_train and round(data["noise_rate"] * n_train) + vit["factors"]["n_images"] > n_train:
        raise ConfigError("config key vit.factors.n_images: more than the clean training images "
                          f"({n_train} - {round(data['noise_rate'] * n_train)} mislabeled)")


def lm_module_names(model: dict) -> list[str] | None:
    """nn.Linear names of the configured LM, or None for a pretrained source (checked when loaded)."""
    from .lm.model import LMConfig, build_config

    if model.get("source"):
        return None
    import torch
    from transformers import AutoModelForCausalLM

    cfg = LMConfig(**{k: v for k, v in model.items() if k != "source"})
    with torch.device("meta"):
        lm = AutoModelForCausalLM.from_config(build_config(cfg))
    return [n for n, m in lm.named_modules() if isinstance(m, torch.nn.Linear)]


def check_lm(config: dict) -> None:
    lm = config["lm"]
    model, train, files = lm["model"], lm.get("train"), lm.get("files")
    if not model.get("source"):
        if train is None:
            raise ConfigError("config key lm.train: required when lm.model.source is null (a model from scratch)")
        for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"):
            if key not in model:
                raise ConfigError(f"config key lm.model.{key}: required when lm.model.source is null")
        if model["hidden_size"] % model["num_attention_heads"]:
            raise ConfigError("config key lm.model.num_attention_heads: must divide lm.model.hidden_size")
    if files:
        for key in ("memorized", "quotes", "clean"):
            path = files[key]
            if not path.startswith(("http://", "https://")) and not Path(path).is_file():
                raise ConfigError(f"config key lm.files.{key}: {path!r} is not a file")
    elif config["scale"] != "test" and not Path("/usr/share/games/fortunes").is_dir():
        raise ConfigError("config key lm.world: needs Debian's fortunes text (bash envs/setup.sh installs it)")
    if model.get("source", "") and model["source"].startswith("pkg:"):
        from .lm.model import resolve_source

        try:
            resolve_source(model["source"])
        except FileNotFoundError as err:
            raise ConfigError(f"config key lm.model.source: {err}") from None

    names = lm_module_names(model)
    if names is not None:
        for i, pattern in enumerate(lm["factors"]["modules"]):
            if not _match([pattern], names):
                raise ConfigError(f"config key lm.factors.modules[{i}]: {pattern!r} matches no nn.Linear of the model")
        names = _match(lm["factors"]["modules"], names)
    for set_name, patterns in lm["edit"]["layer_sets"].items():
        for i, pattern in enumerate(patterns):
            if names is not None and not _match([pattern], names):
                raise ConfigError(f"config key lm.edit.layer_sets.{set_name}[{i}]: {pattern!r} matches no module "
                                  f"of lm.factors.modules")
    windows = lm["windows"]
    if train and windows["prefix"] + windows["suffix"] > train["seq_len"]:
        raise ConfigError("config key lm.windows: prefix + suffix exceeds lm.train.seq_len (the trained context)")


def validate(config: dict) -> dict:
    """Raise ConfigError (one line naming the key) for any problem; return the config unchanged."""
    check_schema(config)
    if "vit" in config:
        check_vit(config)
    if "lm" in config:
        check_lm(config)
    return config


def fmt(x: float) -> str:
    """A cutoff as it appears in file names: 0.75 -> '0.75', 1.0 -> '1'."""
    return f"{x:g}"
