"""The artifact table: fingerprinted paths follow exactly the parameters upstream of an artifact,
cutoffs map to file names exactly, and every artifact names the rule that makes it."""
import copy
from pathlib import Path

import pytest
import yaml

from curvmem.artifacts import TEMPLATES, Layout, cutoff_token, maker

CONFIG = yaml.safe_load((Path(__file__).resolve().parents[1] / "config/test.yaml").read_text())


def paths_after(change) -> tuple[Layout, Layout]:
    config = copy.deepcopy(CONFIG)
    change(config)
    return Layout(CONFIG), Layout(config)


def changed_rules(before: Layout, after: Layout) -> set[str]:
    return {rule for rule in before.stages if before[rule].outputs != after[rule].outputs}


@pytest.mark.parametrize("change,expected", [
    (lambda c: c["vit"]["train"].update(epochs=9), {"vit_train", "vit_factors", "vit_basis", "vit_ekfac"}),
    (lambda c: c["vit"]["data"].update(noise_rate=0.2), {"vit_corrupt", "vit_train", "vit_factors", "vit_basis", "vit_ekfac"}),
    (lambda c: c["vit"]["data"].update(n_val=100), {"vit_data", "vit_corrupt", "vit_train", "vit_factors",
                                                    "vit_basis", "vit_ekfac"}),
    (lambda c: c["vit"]["factors"].update(n_images=100), {"vit_factors", "vit_basis", "vit_ekfac"}),
    (lambda c: c["vit"]["edit"].update(rhos=[0.3]), set()),  # cheap results only
    (lambda c: c["vit"]["edit"]["frontier"]["cutoffs"].update(magnitude=[0.3]), set()),
    (lambda c: c["lm"]["edit"]["frontier"].update(layer_sets=["layer0"]), {"lm_ekfac"}),  # collected there only
    (lambda c: c["lm"]["train"].update(steps=10), {"lm_train", "lm_sets", "lm_factors", "lm_basis", "lm_ekfac"}),
    (lambda c: c["lm"]["windows"].update(suffix=6), {"lm_sets"}),
    (lambda c: c["lm"]["world"].update(n_eval=5), {"lm_data", "lm_train", "lm_sets", "lm_factors", "lm_basis", "lm_ekfac"}),
    (lambda c: c["lm"]["selection"].update(max_perplexity_increase=0.1), set()),
])
def test_a_parameter_moves_exactly_the_artifacts_downstream_of_it(change, expected):
    assert changed_rules(*paths_after(change)) == expected


def test_external_file_contents_are_fingerprinted():
    assert Layout(CONFIG, {"memorized": "a" * 64})["lm_data"].fp != Layout(CONFIG, {"memorized": "b" * 64})["lm_data"].fp


def test_cutoff_tokens_are_exact():
    assert cutoff_token(0.9999999) == "0.9999999" and cutoff_token(1) == cutoff_token(1.0) == "1.0"
    values = [0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999, 0.999999, 0.9999999, 1.0, 1e-7]
    assert len({cutoff_token(v) for v in values}) == len(values)
    assert all(float(cutoff_token(v)) == v for v in values)


def test_every_template_names_its_rule():
    layout = Layout(CONFIG)
    for rule, outputs in TEMPLATES.items():
        for template in outputs.values():
            path = template.format(fp="0123456789", ext="parquet", layer_set="all", method="kfac", chunk="0.5",
                                   setting="r0.01-w0.5-e2-lr0.3", weight_decay="0.3")
            assert maker(path) == rule, (rule, path)
            assert maker(f"/somewhere/else/{path}") == rule
    for path in layout.expensive_paths():
        assert maker(path) in layout.stages
    assert maker("results/lm/model-0123456789/tokenizer.json") == "lm_train"
    assert maker("README.md") is None


def test_weight_decay_family_shares_the_trained_model_and_fingerprints_the_others():
    """A member trained with vit.train.weight_decay is the trained model (one path, listed once); another
    decay gives a model, factors and basis of its own and leaves every other artifact where it was."""
    layout = Layout(CONFIG)
    own, other = layout.vit_family[cutoff_token(CONFIG["vit"]["train"]["weight_decay"])], layout.vit_family["1.0"]
    for rule in ("vit_train", "vit_factors", "vit_basis"):
        assert own[rule].outputs == layout[rule].outputs
        assert set(other[rule].outputs.values()).isdisjoint(layout[rule].outputs.values())
    assert layout.upstream("vit_basis", other["vit_basis"].fp, "vit_factors") is other["vit_factors"]
    assert layout.upstream("vit_factors", other["vit_factors"].fp, "vit_train") is other["vit_train"]
    paths = layout.expensive_paths()
    assert len(paths) == len(set(paths)) and set(other["vit_train"].outputs.values()) <= set(paths)
    # the family's list moves no artifact of the trained model
    before, after = paths_after(lambda c: c["vit"].update(weight_decays=[0.1, 0.5, 2.0]))
    assert changed_rules(before, after) == set() and "0.5" in after.vit_family
    with pytest.raises(KeyError, match="no artifact of rule vit_train .* fingerprint 0123456789"):
        layout.stage("vit_train", "0123456789")


@pytest.mark.parametrize("arm, model_rule", [("vit", "vit_train"), ("lm", "lm_train")])
def test_the_other_fishers_factors_and_basis_are_artifacts_of_their_own(arm, model_rule):
    """kfac_empirical in the frontier gives the arm a second factors and basis, from the same model and
    data, at paths of their own; dropping it, or changing its cutoffs, moves none of the main chain."""
    layout = Layout(CONFIG)
    other = layout.fisher_bases[arm]["empirical"]
    factors, basis = other[f"{arm}_factors"], other[f"{arm}_basis"]
    assert factors.params["factors"]["fisher"] == "empirical" and layout[f"{arm}_factors"].params["factors"]["fisher"] == "mc"
    assert factors.outputs != layout[f"{arm}_factors"].outputs and basis.outputs != layout[f"{arm}_basis"].outputs
    assert layout.upstream(f"{arm}_factors", factors.fp, model_rule) is layout[model_rule]
    assert layout.upstream(f"{arm}_basis", basis.fp, f"{arm}_factors") is factors
    paths = layout.expensive_paths()
    assert len(paths) == len(set(paths)) and set(basis.outputs.values()) <= set(paths)
    before, after = paths_after(lambda c: c[arm]["edit"]["frontier"]["cutoffs"].pop("kfac_empirical"))
    assert changed_rules(before, after) == set() and after.fisher_bases[arm] == {}
    before, after = paths_after(lambda c: c[arm]["edit"]["frontier"]["cutoffs"].update(kfac_empirical=[0.5]))
    assert changed_rules(before, after) == set()
    assert after.fisher_bases[arm]["empirical"][f"{arm}_basis"].outputs == basis.outputs
