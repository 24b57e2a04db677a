"""Checks of the `lm:` config section that need the model, the text files or the installed data;
the JSON schema has run before. Each problem is a ConfigError naming the key, before any job."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

from ..common import ConfigError, InputError
from ..layers import check_patterns
from .text import local_text_files

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
FORTUNES = "/usr/share/games/fortunes"


def check(lm: dict, scale: str, memo: Callable) -> None:
    """`memo(key, fn)` caches fn() by key across runs (model configs, parsed files)."""
    model, train, files = lm["model"], lm.get("train"), lm.get("files")
    source = model.get("source")
    if not source:
        if train is None:
            raise ConfigError("config key lm.train: required when lm.model.source is null (a model from scratch)")
        for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"):
            if key not in model:
                raise ConfigError(f"config key lm.model.{key}: required when lm.model.source is null")
        if model["hidden_size"] % model["num_attention_heads"]:
            raise ConfigError("config key lm.model.num_attention_heads: must divide lm.model.hidden_size")
    names = linear_names(model, memo)
    if names is not None:
        check_patterns("lm", names, lm["factors"]["modules"], lm["edit"]["layer_sets"])

    mine = lm.get("mine")
    if files:
        for key in ("memorized", "quotes", "clean", "perplexity"):
            if key == "memorized" and not files[key]:
                if not mine:
                    raise ConfigError("config key lm.files.memorized: none given; set lm.mine to mine the memorized "
                                      "set from a text source")
                continue
            for path in local_text_files(files.get(key)):
                check_text_file(f"lm.files.{key}", path, memo)
    if mine and mine["source"] != "train_docs":
        for path in local_text_files(mine["source"]):
            check_text_file("lm.mine.source", path, memo)
    elif scale != "test" and not Path(FORTUNES).is_dir():
        raise ConfigError("config key lm.world: needs Debian's fortunes text (bash envs/setup.sh installs it)")
    windows = lm["windows"]
    if train and windows["prefix"] + windows["suffix"] > train["seq_len"]:
        raise ConfigError("config key lm.windows: prefix + suffix exceeds lm.train.seq_len (the trained context)")
    if lm["stress"]["max_shift"] > windows["prefix"] - 2:
        raise ConfigError(f"config key lm.stress.max_shift: {lm['stress']['max_shift']} leaves no right-shifted "
                          f"prompt of a {windows['prefix']}-token prefix (at most prefix - 2)")


def resolve_local_source(source: str) -> Path | None:
    """The local file or directory a `source` names, or None for a hub id. `pkg:` sources name a
    file inside an installed package; a source that looks like a path must exist."""
    from .model import resolve_source

    if source.startswith("pkg:"):
        try:
            return Path(resolve_source(source))
        except FileNotFoundError as err:
            raise ConfigError(f"config key lm.model.source: {err}") from None
    path = Path(source).expanduser()
    looks_local = (source.startswith(("/", ".", "~")) or source.count("/") > 1 or source.endswith(".gguf")
                   or not HUB_ID.match(source))
    if path.exists():
        if path.is_dir() and not (path / "config.json").exists():
            raise ConfigError(f"config key lm.model.source: {source!r} is a directory without config.json "
                              f"(not a saved transformers model)")
        return path
    if looks_local:
        raise ConfigError(f"config key lm.model.source: {source!r} does not exist (a local path; hub ids look "
                          f"like 'allenai/OLMo-2-1124-7B')")
    if os.environ.get("HF_HUB_OFFLINE") == "1" and not _hub_cached(source):
        raise ConfigError(f"config key lm.model.source: {source!r} is not a local path, and the hub is offline "
                          f"(HF_HUB_OFFLINE=1) with no cached copy of it")
    return None


def linear_names(model: dict, memo: Callable) -> list[str] | None:
    """nn.Linear names of the configured LM; None for a hub model (its layers are checked when it loads)."""
    source = model.get("source")
    if not source:
        return memo({"lm_linear_names": model}, lambda: _names_from_dims(model))
    path = resolve_local_source(source)
    if path is None:
        return None
    key = {"lm_linear_names": str(path.resolve()), "stamp": _stamp(path)}
    names = memo(key, lambda: _names_from_pretrained(str(path)))
    if isinstance(names, str):
        raise ConfigError(f"config key lm.model.source: cannot read the model config of {source!r} ({names})")
    return names


def check_text_file(key: str, path: str, memo: Callable) -> None:
    """A local JSONL / text file of the `files` source parses, line by line (URLs: checked when read)."""
    if path.startswith(("http://", "https://")):
        return
    if not Path(path).is_file():
        raise ConfigError(f"config key {key}: {path!r} is not a file")
    problem = memo({"text_file": str(Path(path).resolve()), "stamp": _stamp(Path(path))}, lambda: _parse_problem(path))
    if problem:
        raise ConfigError(f"config key {key}: {problem}")


def _parse_problem(path: str) -> str | None:
    from .text import parse_records

    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            pq.read_schema(path)
        except Exception as err:  # pyarrow's errors vary by what is wrong
            return f"{path}: not a readable Parquet file ({type(err).__name__})"
        return None
    try:
        parse_records(Path(path).read_text(), path)
    except InputError as err:
        return str(err)
    except UnicodeDecodeError as err:
        return f"{path}: not UTF-8 text ({err.reason} at byte {err.start})"
    return None


def _stamp(path: Path) -> list:
    """Size and modification time of a file, or of the files of a directory."""
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    return [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]


def _quiet_transformers() -> None:
    """Validation prints one line per problem: no warnings about the configs it builds on the meta device."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()


def _names_from_dims(model: dict) -> list[str]:
    import torch
    from transformers import AutoModelForCausalLM

    _quiet_transformers()
    from ..common import from_dict
    from ..kfac import linear_names as names_of
    from .model import LMConfig, build_config

    cfg = from_dict(LMConfig, {k: v for k, v in model.items() if k != "source"}, "lm.model")
    with torch.device("meta"):
        return names_of(AutoModelForCausalLM.from_config(build_config(cfg)))


def _names_from_pretrained(path: str) -> list[str] | str:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from ..kfac import linear_names as names_of

    _quiet_transformers()
    try:
        p = Path(path)
        config = (AutoConfig.from_pretrained(str(p.parent), gguf_file=p.name) if p.suffix == ".gguf"
                  else AutoConfig.from_pretrained(path))
        with torch.device("meta"):
            return names_of(AutoModelForCausalLM.from_config(config))
    except Exception as err:  # transformers raises many types for an unreadable config
        return f"{type(err).__name__}: {err}"


def _hub_cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
