"""Config validation: the shipped configs pass; malformed ones fail with one line naming the key."""
import copy
from pathlib import Path

import pytest
import yaml

from curvmem.config import ConfigError, validate

CONFIGS = Path(__file__).resolve().parents[1] / "config"


def load(name):
    return yaml.safe_load((CONFIGS / name).read_text())


@pytest.mark.parametrize("name", ["config.yaml", "test.yaml", "smollm2.yaml"])
def test_shipped_configs_are_valid(name):
    validate(load(name))


def test_paper_config_is_valid_given_an_imagefolder(tmp_path, monkeypatch):
    """On a cluster with network access (the hub model is fetched when imported)."""
    from test_vision_data import make_imagefolder

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    make_imagefolder(tmp_path, per_class=20, size=8)  # 60 training images, 6 of them mislabeled
    config = load("paper.yaml")
    config["vit"]["factors"]["n_images"] = 10
    config["vit"]["data"]["root"] = str(tmp_path)
    for key in ("memorized", "quotes", "clean"):
        (tmp_path / f"{key}.jsonl").write_text('{"text": "x"}\n')
        config["lm"]["files"][key] = str(tmp_path / f"{key}.jsonl")
    validate(config)


def test_an_uncached_hub_model_is_an_error_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = load("smollm2.yaml")
    config["lm"]["model"]["source"] = "nobody/no-such-model-here"
    with pytest.raises(ConfigError, match="is not a local path, and the hub is offline"):
        validate(config)


def set_key(config, dotted, value):
    *parents, last = dotted.split(".")
    node = config
    for p in parents:
        node = node[p]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return config


DELETE = object()

BAD = [
    ("vit.edit.rhoz", [0.5], "vit.edit.rhoz: unknown key"),
    ("vit.train.epochs", "ten", "vit.train.epochs: 'ten' is not of type 'integer'"),
    ("vit.edit.rhos", [0.0, 0.5], "vit.edit.rhos[0]"),
    ("vit.edit.rhos", [1.5], "vit.edit.rhos[0]"),
    ("vit.edit.rhos", [0.5, 0.5], "vit.edit.rhos: has duplicate entries"),
    ("vit.weight_decays", [0.1, 0.1], "vit.weight_decays: has duplicate entries"),
    ("vit.weight_decays", [-0.1], "vit.weight_decays[0]"),
    ("vit.stability.seeds", [], "vit.stability.seeds: [] should be non-empty"),
    ("vit.stability.seeds", [1, 2], "vit.stability.seeds: the checkpoints are of the trained model's run"),
    ("vit.stability.checkpoints", [1.0], "vit.stability.checkpoints[0]: 1.0 is greater than or equal to the maximum"),
    ("vit.stability.checkpoints", [0.999], "vit.stability.checkpoints[0]: 0.999 of 80 epochs stops at the last one"),
    ("vit.stability.checkpoints", [0.5, 0.501], "vit.stability.checkpoints[1]: 0.501 and 0.5 of 80 epochs both stop after 40"),
    ("lm.stability.layer_set", "layer_9", "lm.stability.layer_set: 'layer_9' is not in lm.edit.layer_sets"),
    ("lm.stability.checkpoints", [0.9999], "lm.stability.checkpoints[0]: 0.9999 of 1200 steps stops at the last one"),
    ("lm.stability.rho", DELETE, "lm.stability.rho: required but missing"),
    ("vit.data.noise_rate", 1.0, "vit.data.noise_rate"),
    ("vit.data.noise_rate", -0.1, "vit.data.noise_rate"),
    ("vit.factors.modules", [], "vit.factors.modules"),
    ("vit.factors.modules", ["blocks.*.attn.fc9"], "vit.factors.modules[0]: 'blocks.*.attn.fc9' matches no nn.Linear"),
    ("vit.edit.layer_sets.first_last", ["blocks.9.mlp.fc1"], "vit.edit.layer_sets.first_last[0]"),
    ("vit.model.name", "vit_gigantic_nonexistent", "vit.model.name"),
    ("vit.data.root", "/nonexistent/fashion", "vit.data.root"),
    ("vit.headline.rho", 0.65, "vit.headline.rho"),
    ("vit.model.overrides", {"depth": 2}, "vit.model.overrides: only allowed with scale: test"),
    ("vit.train.seed", DELETE, "vit.train.seed: required but missing"),
    ("vit.bsn.layer_sets", ["blocks_9"], "vit.bsn.layer_sets[0]: 'blocks_9' is not in vit.edit.layer_sets"),
    ("vit.headline.bsn", {"layer_set": "first_last", "ratio": 0.3, "loss_weight": 0.5, "epochs": 10, "lr": 0.3},
     "vit.headline.bsn: {'layer_set': 'first_last', 'ratio': 0.3, 'loss_weight': 0.5, 'epochs': 10, 'lr': 0.3} is "
     "not a point of the vit.bsn grid"),
    ("vit.bsn.ratios", [0.0], "vit.bsn.ratios[0]: 0.0 is less than or equal to the minimum of 0"),
    ("lm.bsn.loss_weights", [1.5], "lm.bsn.loss_weights[0]: 1.5 is greater than the maximum of 1"),
    ("lm.stress.max_shift", 31, "lm.stress.max_shift: 31 leaves no right-shifted prompt of a 32-token prefix"),
    ("lm.generations", DELETE, "lm.generations: required but missing"),
]


@pytest.mark.parametrize("key,value,message", BAD, ids=[f"{k}={v!r}"[:40] for k, v, _ in BAD])
def test_bad_config_is_one_line_naming_the_key(key, value, message):
    config = set_key(copy.deepcopy(load("config.yaml")), key, value)
    with pytest.raises(ConfigError) as err:
        validate(config)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("config key "), text
    assert message in text, text
