"""Config validation before any job: the JSON schema, then each arm's checks of what only the
model or the data can tell (module patterns against the architecture, dataset sizes, text files
line by line, local model paths). Every problem is one line naming the key, or the file and line.

Results of slow checks (building a model on the meta device to list its layers, parsing a large
text file) are cached in `.snakemake/curvmem/checks.json`, keyed by what they depend on, so a
no-op run stays fast.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import yaml

from .artifacts import BSN_AXES, FISHER_METHODS, bsn_grid, cutoff_token
from .common import ConfigError, run_length

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"
CACHE = Path(".snakemake/curvmem/checks.json")


def load_yaml(path: str | os.PathLike) -> dict:
    """A config file; a syntax error is one line naming the file, line and column."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"config file {path}{where}: {err.problem or err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path}: {err}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"config file {path}: expected a mapping of keys, got {type(config).__name__}")
    return config


def _key(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def check_schema(config: dict) -> None:
    import jsonschema

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


def check_cutoffs(arm: str, edit: dict) -> None:
    """Cutoffs become file names: distinct cutoffs must give distinct names (`artifacts.cutoff_token`)."""
    frontier = edit.get("frontier") or {}
    lists = {key: edit[key] for key in ("rhos", "svd_drop_fractions")}
    lists.update({f"frontier.cutoffs.{m}": c for m, c in frontier.get("cutoffs", {}).items()})
    for key, cutoffs in lists.items():
        tokens = [cutoff_token(c) for c in cutoffs]
        if len(set(tokens)) != len(tokens):
            raise ConfigError(f"config key {arm}.edit.{key}: {cutoffs} holds the same cutoff twice")


def check_frontier(arm: str, section: dict) -> None:
    """The frontier's layer sets are layer sets of the edits (checked after the sets themselves); a
    `kfac_<fisher>` method names a Fisher type other than the factors' own (else it is kfac)."""
    frontier = section["edit"].get("frontier") or {}
    for i, name in enumerate(frontier.get("layer_sets", [])):
        if name not in section["edit"]["layer_sets"]:
            raise ConfigError(f"config key {arm}.edit.frontier.layer_sets[{i}]: {name!r} is not in {arm}.edit.layer_sets")
    for method, fisher in FISHER_METHODS.items():
        if method in frontier.get("cutoffs", {}) and fisher == section["factors"]["fisher"]:
            raise ConfigError(f"config key {arm}.edit.frontier.cutoffs.{method}: the factors are already the {fisher} "
                              f"Fisher ({arm}.factors.fisher), so this is {arm}.edit.rhos; compare the other type")


def check_bsn(arm: str, section: dict) -> None:
    """The BalancedSubnet grid masks layer sets of the edits (same patterns, same modules); a headline
    setting, where the arm has one, is a point of the grid."""
    bsn = section["bsn"]
    for i, name in enumerate(bsn["layer_sets"]):
        if name not in section["edit"]["layer_sets"]:
            raise ConfigError(f"config key {arm}.bsn.layer_sets[{i}]: {name!r} is not in {arm}.edit.layer_sets")
    headline = (section.get("headline") or {}).get("bsn")
    if headline:
        grid = [{k: v for k, v in s.items() if k != "token"} for s in bsn_grid(bsn)]
        if headline not in grid:
            raise ConfigError(f"config key {arm}.headline.bsn: {headline} is not a point of the {arm}.bsn grid "
                              f"(layer_sets x {' x '.join(BSN_AXES.values())})")


class Memo:
    """A JSON cache of slow, pure checks: memo(key, fn) returns fn() computed once per key
    (kept in `path` across runs; in memory only when path is None)."""

    def __init__(self, path: Path | None = CACHE):
        self.path = path
        try:
            self.store = json.loads(path.read_text()) if path else {}
        except (OSError, ValueError):
            self.store = {}
        self.dirty = False

    def __call__(self, key: dict, fn):
        digest = hashlib.sha256(json.dumps([key, _versions()], sort_keys=True, default=str).encode()).hexdigest()
        if digest not in self.store:
            self.store[digest] = fn()
            self.dirty = True
        return self.store[digest]

    def save(self) -> None:
        if self.dirty and self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.store))
            os.replace(tmp, self.path)


