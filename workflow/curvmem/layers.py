"""Which layers a config means: glob patterns over public module names, resolved the same way by
config validation and by every job. Pure name matching (no torch), so the Snakefile can use it."""
from __future__ import annotations

import fnmatch

from .common import ConfigError


def match_modules(names: list[str], patterns: list[str], what: str = "nn.Linear of the model") -> list[str]:
    """Names matching any glob pattern, in the given order; a pattern that matches nothing is an error.

    Patterns are full-name globs over public module paths, e.g. `blocks.*.mlp.fc1` (timm) or
    `model.layers.2[345].mlp.gate_proj` (transformers).
    """
    for p in patterns:
        if not any(fnmatch.fnmatchcase(n, p) for n in names):
            raise ValueError(f"module pattern {p!r} matches no {what}")
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def resolve_layer_set(names: list[str], factor_patterns: list[str], set_patterns: list[str]) -> list[str]:
    """The modules a layer set edits: its patterns matched against the factor modules only (never
    against every nn.Linear), so validation and every job resolve a set to the same modules."""
    factor_modules = match_modules(names, factor_patterns)
    return match_modules(factor_modules, set_patterns, what="module of the factor modules")


def check_patterns(arm: str, names: list[str], factor_patterns: list[str], layer_sets: dict) -> None:
    """Factor patterns match nn.Linear names; each layer set resolves within the factor modules,
    exactly as the edit jobs resolve it (`kfac.resolve_layer_set`)."""
    for i, pattern in enumerate(factor_patterns):
        try:
            match_modules(names, [pattern])
        except ValueError:
            raise ConfigError(f"config key {arm}.factors.modules[{i}]: {pattern!r} matches no nn.Linear of the "
                              f"model") from None
    for set_name, patterns in layer_sets.items():
        for i, pattern in enumerate(patterns):
            try:
                resolve_layer_set(names, factor_patterns, [pattern])
            except ValueError:
                raise ConfigError(f"config key {arm}.edit.layer_sets.{set_name}[{i}]: {pattern!r} matches no "
                                  f"module of {arm}.factors.modules") from None
