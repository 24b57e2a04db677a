"""Small helpers every stage uses: errors, config dataclasses, torch threads and seeds, device
choice, fault injection. Imports no torch at module level (the Snakefile imports this)."""
from __future__ import annotations

import dataclasses
import os
import random
import signal
import typing


class ConfigError(ValueError):
    """A config problem, as one line that names the key (or the file and line)."""


class InputError(ValueError):
    """Bad input data found while a job runs (its message names the file and what to change)."""


def from_dict(cls, data: dict | None, where: str = "config"):
    """Build dataclass `cls` from a plain dict (a config section), recursing into dataclass fields.

    Unknown keys are an error naming them: a config section and its dataclass must agree.
    """
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise TypeError(f"{where}: unknown key(s) {unknown} for {cls.__name__} (known: {sorted(fields)})")
    kwargs = {}
    for name, value in data.items():
        kind = hints[name]
        nested = [t for t in (kind, *typing.get_args(kind)) if dataclasses.is_dataclass(t)]
        kwargs[name] = from_dict(nested[0], value, f"{where}.{name}") if nested and isinstance(value, dict) else value
    return cls(**kwargs)


def run_length(total: int, stop_after: float) -> int:
    """The epochs (or steps) of a run stopped at fraction `stop_after` of its `total`: at least one."""
    assert 0 < stop_after <= 1, f"train.stop_after {stop_after} must be in (0, 1]"
    return max(1, round(stop_after * total))


def setup_torch(threads: int, seed: int = 0) -> None:
    """Fixed thread count and seeds: CPU results are reproducible for a given thread count."""
    import torch

    torch.set_num_threads(max(1, threads))
    seed_everything(seed)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str = "auto"):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def crash_point(name: str) -> None:
    """Fault injection for the failure tests: SIGKILL this process when CURVMEM_CRASH_AT names
    this point (e.g. `train:step5`, `write:model.safetensors`; several, comma-separated). A no-op otherwise."""
    if name in os.environ.get("CURVMEM_CRASH_AT", "").split(","):
        os.kill(os.getpid(), signal.SIGKILL)
