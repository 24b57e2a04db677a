# Config validation and helpers shared by every rule file.
import json
import os
import shlex
import sys
from functools import lru_cache

from curvmem import artifacts
from curvmem.config import ConfigError, fmt, validate

try:
    validate(config)
except ConfigError as err:
    print(err, file=sys.stderr)  # one line naming the key, before any job
    sys.exit(1)

# Spinning OpenMP threads stall when jobs share cores; must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

VIT = config.get("vit")  # None: this config has no vision arm
LM = config.get("lm")  # None: this config has no language-model arm


def as_json(obj) -> str:
    """Params are passed to the library as JSON; Snakemake records them for rerun detection."""
    return json.dumps(obj, sort_keys=True)


def lm_model_dir() -> str:
    """The model every LM rule after training reads: trained here, or the imported pretrained one."""
    return "results/lm/model" if LM.get("train") else "results/lm/pretrained"


def lm_edit_results() -> list[str]:
    out = ["results/lm/edits/baseline.json"]
    for layer_set in LM["edit"]["layer_sets"]:
        out += [f"results/lm/edits/{layer_set}/kfac_{fmt(r)}.json" for r in LM["edit"]["rhos"]]
        out += [f"results/lm/edits/{layer_set}/svd_{fmt(k)}.json" for k in LM["edit"]["svd_drop_fractions"]]
    return out


def vit_split(split: str) -> str:
    return artifacts.vit_split(config, split)


@lru_cache
def vit_layer_set_modules(name: str) -> list[str]:
    """Module names of a layer set, resolved against the configured architecture."""
    from curvmem.kfac import match_modules
    from curvmem.vision.model import ViTConfig, build_vit
    import torch

    with torch.device("meta"):
        model = build_vit(ViTConfig(**VIT["model"]))
    return match_modules(model, VIT["edit"]["layer_sets"][name])


def vit_edit_results() -> list[str]:
    out = ["results/vit/edits/baseline.json"]
    for layer_set in VIT["edit"]["layer_sets"]:
        out += [f"results/vit/edits/{layer_set}/kfac_{fmt(r)}.json" for r in VIT["edit"]["rhos"]]
        out += [f"results/vit/edits/{layer_set}/svd_{fmt(k)}.json" for k in VIT["edit"]["svd_drop_fractions"]]
    return out