@functools.lru_cache
def _versions() -> tuple[str, ...]:
    """The libraries a cached check depends on: a new version invalidates the cache."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in ("curvmem", "torch", "timm", "transformers"):
        try:
            out.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            out.append(f"{dist}: none")
    return tuple(out)


def check_stability(arm: str, section: dict, length: str) -> None:
    """Each checkpoint of an arm's stability study stops the trained model's run (a seed of the study)
    at an epoch (LM: step) of its own, before the last; the study needs a model the arm trains."""
    stability = section.get("stability") or {}
    if not stability:
        return
    if not section.get("train"):
        raise ConfigError(f"config key {arm}.stability: needs {arm}.train (the study trains its models)")
    if "layer_set" in stability and stability["layer_set"] not in section["edit"]["layer_sets"]:  # the LM's edit
        raise ConfigError(f"config key {arm}.stability.layer_set: {stability['layer_set']!r} is not in "
                          f"{arm}.edit.layer_sets")
    total, seed = section["train"][length], section["train"]["seed"]
    if stability.get("checkpoints") and seed not in (stability.get("seeds") or [seed]):
        raise ConfigError(f"config key {arm}.stability.seeds: the checkpoints are of the trained model's run, so "
                          f"its seed ({arm}.train.seed: {seed}) must be one of them")
    stops = {}
    for i, fraction in enumerate(stability.get("checkpoints") or []):
        stop = run_length(total, fraction)
        key = f"config key {arm}.stability.checkpoints[{i}]"
        if stop == total:
            raise ConfigError(f"{key}: {fraction} of {total} {length} stops at the last one: that is the trained model")
        if stop in stops:
            raise ConfigError(f"{key}: {fraction} and {stops[stop]} of {total} {length} both stop after {stop}")
        stops[stop] = fraction


def validate(config: dict, memo: Memo | None = None) -> dict:
    """Raise ConfigError (one line) for any problem; return the config unchanged."""
    check_schema(config)
    memo = memo or Memo(path=None)
    if "vit" in config:
        from .vision import checks as vit_checks

        check_cutoffs("vit", config["vit"]["edit"])
        vit_checks.check(config["vit"], config["scale"], memo)
        check_stability("vit", config["vit"], "epochs")
        check_frontier("vit", config["vit"])
        check_bsn("vit", config["vit"])
    if "lm" in config:
        from .lm import checks as lm_checks

        check_cutoffs("lm", config["lm"]["edit"])
        lm_checks.check(config["lm"], config["scale"], memo)
        check_stability("lm", config["lm"], "steps")
        check_frontier("lm", config["lm"])
        check_bsn("lm", config["lm"])
    return config


def file_digests(config: dict, memo: Memo) -> dict:
    """sha256 of every local text file the LM arm reads (part of the lm_data fingerprint; the miner's
    source, key `mine`, of lm_mine's), cached by size and modification time."""
    from .lm.text import local_text_files

    lm = config.get("lm") or {}
    files = {**(lm.get("files") or {}), "mine": (lm.get("mine") or {}).get("source")}
    digests = {}
    for key in ("memorized", "quotes", "clean", "perplexity", "mine"):
        paths = [p for p in local_text_files(files.get(key)) if Path(p).is_file()]
        sums = [memo({"sha256": str(Path(p).resolve()), "size": Path(p).stat().st_size,
                      "mtime": Path(p).stat().st_mtime_ns}, lambda p=p: hashlib.sha256(Path(p).read_bytes()).hexdigest())
                for p in paths]
        if sums:  # one file: its digest, as before; several: the list
            digests[key] = sums[0] if len(sums) == 1 else sums
    return digests
